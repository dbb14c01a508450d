//! `weir init`, `weir validate` and `weir graph`.

use crate::common::TestRepo;

#[test]
fn init_writes_a_pipeline_for_a_cargo_project_that_validates() {
    let repo = TestRepo::new();
    repo.write("Cargo.toml", "[package]\nname = \"x\"\n");
    let init = repo.weir(&["init"]);
    init.expect_code(0);
    let pipeline = repo.read(".pipeline.toml");
    assert!(pipeline.contains("cargo fmt --check"), "{pipeline}");
    assert!(pipeline.contains("cargo test"), "{pipeline}");
    let validate = repo.weir(&["validate"]);
    validate.expect_code(0);
    assert!(
        validate.stdout().contains("valid: 3 job(s)"),
        "{}",
        validate.stdout()
    );
}

#[test]
fn init_recognises_npm_python_and_make() {
    let repo = TestRepo::new();
    repo.write(
        "package.json",
        r#"{"scripts": {"test": "jest", "lint": "eslint ."}}"#,
    );
    repo.write("pyproject.toml", "[project]\nname = \"x\"\n");
    repo.write("Makefile", "all:\n\ttrue\ntest:\n\ttrue\n");
    repo.weir(&["init"]).expect_code(0);
    let pipeline = repo.read(".pipeline.toml");
    for expected in [
        "npm run lint",
        "npm test",
        "python3 -m pytest",
        "make test",
        "[jobs.npm-test]",
    ] {
        assert!(
            pipeline.contains(expected),
            "{expected} missing from:\n{pipeline}"
        );
    }
    repo.weir(&["validate"]).expect_code(0);
}

#[test]
fn init_never_overwrites_a_pipeline() {
    let repo = TestRepo::with_pipeline("[jobs.mine]\nrun = \"true\"\n");
    let init = repo.weir(&["init"]);
    init.expect_code(2);
    assert!(
        init.stderr().contains("already exists"),
        "{}",
        init.stderr()
    );
    assert_eq!(repo.read(".pipeline.toml"), "[jobs.mine]\nrun = \"true\"\n");
}

#[test]
fn init_in_an_unknown_project_writes_a_runnable_example() {
    let repo = TestRepo::new();
    repo.weir(&["init"]).expect_code(0);
    let run = repo.weir(&["run"]);
    run.expect_code(0);
    assert!(run.stderr().contains("hello from weir"), "{}", run.stderr());
}

const PIPELINE: &str = r#"
[jobs.build]
run = "true"

[jobs.test]
needs = ["build"]
run = "true"

[jobs.staging]
needs = ["test"]
environment = "staging"
run = "true"
"#;

#[test]
fn graph_prints_dot_and_mermaid() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    let dot = repo.weir(&["graph"]);
    dot.expect_code(0);
    assert!(
        dot.stdout().starts_with("digraph pipeline {"),
        "{}",
        dot.stdout()
    );
    assert!(
        dot.stdout().contains("\"build\" -> \"test\";"),
        "{}",
        dot.stdout()
    );
    assert!(
        dot.stdout().contains("\"test\" -> \"staging\";"),
        "{}",
        dot.stdout()
    );

    let mermaid = repo.weir(&["graph", "--format", "mermaid"]);
    mermaid.expect_code(0);
    let text = mermaid.stdout();
    assert!(text.starts_with("graph LR\n"), "{text}");
    assert!(
        text.contains("j0[\"build\"]") && text.contains("j0 --> j1"),
        "{text}"
    );
    assert!(text.contains("j2[[\"staging\"]]"), "{text}");
}

#[test]
fn usage_errors_exit_2() {
    let repo = TestRepo::with_pipeline(PIPELINE);
    repo.weir(&["frobnicate"]).expect_code(2);
    repo.weir(&["run", "-j", "0"]).expect_code(2);
    repo.weir(&["graph", "--format", "png"]).expect_code(2);
    repo.weir(&["--version"]).expect_code(0);
}

#[test]
fn the_documented_example_pipeline_is_valid() {
    let repo = TestRepo::with_pipeline(include_str!("../../.pipeline.toml.example"));
    let run = repo.weir(&["validate"]);
    run.expect_code(0);
}
