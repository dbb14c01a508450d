//! Process control: timeouts and Ctrl-C end whole process trees, and nothing outlives weir.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{TestRepo, alive, gone_within, wait_for_file};

fn pid_in(repo: &TestRepo, file: &str) -> i32 {
    wait_for_file(&repo.file(file));
    // The file may exist before its content is flushed.
    for _ in 0..100 {
        if let Ok(pid) = repo.read(file).trim().parse() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no pid in {file}");
}

#[test]
fn a_timeout_kills_the_job_and_its_grandchildren() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.hang]
timeout = "1s"
run = "sh -c 'sleep 300 & echo $! > grandchild; wait'"
"#,
    );
    let run = repo.weir(&["run"]);
    run.expect_code(1);
    assert!(
        run.stderr()
            .contains("hang: timed-out (timed out after 1s)"),
        "{}",
        run.stderr()
    );
    let grandchild = pid_in(&repo, "grandchild");
    assert!(
        gone_within(grandchild, Duration::from_secs(5)),
        "grandchild {grandchild} survived"
    );
}

#[test]
fn a_timeout_kills_children_that_ignore_term() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.stubborn]
timeout = "1s"
run = "sh -c 'trap \"\" TERM; echo $$ > child; while true; do sleep 0.1; done'"
"#,
    );
    repo.weir(&["run"]).expect_code(1);
    let child = pid_in(&repo, "child");
    assert!(
        gone_within(child, Duration::from_secs(5)),
        "child {child} survived"
    );
}

#[test]
fn background_processes_do_not_outlive_their_job() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.leaky]
run = "sleep 300 > /dev/null 2>&1 & echo $! > background"
"#,
    );
    repo.weir(&["run"]).expect_code(0);
    let background = pid_in(&repo, "background");
    assert!(
        !alive(background),
        "background process {background} outlived weir"
    );
}

const LONG_JOB: &str = r#"
[jobs.long]
run = "sh -c 'trap \"\" TERM; sleep 300 & echo $! > grandchild; echo $$ > child; while true; do sleep 0.1; done'"

[jobs.later]
needs = ["long"]
run = "touch later-ran"
"#;

#[test]
fn ctrl_c_kills_the_tree_exits_130_and_records_a_cancelled_run() {
    let repo = TestRepo::with_pipeline(LONG_JOB);
    let weir = repo
        .weir_cmd(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child = pid_in(&repo, "child");
    let grandchild = pid_in(&repo, "grandchild");
    kill(Pid::from_raw(weir.id() as i32), Signal::SIGINT).unwrap();
    let out = weir.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!alive(child), "the job's child survived Ctrl-C");
    assert!(!alive(grandchild), "the job's grandchild survived Ctrl-C");
    assert!(!repo.file("later-ran").exists());

    let log = repo.weir(&["log"]);
    log.expect_code(0);
    assert!(log.stdout().contains("cancelled"), "{}", log.stdout());
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let repo = TestRepo::with_pipeline(LONG_JOB);
    let mut weir = repo
        .weir_cmd(&["run"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = pid_in(&repo, "child");
    let pid = Pid::from_raw(weir.id() as i32);
    kill(pid, Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    kill(pid, Signal::SIGINT).unwrap();
    let status = weir.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!alive(child), "the job's child survived two Ctrl-C");
}

#[test]
fn huge_output_is_capped_in_the_record() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.chatty]
run = "echo first-line; head -c 20000000 /dev/zero | tr '\\0' 'x'; echo; echo last-line"
"#,
    );
    repo.weir(&["run"]).expect_code(0);
    let log = repo.weir(&["show", "--job", "chatty"]);
    log.expect_code(0);
    let text = log.stdout();
    assert!(
        text.len() < 2_000_000,
        "the stored log is {} bytes",
        text.len()
    );
    assert!(text.contains("first-line"));
    assert!(text.contains("last-line"));
    assert!(text.contains("bytes cut]"));
}

#[test]
fn processes_that_leave_the_job_group_do_not_outlive_weir() {
    let repo = TestRepo::with_pipeline(
        r#"
[jobs.daemon]
run = "setsid sh -c 'echo $$ > daemon; exec sleep 300' > /dev/null 2>&1 < /dev/null & while [ ! -s daemon ]; do sleep 0.01; done"
"#,
    );
    repo.weir(&["run"]).expect_code(0);
    let daemon = pid_in(&repo, "daemon");
    assert!(
        gone_within(daemon, Duration::from_secs(5)),
        "daemon {daemon} outlived weir"
    );
}
