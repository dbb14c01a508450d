//! Deploys on a real repository: merge → staging → approval → production, health checks that
//! roll back, manual rollback, the per-environment lock, the ledger under refs/weir/deploy.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;

use crate::common::{TestRepo, wait_for_file};

/// A build that copies `src/app.txt` to `dist/app.txt`, a staging deploy with a health check
/// that wants "good" in what it deployed, and a production deploy behind an approval. Deploying
/// copies the artifact into `dest/<environment>`. `extra` goes into the staging job.
fn pipeline(dest: &Path, staging_extra: &str) -> String {
    format!(
        r#"
[env]
DEST = "{dest}"

[jobs.build]
on = ["merge"]
inputs = ["src/**"]
outputs = ["dist/**"]
run = "mkdir -p dist && cp src/app.txt dist/app.txt"

[jobs.staging]
on = ["merge"]
needs = ["build"]
environment = "staging"
run = "cp dist/app.txt $DEST/staging"
health = "grep -q good $DEST/staging"
{staging_extra}

[jobs.production]
on = ["merge"]
needs = ["staging"]
environment = "production"
approval = true
run = "cp dist/app.txt $DEST/production"
"#,
        dest = dest.display()
    )
}

fn repo_with(dest: &TempDir, staging_extra: &str, app: &str) -> TestRepo {
    let repo = TestRepo::with_pipeline(&pipeline(dest.path(), staging_extra));
    repo.write(".gitignore", "dist/\n");
    repo.write("src/app.txt", app);
    repo.commit_all("first release");
    repo
}

fn deployed(dest: &TempDir, env: &str) -> Option<String> {
    std::fs::read_to_string(dest.path().join(env)).ok()
}

/// The ledger's events, oldest first, as `weir history --json` reports them.
fn events(repo: &TestRepo, env: &str) -> Vec<String> {
    let run = repo.weir(&["history", env, "--json"]);
    run.expect_code(0);
    let mut events: Vec<String> = run
        .stdout()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["event"].as_str().expect("event").to_owned()
        })
        .collect();
    events.reverse();
    events
}

fn verify(repo: &TestRepo, env: &str) {
    let run = repo.weir(&["history", "--verify", env]);
    run.expect_code(0);
    assert!(run.stderr().contains("0 problems"), "{}", run.stderr());
}

#[test]
fn a_merge_deploys_to_staging_and_production_waits_for_approval() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(&dest, "", "good v1\n");
    repo.weir(&["install"]).expect_code(0);
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("src/app.txt", "good v2\n");
    repo.commit_all("v2");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--no-ff", "--no-edit", "feature"]);

    assert_eq!(deployed(&dest, "staging").as_deref(), Some("good v2\n"));
    assert_eq!(deployed(&dest, "production"), None, "production waits");
    let status = repo.weir(&["status"]);
    status.expect_code(0);
    assert!(
        status.stdout().contains("waiting for approval: #1")
            && status.stdout().contains("weir approve production"),
        "{}",
        status.stdout()
    );

    let approved = repo.weir(&["approve", "production"]);
    approved.expect_code(0);
    assert_eq!(deployed(&dest, "production").as_deref(), Some("good v2\n"));
    assert_eq!(
        events(&repo, "production"),
        ["awaiting-approval", "approved", "started", "succeeded"]
    );
    assert_eq!(events(&repo, "staging"), ["started", "succeeded"]);
    let history = repo.weir(&["history", "production"]).stdout();
    assert!(
        history.contains("Test <test@example.com>"),
        "who is recorded: {history}"
    );
    let head = repo.git(&["rev-parse", "HEAD"]);
    assert!(history.contains(&head.trim()[..12]), "{history}");
    verify(&repo, "staging");
    verify(&repo, "production");
    // The ledger is plain git: each entry's parent is the one before it.
    let log = repo.git(&["log", "--format=%s", "refs/weir/deploy/production"]);
    assert_eq!(log.lines().count(), 4, "{log}");
    let nothing = repo.weir(&["approve", "production"]);
    nothing.expect_code(2);
    assert!(nothing.stderr().contains("nothing waits for approval"));
}

#[test]
fn an_approval_deploys_the_artifact_it_was_asked_for_and_a_newer_release_supersedes_it() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(&dest, "", "good v1\n");
    repo.weir(&["run", "--event", "merge"]).expect_code(0);
    // Changing the working tree afterwards changes nothing about the waiting release.
    repo.write("dist/app.txt", "tampered\n");
    repo.weir(&["approve", "production"]).expect_code(0);
    assert_eq!(deployed(&dest, "production").as_deref(), Some("good v1\n"));

    repo.write("src/app.txt", "good v2\n");
    repo.commit_all("v2");
    repo.weir(&["run", "--event", "merge"]).expect_code(0);
    repo.write("src/app.txt", "good v3\n");
    repo.commit_all("v3");
    repo.weir(&["run", "--event", "merge"]).expect_code(0);
    let events = events(&repo, "production");
    assert_eq!(
        &events[4..],
        ["awaiting-approval", "superseded", "awaiting-approval"],
        "{events:?}"
    );
    repo.weir(&["approve", "production"]).expect_code(0);
    assert_eq!(deployed(&dest, "production").as_deref(), Some("good v3\n"));
    verify(&repo, "production");
}

#[test]
fn a_rejected_release_is_not_deployed() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(&dest, "", "good v1\n");
    repo.weir(&["run", "--event", "merge"]).expect_code(0);
    let rejected = repo.weir(&["reject", "production"]);
    rejected.expect_code(0);
    assert!(
        rejected.stderr().contains("rejected"),
        "{}",
        rejected.stderr()
    );
    assert!(!repo.weir(&["status"]).stdout().contains("waiting"));
    repo.weir(&["approve", "production"]).expect_code(2);
    assert_eq!(deployed(&dest, "production"), None);
    assert_eq!(
        events(&repo, "production"),
        ["awaiting-approval", "rejected"]
    );
}

#[test]
fn a_failing_health_check_redeploys_the_previous_artifact() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(&dest, "", "good v1\n");
    repo.weir(&["run", "--event", "merge"]).expect_code(0);
    repo.weir(&["reject", "production"]).expect_code(0);

    repo.write("src/app.txt", "broken v2\n");
    repo.commit_all("v2");
    let run = repo.weir(&["run", "--event", "merge"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains("staging: failed") && run.stderr().contains("rolled back"),
        "{}",
        run.stderr()
    );
    assert_eq!(deployed(&dest, "staging").as_deref(), Some("good v1\n"));
    // Nothing downstream asks for approval of a release that failed in staging.
    assert!(
        !repo
            .weir(&["status"])
            .stdout()
            .contains("waiting for approval")
    );
    assert_eq!(
        events(&repo, "staging"),
        ["started", "succeeded", "started", "failed"]
    );
    let history = repo.weir(&["history", "staging"]).stdout();
    assert!(
        history.contains("health check; rolled back to #2"),
        "{history}"
    );
    verify(&repo, "staging");
}

#[test]
fn a_rollback_command_runs_when_the_deploy_fails() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(
        &dest,
        r#"rollback = "echo restored > $DEST/staging""#,
        "broken v1\n",
    );
    let run = repo.weir(&["run", "staging"]);
    run.expect_code(1);
    assert_eq!(deployed(&dest, "staging").as_deref(), Some("restored\n"));
    let history = repo.weir(&["history", "staging"]).stdout();
    assert!(history.contains("rolled back with `rollback`"), "{history}");
}

#[test]
fn manual_rollback_redeploys_an_earlier_release() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(&dest, "", "good v1\n");
    repo.weir(&["run", "staging"]).expect_code(0);
    repo.write("src/app.txt", "good v2\n");
    repo.commit_all("v2");
    repo.weir(&["run", "staging"]).expect_code(0);
    assert_eq!(deployed(&dest, "staging").as_deref(), Some("good v2\n"));

    let back = repo.weir(&["rollback", "staging"]);
    back.expect_code(0);
    assert_eq!(deployed(&dest, "staging").as_deref(), Some("good v1\n"));
    assert_eq!(
        events(&repo, "staging"),
        [
            "started",
            "succeeded",
            "started",
            "succeeded",
            "started",
            "rolled-back"
        ]
    );
    // Forward again, by entry number.
    repo.weir(&["rollback", "staging", "--to", "4"])
        .expect_code(0);
    assert_eq!(deployed(&dest, "staging").as_deref(), Some("good v2\n"));
    let unknown = repo.weir(&["rollback", "staging", "--to", "99"]);
    unknown.expect_code(2);
    assert!(unknown.stderr().contains("no ledger entry `99`"));
    verify(&repo, "staging");
}

#[test]
fn concurrent_merge_runs_deploy_one_at_a_time_in_commit_order() {
    let dest = TempDir::new().expect("temp dir");
    // The deploy fails if another one is in flight: mkdir is atomic.
    let repo = TestRepo::with_pipeline(&format!(
        r#"
[env]
DEST = "{dest}"

[jobs.staging]
on = ["merge"]
environment = "staging"
run = "mkdir $DEST/inflight && cp src/app.txt $DEST/staging && sleep 0.5 && rmdir $DEST/inflight"
"#,
        dest = dest.path().display()
    ));
    repo.write("src/app.txt", "v1\n");
    repo.commit_all("v1");
    let wt = TempDir::new().expect("temp dir");
    let wt_path = wt.path().join("old");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        &wt_path.display().to_string(),
    ]);
    repo.write("src/app.txt", "v2\n");
    repo.commit_all("v2");

    let mut old = repo.weir_cmd(&["run", "--event", "merge"]);
    old.current_dir(&wt_path);
    let mut runs: Vec<_> = [old, repo.weir_cmd(&["run", "--event", "merge"])]
        .into_iter()
        .map(|mut cmd| {
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start weir")
        })
        .collect();
    let outputs: Vec<_> = runs
        .drain(..)
        .map(|child| child.wait_with_output().expect("wait for weir"))
        .collect();
    for output in &outputs {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Whichever order the two took the lock in, the newer commit is what stays deployed.
    assert_eq!(deployed(&dest, "staging").as_deref(), Some("v2\n"));
    let events = events(&repo, "staging");
    assert!(
        events == ["started", "succeeded", "started", "succeeded"]
            || events == ["started", "succeeded", "superseded"],
        "{events:?}"
    );
    verify(&repo, "staging");
    repo.git(&[
        "worktree",
        "remove",
        "--force",
        &wt_path.display().to_string(),
    ]);
}

#[test]
fn kill_9_during_a_deploy_leaves_a_sound_ledger_and_a_lock_that_is_reported() {
    let dest = TempDir::new().expect("temp dir");
    let repo = TestRepo::with_pipeline(&format!(
        r#"
[env]
DEST = "{dest}"

[jobs.staging]
environment = "staging"
run = "echo $$ > $DEST/pid && exec sleep 30"
"#,
        dest = dest.path().display()
    ));
    repo.commit_all("first");
    let mut weir = repo
        .weir_cmd(&["run", "staging"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir");
    wait_for_file(&dest.path().join("pid"));
    std::thread::sleep(Duration::from_millis(100));
    weir.kill().expect("kill -9 weir");
    weir.wait().expect("reap weir");
    let job: i32 = std::fs::read_to_string(dest.path().join("pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(job), nix::sys::signal::SIGKILL);

    verify(&repo, "staging");
    let history = repo.weir(&["history", "staging"]).stdout();
    assert!(
        history.contains("started") && history.contains("interrupted: no outcome recorded"),
        "{history}"
    );
    let status = repo.weir(&["status"]).stdout();
    assert!(status.contains("no longer running"), "{status}");

    let blocked = repo.weir(&["run", "staging"]);
    blocked.expect_code(1);
    assert!(
        blocked.stderr().contains("weir unlock staging"),
        "a stale lock is reported, not taken over: {}",
        blocked.stderr()
    );
    let unlocked = repo.weir(&["unlock", "staging"]);
    unlocked.expect_code(0);
    assert!(unlocked.stderr().contains("recorded #1 as interrupted"));
    assert_eq!(events(&repo, "staging"), ["started", "interrupted"]);
    verify(&repo, "staging");
    // The environment deploys again.
    repo.write(
        ".pipeline.toml",
        format!(
            "[jobs.staging]\nenvironment = \"staging\"\nrun = \"touch {}/again\"\n",
            dest.path().display()
        ),
    );
    repo.weir(&["run", "staging"]).expect_code(0);
    assert!(dest.path().join("again").exists());
}

#[test]
fn the_ledger_travels_through_a_remote() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(&dest, "", "good v1\n");
    let remote = repo.bare_origin();
    repo.git(&["push", "-q", "origin", "main"]);
    repo.weir(&["run", "staging"]).expect_code(0);
    repo.weir(&["ledger", "push"]).expect_code(0);

    let clone = TestRepo::clone_of(remote.path());
    clone.weir(&["ledger", "pull"]).expect_code(0);
    assert_eq!(events(&clone, "staging"), ["started", "succeeded"]);
    verify(&clone, "staging");
    // `weir cache push` carries the ledger too.
    repo.write("src/app.txt", "good v2\n");
    repo.commit_all("v2");
    repo.weir(&["run", "staging"]).expect_code(0);
    repo.weir(&["cache", "push"]).expect_code(0);
    clone.weir(&["cache", "pull"]).expect_code(0);
    assert_eq!(events(&clone, "staging").len(), 4);
}

#[test]
fn deploy_keys_on_a_job_without_environment_are_config_errors() {
    let repo = TestRepo::with_pipeline("[jobs.build]\nrun = \"make\"\napproval = true\n");
    let run = repo.weir(&["validate"]);
    run.expect_code(2);
    let err = run.stderr();
    assert!(
        err.contains(".pipeline.toml:3:1")
            && err.contains("`approval` in job `build` needs `environment`"),
        "{err}"
    );
    assert!(err.contains("help:"), "{err}");
}

#[test]
fn a_push_to_a_server_deploys_and_records_the_ledger_there() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(&dest, "", "good v1\n");
    let server = TempDir::new().expect("temp dir");
    let bare = server.path().join("repo.git");
    let bare_path = bare.display().to_string();
    repo.git(&["init", "-q", "--bare", "-b", "main", &bare_path]);
    let mut install = repo.weir_cmd(&["install"]);
    install.current_dir(&bare);
    let installed = install.output().expect("run weir install");
    assert!(installed.status.success(), "{installed:?}");
    repo.git(&["remote", "add", "origin", &bare_path]);

    let mut cmd = std::process::Command::new("git");
    repo.hermetic(&mut cmd);
    let pushed = cmd
        .args(["push", "origin", "main"])
        .output()
        .expect("git push");
    let err = String::from_utf8_lossy(&pushed.stderr);
    assert!(pushed.status.success(), "{err}");
    assert!(
        err.contains("remote: production: waiting"),
        "progress reaches the pusher: {err}"
    );
    assert_eq!(deployed(&dest, "staging").as_deref(), Some("good v1\n"));

    let mut history = repo.weir_cmd(&["history", "--verify", "staging"]);
    history.current_dir(&bare);
    assert!(history.output().expect("weir history").status.success());
    // The pusher fetches the server's ledger like any other ref.
    repo.weir(&["ledger", "pull"]).expect_code(0);
    assert_eq!(events(&repo, "staging"), ["started", "succeeded"]);
    assert_eq!(events(&repo, "production"), ["awaiting-approval"]);
    // The waiting release holds the artifact at its path in the repository, and the source.
    let tree = repo.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        "refs/weir/deploy/production",
    ]);
    assert!(
        tree.lines().any(|l| l == "artifact/dist/app.txt")
            && tree.lines().any(|l| l == "source/src/app.txt"),
        "{tree}"
    );
}

#[test]
fn a_deploy_reads_its_secret_only_when_it_deploys_and_never_records_it() {
    let dest = TempDir::new().expect("temp dir");
    let secret = "s3cr3t-deploy-t0ken-value";
    let repo = TestRepo::with_pipeline(&format!(
        r#"
[secrets]
TOKEN = {{ env = "DEPLOY_TOKEN" }}

[jobs.production]
on = ["merge"]
environment = "production"
approval = true
secrets = ["TOKEN"]
run = "echo using $TOKEN && printf %s \"$TOKEN\" > {dest}/production"
"#,
        dest = dest.path().display()
    ));
    repo.commit_all("first");
    // The merge run has no token: a release waiting for approval does not need it.
    repo.weir(&["run", "--event", "merge"]).expect_code(0);
    let mut approve = repo.weir_cmd(&["approve", "production"]);
    approve.env("DEPLOY_TOKEN", secret);
    let approved = approve.output().expect("run weir approve");
    let err = String::from_utf8_lossy(&approved.stderr);
    assert!(approved.status.success(), "{err}");
    assert!(err.contains("using ***"), "masked in the output: {err}");
    assert_eq!(deployed(&dest, "production").as_deref(), Some(secret));
    let objects = repo.git_with_input(&["cat-file", "--batch-all-objects", "--batch"], b"");
    assert!(!objects.contains(secret), "a git object holds the secret");
    assert_eq!(
        events(&repo, "production"),
        ["awaiting-approval", "approved", "started", "succeeded"]
    );
}

#[test]
fn an_artifact_holding_a_secret_is_not_deployed_or_recorded() {
    let secret = "artifact-leak-0123456789";
    let repo = TestRepo::with_pipeline(
        r#"
[secrets]
TOKEN = { env = "DEPLOY_TOKEN" }

[jobs.build]
outputs = ["dist/**"]
secrets = ["TOKEN"]
run = "mkdir -p dist && printf %s \"$TOKEN\" > dist/token"

[jobs.staging]
needs = ["build"]
environment = "staging"
run = "true"
"#,
    );
    repo.write(".gitignore", "dist/\n");
    repo.commit_all("first");
    let mut run = repo.weir_cmd(&["run", "staging"]);
    run.env("DEPLOY_TOKEN", secret);
    let out = run.output().expect("run weir");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dist/token of `build` holds a secret value"),
        "{err}"
    );
    let objects = repo.git_with_input(&["cat-file", "--batch-all-objects", "--batch"], b"");
    assert!(!objects.contains(secret), "a git object holds the secret");
    assert!(repo.git(&["for-each-ref", "refs/weir/deploy/"]).is_empty());
    assert!(!repo.weir(&["status"]).stdout().contains("locked"));
}

#[test]
fn verify_finds_a_ledger_that_was_tampered_with() {
    let dest = TempDir::new().expect("temp dir");
    let repo = repo_with(&dest, "", "good v1\n");
    repo.weir(&["run", "staging"]).expect_code(0);
    repo.write("src/app.txt", "good v2\n");
    repo.commit_all("v2");
    repo.weir(&["run", "staging"]).expect_code(0);
    verify(&repo, "staging");

    // Rewrite history: drop entry #2 by making #3's parent #1, as a force-push might.
    let entries = repo.git(&["rev-list", "refs/weir/deploy/staging"]);
    let chain: Vec<&str> = entries.lines().collect();
    assert_eq!(chain.len(), 4);
    let tree = repo.git(&["rev-parse", &format!("{}^{{tree}}", chain[1])]);
    let forged = repo.git(&["commit-tree", tree.trim(), "-p", chain[3], "-m", "forged"]);
    let tip_tree = repo.git(&["rev-parse", &format!("{}^{{tree}}", chain[0])]);
    let tip = repo.git(&[
        "commit-tree",
        tip_tree.trim(),
        "-p",
        forged.trim(),
        "-m",
        "tip",
    ]);
    repo.git(&["update-ref", "refs/weir/deploy/staging", tip.trim()]);

    let run = repo.weir(&["history", "--verify", "staging"]);
    run.expect_code(1);
    assert!(
        run.stdout()
            .contains("numbered #3, but it is entry #2 of the chain"),
        "{}",
        run.stdout()
    );
}

#[test]
fn an_environment_name_that_could_leave_weirs_directories_is_refused() {
    let repo = TestRepo::with_pipeline("[jobs.a]\nrun = \"true\"\n");
    for args in [
        ["unlock", "../../index"],
        ["history", "a..b"],
        ["approve", "prod/eu"],
    ] {
        let run = repo.weir(&args);
        run.expect_code(2);
        assert!(
            run.stderr().contains("not an environment name"),
            "{}",
            run.stderr()
        );
    }
}
