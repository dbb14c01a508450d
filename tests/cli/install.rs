//! `weir install`, `weir uninstall` and `weir trust`, with hooks fired by real git.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::common::{Run, TestRepo};

const PIPELINE: &str = "[jobs.check]\non = [\"pre-commit\"]\nrun = \"true\"\n";
const WORKTREE_HOOKS: [&str; 3] = ["pre-commit", "pre-push", "post-merge"];
const MARKER: &str = "# weir hook shim";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn write_script(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file in `dir` with its bytes and mode, sorted by name.
fn listing(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap(), mode(&path))
        })
        .collect();
    files.sort();
    files
}

/// Runs git, successful or not, returning its combined output and whether it succeeded.
fn git_anyway(repo: &TestRepo, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("git");
    repo.hermetic(&mut cmd);
    let out = cmd.args(args).output().expect("run git");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn run_cmd(cmd: &mut Command) -> Run {
    Run(cmd.output().expect("run weir"))
}

/// A copy of the weir binary at a path of its own, which a test may delete or replace.
fn weir_copy() -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    // As the binary will see itself: `current_exe` resolves symlinks.
    let path = std::fs::canonicalize(dir.path()).unwrap().join("weir");
    std::fs::copy(env!("CARGO_BIN_EXE_weir"), &path).unwrap();
    (dir, path)
}

/// Runs `exe ARGS` in `repo`, retrying while a just-written binary is still busy: a process
/// forked by another test thread may briefly hold its write descriptor.
fn run_exe(repo: &TestRepo, exe: &Path, args: &[&str]) -> std::process::Output {
    for _ in 0..50 {
        let mut cmd = Command::new(exe);
        repo.hermetic(&mut cmd);
        match cmd.args(args).output() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.expect("run the copied weir"),
        }
    }
    panic!("{} stayed busy", exe.display());
}

#[test]
fn install_writes_an_executable_shim_for_each_hook_and_trusts_the_pipeline() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    let install = repo.weir(&["install"]);
    install.expect_code(0);
    let stdout = install.stdout();
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_weir")).unwrap();
    for hook in WORKTREE_HOOKS {
        let path = repo.file(&format!(".git/hooks/{hook}"));
        assert_eq!(mode(&path), 0o755, "{hook}");
        let shim = repo.read(&format!(".git/hooks/{hook}"));
        assert!(shim.starts_with("#!/bin/sh\n"), "{shim}");
        assert!(shim.contains(MARKER), "{shim}");
        assert!(shim.contains(&format!("hook={hook}\n")), "{shim}");
        assert!(
            shim.contains(&format!("weir='{}'\n", binary.display())),
            "{shim}"
        );
        assert!(stdout.contains(&format!("{hook}: installed ")), "{stdout}");
    }
    assert!(!repo.file(".git/hooks/post-receive").exists());
    assert!(
        stdout.contains("trusted .pipeline.toml (blake3 "),
        "{stdout}"
    );
}

#[test]
fn install_in_a_bare_repository_writes_post_receive_only() {
    let repo = TestRepo::new();
    repo.git(&["init", "-q", "--bare", "server.git"]);
    let server = repo.file("server.git");
    let install = run_cmd(repo.weir_cmd(&["install"]).current_dir(&server));
    install.expect_code(0);
    assert_eq!(mode(&server.join("hooks/post-receive")), 0o755);
    for hook in WORKTREE_HOOKS {
        assert!(!server.join("hooks").join(hook).exists(), "{hook}");
    }
    // A server's pipeline comes from its default branch, not from a working tree.
    assert!(!install.stdout().contains("trust"), "{}", install.stdout());

    let uninstall = run_cmd(repo.weir_cmd(&["uninstall"]).current_dir(&server));
    uninstall.expect_code(0);
    assert!(!server.join("hooks/post-receive").exists());
}

#[test]
fn install_honours_a_relative_core_hooks_path() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    repo.git(&["config", "core.hooksPath", "tools/hooks"]);
    std::fs::create_dir(repo.file("sub")).unwrap();
    // From a subdirectory: the path is relative to the top of the working tree, as git reads it.
    let install = run_cmd(repo.weir_cmd(&["install"]).current_dir(repo.file("sub")));
    install.expect_code(0);
    for hook in WORKTREE_HOOKS {
        assert_eq!(mode(&repo.file(&format!("tools/hooks/{hook}"))), 0o755);
        assert!(!repo.file(&format!(".git/hooks/{hook}")).exists());
    }
}

#[test]
fn an_existing_hook_is_kept_runs_first_and_is_restored_byte_identical() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    let original = "#!/bin/sh\n# the team's own check\necho \"chained ran\" >> chained.log\n";
    let hook = repo.file(".git/hooks/pre-commit");
    write_script(&hook, original, 0o750);

    let install = repo.weir(&["install"]);
    install.expect_code(0);
    assert!(
        install
            .stdout()
            .contains("kept as pre-commit.weir-chained and runs first"),
        "{}",
        install.stdout()
    );
    let chained = repo.file(".git/hooks/pre-commit.weir-chained");
    assert_eq!(repo.read(".git/hooks/pre-commit.weir-chained"), original);
    assert_eq!(mode(&chained), 0o750);

    repo.write("a.txt", "a\n");
    repo.git(&["add", "a.txt"]);
    // `weir hook` is not there yet, so only the chained hook's part is asserted.
    let (_, output) = git_anyway(&repo, &["commit", "-q", "-m", "a"]);
    assert_eq!(repo.read("chained.log"), "chained ran\n", "{output}");

    let uninstall = repo.weir(&["uninstall"]);
    uninstall.expect_code(0);
    assert!(
        uninstall
            .stdout()
            .contains("pre-commit: removed weir's shim; the original hook is back"),
        "{}",
        uninstall.stdout()
    );
    assert_eq!(std::fs::read(&hook).unwrap(), original.as_bytes());
    assert_eq!(mode(&hook), 0o750);
    assert!(!chained.exists());
    for hook in ["pre-push", "post-merge"] {
        assert!(!repo.file(&format!(".git/hooks/{hook}")).exists(), "{hook}");
    }
}

#[test]
fn pre_push_gives_the_chained_hook_and_weir_the_same_stdin() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    repo.commit_all("pipeline");
    let remote = TempDir::new().unwrap();
    repo.git(&["init", "-q", "--bare", &remote.path().display().to_string()]);
    write_script(
        &repo.file(".git/hooks/pre-push"),
        "#!/bin/sh\necho \"$@\" > chained.args\ncat > chained.stdin\n",
        0o755,
    );
    let (_dir, exe) = weir_copy();
    let out = run_exe(&repo, &exe, &["install"]);
    assert!(out.status.success(), "{out:?}");
    // Stands in for `weir hook`, recording what the shim hands it.
    write_script(
        &exe,
        "#!/bin/sh\necho \"$@\" > weir.args\ncat > weir.stdin\n",
        0o755,
    );

    let url = remote.path().display().to_string();
    let (pushed, output) = git_anyway(&repo, &["push", "-q", &url, "main"]);
    assert!(pushed, "{output}");
    let stdin = repo.read("chained.stdin");
    assert!(stdin.starts_with("refs/heads/main "), "{stdin}");
    assert_eq!(repo.read("weir.stdin"), stdin);
    assert_eq!(repo.read("chained.args"), format!("{url} {url}\n"));
    assert_eq!(
        repo.read("weir.args"),
        format!("hook pre-push {url} {url}\n")
    );
}

#[test]
fn a_failing_chained_hook_blocks_and_weir_does_not_run() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    write_script(
        &repo.file(".git/hooks/pre-commit"),
        "#!/bin/sh\necho 'lint failed' >&2\nexit 3\n",
        0o755,
    );
    let (_dir, exe) = weir_copy();
    let out = run_exe(&repo, &exe, &["install"]);
    assert!(out.status.success(), "{out:?}");
    write_script(&exe, "#!/bin/sh\ntouch weir.ran\n", 0o755);

    let mut shim = Command::new(repo.file(".git/hooks/pre-commit"));
    repo.hermetic(&mut shim);
    let out = shim.output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lint failed"));
    assert!(!repo.file("weir.ran").exists());
}

#[test]
fn installing_twice_keeps_one_chained_copy_and_the_same_shims() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    let original = "#!/bin/sh\nexit 0\n";
    write_script(&repo.file(".git/hooks/pre-commit"), original, 0o755);
    repo.weir(&["install"]).expect_code(0);
    let hooks = repo.file(".git/hooks");
    let first = listing(&hooks);

    let again = repo.weir(&["install"]);
    again.expect_code(0);
    assert_eq!(listing(&hooks), first);
    assert_eq!(repo.read(".git/hooks/pre-commit.weir-chained"), original);
    let chained = first
        .iter()
        .filter(|(name, _, _)| name.contains("weir-chained"))
        .count();
    assert_eq!(chained, 1, "{first:?}");
    assert!(
        again.stdout().contains("pre-commit: already installed"),
        "{}",
        again.stdout()
    );

    repo.weir(&["uninstall"]).expect_code(0);
    assert_eq!(repo.read(".git/hooks/pre-commit"), original);
}

#[test]
fn install_refuses_to_overwrite_a_chained_hook_and_changes_nothing() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    write_script(&repo.file(".git/hooks/pre-push"), "#!/bin/sh\n", 0o755);
    write_script(
        &repo.file(".git/hooks/pre-push.weir-chained"),
        "#!/bin/sh\n",
        0o755,
    );
    let before = listing(&repo.file(".git/hooks"));
    let install = repo.weir(&["install"]);
    install.expect_code(2);
    assert!(
        install.stderr().contains("pre-push.weir-chained"),
        "{}",
        install.stderr()
    );
    assert_eq!(listing(&repo.file(".git/hooks")), before);
}

#[test]
fn uninstall_leaves_a_hook_that_is_not_weirs_alone() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    repo.weir(&["install"]).expect_code(0);
    let theirs = "#!/bin/sh\n# another tool's hook\n";
    write_script(&repo.file(".git/hooks/post-merge"), theirs, 0o755);
    let uninstall = repo.weir(&["uninstall"]);
    uninstall.expect_code(0);
    assert!(
        uninstall.stdout().contains("post-merge: left alone"),
        "{}",
        uninstall.stdout()
    );
    assert_eq!(repo.read(".git/hooks/post-merge"), theirs);
    assert!(!repo.file(".git/hooks/pre-commit").exists());
}

#[test]
fn the_shim_says_what_to_do_when_weir_is_gone() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    let (dir, exe) = weir_copy();
    let out = run_exe(&repo, &exe, &["install"]);
    assert!(out.status.success(), "{out:?}");
    drop(dir);

    let mut shim = Command::new(repo.file(".git/hooks/pre-commit"));
    repo.hermetic(&mut shim);
    let out = shim.env("PATH", "/usr/bin:/bin").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "weir: the pre-commit hook cannot find the weir binary (was {}",
            exe.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("reinstall weir"), "{stderr}");
}

#[test]
fn trust_names_the_content_it_trusted() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    let first = repo.weir(&["trust"]);
    first.expect_code(0);
    let id = |stdout: &str| -> String {
        let rest = stdout
            .strip_prefix("trusted .pipeline.toml (blake3 ")
            .unwrap_or_else(|| panic!("{stdout}"));
        rest.trim_end().trim_end_matches(')').to_owned()
    };
    let v1 = id(&first.stdout());
    assert_eq!(v1.len(), 12, "{v1}");
    // The trusted bytes are kept, so that a refusal can show what changed since.
    let stored = std::fs::read_dir(repo.file(".git/weir/trust"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&v1))
        .expect("the trusted content is stored");
    assert_eq!(std::fs::read_to_string(stored).unwrap(), PIPELINE);

    assert_eq!(id(&repo.weir(&["trust"]).stdout()), v1);
    repo.write(".pipeline.toml", format!("{PIPELINE}# changed\n"));
    assert_ne!(id(&repo.weir(&["trust"]).stdout()), v1);
}

#[test]
fn install_without_a_pipeline_says_to_trust_one_later() {
    let repo = TestRepo::new();
    let install = repo.weir(&["install"]);
    install.expect_code(0);
    assert!(
        install.stdout().contains("run `weir trust`"),
        "{}",
        install.stdout()
    );
    assert!(repo.file(".git/hooks/pre-commit").exists());
}
