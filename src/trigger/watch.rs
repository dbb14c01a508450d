//! The file watcher behind `weir watch`: notify (inotify on Linux) with a debouncer, watching
//! each directory weir cares about on its own, so that `.git` and ignored trees (`target/`,
//! `node_modules/`) cost no watches. When the kernel's watch limit is reached, it falls back to
//! polling instead of failing.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::Duration;

use notify::event::EventKind;
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer_opt};

/// How long (ms) a path must be quiet before the debouncer reports it: the first part of the
/// debounce, which the caller completes by waiting for the whole stream of changes to be quiet
/// (a burst over many files is then one batch).
const SETTLE_MS: u64 = 10;
/// How often (ms) the debouncer looks for quiet paths: it wakes this often even when nothing
/// happens, so not too often.
const TICK_MS: u64 = 10;
/// How long after a change, on average, the debouncer reports it: what the caller's own wait
/// leaves out of the debounce.
pub const REPORTED_AFTER: Duration = Duration::from_millis(SETTLE_MS + TICK_MS / 2);
const SETTLE: Duration = Duration::from_millis(SETTLE_MS);
const TICK: Duration = Duration::from_millis(TICK_MS);

/// How often the fallback watcher polls.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the watcher tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// These paths (absolute) were created, changed, renamed or removed.
    Changed(Vec<PathBuf>),
    /// Events were lost (the kernel queue overflowed): anything may have changed.
    Rescan,
    /// The watcher failed; the message says how.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot watch files: {0}")]
    Notify(#[from] notify::Error),
}

/// A running watcher; dropping it stops it.
pub struct Watcher {
    inner: Inner,
}

enum Inner {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, RecommendedCache>),
}

/// Why the watcher polls instead of being told by the kernel, for the user.
pub const LIMIT_MESSAGE: &str = "the inotify watch limit is reached; polling every 500ms instead. \
     Raise it with `sudo sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.conf to \
     keep it)";

impl Watcher {
    /// Watches each of `dirs` (not their subdirectories), sending what happens to `notices`
    /// once each path has been quiet for a moment ([`REPORTED_AFTER`] on average). With `poll`, or when the kernel refuses
    /// more watches, it polls; the second value says why when it had to.
    pub fn start(
        dirs: &[PathBuf],
        poll: bool,
        notices: Sender<Notice>,
    ) -> Result<(Watcher, Option<&'static str>), Error> {
        if !poll {
            let mut watcher = Watcher {
                inner: Inner::Native(new_debouncer_opt(
                    SETTLE,
                    Some(TICK),
                    handler(notices.clone()),
                    RecommendedCache::new(),
                    notify::Config::default(),
                )?),
            };
            match watcher.add_all(dirs) {
                Ok(()) => return Ok((watcher, None)),
                Err(Error::Notify(e)) if is_limit(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let mut watcher = Watcher {
            inner: Inner::Poll(new_debouncer_opt(
                SETTLE,
                Some(TICK),
                handler(notices),
                RecommendedCache::new(),
                // Modification times are compared to the second only: compare contents too, or
                // two writes within a second would look like one.
                notify::Config::default()
                    .with_poll_interval(POLL_INTERVAL)
                    .with_compare_contents(true),
            )?),
        };
        watcher.add_all(dirs)?;
        Ok((watcher, (!poll).then_some(LIMIT_MESSAGE)))
    }

    /// Watches one more directory (not its subdirectories).
    pub fn add(&mut self, dir: &Path) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Native(d) => d.watch(dir, RecursiveMode::NonRecursive)?,
            Inner::Poll(d) => d.watch(dir, RecursiveMode::NonRecursive)?,
        }
        Ok(())
    }

    fn add_all(&mut self, dirs: &[PathBuf]) -> Result<(), Error> {
        dirs.iter().try_for_each(|dir| self.add(dir))
    }

    /// Whether the watcher polls.
    pub fn polls(&self) -> bool {
        matches!(self.inner, Inner::Poll(_))
    }
}

/// Whether `e` says the kernel will not watch more (inotify's `max_user_watches` or
/// `max_user_instances`).
pub fn is_limit(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => {
            use nix::errno::Errno;
            let code = io.raw_os_error();
            code == Some(Errno::ENOSPC as i32) || code == Some(Errno::EMFILE as i32)
        }
        _ => false,
    }
}

fn handler(notices: Sender<Notice>) -> impl FnMut(DebounceEventResult) + Send + 'static {
    move |result: DebounceEventResult| {
        let notice = match result {
            Ok(events) => {
                if events.iter().any(|e| e.need_rescan()) {
                    Notice::Rescan
                } else {
                    let mut paths: Vec<PathBuf> = events
                        .iter()
                        // Reads (opening or closing a file without writing) change nothing.
                        .filter(|e| !matches!(e.kind, EventKind::Access(_)))
                        .flat_map(|e| e.paths.iter().cloned())
                        .collect();
                    paths.sort();
                    paths.dedup();
                    if paths.is_empty() {
                        return;
                    }
                    Notice::Changed(paths)
                }
            }
            Err(errors) => {
                if errors.iter().any(is_limit) {
                    Notice::Failed(LIMIT_MESSAGE.to_owned())
                } else {
                    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    Notice::Failed(messages.join("; "))
                }
            }
        };
        // The receiver is gone only when weir is exiting.
        let _ = notices.send(notice);
    }
}
