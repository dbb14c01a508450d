//! Where jobs run: the working tree itself, or a snapshot of exactly the content a hook is about
//! (the staged index, a pushed commit, a merged commit), kept under `.git/weir/snapshots/<name>/`
//! and synced incrementally: only files that differ are written.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::git::{self, Entry, FileMode, Repo, StatCache};
use crate::store::cache::{check_path, write_file};

const HEADER: &str = "weir-snapshot 1";

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
    /// What weir last wrote there: `mode id path` per line.
    state: PathBuf,
}

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    pub written: usize,
    pub removed: usize,
    pub kept: usize,
}

impl Snapshot {
    pub fn new(repo: &Repo, name: &str) -> Snapshot {
        let base = repo.weir_dir().join("snapshots").join(name);
        Snapshot {
            dir: base.join("tree"),
            state: base.join("state"),
        }
    }

    /// Makes the directory hold exactly `entries`' content (files a job left elsewhere in it
    /// stay). A file is rewritten only if it is new, changed in the tree, or changed on disk
    /// since weir wrote it.
    pub fn sync(&self, repo: &Repo, entries: &[Entry], stats: &StatCache) -> Result<Synced, Error> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::Write(self.dir.clone(), e))?;
        let old = self.load();
        let mut synced = Synced::default();
        for entry in entries {
            check_path(&entry.path).map_err(|reason| Error::Unsafe {
                path: entry.path.clone(),
                reason,
            })?;
            let was = old.get(&entry.path);
            if was == Some(&(entry.mode, entry.id.to_string()))
                && stats
                    .file_id(&self.dir, &entry.path)?
                    .is_some_and(|f| f.mode == entry.mode && f.id == entry.id)
            {
                synced.kept += 1;
                continue;
            }
            let bytes = repo.read_blob(entry.id)?;
            let abs = self.dir.join(&entry.path);
            if fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&abs).map_err(|e| Error::Write(abs.clone(), e))?;
            }
            write_file(&abs, entry.mode, &bytes).map_err(|e| Error::Write(abs.clone(), e))?;
            stats.wrote(&self.dir, &entry.path, entry.mode, entry.id);
            synced.written += 1;
        }
        let wanted: std::collections::BTreeSet<&str> =
            entries.iter().map(|e| e.path.as_str()).collect();
        for path in old.keys().filter(|p| !wanted.contains(p.as_str())) {
            let abs = self.dir.join(path);
            if fs::remove_file(&abs).is_ok() {
                synced.removed += 1;
                remove_empty_parents(&self.dir, &abs);
            }
        }
        self.save(entries)?;
        Ok(synced)
    }

    fn load(&self) -> BTreeMap<String, (FileMode, String)> {
        let Ok(text) = fs::read_to_string(&self.state) else {
            return BTreeMap::new();
        };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return BTreeMap::new();
        }
        lines
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let mode = FileMode::from_octal(parts.next()?)?;
                let id = parts.next()?.to_owned();
                Some((parts.next()?.to_owned(), (mode, id)))
            })
            .collect()
    }

    fn save(&self, entries: &[Entry]) -> Result<(), Error> {
        let mut text = format!("{HEADER}\n");
        for entry in entries {
            if !entry.path.contains('\n') {
                text.push_str(&format!(
                    "{} {} {}\n",
                    entry.mode.as_octal(),
                    entry.id,
                    entry.path
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
