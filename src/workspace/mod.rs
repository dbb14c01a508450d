//! Where jobs run: the working tree itself, or a snapshot of exactly the content a hook is about
//! (the staged index, a pushed commit, a merged commit), kept under `.git/weir/snapshots/<name>/`
//! and synced incrementally: only files that differ are written.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::git::{self, Entry, FileMode, Repo};
use crate::store::cache::{check_path, write_file};

const HEADER: &str = "weir-snapshot 2";

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
    /// Present when no job has run in the directory since the last sync: its files are then
    /// known to be as weir wrote them, and the next sync need not stat them.
    clean: PathBuf,
    /// A hash of the entries last synced: the same tree, clean, needs no work at all.
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
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    mode: FileMode,
    id: gix::ObjectId,
    stat: (u64, i64, i64, u64),
}

fn stat_of(meta: &fs::Metadata) -> (u64, i64, i64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.size(), meta.mtime(), meta.mtime_nsec(), meta.ino())
}

impl Snapshot {
    pub fn new(repo: &Repo, name: &str) -> Snapshot {
        let base = repo.weir_dir().join("snapshots").join(name);
        Snapshot {
            dir: base.join("tree"),
            state: base.join("state"),
            clean: base.join("clean"),
            digest: base.join("digest"),
        }
    }

    /// Makes the directory hold exactly `entries`' content (files a job left elsewhere in it
    /// stay). A file is rewritten only if it is new, changed in the tree, or changed on disk
    /// since weir wrote it (by its stat data, as git's index tells).
    pub fn sync(&self, repo: &Repo, entries: &[Entry]) -> Result<Synced, Error> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::Write(self.dir.clone(), e))?;
        // Jobs may run in the directory after this sync: until told otherwise, it is not clean.
        let clean = fs::remove_file(&self.clean).is_ok();
        let digest = digest(entries);
        if clean && fs::read_to_string(&self.digest).is_ok_and(|d| d == digest) {
            // The same tree as last time, and no job has run in it since.
            return Ok(Synced {
                kept: entries.len(),
                ..Synced::default()
            });
        }
        let started = std::time::Instant::now();
        let old = self.load();
        tracing::debug!(elapsed = ?started.elapsed(), files = old.len(), "loaded the snapshot state");
        let mut new = BTreeMap::new();
        let mut synced = Synced::default();
        // Which files are as weir left them: one lstat each, spread over the cores, since
        // this is most of a hook's cost in a large repository.
        let intact = |entry: &Entry| -> Option<Written> {
            let was = old.get(&entry.path)?;
            if was.mode != entry.mode || was.id != entry.id {
                return None;
            }
            if clean {
                return Some(was.clone());
            }
            let meta = fs::symlink_metadata(self.dir.join(&entry.path)).ok()?;
            (was.stat == stat_of(&meta)).then(|| was.clone())
        };
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunk = entries.len().div_ceil(threads).max(256);
        let checked: Vec<Option<Written>> = std::thread::scope(|scope| {
            let handles: Vec<_> = entries
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(intact).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        tracing::debug!(elapsed = ?started.elapsed(), "checked the snapshot's files");
        for (entry, known) in entries
            .iter()
            .zip(checked.into_iter().chain(std::iter::repeat(None)))
        {
            if let Some(known) = known {
                new.insert(entry.path.clone(), known);
                synced.kept += 1;
                continue;
            }
            check_path(&entry.path).map_err(|reason| Error::Unsafe {
                path: entry.path.clone(),
                reason,
            })?;
            let abs = self.dir.join(&entry.path);
            let bytes = repo.read_blob(entry.id)?;
            let meta = match write_file(&abs, entry.mode, &bytes) {
                Ok(meta) => meta,
                // A directory where the file goes (the tree changed a directory into a file):
                // looked for only when the write fails, which saves a stat on every file.
                Err(_) if fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) => {
                    fs::remove_dir_all(&abs).map_err(|e| Error::Write(abs.clone(), e))?;
                    write_file(&abs, entry.mode, &bytes)
                        .map_err(|e| Error::Write(abs.clone(), e))?
                }
                Err(e) => return Err(Error::Write(abs, e)),
            };
            new.insert(
                entry.path.clone(),
                Written {
                    mode: entry.mode,
                    id: entry.id,
                    stat: stat_of(&meta),
                },
            );
            synced.written += 1;
        }
        for path in old.keys().filter(|p| !new.contains_key(*p)) {
            let abs = self.dir.join(path);
            if fs::remove_file(&abs).is_ok() {
                synced.removed += 1;
                remove_empty_parents(&self.dir, &abs);
            }
        }
        tracing::debug!(elapsed = ?started.elapsed(), ?synced, "wrote the snapshot's files");
        if synced.written > 0 || synced.removed > 0 || old.len() != new.len() {
            self.save(&new)?;
        }
        tracing::debug!(elapsed = ?started.elapsed(), "saved the snapshot state");
        // Without the digest the next sync only compares entry by entry.
        let _ = fs::write(&self.digest, digest);
        Ok(synced)
    }

    /// Records that the jobs run since the last sync left the directory as it was (they were all
    /// restored from the cache).
    pub fn mark_clean(&self) {
        // Without the mark the next sync only stats every file.
        let _ = fs::write(&self.clean, b"");
    }

    fn load(&self) -> BTreeMap<String, Written> {
        let Ok(text) = fs::read_to_string(&self.state) else {
            return BTreeMap::new();
        };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return BTreeMap::new();
        }
        lines
            .filter_map(|line| {
                let mut parts = line.splitn(7, ' ');
                let mode = FileMode::from_octal(parts.next()?)?;
                let id = gix::ObjectId::from_hex(parts.next()?.as_bytes()).ok()?;
                let size = parts.next()?.parse().ok()?;
                let secs = parts.next()?.parse().ok()?;
                let nanos = parts.next()?.parse().ok()?;
                let ino = parts.next()?.parse().ok()?;
                let path = parts.next()?.to_owned();
                let stat = (size, secs, nanos, ino);
                Some((path, Written { mode, id, stat }))
            })
            .collect()
    }

    fn save(&self, written: &BTreeMap<String, Written>) -> Result<(), Error> {
        let mut text = format!("{HEADER}\n");
        for (path, w) in written {
            if !path.contains('\n') {
                let (size, secs, nanos, ino) = w.stat;
                text.push_str(&format!(
                    "{} {} {size} {secs} {nanos} {ino} {path}\n",
                    w.mode.as_octal(),
                    w.id
                ));
            }
        }
        let tmp = self
            .state
            .with_extension(format!("tmp-{}", std::process::id()));
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &self.state))
            .map_err(|e| Error::Write(self.state.clone(), e))
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
