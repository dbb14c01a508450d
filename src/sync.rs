//! Locking a mutex shared by jobs or threads, how many threads the machine runs at once, and
//! starting a child that inherits descriptors.

use std::os::fd::OwnedFd;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock};

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
    fn only_the_child_started_with_them_inherits_the_descriptors() {
        let (reader, _writer) = std::io::pipe().unwrap();
        let fds = [OwnedFd::from(reader)];
        let fd = fds[0].as_raw_fd();
        assert!(child_has(fd, |c| spawn_inheriting(c, &fds)));
        assert!(!child_has(fd, |c| c.spawn()), "inheritable after the start");
    }
}
