//! Locking a mutex shared by jobs or threads, how many threads the machine runs at once, starting
//! a thread on another core than its parent's, and starting a child that inherits descriptors.

use std::os::fd::OwnedFd;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
use nix::unistd::Pid;

/// Locks `mutex`. A poisoned lock only means another thread panicked while holding it; every
/// value weir keeps behind one is sound between operations, so it is used as it is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many threads can run at once here (at least 1). Worked out once: the standard library
/// reads the cgroup's CPU quota files on every call.
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Starts `command` with copies of `fds` open in the child, at the same numbers. They are
/// inheritable only while it starts: call it when no other process is being started, or that
/// one inherits them too.
pub(crate) fn spawn_inheriting(command: &mut Command, fds: &[OwnedFd]) -> std::io::Result<Child> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let set = |flags: FdFlag| {
        fds.iter()
            .try_for_each(|fd| fcntl(fd, FcntlArg::F_SETFD(flags)).map(drop))
    };
    let child = set(FdFlag::empty())
        .map_err(std::io::Error::from)
        .and_then(|()| command.spawn());
    // `F_SETFD` fails only for a descriptor that is not open, and an `OwnedFd` is.
    let _ = set(FdFlag::FD_CLOEXEC);
    child
}

/// Starts `work` on a thread made by `builder`, on another core than the caller's (see
/// [`Apart`]).
pub(crate) fn spawn_apart<T: Send + 'static>(
    builder: std::thread::Builder,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    Apart::start(|allowed| {
        builder.spawn(move || {
            Apart::settle(allowed);
            work()
        })
    })
}

/// Starts `work` on a thread of `scope`, on another core than the caller's (see [`Apart`]).
pub(crate) fn spawn_scoped_apart<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    work: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    Apart::start(|allowed| {
        scope.spawn(move || {
            Apart::settle(allowed);
            work()
        })
    })
}

/// A thread being started on the caller's core, which the caller then leaves to it.
///
/// Here (2 cores, Linux 6.18) every new thread started on its parent's core, and both shared
/// it for 2-4 ms, until load balancing moved one of them, while the other core was idle: a
/// hook's watch and its sync ran one after the other, 2 ms of a 12 ms hook. So the caller keeps
/// to its core while the thread starts (which inherits that), then moves.
struct Apart {
    /// The cores the caller may run on.
    allowed: CpuSet,
    /// The one it was on.
    here: usize,
}

impl Apart {
    /// Runs `start`, which starts a thread that calls [`Apart::settle`] first with what it is
    /// given, on the caller's core, and then moves the caller.
    fn start<H>(start: impl FnOnce(Option<CpuSet>) -> H) -> H {
        let apart = Apart::begin();
        let started = start(apart.as_ref().map(|apart| apart.allowed));
        if let Some(apart) = apart {
            apart.leave();
        }
        started
    }

    /// Keeps the calling thread on its core; `None` when there is no other core to go to (or
    /// the cores cannot be told).
    fn begin() -> Option<Apart> {
        let here = sched_getcpu().ok()?;
        let allowed = sched_getaffinity(Pid::from_raw(0)).ok()?;
        let mut others = (0..CpuSet::count()).filter(|&cpu| allowed.is_set(cpu).unwrap_or(false));
        if !others.any(|cpu| cpu != here) {
            return None;
        }
        let mut only_here = CpuSet::new();
        only_here.set(here).ok()?;
        sched_setaffinity(Pid::from_raw(0), &only_here).ok()?;
        Some(Apart { allowed, here })
    }

    /// Called first by the thread started: it may run wherever its parent could. Like
    /// [`Apart::leave`], it gives back cores the thread had a moment ago, which fails only if
    /// its cgroup's were changed meanwhile.
    fn settle(allowed: Option<CpuSet>) {
        if let Some(allowed) = allowed {
            let _ = sched_setaffinity(Pid::from_raw(0), &allowed);
        }
    }

    /// Moves the caller to another core, leaving this one to the thread it started, and lets it
    /// run on every core again.
    fn leave(self) {
        let mut elsewhere = self.allowed;
        if elsewhere.unset(self.here).is_ok() {
            let _ = sched_setaffinity(Pid::from_raw(0), &elsewhere);
        }
        let _ = sched_setaffinity(Pid::from_raw(0), &self.allowed);
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::*;

    /// Whether a child started by `spawn` has descriptor `fd` open.
    fn child_has(fd: i32, spawn: impl FnOnce(&mut Command) -> std::io::Result<Child>) -> bool {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", &format!("test -e /proc/self/fd/{fd}")]);
        spawn(&mut command).unwrap().wait().unwrap().success()
    }

    #[test]
    fn threads_started_apart_and_their_parent_keep_every_core_they_had() {
        let cores = || sched_getaffinity(Pid::from_raw(0)).unwrap();
        let before = cores();
        let started = spawn_apart(std::thread::Builder::new(), cores).unwrap();
        assert_eq!(started.join().unwrap(), before);
        assert_eq!(cores(), before);
        let scoped = std::thread::scope(|scope| spawn_scoped_apart(scope, cores).join().unwrap());
        assert_eq!(scoped, before);
        assert_eq!(cores(), before);
    }

    #[test]
    fn only_the_child_started_with_them_inherits_the_descriptors() {
        let (reader, _writer) = std::io::pipe().unwrap();
        let fds = [OwnedFd::from(reader)];
        let fd = fds[0].as_raw_fd();
        assert!(child_has(fd, |c| spawn_inheriting(c, &fds)));
        assert!(!child_has(fd, |c| c.spawn()), "inheritable after the start");
    }
}
