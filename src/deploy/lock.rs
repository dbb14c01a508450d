//! One deploy per environment at a time on this machine: a lock file under `.git/weir/deploy/`
//! created exclusively, recording who holds it. A lock whose holder died is reported, never
//! taken over silently: `weir unlock` clears it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::git::Repo;

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The process's start time in clock ticks since boot, so that a reused pid is not mistaken
    /// for the holder.
    pub start: Option<u64>,
    pub run: String,
    pub job: String,
    /// RFC 3339, UTC.
    pub since: String,
}

impl Holder {
    /// Whether the process that took the lock is still running.
    pub fn alive(&self) -> bool {
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) => true,
            Err(nix::errno::Errno::EPERM) => true,
            Err(_) => false,
        };
        exists && (self.start.is_none() || process_start(self.pid) == self.start)
    }

    pub fn describe(&self) -> String {
        format!(
            "run {} (job `{}`, process {}, since {})",
            self.run, self.job, self.pid, self.since
        )
    }
}

/// What trying to take a lock found.
#[derive(Debug)]
pub enum Attempt {
    Taken(EnvLock),
    /// Someone else holds it; `alive` says whether their process still runs.
    Held {
        holder: Holder,
        alive: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use the deploy lock {}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
}

/// A held lock; released by [`EnvLock::release`].
#[derive(Debug)]
pub struct EnvLock {
    path: PathBuf,
    holder: Holder,
}

pub fn path(repo: &Repo, environment: &str) -> PathBuf {
    repo.weir_dir()
        .join("deploy")
        .join(format!("{environment}.lock"))
}

/// Takes `environment`'s lock for `run`'s job `job`, unless someone holds it.
pub fn try_lock(repo: &Repo, environment: &str, run: &str, job: &str) -> Result<Attempt, Error> {
    let path = path(repo, environment);
    let io = |e| Error::Io(path.clone(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let holder = Holder {
        pid: std::process::id(),
        start: process_start(std::process::id()),
        run: run.to_owned(),
        job: job.to_owned(),
        since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    let mut bytes = serde_json::to_vec(&holder).unwrap_or_default();
    bytes.push(b'\n');
    // Written complete under another name, then linked into place: the lock either does not
    // exist or names its holder in full.
    let tmp = path.with_extension(format!("lock.{}", std::process::id()));
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(io)?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Attempt::Taken(EnvLock { path, holder })),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read(&path) {
            Some(holder) => {
                let alive = holder.alive();
                Ok(Attempt::Held { holder, alive })
            }
            // Released between the two calls: try again.
            None if !path.exists() => try_lock(repo, environment, run, job),
            None => Ok(Attempt::Held {
                holder: Holder {
                    pid: 0,
                    start: None,
                    run: "unknown".to_owned(),
                    job: "unknown".to_owned(),
                    since: "unknown".to_owned(),
                },
                alive: false,
            }),
        },
        Err(e) => Err(io(e)),
    }
}

/// Who holds `environment`'s lock, if anyone.
pub fn holder(repo: &Repo, environment: &str) -> Option<Holder> {
    read(&path(repo, environment))
}

/// Removes `environment`'s lock, which must be held by a process that is gone.
pub fn clear(repo: &Repo, environment: &str) -> Result<(), Error> {
    let path = path(repo, environment);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(path, e)),
    }
}

impl EnvLock {
    /// Releases the lock if it is still this process's.
    pub fn release(self) {
        if read(&self.path).as_ref() == Some(&self.holder) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read(path: &Path) -> Option<Holder> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_not() {
        let me = Holder {
            pid: std::process::id(),
            start: process_start(std::process::id()),
            run: "r".into(),
            job: "j".into(),
            since: "now".into(),
        };
        assert!(me.start.is_some());
        assert!(me.alive());
        let reused = Holder {
            start: me.start.map(|s| s + 1),
            ..me.clone()
        };
        assert!(
            !reused.alive(),
            "a pid with another start time is not the holder"
        );
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait for true");
        let gone = Holder { pid, ..me };
        assert!(!gone.alive());
    }
}
