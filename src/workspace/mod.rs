//! Where jobs run: the working tree itself, or a snapshot of exactly the content a hook is about
//! (the staged index, a pushed commit, a merged commit), kept under `.git/weir/snapshots/<name>/`
//! and synced incrementally: only files that differ are written.

mod track;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::git::{self, Entry, FileMode, FileStat, Repo};
use crate::statefile;
use crate::store::cache::{check_path, write_file};

pub use track::{Touched, Tracker};

const HEADER: &str = "weir-snapshot 3";

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
}

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    pub written: usize,
    pub removed: usize,
    pub kept: usize,
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
        let base = repo.weir_dir().join("snapshots").join(name);
        Snapshot {
            dir: base.join("tree"),
            state: base.join("state"),
            touched: base.join("touched"),
            digest: base.join("digest"),
        }
    }

    /// Makes the directory hold exactly `entries`' content (files a job left elsewhere in it
    /// stay). A file is rewritten only if it is new, changed in the tree, or changed on disk
    /// since weir wrote it (by its stat data, as git's index tells).
    pub fn sync(&self, repo: &Repo, entries: &[Entry]) -> Result<Synced, Error> {
        let (touched, digest) = self.begin(entries)?;
        if self.untouched(touched.as_ref(), &digest) {
            return Ok(Synced {
                kept: entries.len(),
                ..Synced::default()
            });
        }
        self.update(repo, entries, None, touched, &digest)
    }

    /// [`Snapshot::sync`], and what a run there needs to record what its jobs touch. Unless the
    /// directory already held `entries` untouched (then the jobs are most likely all cache hits,
    /// and the engine starts a watch only if one runs), the watch starts while the files are
    /// written.
    /// With `worktree`, a file still as `git add` staged it is copied from the working tree
    /// rather than inflated from the object database.
    pub fn sync_watched(
        &self,
        repo: &Repo,
        entries: &[Entry],
        worktree: Option<Worktree<'_>>,
    ) -> Result<Watch, Error> {
        let (touched, digest) = self.begin(entries)?;
        if self.untouched(touched.as_ref(), &digest) {
            return Ok(self.watch(None));
        }
        std::thread::scope(|scope| {
            let paths = entries.iter().map(|e| e.path.as_str());
            // This thread is the watch's own.
            let tracker = scope.spawn(|| Tracker::start_here(&self.dir, paths));
            self.update(repo, entries, worktree, touched, &digest)?;
            let tracker = match tracker.join() {
                // What the sync wrote is in the state: only what jobs do from here counts.
                Ok(Ok(mut tracker)) => tracker.forget().then_some(tracker),
                Ok(Err(err)) => {
                    tracing::debug!(%err, "cannot watch the snapshot");
                    None
                }
                Err(_) => None,
            };
            Ok(self.watch(tracker))
        })
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
    ) -> Result<Synced, Error> {
        // Until the state is saved, the record no longer tells which files are as it says.
        let _ = fs::remove_file(&self.touched);
        let started = std::time::Instant::now();
        let text = fs::read_to_string(&self.state).unwrap_or_default();
        let (old, lines) = parse_state(&text);
        tracing::debug!(elapsed = ?started.elapsed(), files = old.len(), "loaded the snapshot state");
        // Which files are as weir left them: those no job touched, and the others by one lstat
        // each (a file linked elsewhere is removed, to be written anew rather than through the
        // link), spread over the cores, since this is most of a hook's cost in a large
        // repository when what the jobs touched is not known.
        let intact = |entry: &Entry| -> Option<Kept> {
            let was = old.get(entry.path.as_str())?;
            let same = was.mode == entry.mode && was.id == entry.id;
            if touched.as_ref().is_some_and(|t| !t.contains(&entry.path)) {
                return same.then_some(Kept::Line(was.line));
            }
            let abs = self.dir.join(&entry.path);
            let meta = fs::symlink_metadata(&abs).ok()?;
            if meta.is_file() && meta.nlink() > 1 {
                // A job linked the file elsewhere: it is written anew, not through the link.
                let _ = fs::remove_file(&abs);
                return None;
            }
            (same && was.stat() == Some(stat_of(&meta))).then_some(Kept::Line(was.line))
        };
        let checked: Vec<Option<Kept>> = if touched.is_some() {
            entries.iter().map(intact).collect()
        } else {
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let chunk = entries.len().div_ceil(threads).max(256);
            std::thread::scope(|scope| {
                let handles: Vec<_> = entries
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || part.iter().map(intact).collect::<Vec<_>>()))
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
            let current: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
            for path in old.keys().filter(|p| !current.contains(*p)) {
                gone.push(*path);
                let abs = self.dir.join(path);
                if fs::remove_file(&abs).is_ok() {
                    synced.removed += 1;
                    remove_empty_parents(&self.dir, &abs);
                }
            }
        }
        for (at, (entry, known)) in entries
            .iter()
            .zip(checked.into_iter().chain(std::iter::repeat(None)))
            .enumerate()
        {
            if let Some(known) = known {
                new.push((entry.path.as_str(), known));
                synced.kept += 1;
                continue;
            }
            check_path(&entry.path).map_err(|reason| Error::Unsafe {
                path: entry.path.clone(),
                reason,
            })?;
            let abs = self.dir.join(&entry.path);
            let clean = worktree
                .as_ref()
                .filter(|_| entry.mode != FileMode::Symlink)
                .and_then(|w| {
                    let stat = w.stats.get(at)?;
                    git::clean_content(&w.root.join(&entry.path), stat, w.written)
                });
            let bytes = match clean {
                Some(bytes) => bytes,
                None => repo.read_blob(entry.id)?,
            };
            let meta = match write_file(&abs, entry.mode, &bytes) {
                Ok(meta) => meta,
                // Something a job left where the file or one of its directories goes: looked
                // for only when the write fails, which saves a stat on every file.
                Err(_) => {
                    self.clear_way(&entry.path)?;
                    write_file(&abs, entry.mode, &bytes)
                        .map_err(|e| Error::Write(abs.clone(), e))?
                }
            };
            let written = Written {
                mode: entry.mode,
                id: entry.id,
                stat: stat_of(&meta),
            };
            new.push((entry.path.as_str(), Kept::Written(written)));
            changed.push((entry.path.as_str(), written));
            synced.written += 1;
        }
        tracing::debug!(elapsed = ?started.elapsed(), ?synced, "wrote the snapshot's files");
        if !changed.is_empty() || !gone.is_empty() {
            // A few changes are appended (later lines win); the file is written whole again
            // once it has grown to twice what it describes.
            let saved = if lines > 0 && lines + changed.len() + gone.len() <= 2 * new.len() + 64 {
                statefile::append(&self.state, format_changes(&changed, &gone).as_bytes())
            } else {
                statefile::replace(&self.state, format_state(&new).as_bytes())
            };
            saved.map_err(|e| Error::Write(self.state.clone(), e))?;
        }
        tracing::debug!(elapsed = ?started.elapsed(), "saved the snapshot state");
        // Without the digest the next sync only compares entry by entry.
        let _ = statefile::overwrite(&self.digest, digest.as_bytes());
        Ok(synced)
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
        let Some(touched) = touched else {
            let _ = fs::remove_file(&self.touched);
            return;
        };
        if touched.is_empty() && self.touched.exists() {
            // Still the record of an untouched directory: whatever ran there removed it.
            return;
        }
        let mut text = format!("{TOUCHED_HEADER}\n");
        let lines =
            (touched.files.iter().map(|p| ("f", p))).chain(touched.dirs.iter().map(|p| ("d", p)));
        for (kind, path) in lines {
            if path.contains('\n') {
                // Not a path a line can hold: say nothing, which is "unknown".
                let _ = fs::remove_file(&self.touched);
                return;
            }
            text.push_str(&format!("{kind} {path}\n"));
        }
        // Without the record the next sync only stats every file.
        let _ = statefile::replace(&self.touched, text.as_bytes());
    }
}

/// The working tree a snapshot of the staged index can copy clean files from: `stats` are the
/// index's stat data for each entry (in the same order), `written` when the index was written.
/// Only for a repository where git stores files as they are (see `Repo::may_filter`).
pub struct Worktree<'a> {
    pub root: &'a Path,
    pub stats: &'a [gix::index::entry::Stat],
    pub written: (i64, u32),
}

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
        let _ = fs::remove_file(&self.record);
    }
}

const TOUCHED_HEADER: &str = "weir-touched 1";

/// The touched record; `None` if it is not one.
fn parse_touched(text: &str) -> Option<Touched> {
    let mut lines = text.lines();
    if lines.next() != Some(TOUCHED_HEADER) {
        return None;
    }
    let mut touched = Touched::default();
    for line in lines {
        match line.split_once(' ')? {
            ("f", path) => touched.files.insert(path.to_owned()),
            ("d", path) => touched.dirs.insert(path.to_owned()),
            _ => return None,
        };
    }
    Some(touched)
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
type StateMap<'a> = HashMap<&'a str, Known<'a>, foldhash::fast::RandomState>;

/// A file of the synced state: its line as read, or what was just written.
#[derive(Debug, Clone, Copy)]
enum Kept<'a> {
    Line(&'a str),
    Written(Written),
}

/// The state file's entries by path, and how many lines described them; a damaged file or line
/// is as if weir had written nothing there (the file is then written again). Later lines win;
/// `- path` says a file is no longer there.
fn parse_state(text: &str) -> (StateMap<'_>, usize) {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return (StateMap::default(), 0);
    }
    let mut old = StateMap::with_capacity_and_hasher(text.len() / 100, Default::default());
    let mut count = 0;
    for line in lines {
        count += 1;
        if let Some(path) = line.strip_prefix("- ") {
            old.remove(path);
            continue;
        }
        let known = (|| {
            let mut parts = line.splitn(10, ' ');
            let mode = FileMode::from_octal(parts.next()?)?;
            let id = gix::ObjectId::from_hex(parts.next()?.as_bytes()).ok()?;
            let path = parts.nth(7)?;
            Some((path, Known { mode, id, line }))
        })();
        if let Some((path, known)) = known {
            old.insert(path, known);
        }
    }
    (old, count)
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

fn format_state(files: &[(&str, Kept)]) -> String {
    let mut text = String::with_capacity(files.len() * 128);
    text.push_str(HEADER);
    text.push('\n');
    for (path, kept) in files {
        match kept {
            Kept::Line(line) => {
                text.push_str(line);
                text.push('\n');
            }
            Kept::Written(written) => push_lines(&mut text, &[(path, *written)]),
        }
    }
    text
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
    let mut hasher = blake3::Hasher::new();
    for entry in entries {
        hasher.update(entry.path.as_bytes());
        hasher.update(b"\0");
        hasher.update(entry.mode.as_octal().as_bytes());
        hasher.update(entry.id.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
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
}
