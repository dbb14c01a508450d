//! `weir watch` on a real repository, with real file changes: what reruns, what does not,
//! bursts, restarts mid-run, Ctrl-C, pipeline reloads.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestRepo, alive, gone_within};

/// `build` concatenates `src/*.txt` into `out/all.txt`, and logs each run in `build.log`;
/// `sentinel` logs each run of its own, so that a test knows the watcher has caught up.
const PIPELINE: &str = r#"
[jobs.build]
on = ["watch"]
inputs = ["src/**"]
outputs = ["out/**"]
run = "mkdir -p out && cat src/*.txt > out/all.txt && echo run >> build.log"

[jobs.sentinel]
on = ["watch"]
inputs = ["sentinel.txt"]
cache = false
run = "cat sentinel.txt >> sentinel.log"
"#;

fn repo(pipeline: &str) -> TestRepo {
    let repo = TestRepo::with_pipeline(pipeline);
    repo.write(".gitignore", "*.log\nout/\npids\n");
    repo.write("src/a.txt", "a\n");
    repo.write("sentinel.txt", "0\n");
    repo.write("README.md", "readme\n");
    repo.commit_all("init");
    repo
}

/// `weir watch ARGS`, its stderr going to `watch.log` in the repository (ignored).
struct Watch {
    child: Child,
}

impl Watch {
    fn start(repo: &TestRepo, args: &[&str]) -> Watch {
        let log = std::fs::File::create(repo.file("watch.log")).expect("create watch.log");
        let mut cmd = repo.weir_cmd(&[&["watch"], args].concat());
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weir watch");
        Watch { child }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Ctrl-C, then the exit code.
    fn interrupt(mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        nix::sys::signal::kill(pid, nix::sys::signal::SIGINT).expect("send SIGINT");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for weir") {
                return status.code();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "weir watch did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(repo: &TestRepo, rel: &str) -> usize {
    std::fs::read_to_string(repo.file(rel))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[track_caller]
fn wait_until(what: &str, repo: &TestRepo, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting until {what}; weir watch said:\n{}",
            std::fs::read_to_string(repo.file("watch.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Changes `sentinel.txt` and waits for its job: every change made before has been handled.
fn barrier(repo: &TestRepo, round: usize) {
    repo.write("sentinel.txt", format!("{round}\n"));
    wait_until("the sentinel ran", repo, || {
        lines(repo, "sentinel.log") > round
    });
}

#[test]
fn an_input_change_reruns_its_job_and_nothing_else_does() {
    let repo = repo(PIPELINE);
    let _watch = Watch::start(&repo, &[]);
    wait_until("the first run", &repo, || {
        lines(&repo, "build.log") == 1 && lines(&repo, "sentinel.log") == 1
    });

    repo.write("src/b.txt", "b\n");
    wait_until("build reran", &repo, || lines(&repo, "build.log") == 2);
    assert_eq!(repo.read("out/all.txt"), "a\nb\n");

    // Not inputs of build, ignored, build's own output, git's own files, the same bytes again.
    repo.write("README.md", "changed\n");
    repo.write("notes.log", "ignored\n");
    repo.write("out/all.txt", "scribbled\n");
    repo.write(".git/weir-test", "inside .git\n");
    repo.write("src/a.txt", "a\n");
    barrier(&repo, 1);
    assert_eq!(lines(&repo, "build.log"), 2, "build ran again");

    // A new directory under an input is watched from now on.
    repo.write("src/deep/c.txt", "c\n");
    wait_until("build saw the new directory", &repo, || {
        lines(&repo, "build.log") == 3
    });
    repo.write("src/deep/c.txt", "c2\n");
    wait_until("build saw a change in it", &repo, || {
        lines(&repo, "build.log") == 4
    });
}

#[test]
fn a_burst_of_300_files_makes_at_most_two_runs_that_end_complete() {
    let repo = repo(PIPELINE);
    let _watch = Watch::start(&repo, &[]);
    wait_until("the first run", &repo, || lines(&repo, "build.log") == 1);
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("for i in $(seq 1 300); do echo line$i > src/f$i.txt; done")
        .current_dir(repo.path())
        .status()
        .expect("write 300 files");
    assert!(status.success());
    wait_until("the final state was built", &repo, || {
        std::fs::read_to_string(repo.file("out/all.txt")).is_ok_and(|s| s.lines().count() == 301)
    });
    barrier(&repo, 1);
    let runs = lines(&repo, "build.log") - 1;
    assert!((1..=2).contains(&runs), "{runs} runs for one burst");
}

#[test]
fn a_change_during_a_run_cancels_the_job_and_starts_it_again() {
    let repo = repo(
        r#"
[jobs.slow]
on = ["watch"]
inputs = ["src/**"]
run = "echo $$ >> pids && echo start >> slow.log && sleep 3 && cat src/a.txt > slow.out.log && echo done >> slow.log"
"#,
    );
    let _watch = Watch::start(&repo, &[]);
    wait_until("the slow job started", &repo, || {
        lines(&repo, "slow.log") == 1
    });
    repo.write("src/a.txt", "second\n");
    wait_until("the slow job finished", &repo, || {
        repo.read("slow.log").contains("done")
    });
    assert_eq!(repo.read("slow.log"), "start\nstart\ndone\n");
    assert_eq!(repo.read("slow.out.log"), "second\n");
    let first: i32 = repo
        .read("pids")
        .lines()
        .next()
        .expect("a pid")
        .parse()
        .expect("pid");
    assert!(!alive(first), "the cancelled run's process is gone");
    let said = repo.read("watch.log");
    assert!(said.contains("starts again"), "{said}");
}

#[test]
fn ctrl_c_stops_the_watch_and_its_jobs() {
    let repo = repo(
        r#"
[jobs.slow]
on = ["watch"]
cache = false
run = "echo $$ > pids && exec sleep 60"
"#,
    );
    let watch = Watch::start(&repo, &[]);
    wait_until("the job started", &repo, || {
        repo.file("pids").exists() && !repo.read("pids").is_empty()
    });
    let job: i32 = repo.read("pids").trim().parse().expect("pid");
    let weir = watch.pid();
    assert_eq!(watch.interrupt(), Some(0));
    assert!(!alive(weir));
    assert!(
        gone_within(job, Duration::from_secs(5)),
        "the job outlived weir watch"
    );
}

#[test]
fn an_edited_pipeline_is_reloaded_once_trusted_and_errors_do_not_stop_the_watch() {
    let repo = repo(PIPELINE);
    let watch = Watch::start(&repo, &[]);
    wait_until("the first run", &repo, || lines(&repo, "build.log") == 1);

    repo.write(".pipeline.toml", PIPELINE.replace("echo run", "echo v2"));
    wait_until("weir asked for trust", &repo, || {
        repo.read("watch.log").contains("weir trust")
    });
    assert_eq!(lines(&repo, "build.log"), 1, "an untrusted pipeline ran");
    repo.weir(&["trust"]).expect_code(0);
    wait_until("the new step ran", &repo, || {
        repo.read("build.log").contains("v2")
    });

    repo.write(".pipeline.toml", "[jobs.build]\nrun = \n");
    wait_until("the error was reported", &repo, || {
        repo.read("watch.log")
            .contains("keeping the last valid pipeline")
    });
    assert!(alive(watch.pid()), "a bad pipeline stopped the watch");
    repo.write("src/a.txt", "after the error\n");
    wait_until("the last valid pipeline still runs", &repo, || {
        lines(&repo, "build.log") == 3
    });
}

#[test]
fn polling_sees_changes_too() {
    let repo = repo(PIPELINE);
    let _watch = Watch::start(&repo, &["--poll", "build"]);
    wait_until("the first run", &repo, || lines(&repo, "build.log") == 1);
    repo.write("src/a.txt", "polled\n");
    wait_until("build reran", &repo, || lines(&repo, "build.log") == 2);
    assert_eq!(repo.read("out/all.txt"), "polled\n");
}

#[test]
fn json_events_are_those_of_weir_run() {
    let repo = repo(PIPELINE);
    let child = repo
        .weir_cmd(&["watch", "--json", "build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir watch");
    wait_until("the first run", &repo, || lines(&repo, "build.log") == 1);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::SIGINT).expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
            v["event"].as_str().expect("event").to_owned()
        })
        .collect();
    assert_eq!(
        events,
        ["run_started", "job_started", "job_finished", "run_finished"],
        "{stdout}"
    );
}

#[test]
fn keys_updated_from_changes_match_keys_computed_from_scratch() {
    let repo = repo(
        r#"
[jobs.build]
on = ["watch"]
inputs = ["src/**", "local.cfg"]
outputs = ["out/**"]
run = "mkdir -p out && find src -type f | sort > out/list && cat local.cfg >> out/list; echo run >> build.log"
"#,
    );
    // Ignored, but named outright: an input.
    repo.write(".gitignore", "*.log\nout/\npids\nlocal.cfg\n");
    repo.write("local.cfg", "one\n");
    repo.commit_all("ignore local.cfg");
    let watch = Watch::start(&repo, &[]);
    wait_until("the first run", &repo, || lines(&repo, "build.log") == 1);

    repo.write("src/deep/er/x.txt", "x\n");
    wait_until("a new directory", &repo, || lines(&repo, "build.log") == 2);
    repo.write("local.cfg", "two\n");
    wait_until("the ignored but named input", &repo, || {
        lines(&repo, "build.log") == 3
    });
    std::fs::remove_dir_all(repo.file("src/deep")).expect("remove src/deep");
    wait_until("a removed directory", &repo, || {
        lines(&repo, "build.log") == 4
    });
    assert_eq!(repo.read("out/list"), "src/a.txt\ntwo\n");
    assert_eq!(watch.interrupt(), Some(0));

    // A run from scratch computes the same key: the result stored by the watch is a hit.
    let run = repo.weir(&["run", "build"]);
    run.expect_code(0);
    assert!(run.stderr().contains("build: cached"), "{}", run.stderr());
    assert_eq!(lines(&repo, "build.log"), 4);
}
