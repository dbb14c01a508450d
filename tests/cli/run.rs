//! `weir run`: the DAG, parallelism, failures, steps, dirs, environment and retries.

use crate::common::TestRepo;

#[test]
fn jobs_run_after_what_they_need() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.package]
needs = ["test", "build"]
run = "echo package >> order"

[jobs.test]
needs = ["build"]
run = "echo test >> order"

[jobs.build]
run = "echo build >> order"
"#,
    );
    repo.weir(&["run", "-j", "4"]).expect_code(0);
    assert_eq!(repo.read("order"), "build\ntest\npackage\n");
}

/// Each job waits for the other's file, so the run can only pass if both run at once.
const RENDEZVOUS: &str = r#"
[jobs.left]
timeout = "10s"
run = "touch left; while [ ! -e right ]; do sleep 0.02; done"

[jobs.right]
timeout = "10s"
run = "touch right; while [ ! -e left ]; do sleep 0.02; done"
"#;

#[test]
fn independent_jobs_run_in_parallel() {
    let repo = TestRepo::with_pipeline(RENDEZVOUS);
    repo.weir(&["run", "-j", "2"]).expect_code(0);
}

#[test]
fn dash_j_1_runs_one_job_at_a_time() {
    let repo = TestRepo::with_pipeline(&RENDEZVOUS.replace("10s", "1s"));
    let run = repo.weir(&["run", "-j", "1", "--keep-going"]);
    run.expect_code(1);
    assert!(run.stderr().contains("left: timed-out"), "{}", run.stderr());
}

const FAILING: &str = r#"
[jobs.broken]
run = "echo about to fail; exit 3"

[jobs.after]
needs = ["broken"]
run = "touch after-ran"

[jobs.independent]
needs = ["slow"]
run = "touch independent-ran"

[jobs.slow]
run = "true"
"#;

#[test]
fn a_failure_stops_the_run_and_skips_its_dependents() {
    let repo = TestRepo::with_pipeline(FAILING);
    let run = repo.weir(&["run", "-j", "1"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("broken: failed (exit code 3)"), "{err}");
    assert!(
        err.contains("after: skipped (needs `broken`, which did not pass)"),
        "{err}"
    );
    assert!(err.contains("independent: skipped"), "{err}");
    assert!(!repo.file("after-ran").exists());
    assert!(!repo.file("independent-ran").exists());
}

#[test]
fn keep_going_finishes_independent_branches() {
    let repo = TestRepo::with_pipeline(FAILING);
    let run = repo.weir(&["run", "-j", "1", "--keep-going"]);
    run.expect_code(1);
    assert!(repo.file("independent-ran").exists(), "{}", run.stderr());
    assert!(!repo.file("after-ran").exists());
}

#[test]
fn steps_stop_at_the_first_failure() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.steps]
run = ["echo first > first", "false", "echo third > third"]
"#,
    );
    let run = repo.weir(&["run"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains("exit code 1 in step 2"),
        "{}",
        run.stderr()
    );
    assert!(repo.file("first").exists());
    assert!(!repo.file("third").exists());
}

#[test]
fn a_job_runs_in_its_dir() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.here]
dir = "sub/dir"
run = "pwd > where"
"#,
    );
    std::fs::create_dir_all(repo.file("sub/dir")).unwrap();
    repo.weir(&["run"]).expect_code(0);
    let where_ = repo.read("sub/dir/where");
    assert!(where_.trim_end().ends_with("sub/dir"), "{where_}");
}

#[test]
fn jobs_see_only_allowlisted_and_declared_environment() {
    let repo = TestRepo::with_pipeline(
        r#"
[env]
SHARED = "from-pipeline"
OVERRIDDEN = "pipeline"

[jobs.show]
env = { OVERRIDDEN = "job" }
run = "env > env.txt"
"#,
    );
    let out = repo
        .weir_cmd(&["run"])
        .env("LEAKY_SECRET", "do-not-pass")
        .env("GIT_DIR", repo.file(".git"))
        .env("GIT_INDEX_FILE", repo.file(".git/index"))
        .env("GIT_WORK_TREE", repo.path())
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = repo.read("env.txt");
    let vars: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(env.contains("SHARED=from-pipeline\n"), "{env}");
    assert!(env.contains("OVERRIDDEN=job\n"), "{env}");
    assert!(env.contains("LANG=C.UTF-8\n"), "{env}");
    assert!(vars.contains(&"PATH") && vars.contains(&"HOME"), "{env}");
    for leaked in [
        "LEAKY_SECRET",
        "GIT_DIR",
        "GIT_INDEX_FILE",
        "GIT_WORK_TREE",
        "GIT_CONFIG_GLOBAL",
    ] {
        assert!(
            !vars.contains(&leaked),
            "{leaked} leaked into the job:\n{env}"
        );
    }
}

#[test]
fn retries_run_the_job_again_and_say_which_attempt() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.flaky]
retries = 2
run = "echo x >> tries; [ $(wc -l < tries) -ge 2 ]"
"#,
    );
    let run = repo.weir(&["run"]);
    run.expect_code(0);
    assert_eq!(repo.read("tries"), "x\nx\n");
    assert!(
        run.stderr().contains("flaky: attempt 2/3"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("passed in"), "{}", run.stderr());
}

#[test]
fn retries_give_up_after_the_last_attempt() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.broken]
retries = 1
run = "echo x >> tries; false"
"#,
    );
    let run = repo.weir(&["run"]);
    run.expect_code(1);
    assert_eq!(repo.read("tries"), "x\nx\n");
    assert!(
        run.stderr().contains("after 2 attempts"),
        "{}",
        run.stderr()
    );
}

const EVENTS: &str = r#"
[jobs.lint]
on = ["pre-commit"]
needs = ["setup"]
run = "touch lint-ran"

[jobs.setup]
run = "touch setup-ran"

[jobs.test]
on = ["pre-push"]
run = "touch test-ran"

[jobs.deploy]
on = ["merge"]
environment = "staging"
run = "touch deploy-ran"
"#;

#[test]
fn an_event_runs_its_jobs_and_their_needs_only() {
    let repo = TestRepo::with_pipeline(EVENTS);
    repo.weir(&["run", "--event", "pre-commit"]).expect_code(0);
    assert!(repo.file("lint-ran").exists());
    assert!(repo.file("setup-ran").exists());
    assert!(!repo.file("test-ran").exists());
}

#[test]
fn a_plain_run_leaves_deploy_jobs_out() {
    let repo = TestRepo::with_pipeline(EVENTS);
    repo.weir(&["run"]).expect_code(0);
    assert!(repo.file("test-ran").exists());
    assert!(!repo.file("deploy-ran").exists());
}

#[test]
fn naming_jobs_runs_them_and_their_needs() {
    let repo = TestRepo::with_pipeline(EVENTS);
    repo.weir(&["run", "lint"]).expect_code(0);
    assert!(repo.file("setup-ran").exists());
    assert!(!repo.file("test-ran").exists());
}

#[test]
fn an_unknown_job_or_event_is_a_usage_error() {
    let repo = TestRepo::with_pipeline(EVENTS);
    let run = repo.weir(&["run", "lnit"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("no job named `lnit`"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("did you mean `lint`?"),
        "{}",
        run.stderr()
    );
    repo.weir(&["run", "--event", "push"]).expect_code(2);
    let run = repo.weir(&["run", "--event", "watch"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("no job runs on `watch`"),
        "{}",
        run.stderr()
    );
    assert!(!repo.file("setup-ran").exists());
}

#[test]
fn job_output_is_printed_with_the_job_name() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.greet]
run = "echo hello; echo oops >&2"
"#,
    );
    let run = repo.weir(&["run"]);
    run.expect_code(0);
    assert!(run.stderr().contains("greet | hello"), "{}", run.stderr());
    assert!(run.stderr().contains("greet | oops"), "{}", run.stderr());
}

#[test]
fn json_prints_one_event_per_line() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.a]
run = "echo noise"

[jobs.b]
needs = ["a"]
run = "exit 4"
"#,
    );
    let run = repo.weir(&["run", "--json"]);
    run.expect_code(1);
    let events: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "job_started",
            "job_finished",
            "job_started",
            "job_finished",
            "run_finished"
        ]
    );
    assert_eq!(events[0]["jobs"], serde_json::json!(["a", "b"]));
    assert_eq!(events[2]["job"], "a");
    assert_eq!(events[2]["status"], "passed");
    assert_eq!(events[4]["status"], "failed");
    assert_eq!(events[4]["exit_code"], 4);
    assert!(events[4]["duration_ms"].is_u64());
    assert_eq!(events[5]["outcome"], "failed");
    assert!(
        events[5]["record"]
            .as_str()
            .unwrap()
            .starts_with("refs/weir/runs/")
    );
    assert!(!run.stdout().contains("noise"));
}
