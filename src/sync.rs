//! Locking a mutex shared by jobs or threads, and how many threads the machine runs at once.

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
