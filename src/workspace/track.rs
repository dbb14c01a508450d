//! What jobs touched in a snapshot while they ran, told by inotify, so that the next sync need
//! not stat every file to find out.
//!
//! Every directory holding a snapshot file is watched for anything that can change a file as
//! weir wrote it: a write, a close after opening for writing (which also covers writes through a
//! shared memory map), a change of mode or times, a rename or a removal. When the kernel's queue
//! overflows, or anything cannot be told, the answer is "unknown" and the next sync stats every
//! file, as without a tracker.
//!
//! Like every inotify watcher (git's fsmonitor, watchman), it does not see a write made through
//! a hard link whose path lies outside the snapshot: a job that links snapshot files elsewhere
//! and rewrites them in place there leaves them changed unseen.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use inotify::{EventMask, Inotify, WatchMask};

use crate::sync::lock;

/// Watches started before the first job runs in a snapshot.
pub struct Tracker {
    inotify: Inotify,
    /// Each watch's directory, relative to the snapshot (`""` for its top).
    dirs: HashMap<i32, String, foldhash::fast::RandomState>,
    /// Directories that could not be watched (a sync running alongside had not made them
    /// yet): everything in them counts as touched.
    unwatched: BTreeSet<String>,
}

/// What may differ from what weir wrote: these files, and everything under these directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    pub files: BTreeSet<String>,
    pub dirs: BTreeSet<String>,
}

impl Touched {
    /// Whether `path` (a file relative to the snapshot) may have been changed.
    pub fn contains(&self, path: &str) -> bool {
        self.files.contains(path)
            || path
                .match_indices('/')
                .any(|(end, _)| self.dirs.contains(&path[..end]))
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }
}

/// The directories holding `paths` (files relative to the snapshot), the snapshot's own (`""`)
/// included. Going up from each file stops at the first directory already known: its own are
/// known too. (A set of every prefix of every path took 2 ms for 5,000 files.)
pub(super) fn directories<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut known: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
    known.insert("");
    for path in paths {
        let mut end = path.len();
        while let Some(slash) = path[..end].rfind('/') {
            if !known.insert(&path[..slash]) {
                break;
            }
            end = slash;
        }
    }
    let mut dirs: Vec<&str> = known.into_iter().collect();
    // Parents before children, near ones together: the order the watches are added in.
    dirs.sort_unstable();
    dirs
}

impl Tracker {
    /// Watches every directory of `dir` that holds one of `paths` (files relative to it), from
    /// a thread of its own (see [`Tracker::start_here`]).
    pub fn start<'a>(
        dir: &Path,
        paths: impl IntoIterator<Item = &'a str> + Send,
    ) -> std::io::Result<Tracker> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| Tracker::start_here(dir, paths))
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the watching thread panicked")))
        })
    }

    /// [`Tracker::start`] on the calling thread, which must be one the caller made for it: it
    /// takes a working directory of its own, the snapshot, so that each watch is added by a short
    /// path (a third less work for the kernel than a full one).
    pub fn start_here<'a>(
        dir: &Path,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> std::io::Result<Tracker> {
        Tracker::watch_dirs_here(dir, directories(paths), None)
    }

    /// Watches `dirs` (relative to `dir`, `""` for itself), from the calling thread, as
    /// [`Tracker::start_here`] does; stops adding watches once `cancel` is set.
    pub fn watch_dirs_here<'a>(
        dir: &Path,
        dirs: impl IntoIterator<Item = &'a str>,
        cancel: Option<&AtomicBool>,
    ) -> std::io::Result<Tracker> {
        let inotify = Inotify::init()?;
        let relative = nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).is_ok()
            && std::env::set_current_dir(dir).is_ok();
        let mut tracker = Tracker {
            inotify,
            dirs: HashMap::default(),
            unwatched: BTreeSet::new(),
        };
        for rel in dirs {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                break;
            }
            let path = match (relative, rel) {
                (true, "") => Path::new(".").to_path_buf(),
                (true, rel) => Path::new(rel).to_path_buf(),
                (false, rel) => dir.join(rel),
            };
            tracker.add(&path, rel)?;
        }
        Ok(tracker)
    }

    /// Also watches `dirs` (relative to `dir`), from any thread.
    pub fn watch_more<'a>(
        &mut self,
        dir: &Path,
        dirs: impl IntoIterator<Item = &'a str>,
    ) -> std::io::Result<()> {
        for rel in dirs {
            self.add(&dir.join(rel), rel)?;
        }
        Ok(())
    }

    /// The directories watched, relative to the snapshot.
    pub fn dirs(&self) -> impl Iterator<Item = &str> {
        self.dirs.values().map(String::as_str)
    }

    /// The directories that could not be watched, for not being there (yet).
    pub fn unwatched(&self) -> impl Iterator<Item = &String> {
        self.unwatched.iter()
    }

    /// Watches directory `rel` at `path`; one that is not there counts as touched.
    fn add(&mut self, path: &Path, rel: &str) -> std::io::Result<()> {
        let mask = WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::ATTRIB
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::DONT_FOLLOW;
        match self.inotify.watches().add(path, mask) {
            Ok(wd) => {
                self.dirs
                    .insert(wd.get_watch_descriptor_id(), rel.to_owned());
                // Missing when the watch started, written by the sync since.
                self.unwatched.remove(rel);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !rel.is_empty() => {
                self.unwatched.insert(rel.to_owned());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Stops watching without waiting for the kernel (see [`release`]).
    pub fn discard(self) {
        release(self.inotify);
    }

    /// Forgets the changes made so far (weir's own sync, which ran while the watches were
    /// added): what it wrote, it recorded. A queue that overflowed meanwhile only lost those.
    /// `false` if they could not be read.
    pub fn forget(&mut self) -> bool {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match self.inotify.read_events(&mut buffer) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }

    /// What the jobs touched since [`Tracker::start`] (or [`Tracker::forget`]); `None` when
    /// that cannot be told. Call it once every process that ran in the snapshot has ended.
    pub fn finish(mut self) -> Option<Touched> {
        let touched = self.read();
        release(self.inotify);
        touched
    }

    fn read(&mut self) -> Option<Touched> {
        let mut touched = Touched {
            files: BTreeSet::new(),
            dirs: std::mem::take(&mut self.unwatched),
        };
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(touched),
                Err(e) => {
                    tracing::debug!(err = %e, "could not read the snapshot's changes");
                    return None;
                }
            };
            for event in events {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    tracing::debug!("too many changes in the snapshot to track");
                    return None;
                }
                let dir = self.dirs.get(&event.wd.get_watch_descriptor_id())?;
                let Some(name) = event.name else {
                    // The directory itself was moved, removed or changed.
                    if dir.is_empty() {
                        return None;
                    }
                    touched.dirs.insert(dir.clone());
                    continue;
                };
                let name = name.to_str()?;
                let path = if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                if event.mask.contains(EventMask::ISDIR) {
                    touched.dirs.insert(path.clone());
                }
                touched.files.insert(path);
            }
        }
    }
}

/// Instances weir is done with, still open. Closing the last copy of one waits for the kernel
/// to free its watches, which takes up to a scheduler grace period (often 15 ms here, as long
/// as the rest of a hook): [`release_parked`] has a child close them after weir has exited.
static PARKED: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// Done with `inotify`: it is closed with the others parked (see [`PARKED`]).
fn release(inotify: Inotify) {
    lock(&PARKED).push(OwnedFd::from(inotify));
}

/// The instances released so far (see [`PARKED`]), for a child to close: [`release_parked`]'s,
/// or one the caller starts anyway.
pub fn take_parked() -> Vec<OwnedFd> {
    std::mem::take(&mut *lock(&PARKED))
}

/// Parks `fds` again: the child meant to close them could not be started.
pub fn park(fds: Vec<OwnedFd>) {
    lock(&PARKED).extend(fds);
}

/// Closes the instances released so far without waiting for the kernel: a short-lived child
/// holds a copy of each until this process has closed its own, and pays that wait while nobody
/// waits for it. Call it once no other process is being started (see
/// [`crate::sync::spawn_inheriting`]); every command does as it ends. Without a child, they
/// are closed here.
pub fn release_parked() {
    use std::process::{Command, Stdio};
    let parked = take_parked();
    if parked.is_empty() {
        return;
    }
    let holder = crate::sync::spawn_inheriting(
        Command::new("/bin/sh")
            .args(["-c", "read _"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        &parked,
    );
    // The child has copies, or there is none: either way, weir's are closed now.
    drop(parked);
    if let Ok(mut holder) = holder {
        // It ends when its stdin closes, now that it holds the last copies.
        crate::exec::helper(holder.id());
        drop(holder.stdin.take());
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn every_directory_above_a_file_is_watched_once() {
        let paths = ["a/b/c/x", "a/b/y", "a/z", "d/e/f", "top", "a/b/c/w"];
        assert_eq!(directories(paths), ["", "a", "a/b", "a/b/c", "d", "d/e"],);
    }

    #[test]
    fn names_what_was_written_moved_or_removed_and_nothing_else() {
        let root = tempfile::TempDir::new().unwrap();
        let dir = root.path();
        let files = [
            "a.txt",
            "gone/e.rs",
            "src/b.rs",
            "src/c.rs",
            "src/deep/d.rs",
        ];
        for path in files {
            let abs = dir.join(path);
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(&abs, "x").unwrap();
        }
        let mut tracker = Tracker::start(dir, files).unwrap();
        // Written before `forget`, as a sync does: not a job's change.
        std::fs::write(dir.join("src/deep/d.rs"), "synced").unwrap();
        assert!(tracker.forget());
        // Read only: not a change.
        std::fs::read(dir.join("a.txt")).unwrap();
        std::fs::write(dir.join("src/b.rs"), "y").unwrap();
        std::fs::set_permissions(dir.join("src/c.rs"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::rename(dir.join("gone"), dir.join("moved")).unwrap();
        let touched = tracker.finish().unwrap();
        assert!(touched.contains("src/b.rs"));
        assert!(
            touched.contains("src/c.rs"),
            "its mode changed: {touched:?}"
        );
        assert!(
            touched.contains("gone/e.rs"),
            "its directory moved: {touched:?}"
        );
        assert!(!touched.contains("a.txt"));
        assert!(!touched.contains("src/deep/d.rs"));
    }
}
