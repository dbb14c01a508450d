//! Racily clean index entries, settled the way `git status` settles them.
//!
//! git trusts an entry's stat data only for a file modified before the index was written, to
//! the second. An entry whose file was modified in the same second as the index (an edit and
//! `git add`, or a `git reset --hard`, in one second) is "racily clean": every git command,
//! `git commit` included, reads and hashes that file again, until the index is written in a
//! later second. `git status` writes it when it can; a commit of unchanged staged content
//! never does, so a repository can stay that way for as long as nothing else writes its index.
//!
//! weir settles such an index when it commits the same staged content again: once the second
//! is over, it hashes each racily clean file, and if every one still holds what its entry says,
//! it moves the index file's modification time forward under git's index lock. The index's
//! bytes do not change.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::files::{FileMode, hash_file};
use super::memo::Seen;
use super::repo::{Error, Repo};
use super::snapshot::Staged;

/// The line that notes an index file as `stat` saw it: written again or replaced since, it
/// differs.
fn note_line(file: &Seen) -> String {
    let mut line = String::new();
    file.encode(&mut line);
    line.push('\n');
    line
}

/// What [`Repo::settle_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// No entry was racily clean, or every one that could be now is not.
    Done,
    /// Nothing yet: the second the index was written in is not over, the index is being
    /// written, or it changed while weir looked.
    NotYet,
    /// Nothing, for as long as the index stays as it is: a racily clean file no longer holds
    /// what its entry says (git will find it modified), git may convert it as it stores it, or
    /// the index is split.
    Never,
}

/// Time the file system's clock may lag behind the system's: a file modified after weir read
/// the clock can carry a time up to this much earlier.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

impl Repo {
    /// Where weir notes the index file it last settled (or found nothing to settle in).
    fn settled_note(&self) -> PathBuf {
        self.worktree_weir_dir().join("index-settled")
    }

    /// The repository's own index, if `index_file` (`GIT_INDEX_FILE`) is it or names none; a
    /// temporary index (`git commit -a`, `git commit FILE`) is git's to write.
    fn own_index(&self, index_file: Option<&Path>) -> Option<PathBuf> {
        let own = self.gix().index_path();
        let given = self.index_file(index_file);
        let same = |a: &Path, b: &Path| match (Seen::at(a), Seen::at(b)) {
            (Some(a), Some(b)) => (a.dev, a.ino) == (b.dev, b.ino),
            _ => false,
        };
        (given == own || same(&given, &own)).then_some(own)
    }

    /// Whether [`Repo::settle_index`] may have something to do, as far as the index file's stat
    /// data tells: it is the repository's own, not the one weir last settled, and written before
    /// this second.
    pub fn index_may_settle(&self, index_file: Option<&Path>) -> bool {
        let Some(file) = self.own_index(index_file).and_then(|path| Seen::at(&path)) else {
            return false;
        };
        let noted = std::fs::read_to_string(self.settled_note()).unwrap_or_default();
        note_line(&file) != noted && file.mtime.0 < settling_second()
    }

    /// Settles the racily clean entries of `staged`, read from the repository's index (see the
    /// module's documentation). `as_is(path)` tells whether git stores the working-tree file
    /// `path` as it is, with no conversion.
    pub fn settle_index(
        &self,
        index_file: Option<&Path>,
        staged: &Staged,
        mut as_is: impl FnMut(&str) -> bool,
    ) -> Result<Settled, Error> {
        let (Some(path), Some(read)) = (self.own_index(index_file), staged.file) else {
            return Ok(Settled::NotYet);
        };
        let note = |file: Option<Seen>| {
            if let Some(file) = file {
                let _ =
                    crate::statefile::overwrite(&self.settled_note(), note_line(&file).as_bytes());
            }
        };
        if staged.split {
            note(Some(read));
            return Ok(Settled::Never);
        }
        if staged.racy.is_empty() {
            note(Some(read));
            return Ok(Settled::Done);
        }
        // The index will say it was written at the start of this second (less the slack): any
        // file modified after the check below then has a later time than the index, or changed
        // stat data. Entries modified in this second stay racily clean, unchecked.
        let now = settling_second();
        if now <= staged.written.0 {
            return Ok(Settled::NotYet);
        }
        let check: Vec<&super::Entry> = staged
            .racy
            .iter()
            .filter_map(|&at| {
                let stat = staged.stats.get(at)?;
                (i64::from(stat.mtime.secs) < now).then(|| &staged.entries[at])
            })
            .collect();
        if !check.iter().all(|entry| as_is(&entry.path)) || !self.hold_as_staged(&check) {
            note(Some(read));
            return Ok(Settled::Never);
        }
        let settled = self.move_index_time(&path, read, now)?;
        if settled == Settled::Done {
            note(Seen::at(&path));
        }
        Ok(settled)
    }

    /// Whether every one of `entries` holds in the working tree what it stages, hashed on
    /// every core.
    fn hold_as_staged(&self, entries: &[&super::Entry]) -> bool {
        let root = self.workdir();
        let holds = |entry: &super::Entry| {
            let abs = root.join(&entry.path);
            let Ok(meta) = std::fs::symlink_metadata(&abs) else {
                return false;
            };
            let kind_holds = match entry.mode {
                FileMode::Symlink => meta.is_symlink(),
                _ => meta.is_file(),
            };
            kind_holds && hash_file(&abs, entry.mode, meta.len()).is_ok_and(|id| id == entry.id)
        };
        let threads = crate::sync::cores().min(entries.len()).max(1);
        let chunk = entries.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = entries
                .chunks(chunk.max(1))
                .map(|part| {
                    crate::sync::spawn_scoped_apart(scope, move || {
                        part.iter().all(|entry| holds(entry))
                    })
                })
                .collect();
            parts.into_iter().all(|part| part.join().unwrap_or(false))
        })
    }

    /// Sets the modification time of the index at `path` to `secs` (whole seconds), holding
    /// git's lock on it, if it is still the file `read`.
    fn move_index_time(&self, path: &Path, read: Seen, secs: i64) -> Result<Settled, Error> {
        use nix::sys::stat::{UtimensatFlags, utimensat};
        use nix::sys::time::TimeSpec;
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock = PathBuf::from(lock_name);
        let Ok(_held) = IndexLock::take(&lock) else {
            return Ok(Settled::NotYet);
        };
        if Seen::at(path) != Some(read) {
            return Ok(Settled::NotYet);
        }
        let mtime = TimeSpec::new(secs, 0);
        utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &TimeSpec::UTIME_OMIT,
            &mtime,
            UtimensatFlags::FollowSymlink,
        )
        .map_err(|e| Error::Write(path.to_path_buf(), e.into()))?;
        Ok(Settled::Done)
    }
}

/// The second a settled index says it was written at: this one, as the file system's clock
/// may tell it (see [`CLOCK_SLACK`]).
fn settling_second() -> i64 {
    SystemTime::now()
        .checked_sub(CLOCK_SLACK)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .and_then(|t| i64::try_from(t.as_secs()).ok())
        .unwrap_or_default()
}

/// git's lock on an index file (`index.lock`), made as git makes it and removed when dropped.
struct IndexLock(PathBuf);

impl IndexLock {
    fn take(path: &Path) -> std::io::Result<IndexLock> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(IndexLock(path.to_path_buf()))
    }
}

impl Drop for IndexLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::git::{test_git, test_repo};

    fn set_modified(path: &Path, time: SystemTime) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(time).unwrap();
    }

    #[test]
    fn only_files_git_looks_at_modified_as_late_as_the_index_are_settled() {
        let (dir, repo) = test_repo();
        let second = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (name, modified) in [
            ("old", second - Duration::from_secs(10)),
            ("racy", second + Duration::from_millis(300)),
            ("skipped", second + Duration::from_millis(300)),
            ("assumed", second + Duration::from_millis(300)),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, name).unwrap();
            set_modified(&path, modified);
        }
        test_git(dir.path(), &["add", "."]);
        test_git(dir.path(), &["update-index", "--skip-worktree", "skipped"]);
        test_git(
            dir.path(),
            &["update-index", "--assume-unchanged", "assumed"],
        );
        let index = dir.path().join(".git/index");
        set_modified(&index, second + Duration::from_millis(500));

        let staged = repo.staged_with_trees(None).unwrap();
        let racy: Vec<&str> = staged
            .racy
            .iter()
            .map(|&at| staged.entries[at].path.as_str())
            .collect();
        assert_eq!(racy, ["racy"]);
        let bytes = std::fs::read(&index).unwrap();
        assert!(repo.index_may_settle(None));
        assert_eq!(
            repo.settle_index(None, &staged, |_| true).unwrap(),
            Settled::Done
        );
        assert_eq!(std::fs::read(&index).unwrap(), bytes);
        let moved = std::fs::metadata(&index).unwrap().modified().unwrap();
        assert!(moved > second + Duration::from_secs(1), "{moved:?}");
        assert!(!repo.index_may_settle(None), "noted as settled");
        assert_eq!(test_git(dir.path(), &["diff", "--name-only"]), "");
    }
}
