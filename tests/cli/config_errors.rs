//! Bad input gets a clear error naming `.pipeline.toml:LINE:COL` with a caret, exit 2, and
//! nothing runs.

use crate::common::TestRepo;

/// Runs `weir run` and `weir validate` on a bad pipeline: both exit 2 with the same error, and
/// the job that would prove something ran did not.
fn rejects(pipeline: &[u8]) -> String {
    let repo = TestRepo::new();
    repo.write(".pipeline.toml", pipeline);
    let run = repo.weir(&["run"]);
    run.expect_code(2);
    assert!(
        !repo.file("ran").exists(),
        "a job ran despite the bad config"
    );
    let validate = repo.weir(&["validate"]);
    validate.expect_code(2);
    assert_eq!(validate.stderr(), run.stderr());
    run.stderr()
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let err = rejects(
        br#"[jobs.ok]
run = "touch ran"

[jobs.build]
run = "true"
neds = ["ok"]
"#,
    );
    assert!(err.contains(".pipeline.toml:6:1"), "{err}");
    assert!(err.contains("neds = [\"ok\"]\n  | ^^^^"), "{err}");
    assert!(err.contains("did you mean `needs`?"), "{err}");
}

#[test]
fn wrong_types_and_bad_durations_point_at_the_value() {
    let err = rejects(
        br#"[jobs.ok]
run = "touch ran"
retries = "three"
timeout = "5 parsecs"
"#,
    );
    assert!(err.contains(".pipeline.toml:3:11"), "{err}");
    assert!(err.contains(".pipeline.toml:4:11"), "{err}");
    assert!(err.contains("5 parsecs"), "{err}");
    assert!(err.contains("2 errors"), "{err}");
}

#[test]
fn unknown_needs_and_cycles_are_named() {
    let err = rejects(
        br#"[jobs.ok]
run = "touch ran"
needs = ["biuld"]

[jobs.build]
run = "true"
needs = ["test"]

[jobs.test]
run = "true"
needs = ["build"]
"#,
    );
    assert!(err.contains("unknown job `biuld`"), "{err}");
    assert!(err.contains("did you mean `build`?"), "{err}");
    assert!(
        err.contains("build → test → build") || err.contains("test → build → test"),
        "{err}"
    );
}

#[test]
fn duplicate_jobs_are_rejected() {
    let err = rejects(
        br#"[jobs.ok]
run = "touch ran"

[jobs.ok]
run = "true"
"#,
    );
    assert!(err.contains(".pipeline.toml:4:"), "{err}");
}

#[test]
fn job_names_must_be_safe_in_a_ref_name() {
    let err = rejects(
        br#"[jobs."bad name"]
run = "touch ran"

[jobs."x..y"]
run = "true"
"#,
    );
    assert!(err.contains(".pipeline.toml:1:7"), "{err}");
    assert!(err.contains(".pipeline.toml:4:7"), "{err}");
}

#[test]
fn an_empty_run_is_rejected() {
    let err = rejects(b"[jobs.ok]\nrun = \"touch ran\"\n\n[jobs.nothing]\nrun = []\n");
    assert!(err.contains(".pipeline.toml:5:7"), "{err}");
    assert!(err.contains("empty `run`"), "{err}");
}

#[test]
fn a_toml_syntax_error_points_at_it() {
    let err = rejects(b"[jobs.ok]\nrun = \"touch ran\"\ntimeout = \n");
    assert!(err.contains(".pipeline.toml:3:"), "{err}");
    assert!(err.contains("timeout ="), "{err}");
}

#[test]
fn a_non_utf8_file_is_rejected_at_the_bad_byte() {
    let err = rejects(b"[jobs.ok]\nrun = \"touch ran \xff\"\n");
    assert!(err.contains(".pipeline.toml:2:"), "{err}");
    assert!(err.contains("UTF-8"), "{err}");
}

#[test]
fn a_missing_pipeline_says_where_it_looked_and_suggests_init() {
    let repo = TestRepo::new();
    std::fs::create_dir_all(repo.file("deep/er")).unwrap();
    let run = repo
        .weir_cmd(&["run"])
        .current_dir(repo.file("deep/er"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no .pipeline.toml"), "{err}");
    assert!(err.contains("deep/er"), "{err}");
    assert!(err.contains("weir init"), "{err}");
}

#[test]
fn the_pipeline_is_found_from_a_subdirectory() {
    let repo = TestRepo::with_pipeline("[jobs.ok]\nrun = \"touch ran\"\n");
    std::fs::create_dir_all(repo.file("src/deep")).unwrap();
    let out = repo
        .weir_cmd(&["run"])
        .current_dir(repo.file("src/deep"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        repo.file("ran").exists(),
        "the job runs in the pipeline's directory"
    );
}

#[test]
fn outside_a_git_repository_weir_says_so() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(
        dir.path().join(".pipeline.toml"),
        "[jobs.ok]\nrun = \"true\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .current_dir(dir.path())
        .env("GIT_CEILING_DIRECTORIES", dir.path().parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not inside a git repository"), "{err}");
}

#[test]
fn every_error_in_a_file_is_shown_with_its_snippet() {
    let err = rejects(
        br#"[pipeline]
default_branch = "main"

[jobs.ok]
run = "touch ran"
neds = ["lint"]
retries = -1

[jobs.lint]
run = "true"
timeout = "5 parsecs"
on = ["pre-comit"]

[jobs.a]
run = "true"
needs = ["b"]

[jobs.b]
run = "true"
needs = ["a"]
"#,
    );
    insta::assert_snapshot!(err);
}

#[test]
fn secret_errors_are_shown_with_their_snippets() {
    let err = rejects(
        br#"[secrets]
TOKEN = { env = "DEPLOY_TOKEN", file = ".secrets/token" }
KEY = { path = ".secrets/key" }

[jobs.ok]
run = "touch ran"
secrets = ["TOKN", "KEY"]
"#,
    );
    insta::assert_snapshot!(err);
}
