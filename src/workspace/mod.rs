//! Where jobs run: the working tree itself, or a snapshot of exactly the content a hook is about
//! (the staged index, a pushed commit, a merged commit), kept under `.git/weir/snapshots/<name>/`
//! and synced incrementally: only files that differ are written.

mod track;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::git::{self, Entry, FileMode, FileStat, Repo};
use crate::statefile;
use crate::store::cache::{check_path, fill, finish, write_file};

pub use track::{Touched, Tracker, park, release_parked, take_parked};

/// The state file's first line: this, the length in bytes of the part written whole (its lines
/// sorted by path) and its number of lines. What follows it was appended since.
const HEADER: &str = "weir-snapshot 4";
/// The directories record's first line.
const DIRS_HEADER: &str = "weir-dirs 1";
/// The base record's first line: this, then how many lines follow.
const BASE_HEADER: &str = "weir-base 3";
/// Directories a comparison of HEAD's tree with the base's may read before the sync compares
/// every file instead.
const TREE_BUDGET: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("refusing to write `{path}` into the snapshot: {reason}")]
    Unsafe { path: String, reason: String },
    #[error("cannot write the snapshot at {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
}

/// A persistent directory holding one tree's files.
pub struct Snapshot {
    /// The files, as in the tree.
    pub dir: PathBuf,
    /// What weir last wrote there: mode, id, stat data and path per line.
    state: PathBuf,
    /// What jobs touched in the directory since the last sync, when that is known: the next
    /// sync stats only those files. Absent, it stats every file. Whatever changes the
    /// directory removes it first.
    touched: PathBuf,
    /// A hash of the entries last synced: the same tree, untouched, needs no work at all.
    digest: PathBuf,
    /// The tree the directory's files were last synced from, with the paths where they
    /// differ from it (the staged changes against HEAD): with what jobs touched, the only
    /// files the next sync need compare. Absent, it compares every file.
    base: PathBuf,
    /// The directories the last sync left: what a watch started before the next sync watches.
    dirs: PathBuf,
    /// The checksum of the index file the last sync was from. Another index file most likely
    /// stages other content, so the watch a sync needs starts before the index is read.
    index: PathBuf,
    /// The last run whose every job hit: what identifies it, and each job's key.
    hits: PathBuf,
}

/// What a sync starts from (see [`Snapshot::prepare`]).
pub struct Prepared {
    touched: Option<Touched>,
    digest: String,
    untouched: bool,
}

impl Prepared {
    /// Whether the directory already holds the entries, untouched since weir synced them.
    pub fn untouched(&self) -> bool {
        self.untouched
    }
}

/// A watch of a snapshot started before its sync, on a thread of its own. Dropped unjoined,
/// it is discarded.
pub struct EarlyWatch {
    /// Taken when joined.
    thread: Option<std::thread::JoinHandle<std::io::Result<Tracker>>>,
    cancel: Arc<AtomicBool>,
}

impl EarlyWatch {
    fn join(mut self) -> Option<Tracker> {
        started(self.thread.take()?.join())
    }

    /// Stops the watch, without waiting for the rest of its watches to be added: the snapshot
    /// is not synced after all, or is already as it should be.
    pub fn discard(self) {
        drop(self);
    }
}

impl Drop for EarlyWatch {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(tracker) = self.thread.take().and_then(|thread| started(thread.join())) {
            tracker.discard();
        }
    }
}

/// What a sync's entries are made of: `tree` (HEAD's), with `changes` (files changed, added or
/// removed). Files elsewhere are as in the tree.
pub struct Delta<'a> {
    pub tree: gix::ObjectId,
    pub changes: &'a git::Changes,
}

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    pub written: usize,
    pub removed: usize,
    pub kept: usize,
    /// Whether the directory holds the same paths as before, only some with other content:
    /// then its directories are the ones the last sync recorded.
    pub same_paths: bool,
}

/// What the state file knows of one file: the blob weir wrote and the stat data it had then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    mode: FileMode,
    id: gix::ObjectId,
    stat: Stat,
}

/// What a file's stat says of it: any difference from when weir wrote it (a write, a `chmod`,
/// a replacement) means it is no longer as weir wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    file: FileStat,
    mode: u32,
}

fn stat_of(meta: &fs::Metadata) -> Stat {
    Stat {
        file: FileStat::of(meta),
        mode: meta.mode(),
    }
}

impl Snapshot {
    pub fn new(repo: &Repo, name: &str) -> Snapshot {
        Snapshot::in_weir_dir(&repo.weir_dir(), name)
    }

    /// Snapshot `name` of the repository whose weir directory (see [`Repo::weir_dir`]) is
    /// `weir_dir`, for a caller that has not opened the repository.
    pub fn in_weir_dir(weir_dir: &Path, name: &str) -> Snapshot {
        let base = weir_dir.join("snapshots").join(name);
        Snapshot {
            dir: base.join("tree"),
            state: base.join("state"),
            touched: base.join("touched"),
            digest: base.join("digest"),
            base: base.join("base"),
            dirs: base.join("dirs"),
            index: base.join("index"),
            hits: base.join("hits"),
        }
    }

    /// The keys (by job) of the run identified by `run` (see `cli::hook`), if the last run
    /// whose every job hit was that one. A file not whole (it names how many jobs it holds)
    /// is no record.
    pub fn remembered_hits(&self, run: &str) -> Option<BTreeMap<String, String>> {
        let text = fs::read_to_string(&self.hits).ok()?;
        let mut lines = text.lines();
        let (id, count) = lines.next()?.split_once(' ')?;
        if id != run {
            return None;
        }
        let keys: BTreeMap<String, String> = lines
            .map(|line| {
                let (key, job) = line.split_once(' ')?;
                Some((job.to_owned(), key.to_owned()))
            })
            .collect::<Option<_>>()?;
        (count.parse() == Ok(keys.len())).then_some(keys)
    }

    /// Remembers that every job of the run identified by `run` hit, with these keys.
    pub fn remember_hits(&self, run: &str, keys: &BTreeMap<String, String>) {
        if keys
            .iter()
            .any(|(job, key)| job.contains('\n') || key.contains(' '))
        {
            return;
        }
        let mut text = format!("{run} {}\n", keys.len());
        for (job, key) in keys {
            text.push_str(&format!("{key} {job}\n"));
        }
        let _ = statefile::replace(&self.hits, text.as_bytes());
    }

    /// Whether the last sync was from the index file with this checksum (see
    /// [`git::Repo::index_checksum`]): the directory then most likely holds its staged
    /// content already.
    pub fn synced_from(&self, checksum: &str) -> bool {
        fs::read_to_string(&self.index).is_ok_and(|c| c == checksum)
    }

    /// Whether the index file at `index` may stage other content than the last sync was from:
    /// its checksum is not the one recorded, read without opening the repository (the
    /// recorded one's length tells the hash's). `false` for an index without a checksum
    /// (`index.skipHash`), which tells nothing.
    pub fn index_differs(&self, index: &Path) -> bool {
        let recorded = fs::read_to_string(&self.index).unwrap_or_default();
        // SHA-256's checksum is 32 bytes; SHA-1's (with no record, the likely one) 20.
        let len = if recorded.len() == 64 { 32 } else { 20 };
        git::index_file_checksum(index, len).is_some_and(|checksum| checksum != recorded)
    }

    /// Whether `other` is this same snapshot, however each was found.
    pub fn is(&self, other: &Snapshot) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        match (fs::metadata(&self.dir), fs::metadata(&other.dir)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }

    /// Records the checksum of the index file the directory now holds the content of.
    pub fn note_synced_from(&self, checksum: &str) {
        let _ = statefile::overwrite(&self.index, checksum.as_bytes());
    }

    /// Makes the directory hold exactly `entries`' content (files a job left elsewhere in it
    /// stay). A file is rewritten only if it is new, changed in the tree, or changed on disk
    /// since weir wrote it (by its stat data, as git's index tells).
    pub fn sync(&self, repo: &Repo, entries: &[Entry]) -> Result<Synced, Error> {
        let Prepared {
            touched,
            digest,
            untouched,
        } = self.prepare(entries)?;
        if untouched {
            return Ok(Synced {
                kept: entries.len(),
                same_paths: true,
                ..Synced::default()
            });
        }
        self.update(repo, entries, None, touched, &digest, None)
    }

    /// [`Snapshot::sync`], and what a run there needs to record what its jobs touch. Unless the
    /// directory already held `entries` untouched (then the jobs are most likely all cache hits,
    /// and the engine starts a watch only if one runs) or a watch started `early`, the watch
    /// starts while the files are written.
    /// With `worktree`, a file still as `git add` staged it is copied from the working tree
    /// rather than inflated from the object database.
    /// With `delta`, only files where it says the entries differ from its tree, where the
    /// last sync's did, and those jobs touched are compared.
    /// `prepared` is what [`Snapshot::prepare`] found; `early`, the watch started since (see
    /// [`Snapshot::watch_early`]).
    pub fn sync_watched(
        &self,
        repo: &Repo,
        entries: &[Entry],
        worktree: Option<Worktree<'_>>,
        delta: Option<Delta<'_>>,
        prepared: Prepared,
        early: Option<EarlyWatch>,
    ) -> Result<Watch, Error> {
        let Prepared {
            touched,
            digest,
            untouched,
        } = prepared;
        // Whether the early watch watches the directories the last sync recorded, and the
        // entries still have those.
        let mut dirs_kept = early.is_some();
        let tracker = match early {
            // Nothing to write: an early watch is kept in case a job runs.
            Some(early) if untouched => early.join(),
            None if untouched => return Ok(self.watch(None)),
            Some(early) => {
                let updated =
                    self.update(repo, entries, worktree, touched, &digest, delta.as_ref());
                let tracker = early.join();
                dirs_kept = updated?.same_paths;
                tracker
            }
            None => std::thread::scope(|scope| {
                let paths = entries.iter().map(|e| e.path.as_str());
                // This thread is the watch's own.
                let tracker = crate::sync::spawn_scoped_apart(scope, || {
                    Tracker::start_here(&self.dir, paths)
                });
                self.update(repo, entries, worktree, touched, &digest, delta.as_ref())?;
                Ok::<_, Error>(started(tracker.join()))
            })?,
        };
        let tracker = tracker.and_then(|mut tracker| {
            // The directories now there that are not watched yet (all of them without an early
            // watch), which the next sync's early watch starts from. Working them out from the
            // entries takes a while (a fifth of a millisecond for 5,000 files): the recorded
            // ones still hold when the sync added and removed no file.
            let added = if dirs_kept {
                let unwatched: Vec<String> = tracker.unwatched().cloned().collect();
                tracker.watch_more(&self.dir, unwatched.iter().map(String::as_str))
            } else {
                let wanted = track::directories(entries.iter().map(|e| e.path.as_str()));
                let watched: FastSet<&str> = tracker.dirs().collect();
                let missing: Vec<&str> = wanted
                    .iter()
                    .copied()
                    .filter(|d| !watched.contains(d))
                    .collect();
                // Also where they are the same: a sync that adds or removes files forgets them
                // first (see `forget_dirs`).
                self.save_dirs(&wanted);
                tracker.watch_more(&self.dir, missing)
            };
            // What the sync wrote is in the state: only what jobs do from here counts.
            (added.is_ok() && tracker.forget()).then_some(tracker)
        });
        Ok(self.watch(tracker))
    }

    /// What a sync of `entries` starts from: what jobs touched since the last one, and whether
    /// the directory already holds them.
    pub fn prepare(&self, entries: &[Entry]) -> Result<Prepared, Error> {
        let (touched, digest) = self.begin(entries)?;
        let untouched = self.untouched(touched.as_ref(), &digest);
        Ok(Prepared {
            touched,
            digest,
            untouched,
        })
    }

    /// How the entries the directory holds differ from `tree`, as the last sync recorded: for a
    /// directory [`Prepared::untouched`] with HEAD's tree unchanged, the staged changes, without
    /// walking the trees again.
    pub fn recorded_changes(&self, tree: gix::ObjectId) -> Option<git::Changes> {
        let text = fs::read_to_string(&self.base).ok()?;
        let base = parse_base(&text).filter(|b| b.tree == tree)?;
        let owned = |paths: Vec<&str>| paths.into_iter().map(str::to_owned).collect();
        Some(git::Changes {
            changed: owned(base.changed),
            deleted: owned(base.deleted),
        })
    }

    /// Starts watching the directories the last sync left, on a thread of its own, while the
    /// caller works out what to sync: adding the watches (900 here) takes longer than reading
    /// the index and the sync together. `None` before a sync has recorded them. When the
    /// directory turns out to be [`Prepared::untouched`] (the jobs are then most likely all
    /// cache hits), [`EarlyWatch::discard`] it.
    pub fn watch_early(&self) -> Option<EarlyWatch> {
        let text = fs::read_to_string(&self.dirs).ok()?;
        let mut lines = text.lines();
        if lines.next() != Some(DIRS_HEADER) || !text.ends_with('\n') {
            return None;
        }
        let dirs: Vec<String> = lines.map(str::to_owned).collect();
        let dir = self.dir.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::clone(&cancel);
        let thread = crate::sync::spawn_apart(std::thread::Builder::new(), move || {
            let dirs = dirs.iter().map(String::as_str);
            Tracker::watch_dirs_here(&dir, dirs, Some(&cancelled))
        })
        .ok()?;
        Some(EarlyWatch {
            thread: Some(thread),
            cancel,
        })
    }

    /// Called before the state records a sync that added or removed files: the directories
    /// recorded for the next early watch may no longer be the snapshot's, and a sync whose
    /// early watch started from them takes them as they are (see [`Synced::same_paths`]).
    fn forget_dirs(&self) {
        statefile::spoil(&self.dirs);
    }

    /// Records the directories the snapshot holds, for the next early watch.
    fn save_dirs(&self, dirs: &[&str]) {
        let mut text = format!("{DIRS_HEADER}\n");
        for dir in dirs {
            if dir.contains('\n') {
                let _ = fs::remove_file(&self.dirs);
                return;
            }
            text.push_str(dir);
            text.push('\n');
        }
        if statefile::replace(&self.dirs, text.as_bytes()).is_err() {
            self.forget_dirs();
        }
    }

    /// What a run in the directory needs to record what its jobs touch.
    pub fn watch(&self, tracker: Option<Tracker>) -> Watch {
        Watch {
            tracker,
            record: self.touched.clone(),
        }
    }

    /// Creates the directory; reads what jobs touched in it since the last sync; hashes
    /// `entries`.
    fn begin(&self, entries: &[Entry]) -> Result<(Option<Touched>, String), Error> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::Write(self.dir.clone(), e))?;
        let touched = fs::read_to_string(&self.touched)
            .ok()
            .and_then(|text| parse_touched(&text));
        Ok((touched, digest(entries)))
    }

    /// Whether the directory holds the entries with this digest, as weir last synced them.
    fn untouched(&self, touched: Option<&Touched>, digest: &str) -> bool {
        touched.is_some_and(Touched::is_empty)
            && fs::read_to_string(&self.digest).is_ok_and(|d| d == digest)
    }

    fn update(
        &self,
        repo: &Repo,
        entries: &[Entry],
        worktree: Option<Worktree<'_>>,
        touched: Option<Touched>,
        digest: &str,
        delta: Option<&Delta<'_>>,
    ) -> Result<Synced, Error> {
        // Until the state is saved, the record no longer tells which files are as it says, and
        // the base no longer tells where they can differ.
        statefile::spoil(&self.touched);
        let base = fs::read_to_string(&self.base).ok();
        statefile::spoil(&self.base);
        let started = std::time::Instant::now();
        let candidates = match (delta, base.as_deref().and_then(parse_base), &touched) {
            (Some(delta), Some(base), Some(touched)) => {
                self.candidates(repo, entries, touched, delta, &base)?
            }
            _ => None,
        };
        // Only the lines of the files compared are read from the part written whole: a line
        // per file in the snapshot, reading all of it was most of a small commit's sync.
        let state = candidates
            .as_ref()
            .and_then(|_| StateFile::open(&self.state));
        let some = match (candidates, &state, &touched) {
            (Some(candidates), Some(state), Some(touched)) => match state.text_for(&candidates) {
                Ok(sorted) => self.update_some(
                    repo,
                    entries,
                    worktree.as_ref(),
                    touched,
                    &state.with_sorted(&sorted),
                    &candidates,
                )?,
                Err(_) => None,
            },
            _ => None,
        };
        let synced = match some {
            Some(synced) => synced,
            None => {
                let text = fs::read_to_string(&self.state).unwrap_or_default();
                self.update_all(repo, entries, worktree.as_ref(), touched.as_ref(), &text)?
            }
        };
        tracing::debug!(elapsed = ?started.elapsed(), ?synced, "synced the snapshot's files");
        // Without the digest the next sync only compares entry by entry; without the base,
        // every file.
        let _ = statefile::overwrite(&self.digest, digest.as_bytes());
        if let Some(delta) = delta
            && let Some(text) = format_base(delta)
        {
            let _ = statefile::overwrite(&self.base, text.as_bytes());
        }
        Ok(synced)
    }

    /// The paths where the directory (as the last sync left it, `base`) and `entries` (as
    /// `delta` describes them) can differ, and those jobs touched; `None` when there are too
    /// many for comparing them one by one to beat comparing every file.
    fn candidates(
        &self,
        repo: &Repo,
        entries: &[Entry],
        touched: &Touched,
        delta: &Delta<'_>,
        base: &Base<'_>,
    ) -> Result<Option<BTreeSet<String>>, Error> {
        let limit = entries.len() / 4 + 64;
        let mut paths: BTreeSet<String> = BTreeSet::new();
        if base.tree != delta.tree {
            match repo.tree_changes(base.tree, delta.tree, TREE_BUDGET)? {
                Some(changed) => paths.extend(changed),
                None => return Ok(None),
            }
        }
        paths.extend(
            base.changed
                .iter()
                .chain(&base.deleted)
                .map(|p| (*p).to_owned()),
        );
        paths.extend(delta.changes.changed.iter().cloned());
        paths.extend(delta.changes.deleted.iter().cloned());
        paths.extend(touched.files.iter().cloned());
        for dir in &touched.dirs {
            let prefix = format!("{dir}/");
            let from = entries.partition_point(|e| e.path.as_str() < prefix.as_str());
            let under = entries[from..]
                .iter()
                .take_while(|e| e.path.starts_with(&prefix));
            paths.extend(under.map(|e| e.path.clone()));
            if paths.len() > limit {
                return Ok(None);
            }
        }
        Ok((paths.len() <= limit).then_some(paths))
    }

    /// Brings the files at `candidates` in line with `entries`, trusting every other file to
    /// be as the state says; `None` when the state is due to be written whole (the caller then
    /// syncs every file).
    fn update_some(
        &self,
        repo: &Repo,
        entries: &[Entry],
        worktree: Option<&Worktree<'_>>,
        touched: &Touched,
        state: &StateText<'_>,
        candidates: &BTreeSet<String>,
    ) -> Result<Option<Synced>, Error> {
        let (journal, appended) = state.journal();
        if state.lines + appended + candidates.len() > 2 * entries.len() + 64 {
            return Ok(None);
        }
        let mut synced = Synced::default();
        let mut gone = Vec::new();
        let mut stale = Vec::new();
        let mut added = false;
        // Files no longer in the tree go first: one may stand where a directory now goes.
        for (path, was) in candidates.iter().zip(state.get_all(&journal, candidates)) {
            let entry = entries.binary_search_by(|e| e.path.as_str().cmp(path));
            match (entry, was) {
                (Ok(at), Some(known)) if self.intact(&entries[at], known, touched).is_some() => {}
                (Ok(at), was) => {
                    added |= was.is_none();
                    stale.push(at);
                }
                (Err(_), Some(_)) => {
                    gone.push(path.as_str());
                    if remove_beneath(&self.dir, path) {
                        synced.removed += 1;
                    }
                }
                (Err(_), None) => {}
            }
        }
        let written = self.write_many(repo, entries, &stale, worktree)?;
        let changed: Vec<(&str, Written)> = stale
            .iter()
            .zip(written)
            .map(|(&at, written)| (entries[at].path.as_str(), written))
            .collect();
        synced.written = changed.len();
        synced.kept = entries.len() - changed.len();
        synced.same_paths = !added && gone.is_empty();
        if !synced.same_paths {
            self.forget_dirs();
        }
        self.save_changes(&changed, &gone, None)?;
        Ok(Some(synced))
    }

    /// Brings every file in line with `entries`, by the state in `text`.
    fn update_all(
        &self,
        repo: &Repo,
        entries: &[Entry],
        worktree: Option<&Worktree<'_>>,
        touched: Option<&Touched>,
        text: &str,
    ) -> Result<Synced, Error> {
        let started = std::time::Instant::now();
        let (old, lines) = parse_state(text);
        tracing::debug!(elapsed = ?started.elapsed(), files = old.len(), "loaded the snapshot state");
        // Which files are as weir left them: those no job touched, and the others by one lstat
        // each, spread over the cores, since this is most of a hook's cost in a large
        // repository when what the jobs touched is not known.
        let intact = |entry: &Entry| -> Option<Kept> {
            let was = old.get(entry.path.as_str())?;
            match touched {
                Some(touched) => self.intact(entry, *was, touched),
                None => self.intact_on_disk(entry, *was),
            }
        };
        let checked: Vec<Option<Kept>> = if touched.is_some() {
            entries.iter().map(intact).collect()
        } else {
            let threads = crate::sync::cores();
            let chunk = entries.len().div_ceil(threads).max(256);
            std::thread::scope(|scope| {
                let handles: Vec<_> = entries
                    .chunks(chunk)
                    .map(|part| {
                        crate::sync::spawn_scoped_apart(scope, move || {
                            part.iter().map(intact).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        };
        tracing::debug!(elapsed = ?started.elapsed(), "checked the snapshot's files");
        let mut new = Vec::with_capacity(entries.len());
        let mut changed = Vec::new();
        let mut gone = Vec::new();
        let mut synced = Synced::default();
        // Files no longer in the tree go first: one may stand where a directory now goes.
        if checked.iter().flatten().count() < old.len() {
            let current: FastSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
            for path in old.keys().filter(|p| !current.contains(*p)) {
                gone.push(*path);
                if remove_beneath(&self.dir, path) {
                    synced.removed += 1;
                }
            }
        }
        let mut checked = checked;
        checked.resize(entries.len(), None);
        let stale: Vec<usize> = (0..entries.len())
            .filter(|&at| checked[at].is_none())
            .collect();
        let mut written = self
            .write_many(repo, entries, &stale, worktree)?
            .into_iter();
        for (entry, known) in entries.iter().zip(checked) {
            if let Some(known) = known {
                new.push((entry.path.as_str(), known));
                synced.kept += 1;
            } else if let Some(written) = written.next() {
                new.push((entry.path.as_str(), Kept::Written(written)));
                changed.push((entry.path.as_str(), written));
                synced.written += 1;
            }
        }
        // A few changes are appended (later lines win); the file is written whole again once it
        // has grown to twice what it describes.
        let whole = (lines == 0 || lines + changed.len() + gone.len() > 2 * new.len() + 64)
            .then_some(new.as_slice());
        // Every path the state had is still there, and no other.
        synced.same_paths = gone.is_empty() && entries.len() == old.len();
        if !synced.same_paths {
            self.forget_dirs();
        }
        self.save_changes(&changed, &gone, whole)?;
        Ok(synced)
    }

    /// Whether the file of `entry`, which the state says is `was`, is as weir wrote it: the
    /// same blob, and if a job touched it, the same stat data.
    fn intact<'a>(&self, entry: &Entry, was: Known<'a>, touched: &Touched) -> Option<Kept<'a>> {
        if touched.contains(&entry.path) {
            return self.intact_on_disk(entry, was);
        }
        (was.mode == entry.mode && was.id == entry.id).then_some(Kept::Line(was.line))
    }

    /// [`Snapshot::intact`] by one lstat: the same blob and stat data. A file linked elsewhere
    /// is not: it is written anew (see [`Snapshot::write`]), never through the link.
    fn intact_on_disk<'a>(&self, entry: &Entry, was: Known<'a>) -> Option<Kept<'a>> {
        let same = was.mode == entry.mode && was.id == entry.id;
        let meta = fs::symlink_metadata(self.dir.join(&entry.path)).ok()?;
        let linked = meta.is_file() && meta.nlink() > 1;
        (same && !linked && was.stat() == Some(stat_of(&meta))).then_some(Kept::Line(was.line))
    }

    /// Writes the entries at `stale` into the directory, on every core when there are many: a
    /// 1,000-file commit spends most of its hook writing them. The results are in `stale`'s
    /// order.
    fn write_many(
        &self,
        repo: &Repo,
        entries: &[Entry],
        stale: &[usize],
        worktree: Option<&Worktree<'_>>,
    ) -> Result<Vec<Written>, Error> {
        /// Below this, a thread and a repository handle cost more than they save.
        const PARALLEL_FROM: usize = 64;
        // Opened once, the directory is where each file is opened from: the kernel then walks
        // only the file's own path, not the snapshot's as well, for every one.
        let dir = fs::File::open(&self.dir).ok();
        let write = |repo: &Repo, part: &[usize]| -> Result<Vec<Written>, Error> {
            // Each thread keeps its own answers on attributes files: shared, they cost a lock
            // per file.
            let mut converted = Converted::default();
            part.iter()
                .map(|&at| {
                    let entry = &entries[at];
                    self.write(repo, entry, at, worktree, dir.as_ref(), &mut converted)
                })
                .collect()
        };
        let threads = crate::sync::cores();
        if stale.len() < PARALLEL_FROM || threads < 2 {
            return write(repo, stale);
        }
        let mut parts = stale.chunks(stale.len().div_ceil(threads));
        let first = parts.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let others: Vec<_> = parts
                .map(|part| {
                    let repo = repo.clone();
                    crate::sync::spawn_scoped_apart(scope, move || write(&repo, part))
                })
                .collect();
            let mut written = write(repo, first)?;
            for other in others {
                let part = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                written.extend(part);
            }
            Ok(written)
        })
    }

    /// Writes `entry` (the `at`th entry) into the directory, opened as `dir`; `converted` is
    /// what this thread found of attributes files so far (see [`Worktree::converted`]).
    fn write(
        &self,
        repo: &Repo,
        entry: &Entry,
        at: usize,
        worktree: Option<&Worktree<'_>>,
        dir: Option<&fs::File>,
        converted: &mut Converted,
    ) -> Result<Written, Error> {
        check_path(&entry.path).map_err(|reason| Error::Unsafe {
            path: entry.path.clone(),
            reason,
        })?;
        let abs = self.dir.join(&entry.path);
        let clean = worktree
            .filter(|_| entry.mode != FileMode::Symlink)
            .and_then(|w| w.clean_file(&entry.path, at, converted));
        // A clean file is copied by the kernel, which spares reading it into memory and
        // writing it back out.
        let copied = match (&clean, dir) {
            (Some((source, size)), Some(dir)) => {
                copy_at(dir, &entry.path, entry.mode, source, *size)
            }
            _ => None,
        };
        let written = match copied {
            Some(written) => written,
            None => {
                let bytes = match clean.and_then(|(source, size)| git::read_whole(&source, size)) {
                    Some(bytes) => bytes,
                    None => repo.read_blob(entry.id)?,
                };
                match dir.and_then(|dir| overwrite_at(dir, &entry.path, entry.mode, &bytes)) {
                    Some(written) => written,
                    // Something a job left where the file or one of its directories goes (a
                    // symlink among them, which is never written through), or a directory to
                    // make: looked for only then, which saves a stat of every directory on the
                    // way of every file.
                    None => {
                        self.clear_way(&entry.path)?;
                        write_file(&abs, entry.mode, &bytes)
                    }
                }
            }
        };
        let meta = written.map_err(|e| Error::Write(abs.clone(), e))?;
        Ok(Written {
            mode: entry.mode,
            id: entry.id,
            stat: stat_of(&meta),
        })
    }

    /// Saves what changed: appended to the state, or the state written whole from `whole`.
    fn save_changes(
        &self,
        changed: &[(&str, Written)],
        gone: &[&str],
        whole: Option<&[(&str, Kept)]>,
    ) -> Result<(), Error> {
        let saved = match whole {
            Some(files) => statefile::replace(&self.state, format_state(files).as_bytes()),
            None if changed.is_empty() && gone.is_empty() => Ok(()),
            None => statefile::append(&self.state, format_changes(changed, gone).as_bytes()),
        };
        saved.map_err(|e| Error::Write(self.state.clone(), e))
    }

    /// Makes room for file `path`: removes a directory where it goes, and anything but a
    /// directory where one of its directories goes.
    fn clear_way(&self, path: &str) -> Result<(), Error> {
        let abs = self.dir.join(path);
        let removed =
            |p: &Path, r: std::io::Result<()>| r.map_err(|e| Error::Write(p.to_owned(), e));
        for (end, _) in path.match_indices('/') {
            let dir = self.dir.join(&path[..end]);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if !meta.is_dir() => return removed(&dir, fs::remove_file(&dir)),
                _ => {}
            }
        }
        match fs::symlink_metadata(&abs) {
            Ok(meta) if meta.is_dir() => removed(&abs, fs::remove_dir_all(&abs)),
            _ => Ok(()),
        }
    }

    /// Records what the jobs run since the last sync touched, `None` when that is not known
    /// (the next sync then stats every file).
    pub fn record(&self, touched: Option<&Touched>) {
        // Not a path a line can hold: say nothing, which is "unknown".
        let Some(text) = touched.and_then(format_touched) else {
            statefile::spoil(&self.touched);
            return;
        };
        // Still the record of an untouched directory: whatever ran there spoiled it.
        if fs::read(&self.touched).is_ok_and(|was| was == text.as_bytes()) {
            return;
        }
        // Without the record the next sync only stats every file.
        if statefile::overwrite(&self.touched, text.as_bytes()).is_err() {
            statefile::spoil(&self.touched);
        }
    }
}

/// Writes `bytes` as the file `rel` under `dir` with `mode`, in place over the regular file
/// there, or as a new one; `None`, having written nothing, where more is to be done first (see
/// [`open_at`]).
fn overwrite_at(
    dir: &fs::File,
    rel: &str,
    mode: FileMode,
    bytes: &[u8],
) -> Option<std::io::Result<fs::Metadata>> {
    let (mut file, bits) = open_at(dir, rel, mode)?;
    Some(fill(&mut file, bytes, bits))
}

/// [`overwrite_at`] with the `size` bytes of `source` instead, copied by the kernel
/// (`copy_file_range`). `None` where [`open_at`] would not open the file, where the kernel does
/// not copy between these files, or where `source` turns out not to hold exactly `size` bytes:
/// then the file may be partly written, and the caller writes it again.
fn copy_at(
    dir: &fs::File,
    rel: &str,
    mode: FileMode,
    source: &fs::File,
    size: usize,
) -> Option<std::io::Result<fs::Metadata>> {
    let (mut file, bits) = open_at(dir, rel, mode)?;
    let mut from = 0;
    let mut copied = 0;
    // One byte more than `size` is asked for: a source that grew is not the one checked.
    while copied <= size {
        match nix::fcntl::copy_file_range(source, Some(&mut from), &file, None, size + 1 - copied) {
            Ok(0) => break,
            Ok(n) => copied += n,
            Err(_) => return None,
        }
    }
    (copied == size).then(|| finish(&mut file, size as u64, bits))
}

/// Opens the file `rel` under `dir` to write it with `mode` (and its permission bits), in place
/// over the regular file there, or as a new one; `None`, having written nothing, where more is
/// to be done first: a symlink anywhere on the way (never followed), a directory or a file
/// linked elsewhere in the way, a directory on the way missing, a symlink to write; or where the
/// kernel cannot open a path without following symlinks (`openat2`, Linux 5.6).
fn open_at(dir: &fs::File, rel: &str, mode: FileMode) -> Option<(fs::File, u32)> {
    use nix::fcntl::OFlag;
    let bits = match mode {
        FileMode::Symlink => return None,
        FileMode::Executable => 0o755,
        FileMode::Regular => 0o644,
    };
    // Not waiting for a reader of a FIFO there.
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let how = nix::fcntl::OpenHow::new()
        .flags(flags)
        .mode(nix::sys::stat::Mode::from_bits_truncate(bits))
        .resolve(nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS);
    let file = fs::File::from(nix::fcntl::openat2(dir, rel, how).ok()?);
    let before = file.metadata().ok()?;
    if !before.is_file() || before.nlink() > 1 {
        return None;
    }
    Some((file, bits))
}

/// The working tree a snapshot of the staged index can copy clean files from: `stats` are the
/// index's stat data for each entry (in the same order), `written` when the index was written.
/// Only for a repository where no setting makes git convert every file as it stores it (see
/// `Repo::converts_everywhere`); a file under a directory with a `.gitattributes` (staged, or
/// in the working tree, which is what `git add` reads) is never copied.
pub struct Worktree<'a> {
    root: &'a Path,
    /// The work tree opened, for opening each file under it (`None` if it could not be).
    root_dir: Option<fs::File>,
    stats: &'a [gix::index::entry::Stat],
    written: (i64, u32),
    /// Directories whose `.gitattributes` is staged (`""` for the top).
    staged_attributes: FastSet<&'a str>,
}

impl<'a> Worktree<'a> {
    pub fn new(
        root: &'a Path,
        entries: &'a [Entry],
        stats: &'a [gix::index::entry::Stat],
        written: (i64, u32),
    ) -> Worktree<'a> {
        let staged_attributes = entries
            .iter()
            .filter(|e| e.path.ends_with(".gitattributes"))
            .filter_map(|e| match e.path.rsplit_once('/') {
                Some((dir, ".gitattributes")) => Some(dir),
                None if e.path == ".gitattributes" => Some(""),
                _ => None,
            })
            .collect();
        Worktree {
            root,
            root_dir: fs::File::open(root).ok(),
            stats,
            written,
            staged_attributes,
        }
    }

    /// The `at`th staged file, `path`, opened in the working tree with its size, if git stored it
    /// as it is there: still as `git add` saw it, and no attributes file on its way.
    fn clean_file(
        &self,
        path: &str,
        at: usize,
        known: &mut Converted,
    ) -> Option<(fs::File, usize)> {
        let stat = self.stats.get(at)?;
        if self.converted(path.rsplit_once('/').map_or("", |(dir, _)| dir), known) {
            return None;
        }
        git::clean_file(self.root_dir.as_ref()?, path, stat, self.written)
    }

    /// Whether git stores working-tree file `path` as it is: no attributes file on its way.
    pub fn stores_as_is(&self) -> impl FnMut(&str) -> bool + '_ {
        let mut known = Converted::default();
        move |path| !self.converted(path.rsplit_once('/').map_or("", |(dir, _)| dir), &mut known)
    }

    /// Whether a `.gitattributes` in `dir` (`""` for the top) or above it may convert the files
    /// there: asked once per directory, not once per file and parent.
    fn converted(&self, dir: &str, known: &mut Converted) -> bool {
        if let Some(&converted) = known.get(dir) {
            return converted;
        }
        let converted = self.staged_attributes.contains(dir)
            || fs::symlink_metadata(self.root.join(dir).join(".gitattributes")).is_ok()
            || (!dir.is_empty()
                && self.converted(dir.rsplit_once('/').map_or("", |(parent, _)| parent), known));
        known.insert(dir.to_owned(), converted);
        converted
    }
}

/// Directories known to have a `.gitattributes` (staged, or in the working tree) in them or
/// above them, or not: what [`Worktree::converted`] found.
type Converted = FastMap<String, bool>;

/// What a run in a snapshot needs to record what its jobs touch there.
pub struct Watch {
    /// A watch started alongside the sync; else one starts with the first job that runs.
    pub tracker: Option<Tracker>,
    /// The record of what jobs touched: it no longer holds once one runs.
    record: PathBuf,
}

impl Watch {
    /// Something is about to change the directory: until it is recorded, what changed is not
    /// known.
    pub fn invalidate(&self) {
        statefile::spoil(&self.record);
    }
}

/// The tracker a watching thread started, if it could.
fn started(joined: std::thread::Result<std::io::Result<Tracker>>) -> Option<Tracker> {
    match joined {
        Ok(Ok(tracker)) => Some(tracker),
        Ok(Err(err)) => {
            tracing::debug!(%err, "cannot watch the snapshot");
            None
        }
        Err(_) => None,
    }
}

/// The touched record's first line: this, then how many lines follow.
const TOUCHED_HEADER: &str = "weir-touched 2";

/// The touched record of `touched`; `None` if a path cannot be a line of it.
fn format_touched(touched: &Touched) -> Option<String> {
    let lines =
        (touched.files.iter().map(|p| ("f", p))).chain(touched.dirs.iter().map(|p| ("d", p)));
    counted(TOUCHED_HEADER, "", lines)
}

/// The touched record; `None` if it is not one, or not whole.
fn parse_touched(text: &str) -> Option<Touched> {
    let mut touched = Touched::default();
    for line in counted_lines(TOUCHED_HEADER, text)? {
        match line.split_once(' ')? {
            ("f", path) => touched.files.insert(path.to_owned()),
            ("d", path) => touched.dirs.insert(path.to_owned()),
            _ => return None,
        };
    }
    Some(touched)
}

/// A record written in place (see [`statefile::overwrite`]): `header` and the number of lines
/// that follow, then `first` (a line, unless empty), then a line `kind path` for each of
/// `lines`. The count makes a record cut short, or followed by what a longer one left, read
/// as damaged. `None` if a path cannot be a line.
fn counted<'a>(
    header: &str,
    first: &str,
    lines: impl Iterator<Item = (&'a str, &'a String)>,
) -> Option<String> {
    let mut body = String::new();
    let mut count = 0;
    if !first.is_empty() {
        body.push_str(first);
        body.push('\n');
        count += 1;
    }
    for (kind, path) in lines {
        if path.contains('\n') {
            return None;
        }
        body.push_str(kind);
        body.push(' ');
        body.push_str(path);
        body.push('\n');
        count += 1;
    }
    Some(format!("{header} {count}\n{body}"))
}

/// The lines after the header of a record [`counted`] wrote; `None` unless it is whole.
fn counted_lines<'a>(header: &str, text: &'a str) -> Option<std::str::Lines<'a>> {
    let (first, rest) = text.split_once('\n')?;
    let count: usize = first
        .strip_prefix(header)?
        .strip_prefix(' ')?
        .parse()
        .ok()?;
    let whole = (rest.is_empty() || rest.ends_with('\n')) && rest.lines().count() == count;
    whole.then(|| rest.lines())
}

/// What the state file says of one file: its mode and blob id, and its line, whose stat data is
/// read only when it is compared.
#[derive(Debug, Clone, Copy)]
struct Known<'a> {
    mode: FileMode,
    id: gix::ObjectId,
    line: &'a str,
}

impl Known<'_> {
    fn stat(&self) -> Option<Stat> {
        parse_line(self.line).map(|(_, written)| written.stat)
    }
}

/// The state file's files by path. Hashed with foldhash: the paths are weir's own, and SipHash
/// was a third of reading the state.
type StateMap<'a> = FastMap<&'a str, Known<'a>>;
/// Maps and sets of paths in the snapshot, hashed with foldhash for the same reason.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// A file of the synced state: its line as read, or what was just written.
#[derive(Debug, Clone, Copy)]
enum Kept<'a> {
    Line(&'a str),
    Written(Written),
}

/// A state file's text: the part written whole, whose lines are sorted by path, and the lines
/// appended since.
struct StateText<'a> {
    sorted: &'a str,
    /// Lines in `sorted`.
    lines: usize,
    appended: &'a str,
}

/// The parts of a state file; `None` for a foreign or damaged one.
fn split_state(text: &str) -> Option<StateText<'_>> {
    let (header, rest) = text.split_once('\n')?;
    let (len, lines) = parse_header(header)?;
    let sorted = rest.get(..len)?;
    (sorted.is_empty() || sorted.ends_with('\n')).then_some(StateText {
        sorted,
        lines,
        appended: &rest[len..],
    })
}

/// A state file's first line: the length of the part written whole, and its lines.
fn parse_header(header: &str) -> Option<(usize, usize)> {
    let mut fields = header.strip_prefix(HEADER)?.split_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

impl<'a> StateText<'a> {
    /// What the appended lines say of each path they name (the last one wins): its line, or
    /// `None` for a file removed; and how many lines there are. Lines are parsed only when
    /// looked up (see [`StateText::get`]): a 1,000-file commit appends 1,000 of them.
    fn journal(&self) -> (Journal<'a>, usize) {
        let mut said = FastMap::default();
        let mut lines = 0;
        for line in self.appended.lines() {
            lines += 1;
            if let Some(path) = line.strip_prefix("- ") {
                said.insert(path, None);
            } else if let Some(path) = line_path(line) {
                said.insert(path, Some(line));
            }
        }
        (said, lines)
    }

    /// What the state says of `path`, with `journal` its appended lines; `None` for a file it
    /// does not hold (or whose line is damaged: as if weir had written nothing there).
    fn get(&self, journal: &Journal<'a>, path: &str) -> Option<Known<'a>> {
        match journal.get(path) {
            Some(line) => known(line.as_ref()?).map(|(_, known)| known),
            None => self.sorted_line(path),
        }
    }

    /// [`StateText::get`] for each of `paths`, in their order; by one pass over the sorted part
    /// when they are many (a 1,000-file commit's).
    fn get_all(&self, journal: &Journal<'a>, paths: &BTreeSet<String>) -> Vec<Option<Known<'a>>> {
        if paths.len() < SCAN_FROM {
            return paths.iter().map(|path| self.get(journal, path)).collect();
        }
        let mut lines = (self.sorted.lines())
            .filter_map(|line| Some((line_path(line)?, line)))
            .peekable();
        let mut find = |path: &str| {
            while lines.next_if(|&(at, _)| at < path).is_some() {}
            lines.next_if(|&(at, _)| at == path).map(|(_, line)| line)
        };
        (paths.iter())
            .map(|path| {
                let line = match journal.get(path.as_str()) {
                    Some(line) => *line,
                    None => find(path),
                };
                known(line?).map(|(_, known)| known)
            })
            .collect()
    }

    /// The line of `path` in the sorted part, by binary search; `None` if there is none (or a
    /// damaged line is in the way). Only the path of each line probed is read.
    fn sorted_line(&self, path: &str) -> Option<Known<'a>> {
        let text = self.sorted;
        let (mut lo, mut hi) = (0, text.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // By bytes: `mid` may fall inside a character of a path.
            let bytes = text.as_bytes();
            let start =
                (bytes[lo..mid].iter().rposition(|&b| b == b'\n')).map_or(lo, |i| lo + i + 1);
            let end = start + text[start..].find('\n')?;
            let line = &text[start..end];
            match line_path(line)?.cmp(path) {
                std::cmp::Ordering::Equal => return known(line).map(|(_, known)| known),
                std::cmp::Ordering::Less => lo = end + 1,
                std::cmp::Ordering::Greater => hi = start,
            }
        }
        None
    }
}

/// From this many paths on, one pass over every line of the state's sorted part beats a binary
/// search for each.
const SCAN_FROM: usize = 32;

/// A state file opened for looking up some paths: its header and appended lines are read, and
/// of the part written whole only what [`StateFile::text_for`] needs. It stays open, so what it
/// reads is of one version of the file: a new one replaces it, and only lines are appended.
struct StateFile {
    file: fs::File,
    /// Where the part written whole, sorted by path, lies in the file.
    sorted: std::ops::Range<u64>,
    /// Lines in that part.
    lines: usize,
    appended: String,
}

impl StateFile {
    /// `None` for a missing, foreign or damaged file.
    fn open(path: &Path) -> Option<StateFile> {
        use std::os::unix::fs::FileExt;
        let file = fs::File::open(path).ok()?;
        let size = file.metadata().ok()?.len();
        let mut head = [0u8; 128];
        let read = file.read_at(&mut head, 0).ok()?;
        let end = head[..read].iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&head[..end]).ok()?;
        let (len, lines) = parse_header(header)?;
        let start = header.len() as u64 + 1;
        let sorted = start..start.checked_add(u64::try_from(len).ok()?)?;
        let mut appended = vec![0; usize::try_from(size.checked_sub(sorted.end)?).ok()?];
        file.read_exact_at(&mut appended, sorted.end).ok()?;
        // The sorted part ends with a whole line.
        let mut last = [b'\n'];
        if len > 0 {
            file.read_exact_at(&mut last, sorted.end - 1).ok()?;
        }
        if last != [b'\n'] {
            return None;
        }
        Some(StateFile {
            file,
            sorted,
            lines,
            appended: String::from_utf8(appended).ok()?,
        })
    }

    /// Enough of the sorted part for looking up `paths`: all of it when they are many, else
    /// the line of each that has one, found by binary search in the file.
    fn text_for(&self, paths: &BTreeSet<String>) -> std::io::Result<String> {
        use std::os::unix::fs::FileExt;
        if paths.len() >= SCAN_FROM {
            let len = usize::try_from(self.sorted.end - self.sorted.start).map_err(invalid)?;
            let mut sorted = vec![0; len];
            self.file.read_exact_at(&mut sorted, self.sorted.start)?;
            return String::from_utf8(sorted).map_err(invalid);
        }
        let mut text = String::new();
        for path in paths {
            if let Some(line) = self.sorted_line(path)? {
                text.push_str(&line);
                text.push('\n');
            }
        }
        Ok(text)
    }

    /// The state read, with `sorted` standing for its sorted part (see [`StateFile::text_for`]).
    fn with_sorted<'a>(&'a self, sorted: &'a str) -> StateText<'a> {
        StateText {
            sorted,
            lines: self.lines,
            appended: &self.appended,
        }
    }

    /// The line of `path` in the sorted part, by binary search over its bytes; `None` if there
    /// is none (or a damaged line is in the way), as [`StateText::sorted_line`] finds it.
    fn sorted_line(&self, path: &str) -> std::io::Result<Option<String>> {
        let (mut lo, mut hi) = (self.sorted.start, self.sorted.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // No line starts from `mid` on: the path's, if any, starts before.
            let Some((start, line)) = self.line_from(mid, hi)? else {
                hi = mid;
                continue;
            };
            let Some(at) = line_path(&line) else {
                return Ok(None);
            };
            match at.cmp(path) {
                std::cmp::Ordering::Equal => return Ok(Some(line)),
                std::cmp::Ordering::Less => lo = start + line.len() as u64 + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    /// The first line of the sorted part that starts at `at` or after, before `end`: where it
    /// starts, and its text.
    fn line_from(&self, at: u64, end: u64) -> std::io::Result<Option<(u64, String)>> {
        let start = if at == self.sorted.start {
            at
        } else {
            match self.through_newline(at - 1)? {
                Some((_, newline)) => newline + 1,
                None => return Ok(None),
            }
        };
        if start >= end {
            return Ok(None);
        }
        Ok(match self.through_newline(start)? {
            Some((line, _)) => Some((start, String::from_utf8(line).map_err(invalid)?)),
            None => None,
        })
    }

    /// The bytes of the sorted part from `from` to the next newline, and where that is.
    fn through_newline(&self, from: u64) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        use std::os::unix::fs::FileExt;
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 512];
        let mut at = from;
        while at < self.sorted.end {
            let want = usize::try_from(self.sorted.end - at)
                .map_or(chunk.len(), |left| left.min(chunk.len()));
            let read = self.file.read_at(&mut chunk[..want], at)?;
            if read == 0 {
                break;
            }
            if let Some(i) = chunk[..read].iter().position(|&b| b == b'\n') {
                bytes.extend_from_slice(&chunk[..i]);
                return Ok(Some((bytes, at + i as u64)));
            }
            bytes.extend_from_slice(&chunk[..read]);
            at += read as u64;
        }
        Ok(None)
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// The appended lines of a state file by path (see [`StateText::journal`]).
type Journal<'a> = FastMap<&'a str, Option<&'a str>>;

/// The state file's entries by path, and how many lines described them; a damaged file or line
/// is as if weir had written nothing there (the file is then written again). Later lines win;
/// `- path` says a file is no longer there.
fn parse_state(text: &str) -> (StateMap<'_>, usize) {
    let Some(state) = split_state(text) else {
        return (StateMap::default(), 0);
    };
    let mut old = StateMap::with_capacity_and_hasher(text.len() / 100, Default::default());
    let mut count = 0;
    for line in state.sorted.lines().chain(state.appended.lines()) {
        count += 1;
        if let Some(path) = line.strip_prefix("- ") {
            old.remove(path);
        } else if let Some((path, known)) = known(line) {
            old.insert(path, known);
        }
    }
    (old, count)
}

/// A state line's path: the last of its ten fields (it may hold spaces).
fn line_path(line: &str) -> Option<&str> {
    line.splitn(10, ' ').nth(9)
}

/// A state line's path, mode and blob id, the stat data left unread.
fn known(line: &str) -> Option<(&str, Known<'_>)> {
    let mut parts = line.splitn(10, ' ');
    let mode = FileMode::from_octal(parts.next()?)?;
    let id = gix::ObjectId::from_hex(parts.next()?.as_bytes()).ok()?;
    let path = parts.nth(7)?;
    Some((path, Known { mode, id, line }))
}

/// What the base record says: the tree, and the paths where the files differ from it (changed
/// or added, and removed).
struct Base<'a> {
    tree: gix::ObjectId,
    changed: Vec<&'a str>,
    deleted: Vec<&'a str>,
}

fn parse_base(text: &str) -> Option<Base<'_>> {
    let mut lines = counted_lines(BASE_HEADER, text)?;
    let tree = gix::ObjectId::from_hex(lines.next()?.as_bytes()).ok()?;
    let mut base = Base {
        tree,
        changed: Vec::new(),
        deleted: Vec::new(),
    };
    for line in lines {
        match line.split_at_checked(2)? {
            ("c ", path) => base.changed.push(path),
            ("d ", path) => base.deleted.push(path),
            _ => return None,
        }
    }
    Some(base)
}

/// The base record of `delta`; `None` if a path cannot be a line of it.
fn format_base(delta: &Delta<'_>) -> Option<String> {
    let changes = &delta.changes;
    let lines =
        (changes.changed.iter().map(|p| ("c", p))).chain(changes.deleted.iter().map(|p| ("d", p)));
    counted(BASE_HEADER, &delta.tree.to_string(), lines)
}

fn parse_line(line: &str) -> Option<(&str, Written)> {
    let mut parts = line.splitn(10, ' ');
    let mode = FileMode::from_octal(parts.next()?)?;
    let id = gix::ObjectId::from_hex(parts.next()?.as_bytes()).ok()?;
    let mut number = || parts.next()?.parse::<i64>().ok();
    let (size, mtime, mtime_ns, ctime, ctime_ns, ino, perm) = (
        number()?,
        number()?,
        number()?,
        number()?,
        number()?,
        number()?,
        number()?,
    );
    let path = parts.next()?;
    let stat = Stat {
        file: FileStat {
            size: u64::try_from(size).ok()?,
            mtime: (mtime, mtime_ns),
            ctime: (ctime, ctime_ns),
            ino: u64::try_from(ino).ok()?,
        },
        mode: u32::try_from(perm).ok()?,
    };
    Some((path, Written { mode, id, stat }))
}

/// The state file for `files`, written whole: its lines sorted by path.
fn format_state(files: &[(&str, Kept)]) -> String {
    let mut sorted;
    let files = if files.is_sorted_by_key(|(path, _)| *path) {
        files
    } else {
        sorted = files.to_vec();
        sorted.sort_by_key(|(path, _)| *path);
        sorted.as_slice()
    };
    let mut body = String::with_capacity(files.len() * 128);
    let mut lines = 0;
    for (path, kept) in files {
        let before = body.len();
        match kept {
            Kept::Line(line) => {
                body.push_str(line);
                body.push('\n');
            }
            Kept::Written(written) => push_lines(&mut body, &[(path, *written)]),
        }
        lines += usize::from(body.len() > before);
    }
    format!("{HEADER} {} {lines}\n{body}", body.len())
}

/// Lines to append: the files written, and `- path` for those no longer there.
fn format_changes(written: &[(&str, Written)], gone: &[&str]) -> String {
    let mut text = String::with_capacity(written.len() * 128 + gone.len() * 64);
    push_lines(&mut text, written);
    for path in gone.iter().filter(|p| !p.contains('\n')) {
        text.push_str("- ");
        text.push_str(path);
        text.push('\n');
    }
    text
}

fn push_lines(text: &mut String, written: &[(&str, Written)]) {
    use std::fmt::Write;
    for (path, w) in written {
        if !path.contains('\n') {
            let Stat {
                file:
                    FileStat {
                        size,
                        mtime,
                        ctime,
                        ino,
                    },
                mode,
            } = w.stat;
            let _ = writeln!(
                text,
                "{} {} {size} {} {} {} {} {ino} {mode} {path}",
                w.mode.as_octal(),
                w.id,
                mtime.0,
                mtime.1,
                ctime.0,
                ctime.1,
            );
        }
    }
}

/// A hash of a tree's entries (path, mode, blob id).
fn digest(entries: &[Entry]) -> String {
    // Hashed in one piece: blake3 then works on many chunks at once, several times faster than
    // fed four small pieces an entry.
    let mut bytes = Vec::with_capacity(entries.iter().map(|e| e.path.len() + 27).sum());
    for entry in entries {
        bytes.extend_from_slice(entry.path.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(entry.mode.as_octal().as_bytes());
        bytes.extend_from_slice(entry.id.as_bytes());
    }
    blake3::hash(&bytes).to_hex().to_string()
}

/// Removes the file `rel` under `root`, and the directories above it that this leaves empty;
/// `false` if it was not there, or a symlink is on its way (a job's doing: where it leads is not
/// the snapshot's to change).
fn remove_beneath(root: &Path, rel: &str) -> bool {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let (parent, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let removed = fs::File::open(root)
        .ok()
        .and_then(|root| nix::fcntl::openat2(&root, parent, how).ok())
        .is_some_and(|dir| {
            nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok()
        });
    if removed {
        remove_empty_parents(root, &root.join(rel));
    }
    removed
}

/// Removes the directories above `file` that became empty, up to `root`.
fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(id: u8, size: u64) -> Written {
        Written {
            mode: FileMode::Regular,
            id: gix::ObjectId::from_bytes_or_panic(&[id; 20]),
            stat: Stat {
                file: FileStat {
                    size,
                    mtime: (1, 2),
                    ctime: (3, 4),
                    ino: 5,
                },
                mode: 0o100644,
            },
        }
    }

    #[test]
    fn a_record_written_in_place_counts_only_when_whole() {
        let touched = Touched {
            files: ["a b.txt".to_owned(), "src/x".to_owned()].into(),
            dirs: ["gone".to_owned()].into(),
        };
        let long = format_touched(&touched).unwrap();
        assert_eq!(parse_touched(&long), Some(touched));
        let short = format_touched(&Touched::default()).unwrap();
        assert_eq!(parse_touched(&short), Some(Touched::default()));
        // Cut short, or written over a longer one without cutting what it left.
        assert_eq!(parse_touched(&long[..long.len() - 1]), None);
        assert_eq!(parse_touched(&long[..long.len() - 4]), None);
        let over = format!("{short}{}", &long[short.len()..]);
        assert_eq!(parse_touched(&over), None);
        // Spoiled (see `statefile::spoil`).
        assert_eq!(parse_touched(&format!("-{}", &long[1..])), None);
        let bad = Touched {
            files: ["a\nb".to_owned()].into(),
            dirs: BTreeSet::new(),
        };
        assert_eq!(format_touched(&bad), None);

        let changes = git::Changes {
            changed: vec!["c/d".to_owned()],
            deleted: vec!["e".to_owned()],
        };
        let delta = Delta {
            tree: gix::ObjectId::empty_tree(gix::hash::Kind::Sha1),
            changes: &changes,
        };
        let text = format_base(&delta).unwrap();
        let base = parse_base(&text).unwrap();
        assert_eq!(
            (base.tree, base.changed, base.deleted),
            (delta.tree, vec!["c/d"], vec!["e"])
        );
        assert!(parse_base(&text[..text.len() - 2]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn a_state_file_finds_the_lines_the_whole_text_finds(
            names in proptest::collection::btree_set("[a-c é/ ]{1,6}|x{500,700}[a-c]", 1..40),
            looked_up in proptest::collection::btree_set("[a-c é/ ]{0,6}|x{500,700}[a-c]", 1..40),
            appended in proptest::collection::vec("[a-c é/ ]{1,6}", 0..4),
        ) {
            let files: Vec<(&str, Kept)> = (names.iter().enumerate())
                .map(|(i, p)| (p.as_str(), Kept::Written(written(i as u8, i as u64))))
                .collect();
            let mut text = format_state(&files);
            let changed: Vec<(&str, Written)> =
                appended.iter().map(|p| (p.as_str(), written(99, 99))).collect();
            text.push_str(&format_changes(&changed, &[]));
            let dir = tempfile::TempDir::new().unwrap();
            let path = dir.path().join("state");
            fs::write(&path, &text).unwrap();

            let whole = split_state(&text).unwrap();
            let file = StateFile::open(&path).unwrap();
            proptest::prop_assert_eq!(file.lines, whole.lines);
            proptest::prop_assert_eq!(file.appended.as_str(), whole.appended);
            for path in names.iter().chain(&looked_up) {
                let expected = whole.sorted_line(path).map(|known| known.line.to_owned());
                proptest::prop_assert_eq!(file.sorted_line(path).unwrap(), expected);
            }
            // Many paths or few, the lines read find what the whole text finds.
            for paths in [&looked_up, &names.iter().chain(&looked_up).cloned().collect()] {
                let sorted = file.text_for(paths).unwrap();
                let read = file.with_sorted(&sorted);
                let (journal, _) = read.journal();
                let (whole_journal, _) = whole.journal();
                let found: Vec<Option<&str>> =
                    read.get_all(&journal, paths).iter().map(|k| k.map(|k| k.line)).collect();
                let expected: Vec<Option<&str>> = (whole.get_all(&whole_journal, paths).iter())
                    .map(|k| k.map(|k| k.line))
                    .collect();
                proptest::prop_assert_eq!(found, expected);
            }
        }
    }

    #[test]
    fn a_damaged_or_foreign_state_file_is_not_opened() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("state");
        let text = format_state(&[("a", Kept::Written(written(1, 1)))]);
        let len = text.len() - text.find('\n').unwrap() - 1;
        for bad in [
            String::new(),
            "weir-snapshot 3 0 0\n".to_owned(),
            // A sorted part longer than the file, or not ending with a whole line.
            text.replacen(&format!(" {len} "), &format!(" {} ", len + 1), 1),
            text.replacen(&format!(" {len} "), &format!(" {} ", len - 1), 1),
        ] {
            fs::write(&path, &bad).unwrap();
            assert!(StateFile::open(&path).is_none(), "{bad:?}");
        }
        fs::write(&path, &text).unwrap();
        assert!(StateFile::open(&path).is_some());
    }

    #[test]
    fn appended_changes_override_and_remove_earlier_lines() {
        let (a, b, c) = (written(1, 10), written(2, 20), written(3, 30));
        let mut text = format_state(&[
            ("a", Kept::Written(a)),
            ("b", Kept::Written(b)),
            ("dir/c d", Kept::Written(c)),
        ]);
        let b2 = written(4, 40);
        text.push_str(&format_changes(&[("b", b2)], &["a"]));
        // A torn last line is ignored.
        text.push_str("100644 0404");
        let (state, lines) = parse_state(&text);
        assert_eq!(lines, 6);
        assert_eq!(state.len(), 2, "{state:?}");
        assert_eq!(state.get("b").and_then(Known::stat), Some(b2.stat));
        assert_eq!(state.get("b").map(|k| k.id), Some(b2.id));
        assert_eq!(state.get("dir/c d").and_then(Known::stat), Some(c.stat));
        assert!(!state.contains_key("a"));
        // Kept lines are written back as they were.
        let kept: Vec<(&str, Kept)> = state
            .iter()
            .map(|(p, k)| (*p, Kept::Line(k.line)))
            .collect();
        let again = format_state(&kept);
        assert_eq!(
            parse_state(&again).0.get("b").and_then(Known::stat),
            Some(b2.stat)
        );
    }

    /// A tree of `files` (path, content) in `repo`, and its entries.
    fn tree(repo: &Repo, files: &[(&str, &str)]) -> (gix::ObjectId, Vec<Entry>) {
        let mut entries: Vec<Entry> = files
            .iter()
            .map(|(path, content)| Entry {
                path: (*path).to_owned(),
                mode: FileMode::Regular,
                id: repo.write_blob(content.as_bytes()).unwrap(),
            })
            .collect();
        entries.sort();
        let items: Vec<git::TreeEntry> = entries
            .iter()
            .map(|e| git::TreeEntry::Object {
                path: e.path.clone(),
                mode: 0o100644,
                id: e.id,
            })
            .collect();
        let name = format!("refs/test/{}", digest(&entries));
        let commit = repo.create_commit_ref(&name, &items, "t\n", None).unwrap();
        (repo.commit_tree(commit).unwrap(), entries)
    }

    /// A tree id no sync was told of.
    fn t4_never() -> gix::ObjectId {
        gix::ObjectId::from_bytes_or_panic(&[7; 20])
    }

    /// The files under `dir`, by path.
    /// `files`, owned and sorted by path: what [`files_in`] finds when they are all there is.
    fn owned(files: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = files
            .iter()
            .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
            .collect();
        files.sort();
        files
    }

    fn borrowed(files: &[(String, String)]) -> Vec<(&str, &str)> {
        files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect()
    }

    fn files_in(dir: &Path) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    found.push((rel, fs::read_to_string(&path).unwrap()));
                }
            }
        }
        found.sort();
        found
    }

    fn sync(
        snapshot: &Snapshot,
        repo: &Repo,
        entries: &[Entry],
        tree: gix::ObjectId,
        changed: &[&str],
    ) {
        // What is not in the entries was removed.
        let (deleted, changed): (Vec<String>, Vec<String>) = changed
            .iter()
            .map(|p| (*p).to_owned())
            .partition(|p| entries.binary_search_by(|e| e.path.cmp(p)).is_err());
        let changes = git::Changes { changed, deleted };
        let delta = Delta {
            tree,
            changes: &changes,
        };
        let watch = snapshot
            .sync_watched(
                repo,
                entries,
                None,
                Some(delta),
                snapshot.prepare(entries).unwrap(),
                snapshot.watch_early(),
            )
            .unwrap();
        // What a run that touched nothing records.
        drop(watch);
        snapshot.record(Some(&Touched::default()));
    }

    #[test]
    fn remembered_hits_belong_to_one_run_and_only_a_whole_record_counts() {
        let (_dir, repo) = crate::git::test_repo();
        let snapshot = Snapshot::new(&repo, "test");
        fs::create_dir_all(snapshot.hits.parent().expect("a parent")).expect("mkdir");
        let keys: BTreeMap<String, String> = [("lint", "k1"), ("fmt check", "k2")]
            .map(|(job, key)| (job.to_owned(), key.to_owned()))
            .into();
        snapshot.remember_hits("run-a", &keys);
        assert_eq!(snapshot.remembered_hits("run-a"), Some(keys.clone()));
        assert_eq!(snapshot.remembered_hits("run-b"), None);

        let text = fs::read_to_string(&snapshot.hits).expect("read the record");
        let cut = text.lines().take(2).collect::<Vec<_>>().join("\n");
        fs::write(&snapshot.hits, cut).expect("write");
        assert_eq!(snapshot.remembered_hits("run-a"), None, "a line is missing");

        snapshot.remember_hits("run-c", &BTreeMap::new());
        assert_eq!(snapshot.remembered_hits("run-c"), Some(BTreeMap::new()));
    }

    #[test]
    fn a_sync_told_what_changed_leaves_exactly_the_entries() {
        let (_dir, repo) = crate::git::test_repo();
        let snapshot = Snapshot::new(&repo, "test");
        let want = owned;

        // HEAD's tree, with `b/c` staged: the first sync compares everything.
        let base = [("a", "1"), ("b/c", "2"), ("d/e/f", "3")];
        let (t0, _) = tree(&repo, &base);
        let one = [("a", "1"), ("b/c", "2 staged"), ("d/e/f", "3")];
        let (_, e1) = tree(&repo, &one);
        sync(&snapshot, &repo, &e1, t0, &["b/c"]);
        assert_eq!(files_in(&snapshot.dir), want(&one));

        // What the sync recorded is what it was told, against that tree only.
        let recorded = snapshot.recorded_changes(t0).expect("recorded");
        assert_eq!(
            (recorded.changed, recorded.deleted),
            (vec!["b/c".to_owned()], vec![])
        );
        assert!(snapshot.recorded_changes(t4_never()).is_none());

        // The same HEAD, other changes: `b/c` goes back, `d/e/f` changes, `g` is new.
        let two = [("a", "1"), ("b/c", "2"), ("d/e/f", "3 staged"), ("g", "4")];
        let (t2, e2) = tree(&repo, &two);
        sync(&snapshot, &repo, &e2, t0, &["d/e/f", "g"]);
        assert_eq!(files_in(&snapshot.dir), want(&two));

        // Committed: HEAD is now that tree, and `a` is staged for removal.
        let three = [("b/c", "2"), ("d/e/f", "3 staged"), ("g", "4")];
        let (_, e3) = tree(&repo, &three);
        sync(&snapshot, &repo, &e3, t2, &["a"]);
        assert_eq!(files_in(&snapshot.dir), want(&three));

        // A job changed `g` and removed `d/e`: what it touched is compared too.
        fs::write(snapshot.dir.join("g"), "job").unwrap();
        fs::remove_dir_all(snapshot.dir.join("d/e")).unwrap();
        let touched = Touched {
            files: ["g".to_owned()].into(),
            dirs: ["d/e".to_owned()].into(),
        };
        snapshot.record(Some(&touched));
        sync(&snapshot, &repo, &e3, t2, &["a"]);
        assert_eq!(files_in(&snapshot.dir), want(&three));

        // HEAD moved somewhere else entirely, and the state was written whole meanwhile.
        let four = [("b/c", "5"), ("x/y", "6")];
        let (t4, e4) = tree(&repo, &four);
        sync(&snapshot, &repo, &e4, t4, &[]);
        assert_eq!(files_in(&snapshot.dir), want(&four));
        assert_state_holds(&snapshot, &e4);
    }

    #[test]
    fn a_sync_told_of_many_changes_leaves_exactly_the_entries() {
        /// 400 files in 7 directories, each at `version(i)` or gone, and `added` new ones.
        fn files(
            version: impl Fn(usize) -> Option<&'static str>,
            added: usize,
        ) -> Vec<(String, String)> {
            let mut files: Vec<(String, String)> = (0..400)
                .filter_map(|i| Some((format!("d{}/f{i:03}", i % 7), version(i)?.to_owned())))
                .chain((0..added).map(|i| (format!("new/g{i}"), "added".to_owned())))
                .collect();
            files.sort();
            files
        }
        /// The paths where `after` differs from `before`.
        fn changed<'a>(
            before: &'a [(String, String)],
            after: &'a [(String, String)],
        ) -> Vec<&'a str> {
            let before: BTreeMap<&str, &str> = borrowed(before).into_iter().collect();
            let after: BTreeMap<&str, &str> = borrowed(after).into_iter().collect();
            let paths: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
            paths
                .into_iter()
                .filter(|p| before.get(p) != after.get(p))
                .collect()
        }
        let (_dir, repo) = crate::git::test_repo();
        let snapshot = Snapshot::new(&repo, "test");

        // HEAD's tree, synced whole.
        let head = files(|_| Some("v0"), 0);
        let (t0, e0) = tree(&repo, &borrowed(&head));
        sync(&snapshot, &repo, &e0, t0, &[]);

        // Every 8th file staged: appended to the state.
        let one = files(|i| Some(if i % 8 == 0 { "v1" } else { "v0" }), 0);
        let (_, e1) = tree(&repo, &borrowed(&one));
        sync(&snapshot, &repo, &e1, t0, &changed(&head, &one));
        assert_eq!(files_in(&snapshot.dir), one);

        // Those unstaged again, every 9th staged, every 13th removed, ten files added: the sync
        // compares them and the last sync's changes, well over a binary search's worth.
        let two = files(
            |i| match (i % 9, i % 13) {
                (_, 0) => None,
                (0, _) => Some("v2"),
                _ => Some("v0"),
            },
            10,
        );
        let (_, e2) = tree(&repo, &borrowed(&two));
        let told = changed(&head, &two);
        assert!(told.len() > 64, "{}", told.len());
        sync(&snapshot, &repo, &e2, t0, &told);
        assert_eq!(files_in(&snapshot.dir), two);
        assert_state_holds(&snapshot, &e2);
    }

    #[test]
    fn a_copy_is_kept_only_when_the_source_holds_exactly_the_size_checked() {
        let dir = tempfile::tempdir().unwrap();
        let out = fs::File::open(dir.path()).unwrap();
        fs::write(dir.path().join("source"), "twelve bytes").unwrap();
        let source = fs::File::open(dir.path().join("source")).unwrap();
        // What was there before is longer: it is cut to the copy.
        fs::write(dir.path().join("copy"), "a longer file that was here").unwrap();
        let copied = copy_at(&out, "copy", FileMode::Executable, &source, 12);
        let meta = copied.expect("copied").expect("written");
        assert_eq!(fs::read(dir.path().join("copy")).unwrap(), b"twelve bytes");
        assert_eq!(meta.len(), 12);
        assert_eq!(meta.mode() & 0o777, 0o755);
        // A source that grew or shrank since its size was taken is not the file checked.
        assert!(copy_at(&out, "copy", FileMode::Regular, &source, 11).is_none());
        assert!(copy_at(&out, "copy", FileMode::Regular, &source, 13).is_none());
        assert_eq!(git::read_whole(&source, 11), None);
        assert_eq!(git::read_whole(&source, 13), None);
        assert_eq!(git::read_whole(&source, 12).unwrap(), b"twelve bytes");
    }

    #[test]
    fn a_file_is_written_anew_never_through_a_link_or_symlink_standing_in_its_place() {
        let (dir, repo) = crate::git::test_repo();
        let snapshot = Snapshot::new(&repo, "test");
        let base = [("a", "1"), ("b", "2"), ("c", "3")];
        let (t0, e0) = tree(&repo, &base);
        sync(&snapshot, &repo, &e0, t0, &[]);

        // Unseen by any watch (the next sync is told nothing was touched): `a` linked from
        // outside, `b` replaced by a symlink to a file outside.
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::hard_link(snapshot.dir.join("a"), outside.join("a-link")).unwrap();
        fs::write(outside.join("target"), "keep").unwrap();
        fs::remove_file(snapshot.dir.join("b")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), snapshot.dir.join("b")).unwrap();

        let staged = [("a", "1 staged"), ("b", "2 staged"), ("c", "3")];
        let (_, e1) = tree(&repo, &staged);
        sync(&snapshot, &repo, &e1, t0, &["a", "b"]);
        assert_eq!(files_in(&snapshot.dir), owned(&staged));
        for path in ["a", "b"] {
            let meta = fs::symlink_metadata(snapshot.dir.join(path)).unwrap();
            assert!(meta.is_file() && meta.nlink() == 1, "{path}: {meta:?}");
        }
        assert_eq!(fs::read_to_string(outside.join("a-link")).unwrap(), "1");
        assert_eq!(fs::read_to_string(outside.join("target")).unwrap(), "keep");
    }

    #[test]
    fn a_symlink_a_job_left_where_a_directory_goes_is_replaced_never_written_through() {
        let (dir, repo) = crate::git::test_repo();
        let snapshot = Snapshot::new(&repo, "test");
        let base = [("d/a", "1"), ("d/e/b", "2"), ("d/gone", "4"), ("c", "3")];
        let (t0, e0) = tree(&repo, &base);
        sync(&snapshot, &repo, &e0, t0, &[]);

        // Unseen by any watch: `d` replaced by a symlink to a directory outside, whose files
        // have the names the snapshot's have.
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("e")).unwrap();
        fs::write(outside.join("a"), "keep a").unwrap();
        fs::write(outside.join("e/b"), "keep b").unwrap();
        fs::write(outside.join("gone"), "keep gone").unwrap();
        fs::remove_dir_all(snapshot.dir.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, snapshot.dir.join("d")).unwrap();

        // Two files change and one leaves the tree.
        let staged = [("d/a", "1 staged"), ("d/e/b", "2 staged"), ("c", "3")];
        let (_, e1) = tree(&repo, &staged);
        sync(&snapshot, &repo, &e1, t0, &["d/a", "d/e/b", "d/gone"]);
        assert!(
            fs::symlink_metadata(snapshot.dir.join("d"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(files_in(&snapshot.dir), owned(&staged));
        assert_eq!(fs::read_to_string(outside.join("a")).unwrap(), "keep a");
        assert_eq!(fs::read_to_string(outside.join("e/b")).unwrap(), "keep b");
        assert_eq!(
            fs::read_to_string(outside.join("gone")).unwrap(),
            "keep gone"
        );
    }

    /// The snapshot's state names each of `entries` with its own blob id.
    fn assert_state_holds(snapshot: &Snapshot, entries: &[Entry]) {
        let text = fs::read_to_string(&snapshot.state).unwrap();
        let state = split_state(&text).unwrap();
        let (journal, _) = state.journal();
        for entry in entries {
            let known = state.get(&journal, &entry.path);
            assert_eq!(known.map(|k| k.id), Some(entry.id), "{}", entry.path);
        }
    }

    #[test]
    fn many_files_are_written_by_several_threads_each_where_it_belongs() {
        let (_dir, repo) = crate::git::test_repo();
        let snapshot = Snapshot::new(&repo, "test");
        let files = |from: usize, to: usize, version: &str| -> Vec<(String, String)> {
            let mut files: Vec<(String, String)> = (from..to)
                .map(|i| (format!("d{}/f{i:03}", i % 7), format!("{version} {i}")))
                .collect();
            files.sort();
            files
        };

        // Every file is new: all 300 are written, by the whole-state path.
        let one = files(0, 300, "one");
        let (t1, e1) = tree(&repo, &borrowed(&one));
        sync(&snapshot, &repo, &e1, t1, &[]);
        assert_eq!(files_in(&snapshot.dir), one);

        // 200 change, 50 are new, 100 go: told by the staged changes.
        let mut two = files(100, 300, "two");
        two.extend(files(300, 350, "new"));
        two.sort();
        let (_, e2) = tree(&repo, &borrowed(&two));
        let told: Vec<String> = (0..350).map(|i| format!("d{}/f{i:03}", i % 7)).collect();
        let told: Vec<&str> = told.iter().map(String::as_str).collect();
        sync(&snapshot, &repo, &e2, t1, &told);
        assert_eq!(files_in(&snapshot.dir), two);
        // The state holds each file's own blob, whichever thread wrote it.
        assert_state_holds(&snapshot, &e2);

        // Jobs rewrote 120 files and no record says which: every file is compared.
        for (path, _) in two.iter().take(120) {
            fs::write(snapshot.dir.join(path), "job").unwrap();
        }
        let _ = fs::remove_file(&snapshot.touched);
        let _ = fs::remove_file(&snapshot.base);
        sync(&snapshot, &repo, &e2, t1, &[]);
        assert_eq!(files_in(&snapshot.dir), two);
    }

    /// Syncs `entries` (which differ from `tree` at `changed`) with the early watch the last
    /// sync recorded, and returns the watch.
    fn sync_early(
        snapshot: &Snapshot,
        repo: &Repo,
        entries: &[Entry],
        tree: gix::ObjectId,
        changed: &[&str],
    ) -> Watch {
        let changes = git::Changes {
            changed: changed.iter().map(|p| (*p).to_owned()).collect(),
            deleted: Vec::new(),
        };
        let delta = Delta {
            tree,
            changes: &changes,
        };
        let prepared = snapshot.prepare(entries).unwrap();
        let early = snapshot
            .watch_early()
            .expect("the directories were recorded");
        snapshot
            .sync_watched(repo, entries, None, Some(delta), prepared, Some(early))
            .unwrap()
    }

    #[test]
    fn an_early_watch_is_trusted_to_cover_the_files_only_while_their_paths_stay() {
        let (_dir, repo) = crate::git::test_repo();
        let snapshot = Snapshot::new(&repo, "test");
        let (t0, e0) = tree(&repo, &[("a/x", "1"), ("b/c/y", "1")]);
        sync(&snapshot, &repo, &e0, t0, &[]);

        // New content at the same paths: the directories recorded are watched as they are, and
        // a job's writes are seen in each.
        let (_, e1) = tree(&repo, &[("a/x", "2"), ("b/c/y", "1")]);
        let watch = sync_early(&snapshot, &repo, &e1, t0, &["a/x"]);
        fs::write(snapshot.dir.join("a/x"), "job").unwrap();
        fs::write(snapshot.dir.join("b/c/y"), "job").unwrap();
        let touched = watch.tracker.expect("watching").finish().expect("known");
        assert_eq!(touched.files, ["a/x".to_owned(), "b/c/y".to_owned()].into());
        snapshot.record(Some(&touched));
        assert_state_holds(&snapshot, &e1);

        // A sync that adds a file in a new directory forgets them, watched or not: an early
        // watch from them would miss that directory.
        let (_, e2) = tree(&repo, &[("a/x", "2"), ("b/c/y", "1"), ("d/z", "3")]);
        snapshot.sync(&repo, &e2).unwrap();
        assert!(
            snapshot.watch_early().is_none(),
            "the directories were forgotten"
        );

        // The next watched sync records them again, the new directory among them.
        sync(&snapshot, &repo, &e2, t0, &["a/x", "d/z"]);
        let (_, e3) = tree(&repo, &[("a/x", "2"), ("b/c/y", "1"), ("d/z", "4")]);
        let watch = sync_early(&snapshot, &repo, &e3, t0, &["a/x", "d/z"]);
        fs::write(snapshot.dir.join("d/z"), "job").unwrap();
        let touched = watch.tracker.expect("watching").finish().expect("known");
        assert_eq!(touched.files, ["d/z".to_owned()].into());
        assert_state_holds(&snapshot, &e3);
    }

    #[test]
    fn a_watch_started_before_the_sync_covers_the_directories_it_made() {
        let (_dir, repo) = crate::git::test_repo();
        let snapshot = Snapshot::new(&repo, "test");
        assert!(snapshot.watch_early().is_none(), "nothing recorded yet");
        let (t0, e0) = tree(&repo, &[("a/x", "1")]);
        sync(&snapshot, &repo, &e0, t0, &[]);

        let (_, e1) = tree(&repo, &[("a/x", "1"), ("new/deep/y", "2")]);
        let changes = git::Changes {
            changed: vec!["new/deep/y".to_owned()],
            deleted: Vec::new(),
        };
        let delta = Delta {
            tree: t0,
            changes: &changes,
        };
        let prepared = snapshot.prepare(&e1).unwrap();
        assert!(!prepared.untouched());
        let early = snapshot
            .watch_early()
            .expect("the directories were recorded");
        let watch = snapshot
            .sync_watched(&repo, &e1, None, Some(delta), prepared, Some(early))
            .unwrap();
        // What a job does now is seen, in the old directory and the new ones alike; what the
        // sync wrote is not.
        fs::write(snapshot.dir.join("new/deep/y"), "job").unwrap();
        fs::write(snapshot.dir.join("a/x"), "job").unwrap();
        let touched = watch.tracker.expect("watching").finish().expect("known");
        assert_eq!(
            touched.files,
            ["a/x".to_owned(), "new/deep/y".to_owned()].into()
        );
    }
}
