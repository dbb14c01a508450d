//! Run records under refs/weir/runs, read back by `weir log`, `weir show` and plain git.

use crate::common::TestRepo;

const PIPELINE: &str = r#"
[jobs.greet]
run = "echo hello from greet"

[jobs.broken]
needs = ["greet"]
run = "echo going down; exit 2"
"#;

#[test]
fn every_run_is_a_commit_readable_with_plain_git() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    repo.weir(&["run"]).expect_code(1);
    let refs = repo.git(&["for-each-ref", "--format=%(refname)", "refs/weir/runs/"]);
    let refs: Vec<&str> = refs.lines().collect();
    assert_eq!(refs.len(), 1, "{refs:?}");
    let run: serde_json::Value =
        serde_json::from_str(&repo.git(&["show", &format!("{}:run", refs[0])])).unwrap();
    assert_eq!(run["outcome"], "failed");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["jobs"][0]["name"], "greet");
    assert_eq!(run["jobs"][1]["status"], "failed");
    assert_eq!(run["jobs"][1]["exit_code"], 2);
    let log = repo.git(&["show", &format!("{}:jobs/greet/log", refs[0])]);
    assert!(log.contains("hello from greet"), "{log}");
    // `run` says everything else: each job has a log and nothing more.
    let files = repo.git(&["ls-tree", "-r", "--name-only", refs[0]]);
    assert_eq!(files, "jobs/broken/log\njobs/greet/log\nrun\n");
    // The user's branches and index are untouched.
    assert!(repo.git(&["for-each-ref", "refs/heads/"]).is_empty());
}

#[test]
fn log_lists_runs_newest_first_and_show_prints_their_logs() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    repo.weir(&["run", "greet"]).expect_code(0);
    repo.weir(&["run"]).expect_code(1);
    let log = repo.weir(&["log"]);
    log.expect_code(0);
    let stdout = log.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", log.stdout());
    assert!(
        lines[0].contains("failed") && lines[0].contains("1 cached, 1 failed"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("passed") && lines[1].contains("1 job(s)"),
        "{}",
        lines[1]
    );

    let oldest = lines[1].split_whitespace().next().unwrap();
    let show = repo.weir(&["show", oldest]);
    show.expect_code(0);
    assert!(
        show.stdout().contains("── greet: passed"),
        "{}",
        show.stdout()
    );
    assert!(
        show.stdout().contains("hello from greet"),
        "{}",
        show.stdout()
    );
    assert!(!show.stdout().contains("going down"), "{}", show.stdout());

    // The random part of the id is enough, and the latest run is the default.
    let random = oldest.rsplit('-').next().unwrap();
    repo.weir(&["show", random]).expect_code(0);
    let latest = repo.weir(&["show"]);
    assert!(
        latest.stdout().contains("going down"),
        "{}",
        latest.stdout()
    );

    let missing = repo.weir(&["show", "nonesuch"]);
    missing.expect_code(2);
    assert!(
        missing.stderr().contains("no run matches `nonesuch`"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn log_json_prints_each_run_summary() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    repo.weir(&["run", "greet"]).expect_code(0);
    let log = repo.weir(&["log", "--json"]);
    let run: serde_json::Value = serde_json::from_str(log.stdout().trim()).unwrap();
    assert_eq!(run["outcome"], "passed");
    assert_eq!(run["jobs"][0]["name"], "greet");
}
