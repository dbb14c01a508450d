use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};

/// Time between TERM and KILL when ending a process tree.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long to keep reading after the process group is gone: a process that left the group
/// (a daemon) may still hold the output pipe, and weir does not wait for it.
const DRAIN: Duration = Duration::from_millis(500);

/// A request to stop running jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep going.
    No,
    /// End every job: TERM, a grace period, KILL.
    Graceful,
    /// End every job now: KILL.
    Now,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

/// What a step runs and where.
pub struct Step<'a> {
    /// The `sh` to run the script with, as an absolute path.
    pub shell: &'a Path,
    pub script: &'a str,
    pub cwd: &'a Path,
    pub env: &'a [(String, OsString)],
    pub deadline: Option<Instant>,
}

/// Runs one step with `sh -c` in a process group of its own, passing every chunk of its
/// combined stdout and stderr to `sink`. Whatever happens, the whole group is gone on return.
pub async fn run_step(
    step: &Step<'_>,
    stop: &mut watch::Receiver<Stop>,
    sink: &mut impl FnMut(&[u8]),
) -> io::Result<StepEnd> {
    let (reader, writer) = io::pipe()?;
    let stderr = writer.try_clone()?;
    let mut child = tokio::process::Command::new(step.shell)
        .arg("-c")
        .arg(step.script)
        .current_dir(step.cwd)
        .env_clear()
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| io::Error::other("the job's process has no id"))?;
    let mut reader = pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let mut buf = vec![0u8; 64 * 1024];

    let mut exit: Option<ExitStatus> = None;
    let mut eof = false;
    let mut ended: Option<StepEnd> = None;
    let mut kill_at: Option<Instant> = None;
    let mut killed_at: Option<Instant> = None;
    let mut stop_open = true;
    let mut gone_at: Option<Instant> = None;

    loop {
        if exit.is_some() {
            if group_alive(pgid) {
                if kill_at.is_none() && killed_at.is_none() {
                    // The step is done but left processes behind: they do not outlive it.
                    signal_group(pgid, Signal::SIGTERM);
                    kill_at = Some(Instant::now() + GRACE);
                } else if killed_at.is_some_and(|k| k.elapsed() >= GRACE) {
                    // Only unreapable zombies can survive KILL this long.
                    break;
                }
            } else {
                if eof {
                    break;
                }
                if gone_at.get_or_insert_with(Instant::now).elapsed() >= DRAIN {
                    break;
                }
            }
        }
        let poll = exit.is_some();
        tokio::select! {
            read = reader.read(&mut buf), if !eof => match read {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => sink(&buf[..n]),
            },
            status = child.wait(), if exit.is_none() => exit = Some(status?),
            () = sleep_until_opt(step.deadline), if exit.is_none() && ended.is_none() => {
                ended = Some(StepEnd::TimedOut);
                signal_group(pgid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + GRACE);
            }
            changed = stop.changed(), if stop_open => {
                if changed.is_err() {
                    stop_open = false;
                    continue;
                }
                let request = *stop.borrow_and_update();
                match request {
                    Stop::No => {}
                    Stop::Graceful => {
                        if ended.is_none() && exit.is_none() {
                            ended = Some(StepEnd::Cancelled);
                        }
                        if kill_at.is_none() && killed_at.is_none() {
                            signal_group(pgid, Signal::SIGTERM);
                            kill_at = Some(Instant::now() + GRACE);
                        }
                    }
                    Stop::Now => {
                        if ended.is_none() && exit.is_none() {
                            ended = Some(StepEnd::Cancelled);
                        }
                        signal_group(pgid, Signal::SIGKILL);
                        kill_at = None;
                        killed_at = Some(Instant::now());
                    }
                }
            }
            () = sleep_until_opt(kill_at), if killed_at.is_none() => {
                signal_group(pgid, Signal::SIGKILL);
                kill_at = None;
                killed_at = Some(Instant::now());
            }
            () = sleep(Duration::from_millis(20)), if poll => {}
        }
    }
    match (ended, exit) {
        (Some(end), _) => Ok(end),
        (None, Some(status)) => Ok(StepEnd::Exited(status)),
        (None, None) => Err(io::Error::other("the job's process vanished")),
    }
}

/// Finds `sh` in `path` (a job's PATH). An absolute program lets the standard library spawn with
/// `posix_spawn` instead of fork and exec, which matters when a run starts hundreds of steps.
pub fn find_shell(path: Option<&OsStr>) -> PathBuf {
    path.into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("sh"))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn signal_group(pgid: Pid, signal: Signal) {
    // ESRCH means the group is already gone, which is what we want.
    let _ = killpg(pgid, signal);
}

/// Whether any process of the group is still running. Zombies do not count: they are dead, and
/// where init is slow to reap them (as in some containers) waiting for them would only stall.
fn group_alive(pgid: Pid) -> bool {
    if killpg(pgid, None).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1);
        state != Some("Z") && pgrp == Some(pgid.as_raw().to_string().as_str())
    })
}
