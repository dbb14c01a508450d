//! Hooks fired by real `git commit`, `git push` and `git merge`: jobs see exactly the staged,
//! pushed or merged content, and nothing of the user's work is lost.

use crate::common::TestRepo;

/// `weir install`: the hooks, and trust in the pipeline as it is.
fn install(repo: &TestRepo) {
    repo.weir(&["install"]).expect_code(0);
}

/// `git commit` with hooks; returns (success, stderr).
fn commit(repo: &TestRepo, args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new("git");
    repo.hermetic(&mut cmd);
    let out = cmd.arg("commit").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Everything a user could lose: the working tree files and the index.
fn state(repo: &TestRepo) -> (String, String, Vec<(String, Vec<u8>)>) {
    let staged = repo.git(&["diff", "--cached", "--binary"]);
    let unstaged = repo.git(&["diff", "--binary"]);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(repo.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".git")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    files.sort();
    (staged, unstaged, files)
}

const LINT: &str = r#"
[jobs.lint]
on = ["pre-commit"]
files = ["*.txt"]
run = "echo checking {files}; ! grep -l BAD {files}"
"#;

fn lint_repo() -> TestRepo {
    let repo = TestRepo::with_pipeline(LINT);
    repo.write("a.txt", "good\n");
    repo.commit_all("init");
    install(&repo);
    repo
}

#[test]
fn pre_commit_checks_the_staged_content_not_the_working_tree() {
    let repo = lint_repo();
    repo.write("a.txt", "good, staged\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "BAD but unstaged\n");
    let before = state(&repo);
    let (ok, err) = commit(&repo, &["-m", "staged is fine"]);
    assert!(ok, "{err}");
    assert_eq!(repo.git(&["show", "HEAD:a.txt"]), "good, staged\n");
    assert_eq!(
        repo.read("a.txt"),
        "BAD but unstaged\n",
        "unstaged work was touched"
    );
    assert_eq!(state(&repo).1, before.1);
}

#[test]
fn a_failing_pre_commit_job_blocks_the_commit_and_loses_nothing() {
    let repo = lint_repo();
    repo.write("a.txt", "BAD staged\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "BAD staged\nand an unstaged line\n");
    repo.write("untracked.txt", "BAD untracked, never checked\n");
    let before = state(&repo);
    let (ok, err) = commit(&repo, &["-m", "blocked"]);
    assert!(!ok, "the commit went through: {err}");
    assert!(err.contains("lint: failed"), "{err}");
    assert!(err.contains("a.txt"), "the log tail names the file: {err}");
    assert_eq!(
        state(&repo),
        before,
        "the hook changed the working tree or index"
    );
    assert_eq!(repo.git(&["rev-list", "--count", "HEAD"]).trim(), "1");
}

#[test]
fn commit_a_and_commit_file_check_what_they_commit() {
    let repo = lint_repo();
    repo.write("b.txt", "good\n");
    repo.commit_all("b");
    repo.write("a.txt", "BAD\n");
    let (ok, err) = commit(&repo, &["-a", "-m", "all"]);
    assert!(!ok, "`commit -a` skipped the check: {err}");

    repo.write("a.txt", "good again\n");
    repo.write("b.txt", "BAD, staged but not committed\n");
    repo.git(&["add", "b.txt"]);
    let (ok, err) = commit(&repo, &["-m", "only a", "a.txt"]);
    assert!(ok, "`commit a.txt` checked b.txt: {err}");
    assert!(
        err.contains("checking a.txt") && !err.contains("b.txt"),
        "{err}"
    );
}

#[test]
fn jobs_with_files_run_only_for_matching_staged_files_and_hit_the_cache_again() {
    let repo = lint_repo();
    repo.write("notes.md", "BAD, but not a .txt\n");
    repo.git(&["add", "notes.md"]);
    let (ok, err) = commit(&repo, &["-m", "md only"]);
    assert!(ok, "{err}");
    assert!(!err.contains("lint"), "lint ran for a .md file: {err}");

    check_fine_then_hit_then_block_bad(&repo);
}

#[test]
fn an_index_without_a_checksum_is_checked_and_hits_like_any_other() {
    // `feature.manyFiles` sets `index.skipHash`: git then ends the index with zeros.
    let repo = lint_repo();
    repo.git(&["config", "index.skipHash", "true"]);
    check_fine_then_hit_then_block_bad(&repo);
}

#[test]
fn a_pre_commit_record_that_cannot_be_written_is_reported_by_the_next_command() {
    // The hook hands its cache entry and run record to a child that writes them after git
    // has the verdict. When the record cannot be written, the commit still goes through; the
    // next weir command (which waits for the child) says so, once, and the entry is there.
    let repo = lint_repo();
    // A file where the records' directory goes: no run record can be made.
    repo.write(".git/refs/weir/runs", "in the way\n");
    repo.write("c.txt", "fine\n");
    repo.git(&["add", "c.txt"]);
    let (ok, err) = commit(&repo, &["-m", "c"]);
    assert!(ok && err.contains("lint: passed"), "{err}");
    let ls = repo.weir(&["cache", "ls"]);
    ls.expect_code(0);
    assert!(
        ls.stderr()
            .contains("warning: could not record a pre-commit run: refs/weir/cache/lint/"),
        "{}",
        ls.stderr()
    );
    assert!(ls.stdout().contains("lint"), "{}", ls.stdout());
    let again = repo.weir(&["cache", "ls"]);
    assert!(!again.stderr().contains("warning"), "{}", again.stderr());
    // With the way clear, the next commit of the same content is a hit, and recorded.
    std::fs::remove_file(repo.file(".git/refs/weir/runs")).unwrap();
    repo.git(&["reset", "-q", "--soft", "HEAD~1"]);
    let (ok, err) = commit(&repo, &["-m", "c again"]);
    assert!(ok && err.contains("lint: cached"), "{err}");
    let log = repo.weir(&["log"]);
    assert!(log.stdout().contains("pre-commit"), "{}", log.stdout());
}

/// Commits a fine `c.txt` (checked), the same content twice more (hits, the second time
/// restaged from identical bytes: another index file), then bad content (blocked).
fn check_fine_then_hit_then_block_bad(repo: &TestRepo) {
    let stage = |text: &str| {
        repo.write("c.txt", text);
        repo.git(&["add", "c.txt"]);
    };
    stage("fine\n");
    let (ok, err) = commit(repo, &["-m", "c"]);
    assert!(ok && err.contains("lint: passed"), "{err}");
    for restage in [false, true] {
        repo.git(&["reset", "-q", "--soft", "HEAD~1"]);
        if restage {
            stage("fine\n");
        }
        let (ok, err) = commit(repo, &["-m", "c again"]);
        assert!(
            ok && err.contains("lint: cached"),
            "restaged {restage}: {err}"
        );
    }
    stage("BAD\n");
    let (ok, err) = commit(repo, &["-m", "c bad"]);
    assert!(!ok && err.contains("c.txt"), "{err}");
}

/// `git commit` with hooks and weir's debug log; returns (success, stderr).
fn commit_logged(repo: &TestRepo, message: &str) -> (bool, String) {
    let mut cmd = std::process::Command::new("git");
    repo.hermetic(&mut cmd);
    let out = cmd
        .args(["commit", "-m", message])
        .env("WEIR_LOG", "weir=debug")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_same_staged_content_on_the_same_head_repeats_its_hits_while_their_entries_last() {
    const REPEATED: &str = "the same staged content hit before";
    let repo = lint_repo();
    repo.write("c.txt", "fine\n");
    repo.git(&["add", "c.txt"]);
    let again = |note: &str| {
        repo.git(&["reset", "-q", "--soft", "HEAD~1"]);
        let (ok, err) = commit_logged(&repo, note);
        assert!(ok, "{note}: {err}");
        err
    };
    let (ok, err) = commit_logged(&repo, "checked");
    assert!(
        ok && err.contains("lint: passed") && !err.contains(REPEATED),
        "{err}"
    );
    let err = again("a hit");
    assert!(
        err.contains("lint: cached") && !err.contains(REPEATED),
        "{err}"
    );
    let err = again("the hit again");
    assert!(
        err.contains("lint: cached") && err.contains(REPEATED),
        "{err}"
    );

    // An entry that is gone is a miss.
    for entry in repo
        .git(&[
            "for-each-ref",
            "--format=%(refname)",
            "refs/weir/cache/lint/",
        ])
        .lines()
    {
        repo.git(&["update-ref", "-d", entry]);
    }
    let err = again("the entry is gone");
    assert!(
        err.contains("lint: passed") && !err.contains(REPEATED),
        "{err}"
    );

    // Another pipeline is another run, even when its jobs' keys are the same.
    repo.write(".pipeline.toml", format!("# a comment\n{LINT}"));
    repo.weir(&["trust"]).expect_code(0);
    let err = again("another pipeline");
    assert!(
        err.contains("lint: cached") && !err.contains(REPEATED),
        "{err}"
    );

    // Bad content is checked, whatever was remembered.
    repo.git(&["reset", "-q", "--soft", "HEAD~1"]);
    repo.write("c.txt", "BAD\n");
    repo.git(&["add", "c.txt"]);
    let (ok, err) = commit_logged(&repo, "bad");
    assert!(!ok && err.contains("lint: failed"), "{err}");
}

/// When `path` was last modified.
fn modified(path: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Sets when `path` was last modified.
fn set_modified(path: &std::path::Path, time: std::time::SystemTime) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(time).unwrap();
}

/// Sleeps until the second after the one `time` falls in has begun (and a little more).
fn sleep_past_the_second_of(time: std::time::SystemTime) {
    use std::time::{Duration, UNIX_EPOCH};
    let second = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let next = UNIX_EPOCH + Duration::from_secs(second + 1) + Duration::from_millis(100);
    if let Ok(left) = next.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
}

#[test]
fn a_repeated_hit_settles_a_racily_clean_index_and_never_hides_a_change() {
    for changed in [false, true] {
        let repo = lint_repo();
        // git then compares only times and sizes: a change of the same size, with its time put
        // back, shows only when git reads the file, which it does for a racily clean entry.
        repo.git(&["config", "core.checkStat", "minimal"]);
        repo.git(&["config", "core.trustctime", "false"]);
        repo.write("c.txt", "fine\n");
        repo.git(&["add", "c.txt"]);
        for note in ["checked", "a hit, remembered"] {
            let (ok, err) = commit(&repo, &["-m", note]);
            assert!(ok, "{note}: {err}");
            repo.git(&["reset", "-q", "--soft", "HEAD~1"]);
        }
        // As after an edit, `git add` and `git commit` in one second.
        let index = repo.path().join(".git/index");
        let edited = modified(&repo.file("c.txt"));
        if changed {
            repo.write("c.txt", "FINE\n");
            set_modified(&repo.file("c.txt"), edited);
        }
        set_modified(&index, edited);
        let bytes = std::fs::read(&index).unwrap();
        sleep_past_the_second_of(edited);

        // The index is being written (git's lock): weir leaves it, and the lock, alone.
        let lock = repo.path().join(".git/index.lock");
        std::fs::write(&lock, "").unwrap();
        let hand = repo.weir(&["hook", "pre-commit"]);
        hand.expect_code(0);
        assert!(hand.stderr().contains("lint: cached"), "{}", hand.stderr());
        assert!(lock.exists());
        assert_eq!(modified(&index), edited);
        std::fs::remove_file(&lock).unwrap();

        let (ok, err) = commit(&repo, &["-m", "the hit again"]);
        assert!(ok && err.contains("lint: cached"), "{err}");
        assert_eq!(std::fs::read(&index).unwrap(), bytes, "changed {changed}");
        let unstaged = repo.git(&["diff", "--name-only"]);
        if changed {
            assert_eq!(unstaged, "c.txt\n");
            assert_eq!(modified(&index), edited, "a changed file stays racy");
        } else {
            assert_eq!(unstaged, "");
            assert!(
                modified(&index) > edited,
                "settled: git trusts the stat data again"
            );
        }
    }
}

const FIX: &str = r#"
[jobs.squeeze]
on = ["pre-commit"]
files = ["*.txt"]
fix = true
run = "sed -i 's/  */ /g' {files}"
"#;

#[test]
fn a_fixer_fixes_index_and_working_tree_and_keeps_unstaged_edits() {
    let repo = TestRepo::with_pipeline(FIX);
    repo.write("a.txt", "one\ntwo\nthree\n");
    repo.commit_all("init");
    install(&repo);
    repo.write("a.txt", "one   spaced\ntwo\nthree\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "one   spaced\ntwo\nthree, edited later\n");
    let (ok, err) = commit(&repo, &["-m", "fixed"]);
    assert!(ok, "{err}");
    assert!(err.contains("fixed a.txt"), "{err}");
    assert_eq!(
        repo.git(&["show", "HEAD:a.txt"]),
        "one spaced\ntwo\nthree\n"
    );
    assert_eq!(repo.read("a.txt"), "one spaced\ntwo\nthree, edited later\n");
}

#[test]
fn a_fix_that_conflicts_with_unstaged_edits_touches_nothing() {
    let repo = TestRepo::with_pipeline(FIX);
    repo.write("a.txt", "x\n");
    repo.commit_all("init");
    install(&repo);
    repo.write("a.txt", "p   q\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "p   q  r\n");
    let before = state(&repo);
    let (ok, err) = commit(&repo, &["-m", "conflict"]);
    assert!(!ok, "{err}");
    assert!(err.contains("conflict with unstaged edits"), "{err}");
    assert!(
        err.contains("-p   q") && err.contains("+p q"),
        "the diff is shown: {err}"
    );
    assert_eq!(state(&repo), before);
}

#[test]
fn what_a_job_changes_in_its_snapshot_is_undone_before_the_next_hook() {
    // The job first checks that it sees exactly the staged content, then damages its snapshot
    // in every way it can: the next commit's job must see the staged content again.
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.vandal]
on = ["pre-commit"]
cache = false
run = """
test "$(cat a.txt)" = a && test "$(cat dir/b.txt)" = b && test -x dir/run.sh \
  && test "$(cat dir/deep/c.txt)" = c && test "$(cat same.txt)" = same \
  && test "$(cat counter.txt)" = "$(cat expected.txt)" || { echo snapshot not as staged; exit 1; }
printf X >> a.txt; rm dir/b.txt; chmod -x dir/run.sh; mv dir/deep moved
printf emas > same.txt; mkdir -p new && echo junk > new/file
"""
"#,
    );
    repo.write("a.txt", "a");
    repo.write("dir/b.txt", "b");
    repo.write("dir/run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(
        repo.file("dir/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    repo.write("dir/deep/c.txt", "c");
    repo.write("same.txt", "same");
    repo.write("counter.txt", "0");
    repo.write("expected.txt", "0");
    repo.commit_all("init");
    install(&repo);
    for round in 1..=3 {
        repo.write("counter.txt", round.to_string());
        repo.write("expected.txt", round.to_string());
        repo.git(&["add", "counter.txt", "expected.txt"]);
        let (ok, err) = commit(&repo, &["-m", &format!("round {round}")]);
        assert!(ok, "round {round}: {err}");
    }
}

#[test]
fn a_job_that_runs_after_an_untouched_sync_is_still_undone() {
    // The same staged content each time: the second hook finds the snapshot untouched and
    // writes nothing; the job then misses (its stored result is gone) and damages the snapshot,
    // which the third hook must repair.
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.vandal]
on = ["pre-commit"]
run = """
test "$(cat a.txt)" = a || { echo snapshot not as staged; exit 1; }
printf X >> a.txt
"""
"#,
    );
    repo.write("a.txt", "a");
    repo.commit_all("init");
    install(&repo);
    // Through weir, which waits for the entries the last hook handed over to be written.
    let forget_results = || {
        repo.weir(&["cache", "gc", "--keep", "0"]).expect_code(0);
        let refs = repo.git(&["for-each-ref", "refs/weir/cache"]);
        assert!(refs.is_empty(), "{refs}");
    };
    // Runs and damages; then a hit that repairs; then untouched, a miss that damages again.
    repo.weir(&["hook", "pre-commit"]).expect_code(0);
    repo.weir(&["hook", "pre-commit"]).expect_code(0);
    forget_results();
    repo.weir(&["hook", "pre-commit"]).expect_code(0);
    forget_results();
    let run = repo.weir(&["hook", "pre-commit"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
}

#[test]
fn a_file_that_becomes_a_directory_and_back_is_committed_with_its_check() {
    // The job sees the staged shape of `a` each time: a file, then a directory holding `a/b`,
    // then a file again. A directory the job left where a staged file then goes does not stop
    // the sync either.
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.shape]
on = ["pre-commit"]
cache = false
run = "cat a/b 2>/dev/null || cat a; [ -e junk ] || { mkdir junk && echo left > junk/file; }"
"#,
    );
    repo.write("a", "file\n");
    repo.commit_all("init");
    install(&repo);
    repo.write("other", "x\n");
    repo.git(&["add", "other"]);
    let (ok, err) = commit(&repo, &["-m", "file"]);
    assert!(ok && err.contains("shape | file"), "{err}");

    repo.git(&["rm", "-q", "a"]);
    repo.write("a/b", "nested\n");
    repo.write("junk", "a file where the job left a directory\n");
    repo.git(&["add", "a/b", "junk"]);
    let (ok, err) = commit(&repo, &["-m", "directory"]);
    assert!(ok && err.contains("shape | nested"), "{err}");

    repo.git(&["rm", "-q", "-r", "a"]);
    repo.write("a", "again\n");
    repo.git(&["add", "a"]);
    let (ok, err) = commit(&repo, &["-m", "file again"]);
    assert!(ok && err.contains("shape | again"), "{err}");
    assert_eq!(repo.git(&["show", "HEAD:a"]), "again\n");
}

#[test]
fn a_converted_file_is_checked_as_git_stores_it() {
    // With `eol=crlf` the working tree holds CRLF and the object LF: the job sees the object.
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.lf]
on = ["pre-commit"]
cache = false
run = "if grep -q \"$(printf '\\r')\" a.txt; then echo CRLF; exit 1; else echo LF only; fi"
"#,
    );
    repo.write(".gitattributes", "*.txt eol=crlf\n");
    repo.write("a.txt", "one\n");
    repo.commit_all("init");
    install(&repo);
    repo.write("a.txt", "one\r\ntwo\r\n");
    repo.git(&["add", "a.txt"]);
    let (ok, err) = commit(&repo, &["-m", "two lines"]);
    assert!(ok && err.contains("lf | LF only"), "{err}");
    assert_eq!(repo.git(&["cat-file", "blob", "HEAD:a.txt"]), "one\ntwo\n");
}

#[test]
fn an_attributes_file_that_is_not_staged_still_converts_its_directory() {
    // `git add` reads the working tree's `.gitattributes`, staged or not: `sub/a.txt` is stored
    // with LF, `b.txt` (no attributes on its way) as it is, with CRLF.
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.lf]
on = ["pre-commit"]
cache = false
run = """
cr=$(printf '\\r')
if grep -q "$cr" sub/a.txt; then echo 'sub/a.txt: CRLF'; exit 1; fi
if ! grep -q "$cr" b.txt; then echo 'b.txt: LF'; exit 1; fi
echo as stored
"""
"#,
    );
    repo.write("sub/a.txt", "one\n");
    repo.write("b.txt", "one\n");
    repo.commit_all("init");
    install(&repo);
    repo.write("sub/.gitattributes", "*.txt eol=crlf\n");
    repo.write("sub/a.txt", "one\r\ntwo\r\n");
    repo.write("b.txt", "one\r\ntwo\r\n");
    repo.git(&["add", "sub/a.txt", "b.txt"]);
    let (ok, err) = commit(&repo, &["-m", "two lines"]);
    assert!(ok && err.contains("lf | as stored"), "{err}");
    assert_eq!(
        repo.git(&["cat-file", "blob", "HEAD:sub/a.txt"]),
        "one\ntwo\n"
    );
    assert_eq!(
        repo.git(&["cat-file", "blob", "HEAD:b.txt"]),
        "one\r\ntwo\r\n"
    );
}

/// Live processes (not zombies) whose working directory is `dir`.
fn processes_in(dir: &std::path::Path) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .filter(|&pid| crate::common::alive(pid))
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect()
}

#[test]
fn jobs_do_not_inherit_the_snapshot_watch() {
    // The watch's instance is handed to a helper process; a job must not get a copy, which
    // would keep it (and its hundreds of watches) alive for as long as the job lives.
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.fds]
on = ["pre-commit"]
cache = false
run = "for fd in /proc/self/fd/*; do readlink \"$fd\"; done | grep -c inotify || true"
"#,
    );
    repo.write("a.txt", "a\n");
    repo.commit_all("init");
    install(&repo);
    // The second commit's watch starts early, from what the first one's sync recorded.
    for round in ["one", "two", "three"] {
        repo.write("a.txt", format!("{round}\n"));
        repo.git(&["add", "a.txt"]);
        let (ok, err) = commit(&repo, &["-m", round]);
        assert!(ok && err.contains("fds | 0"), "{round}: {err}");
    }
}

#[test]
fn a_hook_leaves_no_process_behind() {
    // A job runs in the snapshot, so weir watches it and hands the watch to a short-lived
    // child to close: that child must be gone soon after the commit.
    let repo = lint_repo();
    repo.write("a.txt", "good, changed\n");
    repo.git(&["add", "a.txt"]);
    let (ok, err) = commit(&repo, &["-m", "checked"]);
    assert!(ok, "{err}");
    let dir = repo.path().canonicalize().unwrap();
    let start = std::time::Instant::now();
    loop {
        let left = processes_in(&dir);
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "still running in the repository: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_job_running_git_in_its_snapshot_cannot_touch_the_users_index() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.sneaky]
on = ["pre-commit"]
run = "git add -A 2>/dev/null; git rm -q --cached a.txt 2>/dev/null; true"
"#,
    );
    repo.write("a.txt", "a\n");
    repo.commit_all("init");
    install(&repo);
    repo.write("a.txt", "staged\n");
    repo.git(&["add", "a.txt"]);
    repo.write("b.txt", "untracked\n");
    let before = state(&repo);
    let (ok, err) = commit(&repo, &["-m", "x"]);
    assert!(ok, "{err}");
    assert_eq!(repo.git(&["show", "HEAD:a.txt"]), "staged\n");
    assert_eq!(repo.git(&["ls-files"]), ".pipeline.toml\na.txt\n");
    assert_eq!(state(&repo).2, before.2);
}

#[test]
fn the_first_commit_of_an_empty_repository_is_checked() {
    let repo = TestRepo::with_pipeline(LINT);
    install(&repo);
    repo.write("a.txt", "BAD\n");
    repo.git(&["add", "-A"]);
    let (ok, err) = commit(&repo, &["-m", "first"]);
    assert!(!ok, "{err}");
    repo.write("a.txt", "good\n");
    repo.git(&["add", "-A"]);
    let (ok, err) = commit(&repo, &["-m", "first"]);
    assert!(ok, "{err}");
}

fn push(repo: &TestRepo, args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new("git");
    repo.hermetic(&mut cmd);
    let out = cmd.arg("push").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pre_push_checks_the_pushed_commit_and_blocks_a_failure() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.check]
on = ["pre-push"]
run = "! grep -rl BAD --include=*.txt . && [ ! -e only-untracked.txt ]"
"#,
    );
    repo.write("a.txt", "good\n");
    repo.commit_all("init");
    install(&repo);
    let remote = repo.bare_origin();
    // An untracked file is not part of what is pushed, so the job does not see it.
    repo.write("only-untracked.txt", "BAD\n");
    let (ok, err) = push(&repo, &["-q", "origin", "main"]);
    assert!(ok, "{err}");

    repo.write("a.txt", "BAD\n");
    repo.git(&["commit", "-q", "--no-verify", "-am", "bad"]);
    let (ok, err) = push(&repo, &["-q", "origin", "main"]);
    assert!(!ok, "{err}");
    assert!(err.contains("check: failed"), "{err}");
    let remote_head = std::process::Command::new("git")
        .args([
            "--git-dir",
            &remote.path().display().to_string(),
            "rev-parse",
            "main",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&remote_head.stdout).trim(),
        repo.git(&["rev-parse", "HEAD~1"]).trim()
    );
}

const MERGE: &str = r#"
[jobs.deploy-ish]
on = ["merge"]
run = "echo merged-run >> $HOME/merge-runs"
"#;

#[test]
fn a_merge_into_main_runs_the_merge_jobs_once_and_a_plain_commit_does_not() {
    let repo = TestRepo::with_pipeline(MERGE);
    repo.write("a.txt", "a\n");
    repo.commit_all("init");
    install(&repo);
    let runs = || {
        repo.weir(&["log"])
            .stdout()
            .lines()
            .filter(|l| l.contains("merge"))
            .count()
    };
    repo.write("b.txt", "b\n");
    repo.git(&["add", "b.txt"]);
    commit(&repo, &["-q", "-m", "plain commit on main"]);
    assert_eq!(runs(), 0);

    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("c.txt", "c\n");
    repo.commit_all("feature");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("d.txt", "d\n");
    repo.commit_all("diverge");
    repo.git(&["merge", "-q", "--no-edit", "feature"]);
    assert_eq!(runs(), 1, "{}", repo.weir(&["log"]).stdout());

    // By hand, the same commit's merge jobs run again only when forced.
    let again = repo.weir(&["run", "--event", "merge"]);
    again.expect_code(0);
    assert!(again.stderr().contains("already ran"), "{}", again.stderr());
    assert_eq!(runs(), 1);
    repo.weir(&["run", "--event", "merge", "--force"])
        .expect_code(0);
    assert_eq!(runs(), 2);
    repo.weir(&["run", "--force"]).expect_code(2);

    // Merging into another branch runs nothing.
    repo.git(&["checkout", "-q", "feature"]);
    repo.git(&["merge", "-q", "--no-edit", "main"]);
    assert_eq!(runs(), 2);
}

#[test]
fn a_pulled_pipeline_change_is_refused_until_trusted() {
    let upstream = lint_repo();
    let remote = upstream.bare_origin();
    upstream.git(&["push", "-q", "origin", "main"]);

    let mine = TestRepo::new();
    std::fs::remove_dir_all(mine.file(".git")).unwrap();
    mine.git(&["clone", "-q", &remote.path().display().to_string(), "."]);
    install(&mine);

    upstream.write(
        ".pipeline.toml",
        format!("{LINT}\n[jobs.evil]\non = [\"pre-commit\"]\nrun = \"touch $HOME/pwned\"\n"),
    );
    upstream.git(&["commit", "-q", "--no-verify", "-am", "sneak a job in"]);
    upstream.git(&["push", "-q", "--no-verify", "origin", "main"]);
    mine.git(&["pull", "-q", "--no-rebase", "origin", "main"]);

    mine.write("b.txt", "good\n");
    mine.git(&["add", "b.txt"]);
    let (ok, err) = commit(&mine, &["-m", "after pull"]);
    assert!(!ok, "an untrusted pipeline ran: {err}");
    assert!(err.contains("weir trust"), "{err}");
    assert!(err.contains("+[jobs.evil]"), "the change is shown: {err}");
    assert_eq!(mine.git(&["rev-list", "--count", "HEAD"]).trim(), "2");

    mine.weir(&["trust"]).expect_code(0);
    let (ok, err) = commit(&mine, &["-m", "after review"]);
    assert!(ok, "{err}");
}

#[test]
fn a_server_runs_the_default_branch_pipeline_on_push_and_nothing_for_other_branches() {
    let server = tempfile::TempDir::new().unwrap();
    let bare = server.path().join("repo.git");
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.ship]
on = ["merge"]
run = "echo shipping $(cat version.txt)"
"#,
    );
    repo.write("version.txt", "1.0\n");
    repo.commit_all("init");
    repo.git(&[
        "init",
        "-q",
        "--bare",
        "-b",
        "main",
        &bare.display().to_string(),
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("install")
        .current_dir(&bare)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bare.join("hooks/post-receive").exists());
    repo.git(&["remote", "add", "origin", &bare.display().to_string()]);

    let (ok, err) = push(&repo, &["origin", "main"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("remote:") && err.contains("shipping 1.0"),
        "{err}"
    );

    // Another branch runs nothing, even one whose pipeline names itself the default: the
    // server's HEAD says which branch that is.
    let sneaky = "[pipeline]\ndefault_branch = \"sneaky\"\n\n[jobs.ship]\non = [\"merge\"]\nrun = \"echo shipping $(cat version.txt)\"\n";
    for (branch, pipeline) in [("topic", None), ("sneaky", Some(sneaky))] {
        repo.git(&["checkout", "-q", "-b", branch]);
        if let Some(pipeline) = pipeline {
            repo.write(".pipeline.toml", pipeline);
        }
        repo.write("version.txt", format!("2.0-{branch}\n"));
        repo.commit_all(branch);
        let (ok, err) = push(&repo, &["origin", branch]);
        assert!(ok, "{err}");
        assert!(
            !err.contains("shipping"),
            "{branch} ran its pipeline: {err}"
        );
    }
    // Nor are its files written out there.
    let merged = std::fs::read_to_string(bare.join("weir/snapshots/merge/tree/version.txt"));
    assert_eq!(merged.unwrap(), "1.0\n");

    // The same commit's merge pipeline runs once.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["push", "-q", "origin", "main:refs/heads/main", "--force"]);
    let (_, again) = push(&repo, &["origin", "main"]);
    assert!(!again.contains("shipping"), "{again}");
}

#[test]
fn only_the_staged_changes_are_given_to_a_files_job_in_a_deep_tree() {
    let repo = lint_repo();
    let tree = [
        "a/f/five.txt",
        "a/one.txt",
        "a/two.txt",
        "ab/six.txt",
        "b/c/two.txt",
        "b/c/d/three.txt",
        "e/four.txt",
    ];
    for path in tree {
        repo.write(path, "good\n");
    }
    repo.commit_all("tree");
    // `a` is unchanged, and `ab` (whose name starts like it) is not.
    repo.write("ab/six.txt", "better\n");
    repo.write("b/c/d/three.txt", "still good\n");
    repo.write("e/new.txt", "new\n");
    repo.git(&["add", "-A"]);
    let (ok, err) = commit(&repo, &["-m", "three changes"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("lint | checking ab/six.txt b/c/d/three.txt e/new.txt\n"),
        "{err}"
    );
}

#[test]
fn commits_of_files_named_in_any_script_are_checked_one_after_another() {
    let repo = lint_repo();
    // Names of many lengths, most of their bytes outside ASCII: where weir looks a file up in
    // what it last wrote to the snapshot, a position can fall inside a character.
    let names: Vec<String> = (0..40)
        .map(|i| {
            let dir = format!("п{}", "ы".repeat(i % 7));
            let name = "отчёт".repeat(1 + i % 5);
            format!("документы/{dir}/{name}-{i}.txt")
        })
        .collect();
    for name in &names {
        repo.write(name, "good\n");
    }
    repo.commit_all("reports");
    for name in names.iter().step_by(3) {
        repo.write(name, "still good\n");
        repo.git(&["add", "-A"]);
        let (ok, err) = commit(&repo, &["-m", "one report"]);
        assert!(ok, "{err}");
        assert!(err.contains(&format!("lint | checking {name}\n")), "{err}");
    }
    repo.write(&names[1], "BAD\n");
    repo.git(&["add", "-A"]);
    let (ok, err) = commit(&repo, &["-m", "a bad report"]);
    assert!(!ok, "{err}");
}
