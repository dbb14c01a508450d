//! The content-addressed cache: hits, misses, restores, explain, hostile entries, sharing
//! through a bare remote, concurrency and housekeeping.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::{Run, TestRepo};

/// A build with every kind of output: text, binary, executable, symlink. `runs` counts how
/// often it really ran (it is not an input or output).
const BUILD: &str = r#"
[jobs.build]
inputs = ["src/**"]
outputs = ["dist/**"]
run = [
    "echo run >> runs",
    "mkdir -p dist/bin",
    "tr a-z A-Z < src/main.txt > dist/out.txt",
    "printf '\\000\\001\\377binary' > dist/data.bin",
    "printf '#!/bin/sh\\necho hi\\n' > dist/bin/tool && chmod +x dist/bin/tool",
    "ln -sf out.txt dist/latest",
]

[jobs.test]
needs = ["build"]
inputs = ["tests/**"]
run = "echo run >> test-runs; cat dist/out.txt"
"#;

fn build_repo() -> TestRepo {
    let repo = TestRepo::with_pipeline(BUILD);
    repo.write("src/main.txt", "hello\n");
    repo.write("tests/t.txt", "t\n");
    repo.write("README", "readme\n");
    repo.write(".gitignore", "dist/\nruns\ntest-runs\n");
    repo.commit_all("init");
    repo
}

fn runs(repo: &TestRepo, file: &str) -> usize {
    std::fs::read_to_string(repo.file(file)).map_or(0, |s| s.lines().count())
}

/// Every file under `dir` with its mode and content (a symlink's target).
fn snapshot(repo: &TestRepo, dir: &str) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![repo.file(dir)];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let rel = entry
                .path()
                .strip_prefix(repo.path())
                .unwrap()
                .display()
                .to_string();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                out.push((rel, 0o120000, target.display().to_string().into_bytes()));
            } else {
                out.push((
                    rel,
                    meta.permissions().mode() & 0o111,
                    std::fs::read(entry.path()).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_run_is_a_hit_and_restores_outputs_byte_for_byte() {
    let repo = build_repo();
    repo.weir(&["run"]).expect_code(0);
    let built = snapshot(&repo, "dist");
    assert_eq!(built.len(), 4, "{built:?}");

    let again = repo.weir(&["run"]);
    again.expect_code(0);
    assert!(
        again.stderr().contains("build: cached"),
        "{}",
        again.stderr()
    );
    assert!(
        again.stderr().contains("test: cached"),
        "{}",
        again.stderr()
    );
    assert_eq!(runs(&repo, "runs"), 1);
    assert_eq!(runs(&repo, "test-runs"), 1);

    std::fs::remove_dir_all(repo.file("dist")).unwrap();
    let restored = repo.weir(&["run"]);
    restored.expect_code(0);
    assert!(
        restored.stderr().contains("restored 4 output file(s)"),
        "{}",
        restored.stderr()
    );
    assert_eq!(
        runs(&repo, "runs"),
        1,
        "the build ran again instead of restoring"
    );
    assert_eq!(snapshot(&repo, "dist"), built);

    // A damaged output is put right; intact ones are left alone.
    repo.write("dist/out.txt", "tampered\n");
    let repaired = repo.weir(&["run", "build"]);
    assert!(
        repaired.stderr().contains("restored 1 output file(s)"),
        "{}",
        repaired.stderr()
    );
    assert_eq!(snapshot(&repo, "dist"), built);
}

/// A build whose outputs include two files with the same bytes.
const TWINS: &str = r#"
[jobs.build]
inputs = ["src/**"]
outputs = ["dist/**"]
run = [
    "echo run >> runs",
    "mkdir -p dist",
    "cp src/main.txt dist/a.txt",
    "cp src/main.txt dist/b.txt",
    "tr a-z A-Z < src/main.txt > dist/c.txt",
]
"#;

/// A repository with the [`TWINS`] build, committed with `src/main.txt` holding `source`, built
/// once.
fn twins_built(source: &str) -> TestRepo {
    let repo = TestRepo::with_pipeline(TWINS);
    repo.write("src/main.txt", source);
    repo.write(".gitignore", "dist/\nruns\n");
    repo.commit_all("init");
    repo.weir(&["run"]).expect_code(0);
    repo
}

/// Removes `dist` and runs again: all `outputs` files must come back from the cache.
fn restore_dist(repo: &TestRepo, outputs: usize) {
    std::fs::remove_dir_all(repo.file("dist")).unwrap();
    let restored = repo.weir(&["run"]);
    restored.expect_code(0);
    assert!(
        restored
            .stderr()
            .contains(&format!("restored {outputs} output file(s)")),
        "{}",
        restored.stderr()
    );
}

fn inode(repo: &TestRepo, rel: &str) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(repo.file(rel)).unwrap();
    (meta.ino(), meta.nlink())
}

#[test]
fn restored_outputs_are_fresh_files_that_share_nothing_a_write_can_reach() {
    let repo = twins_built("hello\n");
    // Built long ago, as far as the file system can tell.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
    for name in ["a", "b", "c"] {
        let file = std::fs::File::open(repo.file(&format!("dist/{name}.txt"))).unwrap();
        file.set_modified(old).unwrap();
    }

    std::fs::remove_dir_all(repo.file("dist")).unwrap();
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
    repo.weir(&["run"]).expect_code(0);
    assert_eq!(runs(&repo, "runs"), 1, "the build ran instead of restoring");
    for name in ["a", "b"] {
        assert_eq!(repo.read(&format!("dist/{name}.txt")), "hello\n");
    }
    assert_eq!(repo.read("dist/c.txt"), "HELLO\n");
    for name in ["a", "b", "c"] {
        let modified = std::fs::metadata(repo.file(&format!("dist/{name}.txt")))
            .unwrap()
            .modified()
            .unwrap();
        assert!(
            modified > before,
            "dist/{name}.txt keeps the mtime of its build, not of its restore"
        );
    }
    // The two files with the same bytes are two files: a write into one leaves the other.
    assert_ne!(inode(&repo, "dist/a.txt").0, inode(&repo, "dist/b.txt").0);
    std::fs::write(repo.file("dist/a.txt"), "edited in place\n").unwrap();
    assert_eq!(repo.read("dist/b.txt"), "hello\n");

    // A restored output written into in place and deleted does not taint the next restore.
    let (c, links) = inode(&repo, "dist/c.txt");
    assert_eq!(
        links, 2,
        "dist/c.txt was written, not linked to a kept copy"
    );
    std::fs::write(repo.file("dist/c.txt"), "EDITED\n").unwrap();
    assert_eq!(inode(&repo, "dist/c.txt").0, c, "the edit was not in place");
    restore_dist(&repo, 3);
    assert_eq!(repo.read("dist/c.txt"), "HELLO\n");
    assert_eq!(repo.read("dist/a.txt"), "hello\n");
    assert_eq!(runs(&repo, "runs"), 1);
}

#[test]
fn only_inputs_invalidate_and_reverting_hits_again() {
    let repo = build_repo();
    repo.weir(&["run"]).expect_code(0);

    repo.write("README", "changed, but no job reads it\n");
    repo.weir(&["run"]).expect_code(0);
    assert_eq!(runs(&repo, "runs"), 1);

    repo.write("src/main.txt", "changed\n");
    let changed = repo.weir(&["run"]);
    changed.expect_code(0);
    assert_eq!(runs(&repo, "runs"), 2);
    assert_eq!(
        runs(&repo, "test-runs"),
        2,
        "a changed upstream key must rerun `test`"
    );
    assert_eq!(repo.read("dist/out.txt"), "CHANGED\n");

    repo.write("src/main.txt", "hello\n");
    let reverted = repo.weir(&["run"]);
    reverted.expect_code(0);
    assert_eq!(runs(&repo, "runs"), 2, "{}", reverted.stderr());
    assert_eq!(
        repo.read("dist/out.txt"),
        "HELLO\n",
        "the old outputs are restored"
    );
}

#[test]
fn a_dirty_file_and_the_committed_file_with_the_same_bytes_share_a_key() {
    let repo = build_repo();
    repo.write("src/main.txt", "edited\n");
    repo.weir(&["run", "build"]).expect_code(0);
    repo.commit_all("edit");
    let after_commit = repo.weir(&["run", "build"]);
    assert!(
        after_commit.stderr().contains("build: cached"),
        "{}",
        after_commit.stderr()
    );
    assert_eq!(runs(&repo, "runs"), 1);
}

#[test]
fn env_and_command_changes_invalidate_and_explain_names_them() {
    let repo = build_repo();
    repo.weir(&["run"]).expect_code(0);
    repo.write(
        ".pipeline.toml",
        format!("[env]\nMODE = \"release\"\n{BUILD}"),
    );
    repo.write("src/new.txt", "new\n");
    let explain = repo.weir(&["explain", "build"]);
    explain.expect_code(0);
    let text = explain.stdout();
    assert!(text.contains("build: would run"), "{text}");
    assert!(text.contains("env MODE added"), "{text}");
    assert!(text.contains("input src/new.txt added"), "{text}");

    let run = repo.weir(&["run", "--explain"]);
    run.expect_code(0);
    assert!(run.stderr().contains("env MODE added"), "{}", run.stderr());
    assert!(
        run.stderr().contains("needs build key changed"),
        "{}",
        run.stderr()
    );
    assert_eq!(runs(&repo, "runs"), 2);

    let hit = repo.weir(&["explain", "build"]);
    assert!(
        hit.stdout().contains("would be restored from the cache"),
        "{}",
        hit.stdout()
    );
}

#[test]
fn untracked_inputs_count_and_ignored_ones_only_when_named() {
    let repo = build_repo();
    repo.write(".gitignore", "dist/\nruns\ntest-runs\nsrc/*.log\n");
    repo.commit_all("ignore logs");
    repo.weir(&["run", "build"]).expect_code(0);

    repo.write("src/debug.log", "ignored\n");
    repo.weir(&["run", "build"]).expect_code(0);
    assert_eq!(runs(&repo, "runs"), 1, "an ignored file changed the key");

    repo.write("src/extra.txt", "untracked\n");
    repo.weir(&["run", "build"]).expect_code(0);
    assert_eq!(
        runs(&repo, "runs"),
        2,
        "an untracked input did not change the key"
    );

    // Named outright, an ignored file is an input.
    let named = BUILD.replace(
        r#"inputs = ["src/**"]"#,
        r#"inputs = ["src/**", "src/debug.log"]"#,
    );
    repo.write(".pipeline.toml", named);
    repo.weir(&["run", "build"]).expect_code(0);
    repo.write("src/debug.log", "changed\n");
    let explain = repo.weir(&["explain", "build"]);
    assert!(
        explain.stdout().contains("input src/debug.log changed"),
        "{}",
        explain.stdout()
    );
}

#[test]
fn no_cache_forces_a_run_and_cache_false_opts_out() {
    let repo = build_repo();
    repo.weir(&["run"]).expect_code(0);
    let entry = || {
        repo.git(&[
            "for-each-ref",
            "--format=%(objectname)",
            "refs/weir/cache/build/",
        ])
    };
    let first = entry();
    repo.weir(&["run", "--no-cache", "build"]).expect_code(0);
    assert_eq!(runs(&repo, "runs"), 2);
    assert_ne!(entry(), first, "the new result replaces the stored one");
    assert_eq!(entry().lines().count(), 1);

    repo.write(
        ".pipeline.toml",
        BUILD.replace("[jobs.test]", "[jobs.test]\ncache = false"),
    );
    repo.weir(&["run", "test"]).expect_code(0);
    repo.weir(&["run", "test"]).expect_code(0);
    assert_eq!(runs(&repo, "test-runs"), 3);
}

#[test]
fn failures_are_not_cached() {
    let repo = TestRepo::with_pipeline("[jobs.flaky]\nrun = \"echo x >> tries; exit 1\"\n");
    repo.weir(&["run"]).expect_code(1);
    repo.weir(&["run"]).expect_code(1);
    assert_eq!(runs(&repo, "tries"), 2);
    assert!(repo.git(&["for-each-ref", "refs/weir/cache/"]).is_empty());
}

/// Stores a crafted cache entry for `build`'s current key whose `outputs` tree holds `entry`
/// (mode, name, content), built with git plumbing.
fn plant_entry(repo: &TestRepo, mode: &str, name: &str, content: &[u8]) -> String {
    let key: serde_json::Value =
        serde_json::from_str(&repo.weir(&["explain", "build", "--json"]).stdout()).unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let blob = repo.git_with_input(&["hash-object", "-w", "--stdin"], content);
    let mut raw = format!("{mode} {name}\0").into_bytes();
    raw.extend(hex(&blob));
    let outputs = repo.git_with_input(
        &["hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
        &raw,
    );
    let empty = repo.git_with_input(&["hash-object", "-w", "--stdin"], b"");
    let top = format!(
        "100644 blob {empty}\tlog\n100644 blob {empty}\tmanifest\n040000 tree {outputs}\toutputs\n100644 blob {empty}\tresult\n"
    );
    let tree = repo.git_with_input(&["mktree"], top.as_bytes());
    let commit = repo
        .git(&["commit-tree", &tree, "-m", "hostile"])
        .trim()
        .to_owned();
    repo.git(&[
        "update-ref",
        &format!("refs/weir/cache/build/{key}"),
        &commit,
    ]);
    key
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Removes the crafted objects so that the final `git fsck --strict` judges weir alone.
fn forget_planted(repo: &TestRepo, key: &str) {
    repo.git(&["update-ref", "-d", &format!("refs/weir/cache/build/{key}")]);
    repo.git(&["reflog", "expire", "--expire=now", "--all"]);
    repo.git(&["prune", "--expire=now"]);
}

#[test]
fn hostile_entries_are_refused_and_the_job_runs_instead() {
    let cases: [(&str, &str, &[u8], &str); 5] = [
        ("100644", "..", b"escaped", "`..` component"),
        ("100644", ".git", b"[core]", "`.git`"),
        ("120000", "abs", b"/etc/passwd", "absolute path"),
        ("120000", "up", b"../../outside", "outside the workspace"),
        ("160000", "sub", b"", "not a file"),
    ];
    for (mode, name, content, reason) in cases {
        let repo = build_repo();
        let key = plant_entry(&repo, mode, name, content);
        let run = repo.weir(&["run", "build"]);
        run.expect_code(0);
        let err = run.stderr();
        assert!(
            err.contains("is refused") && err.contains(reason),
            "{name}: {err}"
        );
        assert!(
            err.contains(&key[..12]) || err.contains(&key),
            "the key is named: {err}"
        );
        assert_eq!(
            runs(&repo, "runs"),
            1,
            "{name}: the job did not run instead"
        );
        assert_eq!(repo.read("dist/out.txt"), "HELLO\n");
        if !name.starts_with('.') {
            assert!(!repo.file(name).exists(), "{name} was written");
        }
        let verify = repo.weir(&["cache", "verify"]);
        verify.expect_code(1);
        forget_planted(&repo, &key);
        repo.weir(&["cache", "verify"]).expect_code(0);
    }
}

#[test]
fn the_cache_travels_through_a_bare_remote() {
    let origin = build_repo();
    let remote = origin.bare_origin();
    origin.git(&["push", "-q", "origin", "main"]);
    origin.weir(&["run"]).expect_code(0);
    let push = origin.weir(&["cache", "push"]);
    push.expect_code(0);
    assert!(
        push.stderr().contains("pushed 2 new entries"),
        "{}",
        push.stderr()
    );

    let clone = TestRepo::clone_of(remote.path());
    let pull = clone.weir(&["cache", "pull"]);
    pull.expect_code(0);
    assert!(
        pull.stderr().contains("fetched 2 new entries"),
        "{}",
        pull.stderr()
    );
    let run = clone.weir(&["run"]);
    run.expect_code(0);
    assert!(
        run.stderr().contains("build: cached (restored 4"),
        "{}",
        run.stderr()
    );
    assert_eq!(runs(&clone, "runs"), 0);
    assert_eq!(snapshot(&clone, "dist"), snapshot(&origin, "dist"));
}

#[test]
fn on_miss_pull_fetches_just_the_missing_key() {
    let pipeline = format!("[cache]\npull = \"on-miss\"\n{BUILD}");
    let origin = build_repo();
    origin.write(".pipeline.toml", &pipeline);
    origin.commit_all("on-miss");
    let remote = origin.bare_origin();
    origin.git(&["push", "-q", "origin", "main"]);
    origin.weir(&["run"]).expect_code(0);
    origin.weir(&["cache", "push"]).expect_code(0);

    let clone = TestRepo::clone_of(remote.path());
    let run = clone.weir(&["run", "build"]);
    run.expect_code(0);
    assert!(run.stderr().contains("build: cached"), "{}", run.stderr());
    let refs = clone.git(&["for-each-ref", "--format=%(refname)", "refs/weir/cache/"]);
    assert_eq!(
        refs.lines().count(),
        1,
        "only the missing key is fetched: {refs}"
    );
}

#[test]
fn concurrent_runs_leave_a_sound_store() {
    let repo = build_repo();
    let children: Vec<_> = (0..6)
        .map(|_| repo.weir_cmd(&["run"]).output_later())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refs = repo.git(&["for-each-ref", "--format=%(refname)", "refs/weir/cache/"]);
    assert_eq!(refs.lines().count(), 2, "{refs}");
    repo.weir(&["cache", "verify"]).expect_code(0);
    assert!(
        !repo
            .file(".git/refs/weir/cache/build")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".lock") })
    );
    let hit = repo.weir(&["run"]);
    assert!(hit.stderr().contains("build: cached"), "{}", hit.stderr());
}

trait SpawnLater {
    fn output_later(&mut self) -> std::process::Child;
}

impl SpawnLater for Command {
    fn output_later(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn ls_gc_and_verify() {
    let repo = build_repo();
    repo.weir(&["run"]).expect_code(0);
    repo.write("src/main.txt", "two\n");
    repo.weir(&["run"]).expect_code(0);

    let ls = repo.weir(&["cache", "ls"]);
    ls.expect_code(0);
    let lines: Vec<String> = ls.stdout().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{}", ls.stdout());
    assert!(lines.iter().filter(|l| l.starts_with("build ")).count() == 2);
    assert!(
        lines.iter().any(|l| l.contains("KiB") || l.contains(" B")),
        "{lines:?}"
    );

    repo.weir(&["cache", "verify"]).expect_code(0);
    repo.weir(&["cache", "gc"]).expect_code(2);
    let gc = repo.weir(&["cache", "gc", "--keep", "1"]);
    gc.expect_code(0);
    assert_eq!(
        gc.stdout()
            .lines()
            .filter(|l| l.starts_with("removed"))
            .count(),
        2,
        "{}",
        gc.stdout()
    );
    let after = Run(repo.weir_cmd(&["cache", "ls"]).output().unwrap());
    assert_eq!(after.stdout().lines().count(), 2);
    // The newest entries survive: the current state is still a hit.
    let hit = repo.weir(&["run"]);
    assert!(hit.stderr().contains("build: cached"), "{}", hit.stderr());
    let young = repo.weir(&["cache", "gc", "--max-age", "1h"]);
    assert_eq!(
        young.stdout().lines().count(),
        0,
        "young entries were removed: {}",
        young.stdout()
    );
}

#[test]
fn gc_removes_the_kept_copies_no_entry_holds() {
    let repo = twins_built("one\n");
    std::fs::remove_dir_all(repo.file("dist")).unwrap();
    repo.write("src/main.txt", "two\n");
    repo.weir(&["run"]).expect_code(0);

    // The first build's copies of `one` and `ONE` are held by its entry until it goes.
    let kept = repo.weir(&["cache", "gc", "--keep", "2"]);
    kept.expect_code(0);
    assert!(
        !kept.stderr().contains("kept output copies"),
        "{}",
        kept.stderr()
    );
    let dry = repo.weir(&["cache", "gc", "--keep", "1", "--dry-run"]);
    dry.expect_code(0);
    assert!(
        dry.stderr()
            .contains("would remove 2 kept output copies (8 B)"),
        "{}",
        dry.stderr()
    );
    let gc = repo.weir(&["cache", "gc", "--keep", "1"]);
    gc.expect_code(0);
    assert!(
        gc.stderr().contains("removed 2 kept output copies (8 B)"),
        "{}",
        gc.stderr()
    );
    // What the remaining entry holds is still restored whole.
    restore_dist(&repo, 3);
    assert_eq!(repo.read("dist/a.txt"), "two\n");
    assert_eq!(repo.read("dist/c.txt"), "TWO\n");
    assert_eq!(runs(&repo, "runs"), 2);
}

#[test]
fn kill_9_at_any_point_never_leaves_a_ref_to_a_missing_object() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.many]
inputs = ["seed"]
outputs = ["out/**"]
run = "mkdir -p out && for i in $(seq 200); do echo $i-$(cat seed) > out/f$i; done"
"#,
    );
    for round in 0..12u64 {
        repo.write("seed", format!("{round}\n"));
        let mut weir = repo
            .weir_cmd(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5 + round * 9));
        let _ = weir.kill();
        let _ = weir.wait();
        // Whatever the moment, every entry that exists is whole.
        let verify = repo.weir(&["cache", "verify"]);
        verify.expect_code(0);
    }
    // And the store still works.
    repo.write("seed", "final\n");
    repo.weir(&["run"]).expect_code(0);
    repo.weir(&["run"]).expect_code(0);
    assert!(
        repo.weir(&["explain", "many"])
            .stdout()
            .contains("would be restored")
    );
}

/// Jobs that each read or write what one kind of change touches; `counts/JOB` counts its runs.
const MEMO: &str = r#"
[jobs.edit]
inputs = ["edit/**"]
outputs = ["out/edit.txt"]
run = "mkdir -p counts out; echo run >> counts/edit; cat edit/* > out/edit.txt"

[jobs.after-edit]
needs = ["edit"]
inputs = ["after/**"]
outputs = ["out/after.txt"]
run = "echo run >> counts/after-edit; cp out/edit.txt out/after.txt"

[jobs.added]
inputs = ["added/**"]
run = "mkdir -p counts; echo run >> counts/added"

[jobs.outputs]
inputs = ["outputs/**"]
outputs = ["out/kept/**"]
run = "mkdir -p counts out/kept; echo run >> counts/outputs; echo one > out/kept/one.txt; echo two > out/kept/two.txt"

[jobs.ignored]
inputs = ["ign/**"]
run = "mkdir -p counts; echo run >> counts/ignored"

[jobs.gone]
inputs = ["gone/**"]
run = "mkdir -p counts; echo run >> counts/gone"

[jobs.step]
inputs = ["step/**"]
run = "mkdir -p counts; echo run >> counts/step"

[jobs.untouched]
inputs = ["untouched/**"]
outputs = ["out/untouched.txt"]
run = "mkdir -p counts out; echo run >> counts/untouched; cp untouched/u.txt out/untouched.txt"
"#;

const MEMO_JOBS: [&str; 8] = [
    "edit",
    "after-edit",
    "added",
    "outputs",
    "ignored",
    "gone",
    "step",
    "untouched",
];

/// Runs every job `runs` says it ran, in `MEMO_JOBS` order.
fn memo_runs(repo: &TestRepo) -> Vec<usize> {
    MEMO_JOBS
        .iter()
        .map(|job| runs(repo, &format!("counts/{job}")))
        .collect()
}

/// Waits until what the last run wrote is settled, runs once to have every hit remembered,
/// then checks that the next run took every hit from the memo.
fn remember_every_hit(repo: &TestRepo) {
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    repo.weir(&["run"]).expect_code(0);
    let mut cmd = repo.weir_cmd(&["run"]);
    cmd.env("WEIR_LOG", "weir=debug");
    let remembered = crate::common::Run(cmd.output().expect("run weir"));
    remembered.expect_code(0);
    let recalled = remembered
        .stderr()
        .lines()
        .filter(|l| l.contains("unchanged since it last hit"))
        .count();
    assert_eq!(recalled, MEMO_JOBS.len(), "{}", remembered.stderr());
}

#[test]
fn a_remembered_hit_is_checked_against_every_change_that_matters() {
    let repo = TestRepo::with_pipeline(MEMO);
    for (path, content) in [
        ("edit/a.txt", "aaa\n"),
        ("added/a.txt", "a\n"),
        ("outputs/o.txt", "o\n"),
        ("ign/keep.txt", "k\n"),
        ("gone/g.txt", "g\n"),
        ("step/s.txt", "s\n"),
        ("untouched/u.txt", "u\n"),
        (".gitignore", "out/\ncounts/\n*.log\n"),
    ] {
        repo.write(path, content);
    }
    repo.write("ign/x.log", "tracked, though a rule ignores it\n");
    repo.git(&["add", "-f", "ign/x.log"]);
    repo.commit_all("init");
    repo.weir(&["run"]).expect_code(0);
    assert_eq!(memo_runs(&repo), [1; 8]);
    remember_every_hit(&repo);
    assert_eq!(memo_runs(&repo), [1; 8]);

    // Same size, other bytes.
    repo.write("edit/a.txt", "bbb\n");
    repo.write("added/new.txt", "untracked\n");
    std::fs::remove_file(repo.file("out/kept/one.txt")).expect("remove an output");
    repo.write("out/kept/two.txt", "tampered\n");
    let gone = repo.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/weir/cache/gone/",
    ]);
    repo.git(&["update-ref", "-d", gone.trim()]);
    repo.write(
        ".pipeline.toml",
        MEMO.replace("counts/step\"", "counts/step; true\""),
    );
    let changed = repo.weir(&["run"]);
    changed.expect_code(0);
    assert_eq!(
        memo_runs(&repo),
        [2, 2, 2, 1, 1, 2, 2, 1],
        "{}",
        changed.stderr()
    );
    assert!(
        changed.stderr().contains("restored 2 output file(s)"),
        "{}",
        changed.stderr()
    );
    assert_eq!(repo.read("out/kept/one.txt"), "one\n");
    assert_eq!(repo.read("out/kept/two.txt"), "two\n");
    assert_eq!(repo.read("out/after.txt"), "bbb\n");

    // An untracked file is read only if no ignore rule says otherwise: a job that reads one
    // is not remembered.
    repo.git(&["add", "added/new.txt"]);
    // A file that leaves the index but not the disk is now an ignored untracked file, which
    // no job reads.
    remember_every_hit(&repo);
    repo.git(&["rm", "-q", "--cached", "ign/x.log"]);
    let untracked = repo.weir(&["run"]);
    untracked.expect_code(0);
    assert_eq!(
        memo_runs(&repo),
        [2, 2, 2, 1, 2, 2, 2, 1],
        "{}",
        untracked.stderr()
    );
}

#[test]
fn a_pipeline_below_the_root_and_a_named_job_are_remembered_too() {
    let repo = TestRepo::new();
    repo.write(
        "sub/.pipeline.toml",
        r#"
[jobs.build]
inputs = ["src/**"]
outputs = ["out/**"]
run = "mkdir -p out; cat src/* > out/all.txt"
"#,
    );
    repo.write("sub/src/a.txt", "a\n");
    repo.write(".gitignore", "out/\n");
    repo.commit_all("init");
    let weir = |args: &[&str], log: bool| {
        let mut cmd = repo.weir_cmd(args);
        cmd.current_dir(repo.file("sub"));
        if log {
            cmd.env("WEIR_LOG", "weir=debug");
        }
        let run = crate::common::Run(cmd.output().expect("run weir"));
        run.expect_code(0);
        run.stderr()
    };
    weir(&["run"], false);
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    weir(&["run"], false);
    for args in [&["run"][..], &["run", "build"][..]] {
        let stderr = weir(args, true);
        assert!(
            stderr.contains("unchanged since it last hit job=build"),
            "{args:?}: {stderr}"
        );
    }

    repo.write("sub/src/b.txt", "b\n");
    let stderr = weir(&["run", "build"], false);
    assert!(stderr.contains("build: passed"), "{stderr}");
    assert_eq!(repo.read("sub/out/all.txt"), "a\nb\n");
}
