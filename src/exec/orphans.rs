//! Processes that left their job's process group (`setsid`, daemons) are still weir's to end:
//! as a child subreaper, weir inherits them when their parent exits, and ends them when the run
//! is over, so that no process outlives `weir`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::sync::lock;

/// Makes orphaned descendants of this process its children instead of init's.
pub fn adopt_orphans() {
    // Without it (an old kernel), escaped processes are simply not ended; jobs still run.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Children weir started for itself, which end on their own and may outlive the jobs (the
/// holders of snapshot watches).
static HELPERS: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// Marks child `pid` as weir's own helper: [`end_orphans`] leaves it alone.
pub fn helper(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        lock(&HELPERS).push(Pid::from_raw(pid));
    }
}

/// Ends every remaining child of this process but weir's own helpers: TERM, up to `grace`,
/// KILL; and reaps them. Called when every job is over, so any other child left is an orphan
/// weir adopted.
pub fn end_orphans(grace: Duration) {
    let start = Instant::now();
    let mut signal = Signal::SIGTERM;
    let spared = lock(&HELPERS).clone();
    loop {
        let mut children = children();
        children.retain(|(pid, _)| !spared.contains(pid));
        if children.is_empty() {
            return;
        }
        for &(pid, zombie) in &children {
            if zombie {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            } else {
                let _ = kill(pid, signal);
            }
        }
        if start.elapsed() >= grace {
            signal = Signal::SIGKILL;
        }
        if start.elapsed() >= grace * 2 {
            // Only processes weir cannot kill or reap remain; stop rather than hang.
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
        for &(pid, _) in &children {
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// This process's children, and whether each is a zombie. Each thread's `children` file names
/// them directly; scanning all of /proc is the fallback where the kernel lacks those files.
fn children() -> Vec<(Pid, bool)> {
    let Some(pids) = children_of_threads() else {
        return scan_proc();
    };
    pids.into_iter()
        .map(|pid| (pid, state_of(pid).as_deref() == Some("Z")))
        .collect()
}

fn children_of_threads() -> Option<Vec<Pid>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).ok()?;
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid::from_raw),
        );
    }
    Some(pids)
}

/// The state letter of a process (`R`, `S`, `Z`, …), if it exists.
fn state_of(pid: Pid) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().next().map(str::to_owned)
}

fn scan_proc() -> Vec<(Pid, bool)> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?;
            (ppid == me).then_some((Pid::from_raw(pid), state == "Z"))
        })
        .collect()
}
