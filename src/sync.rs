//! Locking a mutex shared by jobs or threads.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`. A poisoned lock only means another thread panicked while holding it; every
/// value weir keeps behind one is sound between operations, so it is used as it is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
