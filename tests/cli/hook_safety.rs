//! The pre-commit guarantee, proven with real `git commit`s: whatever state the repository is in
//! and however the jobs end (pass, fail, fix, a fix that conflicts, a job killed by a signal,
//! Ctrl-C), the working tree and the index are byte-identical to before, apart from a fix that
//! applied cleanly. Also detached HEAD, a linked worktree and a merge in progress.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use proptest::prelude::*;

use crate::common::{TestRepo, gone_within, wait_for_file};

/// `git ARGS` in `dir` with the test's hermetic environment; returns (success, stdout, stderr).
fn git_in(repo: &TestRepo, dir: &Path, args: &[&str]) -> (bool, Vec<u8>, String) {
    let mut cmd = Command::new("git");
    repo.hermetic(&mut cmd);
    let out = cmd.current_dir(dir).args(args).output().expect("run git");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `git ARGS` in `dir`, which must succeed.
fn git_ok(repo: &TestRepo, dir: &Path, args: &[&str]) {
    let (ok, _, err) = git_in(repo, dir, args);
    assert!(ok, "git {args:?} failed: {err}");
}

/// `git commit ARGS` with hooks, in `dir`; returns (success, stderr).
fn commit_in(repo: &TestRepo, dir: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["commit"];
    all.extend_from_slice(args);
    let (ok, _, err) = git_in(repo, dir, &all);
    (ok, err)
}

fn head(repo: &TestRepo) -> String {
    repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

/// What a user could lose, limited to paths outside `exclude`: every working-tree file (bytes
/// and permission bits) and directory, the index entries, the staged and unstaged diffs and
/// `git status`.
#[derive(Debug, PartialEq, Eq)]
struct State {
    files: BTreeMap<String, (u32, Option<Vec<u8>>)>,
    index: String,
    staged: String,
    unstaged: String,
    status: String,
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Option<Vec<u8>>)>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .expect("inside root")
            .to_string_lossy()
            .into_owned();
        if rel == ".git" {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.insert(format!("{rel}/"), (mode, None));
            walk(root, &path, out);
        } else {
            out.insert(rel, (mode, Some(std::fs::read(&path).expect("read file"))));
        }
    }
}

fn state(repo: &TestRepo, exclude: &[String]) -> State {
    let excluded: Vec<String> = exclude.iter().map(|p| format!(":(exclude){p}")).collect();
    let with_paths = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--", "."]);
        all.extend(excluded.iter().map(String::as_str));
        repo.git(&all)
    };
    let mut files = BTreeMap::new();
    walk(repo.path(), repo.path(), &mut files);
    files.retain(|path, _| !exclude.contains(path));
    State {
        files,
        index: with_paths(&["ls-files", "-s"]),
        staged: with_paths(&["diff", "--cached", "--binary"]),
        unstaged: with_paths(&["diff", "--binary"]),
        status: with_paths(&["status", "--porcelain=v1", "-uall"]),
    }
}

const NAMES: [&str; 5] = ["a.txt", "sub/b.txt", "c.txt", "bin.dat", "run.sh"];

/// Lines text files are made of. Some contain `a`, which the fixer rewrites; none contains `A`,
/// so a fix can never turn a staged change back into what HEAD has (an empty commit), and none
/// is `zz` or starts with `banana`, which the generator uses as markers.
const LINES: [&str; 6] = ["a", "cab", "bread", "xyz", "q", "lo"];

/// How a file stands before the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Committed and unchanged.
    Clean,
    /// Committed; a change staged, the working tree as staged.
    Staged,
    /// New and staged.
    Added,
    /// Committed; the working tree changed, nothing staged.
    Unstaged,
    /// Committed; one version staged, another in the working tree.
    Partial,
    Untracked,
    /// `git add -N`.
    IntentToAdd,
    /// Committed, then deleted from the working tree only.
    Deleted,
    /// `git rm`.
    Removed,
    /// `git rm --cached`: deleted in the index, kept (untracked) in the working tree.
    Unindexed,
    /// A change staged, then the file deleted from the working tree.
    StagedThenDeleted,
}

impl Kind {
    fn stages_a_change(self) -> bool {
        matches!(
            self,
            Kind::Staged
                | Kind::Added
                | Kind::Partial
                | Kind::Removed
                | Kind::Unindexed
                | Kind::StagedThenDeleted
        )
    }

    fn in_head(self) -> bool {
        !matches!(self, Kind::Added | Kind::Untracked | Kind::IntentToAdd)
    }
}

/// How the pre-commit jobs end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Fix,
    FixConflict,
    Killed,
}

impl Outcome {
    fn pipeline(self) -> &'static str {
        match self {
            Outcome::Pass => "[jobs.check]\non = [\"pre-commit\"]\nrun = \"true\"\n",
            Outcome::Fail => "[jobs.check]\non = [\"pre-commit\"]\nrun = \"false\"\n",
            Outcome::Killed => "[jobs.check]\non = [\"pre-commit\"]\nrun = \"kill -9 $$\"\n",
            Outcome::Fix | Outcome::FixConflict => {
                "[jobs.upcase]\non = [\"pre-commit\"]\nfiles = [\"*.txt\"]\nfix = true\nrun = \"sed -i 's/a/A/g' {files}\"\n"
            }
        }
    }
}

/// One version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    bytes: Vec<u8>,
    exec: bool,
}

#[derive(Debug, Clone)]
struct File {
    name: &'static str,
    kind: Kind,
    head: Version,
    staged: Version,
    work: Version,
}

impl File {
    fn is_txt(&self) -> bool {
        self.name.ends_with(".txt")
    }
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(LINES.to_vec()), 1..4)
        .prop_map(|lines| lines.iter().map(|l| format!("{l}\n")).collect::<String>())
        .prop_map(String::into_bytes)
}

fn version(name: &'static str) -> BoxedStrategy<Version> {
    match name {
        "bin.dat" => {
            prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'\n', 0xff]), 0..12)
                .prop_map(|rest| Version {
                    bytes: [&[0u8][..], &rest].concat(),
                    exec: false,
                })
                .boxed()
        }
        "run.sh" => (prop::sample::select(LINES.to_vec()), any::<bool>())
            .prop_map(|(word, exec)| Version {
                bytes: format!("#!/bin/sh\necho {word}\n").into_bytes(),
                exec,
            })
            .boxed(),
        _ => text()
            .prop_map(|bytes| Version { bytes, exec: false })
            .boxed(),
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(vec![
        Kind::Clean,
        Kind::Staged,
        Kind::Added,
        Kind::Unstaged,
        Kind::Partial,
        Kind::Untracked,
        Kind::IntentToAdd,
        Kind::Deleted,
        Kind::Removed,
        Kind::Unindexed,
        Kind::StagedThenDeleted,
    ])
}

/// Fixes weigh more: they are the only outcome that may write to the user's files.
fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        2 => Just(Outcome::Pass),
        1 => Just(Outcome::Fail),
        4 => Just(Outcome::Fix),
        2 => Just(Outcome::FixConflict),
        1 => Just(Outcome::Killed),
    ]
}

/// `version` made different from `other` by appending a line in the file's own style.
fn differ(name: &str, mut version: Version, other: &Version) -> Version {
    if version == *other {
        let extra: &[u8] = match name {
            "bin.dat" => b"\0q",
            "run.sh" => b"echo q\n",
            _ => b"q\n",
        };
        version.bytes.extend_from_slice(extra);
    }
    version
}

/// A repository state and a hook outcome, with the versions made consistent with the kinds.
#[derive(Debug, Clone)]
struct Case {
    outcome: Outcome,
    files: Vec<File>,
}

fn case() -> impl Strategy<Value = Case> {
    let files: Vec<_> = NAMES
        .iter()
        .map(|&name| {
            (
                any::<bool>(),
                kind(),
                version(name),
                version(name),
                version(name),
            )
                .prop_map(move |(keep, kind, head, staged, work)| {
                    (
                        keep,
                        File {
                            name,
                            kind,
                            head,
                            staged,
                            work,
                        },
                    )
                })
        })
        .collect();
    (outcome(), files).prop_map(|(outcome, files)| normalize(outcome, files))
}

fn normalize(outcome: Outcome, generated: Vec<(bool, File)>) -> Case {
    let mut files: Vec<File> = generated
        .iter()
        .filter(|(keep, _)| *keep)
        .map(|(_, f)| f.clone())
        .collect();
    if files.is_empty() {
        files.push(generated[0].1.clone());
    }
    // `git commit` with nothing staged stops before any hook; that is git's business.
    if !files.iter().any(|f| f.kind.stages_a_change()) {
        files[0].kind = Kind::Staged;
    }
    for file in &mut files {
        // The file with the exec bit is committed with it.
        if file.name == "run.sh" {
            file.head.exec = true;
        }
        match file.kind {
            Kind::Staged | Kind::StagedThenDeleted => {
                file.staged = differ(file.name, file.staged.clone(), &file.head);
                file.work = file.staged.clone();
            }
            Kind::Added => file.work = file.staged.clone(),
            Kind::Unstaged => file.work = differ(file.name, file.work.clone(), &file.head),
            Kind::Partial => {
                file.staged = differ(file.name, file.staged.clone(), &file.head);
                file.work = differ(file.name, file.work.clone(), &file.staged);
            }
            _ => {}
        }
    }
    match outcome {
        Outcome::Fix => {
            // A partially staged text file whose unstaged edit is an appended tail, kept apart
            // from everything the fixer may change by a `zz` line: the fix merges cleanly, and
            // the tail (which may well contain `a`) must stay as the user wrote it.
            for file in files
                .iter_mut()
                .filter(|f| f.kind == Kind::Partial && f.is_txt())
            {
                file.staged.bytes.extend_from_slice(b"zz\n");
                let tail = file.work.bytes.clone();
                file.work.bytes = [file.staged.bytes.clone(), tail].concat();
            }
        }
        Outcome::FixConflict => {
            // The fixer and the unstaged edit both change the first line.
            if !files.iter().any(File::is_txt) {
                let name = "a.txt";
                let blank = Version {
                    bytes: b"q\n".to_vec(),
                    exec: false,
                };
                files.insert(
                    0,
                    File {
                        name,
                        kind: Kind::Partial,
                        head: blank.clone(),
                        staged: blank.clone(),
                        work: blank,
                    },
                );
            }
            let file = files.iter_mut().find(|f| f.is_txt()).expect("a text file");
            let body = file.staged.bytes.clone();
            file.kind = Kind::Partial;
            file.staged.bytes = [b"banana\n".as_slice(), &body].concat();
            file.work.bytes = [b"banana split\n".as_slice(), &body].concat();
        }
        _ => {}
    }
    Case { outcome, files }
}

fn put(repo: &TestRepo, name: &str, version: &Version) {
    repo.write(name, &version.bytes);
    let bits = if version.exec { 0o755 } else { 0o644 };
    std::fs::set_permissions(repo.file(name), std::fs::Permissions::from_mode(bits))
        .expect("chmod");
}

fn set_up(case: &Case) -> TestRepo {
    let repo = TestRepo::with_pipeline(case.outcome.pipeline());
    for file in case.files.iter().filter(|f| f.kind.in_head()) {
        put(&repo, file.name, &file.head);
    }
    repo.commit_all("base");
    repo.weir(&["install"]).expect_code(0);
    for file in &case.files {
        let name = file.name;
        match file.kind {
            Kind::Clean => {}
            Kind::Staged | Kind::Added => {
                put(&repo, name, &file.staged);
                repo.git(&["add", name]);
            }
            Kind::Unstaged | Kind::Untracked => put(&repo, name, &file.work),
            Kind::Partial => {
                put(&repo, name, &file.staged);
                repo.git(&["add", name]);
                put(&repo, name, &file.work);
            }
            Kind::IntentToAdd => {
                put(&repo, name, &file.work);
                repo.git(&["add", "-N", name]);
            }
            Kind::Deleted => std::fs::remove_file(repo.file(name)).expect("delete"),
            Kind::Removed => {
                repo.git(&["rm", "-q", name]);
            }
            Kind::Unindexed => {
                repo.git(&["rm", "-q", "--cached", name]);
            }
            Kind::StagedThenDeleted => {
                put(&repo, name, &file.staged);
                repo.git(&["add", name]);
                std::fs::remove_file(repo.file(name)).expect("delete");
            }
        }
    }
    repo
}

fn upcase(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b == b'a' { b'A' } else { b })
        .collect()
}

/// Checks one case; panics (failing the property) with the hook's output when it does not hold.
fn check(case: &Case) {
    let repo = set_up(case);
    let old_head = head(&repo);
    // The text files the fixer changes: staged ones with an `a` in their staged content.
    let fixed: Vec<&File> = match case.outcome {
        Outcome::Fix => case
            .files
            .iter()
            .filter(|f| {
                f.is_txt()
                    && matches!(
                        f.kind,
                        Kind::Staged | Kind::Added | Kind::Partial | Kind::StagedThenDeleted
                    )
                    && f.staged.bytes.contains(&b'a')
            })
            .collect(),
        _ => Vec::new(),
    };
    let fixed_paths: Vec<String> = fixed.iter().map(|f| f.name.to_owned()).collect();
    let before = state(&repo, &fixed_paths);

    let (ok, err) = commit_in(&repo, repo.path(), &["-m", "x"]);
    let after = state(&repo, &fixed_paths);

    match case.outcome {
        Outcome::Fail | Outcome::Killed | Outcome::FixConflict => {
            assert!(!ok, "the commit went through\n{err}");
            assert_eq!(head(&repo), old_head, "HEAD moved\n{err}");
            assert_eq!(
                after, before,
                "the hook changed the working tree or index\n{err}"
            );
            if case.outcome == Outcome::FixConflict {
                assert!(err.contains("conflict with unstaged edits"), "{err}");
            }
        }
        Outcome::Pass | Outcome::Fix => {
            assert!(ok, "the commit was blocked\n{err}");
            assert_eq!(
                repo.git(&["rev-parse", "HEAD~1"]).trim(),
                old_head,
                "not one new commit on top of HEAD\n{err}"
            );
            assert_eq!(after.files, before.files, "the working tree changed\n{err}");
            assert_eq!(after.index, before.index, "the index changed\n{err}");
            assert_eq!(
                after.unstaged, before.unstaged,
                "unstaged work changed\n{err}"
            );
            assert_eq!(
                repo.git(&["diff", "--cached", "--binary"]),
                "",
                "the commit is not the staged content\n{err}"
            );
            for file in &fixed {
                check_fixed(&repo, file, &err);
            }
        }
    }
}

/// A fixed file: the fix is in the commit and the index with the staged mode, and in the working
/// tree only over what was staged.
fn check_fixed(repo: &TestRepo, file: &File, err: &str) {
    let name = file.name;
    let want = upcase(&file.staged.bytes);
    assert!(err.contains(&format!("fixed {name}")), "{err}");
    let (_, committed, _) = git_in(repo, repo.path(), &["show", &format!("HEAD:{name}")]);
    assert_eq!(
        String::from_utf8_lossy(&committed),
        String::from_utf8_lossy(&want),
        "{name}: the commit does not have the fix\n{err}"
    );
    let blob = repo.git_with_input(&["hash-object", "--stdin"], &want);
    assert_eq!(
        repo.git(&["ls-files", "-s", "--", name]),
        format!("100644 {blob} 0\t{name}\n"),
        "{name}: the index does not have the fix"
    );
    let worktree = match file.kind {
        Kind::StagedThenDeleted => None,
        // The unstaged tail after the staged part stays exactly as it was.
        Kind::Partial => Some(
            [
                want.clone(),
                file.work.bytes[file.staged.bytes.len()..].to_vec(),
            ]
            .concat(),
        ),
        _ => Some(want),
    };
    let path = repo.file(name);
    match worktree {
        None => assert!(!path.exists(), "{name} came back from the dead\n{err}"),
        Some(want) => {
            assert_eq!(
                String::from_utf8_lossy(&std::fs::read(&path).expect("read")),
                String::from_utf8_lossy(&want),
                "{name}: the working tree is not the fix over the user's edits\n{err}"
            );
            // The generator gives text files no exec bit in any version.
            assert_eq!(
                mode_of(repo, name),
                "644",
                "{name}: the fix changed the file's mode"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_pre_commit_hook_loses_nothing(case in case()) {
        check(&case);
    }
}

#[test]
fn ctrl_c_during_a_hook_loses_nothing() {
    let marks = tempfile::TempDir::new().expect("temp dir");
    let dir = marks.path().display();
    // The job's parent is weir; the sleep's pid is written whole (by a rename) so that the test
    // never reads half a number.
    let repo = TestRepo::with_pipeline(&format!(
        r#"
[jobs.slow]
on = ["pre-commit"]
run = "echo $PPID > {dir}/weir.tmp; mv {dir}/weir.tmp {dir}/weir.pid; while true; do sleep 300 & echo $! > {dir}/sleep.tmp; mv {dir}/sleep.tmp {dir}/sleep.pid; wait; done"
"#
    ));
    repo.write("a.txt", "one\n");
    repo.write("b.txt", "two\n");
    repo.commit_all("init");
    repo.weir(&["install"]).expect_code(0);
    repo.write("a.txt", "one, staged\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "one, staged\nand unstaged\n");
    repo.write("b.txt", "two, unstaged\n");
    repo.write("new.txt", "untracked\n");
    let old_head = head(&repo);
    let before = state(&repo, &[]);

    let mut cmd = Command::new("git");
    repo.hermetic(&mut cmd);
    let child = cmd
        .args(["commit", "-m", "interrupted"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run git commit");
    let pid_in = |name: &str| -> i32 {
        let path = marks.path().join(name);
        wait_for_file(&path);
        std::fs::read_to_string(&path)
            .expect("read pid")
            .trim()
            .parse()
            .expect("a pid")
    };
    let weir = pid_in("weir.pid");
    let sleep = pid_in("sleep.pid");
    let group = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    killpg(group, Signal::SIGINT).expect("send SIGINT");
    let out = child.wait_with_output().expect("wait for git");
    let err = String::from_utf8_lossy(&out.stderr);

    assert!(!out.status.success(), "the commit went through: {err}");
    assert!(
        gone_within(weir, Duration::from_secs(10)),
        "weir ({weir}) outlived Ctrl-C: {err}"
    );
    assert!(
        gone_within(sleep, Duration::from_secs(10)),
        "the job's sleep ({sleep}) outlived Ctrl-C: {err}"
    );
    assert_eq!(head(&repo), old_head, "a commit was made: {err}");
    assert!(
        !repo.file(".git/index.lock").exists(),
        "the index is left locked"
    );
    assert_eq!(state(&repo, &[]), before, "Ctrl-C lost work: {err}");
}

const CHECK_A: &str = r#"
[jobs.check]
on = ["pre-commit"]
run = "cat a.txt; grep -qx good a.txt"
"#;

/// A detached HEAD: a failing job blocks and leaves HEAD where it was; a passing one commits on
/// the detached HEAD and leaves the branch alone.
fn detached_head() {
    let repo = TestRepo::with_pipeline(CHECK_A);
    repo.write("a.txt", "good\n");
    repo.commit_all("init");
    repo.weir(&["install"]).expect_code(0);
    repo.git(&["checkout", "-q", "--detach"]);
    let main = head(&repo);

    repo.write("a.txt", "bad\n");
    repo.git(&["add", "a.txt"]);
    let before = state(&repo, &[]);
    let (ok, err) = commit_in(&repo, repo.path(), &["-m", "detached, bad"]);
    assert!(!ok, "detached HEAD: a failing job did not block: {err}");
    assert!(err.contains("check: failed"), "{err}");
    assert_eq!(head(&repo), main);
    assert_eq!(state(&repo, &[]), before);

    repo.write("a.txt", "good\n");
    repo.write("b.txt", "b\n");
    repo.git(&["add", "a.txt", "b.txt"]);
    let (ok, err) = commit_in(&repo, repo.path(), &["-m", "detached, good"]);
    assert!(ok, "detached HEAD: a passing job blocked the commit: {err}");
    assert_eq!(repo.git(&["rev-parse", "HEAD~1"]).trim(), main);
    assert_eq!(repo.git(&["show", "HEAD:b.txt"]), "b\n");
    assert_eq!(repo.git(&["rev-parse", "main"]).trim(), main, "main moved");
    let (attached, _, _) = git_in(&repo, repo.path(), &["symbolic-ref", "-q", "HEAD"]);
    assert!(!attached, "HEAD is no longer detached");
}

/// A linked worktree: the job sees that worktree's staged content, not the main worktree's, and
/// neither index nor working tree of either is touched.
fn linked_worktree() {
    let repo = TestRepo::with_pipeline(CHECK_A);
    repo.write("a.txt", "good\n");
    repo.commit_all("init");
    repo.weir(&["install"]).expect_code(0);
    let outside = tempfile::TempDir::new().expect("temp dir");
    let wt = outside.path().join("wt");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        &wt.display().to_string(),
        "-b",
        "side",
    ]);

    // The main worktree stages content the job would accept; the linked one does not.
    repo.write("a.txt", "good\n");
    repo.write("main.txt", "main's own\n");
    repo.git(&["add", "main.txt"]);
    let main_before = state(&repo, &[]);
    std::fs::write(wt.join("a.txt"), "bad, in the linked worktree\n").expect("write");
    git_ok(&repo, &wt, &["add", "a.txt"]);
    std::fs::write(wt.join("a.txt"), "good\n").expect("write");
    let (ok, err) = commit_in(&repo, &wt, &["-m", "side, bad"]);
    assert!(
        !ok,
        "the job did not check the linked worktree's staged content: {err}"
    );
    assert!(err.contains("bad, in the linked worktree"), "{err}");

    std::fs::write(wt.join("a.txt"), "good\n").expect("write");
    std::fs::write(wt.join("side.txt"), "side\n").expect("write");
    git_ok(&repo, &wt, &["add", "a.txt", "side.txt"]);
    std::fs::write(wt.join("a.txt"), "good\nand unstaged\n").expect("write");
    let (ok, err) = commit_in(&repo, &wt, &["-m", "side, good"]);
    assert!(ok, "a commit in a linked worktree was blocked: {err}");
    let (_, committed, _) = git_in(&repo, &wt, &["show", "side:side.txt"]);
    assert_eq!(String::from_utf8_lossy(&committed), "side\n");
    let (_, committed, _) = git_in(&repo, &wt, &["show", "side:a.txt"]);
    assert_eq!(String::from_utf8_lossy(&committed), "good\n");
    assert_eq!(
        std::fs::read_to_string(wt.join("a.txt")).expect("read"),
        "good\nand unstaged\n",
        "unstaged work in the linked worktree was touched"
    );
    assert_eq!(
        state(&repo, &[]),
        main_before,
        "a commit in the linked worktree touched the main worktree"
    );
    assert_eq!(repo.git(&["rev-list", "--count", "main"]).trim(), "1");
    repo.git(&["worktree", "remove", "--force", &wt.display().to_string()]);
}

/// A merge concluded with `git commit` after resolving a conflict: the jobs run on the resolved
/// merge, a failure leaves the merge in progress, a pass makes the merge commit.
fn merge_in_progress() {
    let repo = TestRepo::with_pipeline(CHECK_A);
    repo.write("a.txt", "base\n");
    repo.commit_all("init");
    repo.weir(&["install"]).expect_code(0);
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("a.txt", "feature\n");
    repo.commit_all("feature");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("a.txt", "main\n");
    repo.commit_all("main");
    let main = head(&repo);
    let feature = repo.git(&["rev-parse", "feature"]).trim().to_owned();
    let (merged, _, _) = git_in(&repo, repo.path(), &["merge", "-q", "feature"]);
    assert!(!merged, "the merge was meant to conflict");

    repo.write("a.txt", "half resolved\n");
    repo.git(&["add", "a.txt"]);
    let before = state(&repo, &[]);
    let (ok, err) = commit_in(&repo, repo.path(), &["--no-edit"]);
    assert!(!ok, "a failing job did not block the merge commit: {err}");
    assert!(
        err.contains("half resolved"),
        "the job saw the merge result: {err}"
    );
    assert_eq!(head(&repo), main);
    assert!(
        repo.file(".git/MERGE_HEAD").exists(),
        "the merge is no longer in progress"
    );
    assert_eq!(state(&repo, &[]), before);

    repo.write("a.txt", "good\n");
    repo.git(&["add", "a.txt"]);
    let (ok, err) = commit_in(&repo, repo.path(), &["--no-edit"]);
    assert!(ok, "the resolved merge was blocked: {err}");
    assert_eq!(
        repo.git(&["rev-parse", "HEAD^1", "HEAD^2"]),
        format!("{main}\n{feature}\n"),
        "not a merge commit of main and feature"
    );
    assert_eq!(repo.git(&["show", "HEAD:a.txt"]), "good\n");
    assert!(!repo.file(".git/MERGE_HEAD").exists());
}

#[test]
fn detached_head_linked_worktree_and_merge_in_progress() {
    detached_head();
    linked_worktree();
    merge_in_progress();
}

/// The permission bits of a working-tree file, in octal.
fn mode_of(repo: &TestRepo, name: &str) -> String {
    let mode = std::fs::metadata(repo.file(name))
        .expect("metadata")
        .permissions()
        .mode();
    format!("{:o}", mode & 0o7777)
}

#[test]
fn a_fix_keeps_the_working_tree_files_mode() {
    let repo = TestRepo::with_pipeline(Outcome::Fix.pipeline());
    repo.write("a.txt", "q\n");
    repo.write("b.txt", "q\n");
    repo.commit_all("init");
    repo.weir(&["install"]).expect_code(0);
    repo.write("a.txt", "banana\n");
    repo.write("b.txt", "cab\n");
    repo.git(&["add", "a.txt", "b.txt"]);
    // An unstaged mode change, and permissions git does not track.
    std::fs::set_permissions(repo.file("a.txt"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::set_permissions(repo.file("b.txt"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let (ok, err) = commit_in(&repo, repo.path(), &["-m", "fixed"]);
    assert!(ok && err.contains("fixed a.txt"), "{err}");
    assert_eq!(repo.read("a.txt"), "bAnAnA\n");
    assert_eq!(repo.read("b.txt"), "cAb\n");
    assert_eq!(
        mode_of(&repo, "a.txt"),
        "755",
        "the unstaged chmod +x was lost"
    );
    assert_eq!(
        mode_of(&repo, "b.txt"),
        "600",
        "the file's permissions changed"
    );
}

#[test]
fn commit_file_with_a_fixer_leaves_the_index_as_committed() {
    let repo = TestRepo::with_pipeline(Outcome::Fix.pipeline());
    repo.write("a.txt", "q\n");
    repo.commit_all("init");
    repo.weir(&["install"]).expect_code(0);
    repo.write("a.txt", "cab\n");
    let (ok, err) = commit_in(&repo, repo.path(), &["-m", "only a", "a.txt"]);
    assert!(ok && err.contains("fixed a.txt"), "{err}");
    assert_eq!(repo.git(&["show", "HEAD:a.txt"]), "cAb\n");
    assert_eq!(repo.read("a.txt"), "cAb\n");
    assert_eq!(
        repo.git(&["diff", "--cached"]),
        "",
        "the index reverts the fix that was committed"
    );
}
