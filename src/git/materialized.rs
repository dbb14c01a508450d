//! Materialized blobs: output files kept under `.git/weir/blobs/<2 hex>/<38 hex>` (`.x` after
//! the id for an executable), so that a restore can hard-link a missing output into place
//! instead of writing it. Creating a file is what a restore spends its time on: ext4 looks for a
//! free inode, and on a file system without a journal it passes over every inode freed in the
//! last half minute, which after `rm -rf dist` is every output just deleted. A link creates no
//! inode.
//!
//! A kept file is trusted for nothing. It is linked only while no other path links it, so a
//! write into one restored output can never change another; only while its content still
//! hashes to its id, since a write into the output it was linked to has changed it as well; and
//! only when it is the user's own. The linked file gets the current time as its mtime, as a
//! written one would.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gix::ObjectId;

use super::files::{FileMode, hash_stream};

/// The materialized blobs of one repository.
pub struct Materialized {
    dir: PathBuf,
}

impl Materialized {
    pub(super) fn new(dir: PathBuf) -> Materialized {
        Materialized { dir }
    }

    /// Where blob `id` is kept with `mode`; `None` for a symlink, which is never kept.
    fn path(&self, id: ObjectId, mode: FileMode) -> Option<PathBuf> {
        let hex = id.to_hex().to_string();
        let (fan, rest) = hex.split_at(2);
        let name = match mode {
            FileMode::Regular => rest.to_owned(),
            FileMode::Executable => format!("{rest}.x"),
            FileMode::Symlink => return None,
        };
        Some(self.dir.join(fan).join(name))
    }

    /// Makes `abs`, where no file is, a hard link of blob `id` kept with `mode`, creating its
    /// directories as needed, and returns the linked file's metadata. `None` when there is no
    /// kept copy to link (none, linked elsewhere, changed since, or the link failed): the caller
    /// writes the file instead. A kept copy found changed is removed.
    pub fn link(&self, id: ObjectId, mode: FileMode, abs: &Path) -> Option<fs::Metadata> {
        let kept = self.path(id, mode)?;
        let mut file = fs::File::open(&kept).ok()?;
        let meta = file.metadata().ok()?;
        if meta.nlink() != 1 || FileMode::of(&meta) != Some(mode) || !plain_bits(&meta) {
            return None;
        }
        if hash_stream(&mut file, meta.len()).ok() != Some(id) {
            let _ = fs::remove_file(&kept);
            return None;
        }
        file.set_modified(SystemTime::now()).ok()?;
        drop(file);
        if let Err(e) = fs::hard_link(&kept, abs) {
            if e.kind() != io::ErrorKind::NotFound {
                return None;
            }
            fs::create_dir_all(abs.parent()?).ok()?;
            fs::hard_link(&kept, abs).ok()?;
        }
        let linked = fs::symlink_metadata(abs).ok()?;
        if linked.ino() != meta.ino() || linked.dev() != meta.dev() {
            // Something else took the path meanwhile; it is not ours to remove.
            return None;
        }
        if linked.nlink() != 2 {
            // Another path was linked to it at the same time: one of the two must be written.
            let _ = fs::remove_file(abs);
            return None;
        }
        Some(linked)
    }

    /// Keeps the file at `abs`, whose content is blob `id` and whose metadata is `meta`, as that
    /// blob's materialized copy, unless one is kept already or the file has other links (it may
    /// be the kept copy of other content, written into since). Returns the file's metadata after
    /// the link, which changed its ctime, or `None` when nothing was done. Best effort: without
    /// a kept copy, a later restore writes the file.
    pub fn keep(
        &self,
        abs: &Path,
        meta: &fs::Metadata,
        id: ObjectId,
        mode: FileMode,
    ) -> Option<fs::Metadata> {
        if meta.nlink() != 1 || FileMode::of(meta) != Some(mode) || !plain_bits(meta) {
            return None;
        }
        let kept = self.path(id, mode)?;
        if let Err(e) = fs::hard_link(abs, &kept) {
            if e.kind() != io::ErrorKind::NotFound {
                return None;
            }
            fs::create_dir_all(kept.parent()?).ok()?;
            fs::hard_link(abs, &kept).ok()?;
        }
        fs::symlink_metadata(abs).ok()
    }

    /// Removes the kept copies that no path links any more, except those of the blobs in
    /// `wanted`; only counts them unless `remove`. Returns how many files and bytes they are.
    pub fn prune(
        &self,
        wanted: &dyn Fn(ObjectId) -> bool,
        remove: bool,
    ) -> io::Result<(usize, u64)> {
        let mut removed = (0, 0);
        let fans = match fs::read_dir(&self.dir) {
            Ok(fans) => fans,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(e),
        };
        for fan in fans {
            let fan = fan?;
            let Some(prefix) = fan.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(fan.path())? {
                let file = file?;
                let name = file.file_name();
                let id = name
                    .to_str()
                    .map(|n| n.strip_suffix(".x").unwrap_or(n))
                    .and_then(|rest| ObjectId::from_hex(format!("{prefix}{rest}").as_bytes()).ok());
                let meta = file.metadata()?;
                if meta.nlink() > 1 || id.is_some_and(wanted) {
                    continue;
                }
                if remove {
                    fs::remove_file(file.path())?;
                }
                removed.0 += 1;
                removed.1 += meta.len();
            }
        }
        Ok(removed)
    }
}

/// Ours, with no set-user-id, set-group-id or sticky bit: a kept copy gets no more than a
/// written file would. (In a repository shared by several users, another one's copy would
/// leave an output we cannot write.)
fn plain_bits(meta: &fs::Metadata) -> bool {
    meta.permissions().mode() & 0o7000 == 0 && meta.uid() == nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::files::blob_id;
    use std::os::unix::fs::PermissionsExt;

    fn written(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, fs::Metadata, ObjectId) {
        let abs = dir.join(name);
        fs::write(&abs, bytes).expect("write");
        let meta = fs::symlink_metadata(&abs).expect("stat");
        (abs, meta, blob_id(bytes).expect("hash"))
    }

    #[test]
    fn a_kept_copy_is_linked_once_and_only_while_it_holds_its_blob() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Materialized::new(dir.path().join("blobs"));
        let (out, meta, id) = written(dir.path(), "out.js", b"built\n");
        let kept = store
            .keep(&out, &meta, id, FileMode::Regular)
            .expect("kept");
        assert_eq!(kept.nlink(), 2);
        // While the output links it, it is not linked anywhere else.
        let other = dir.path().join("copy/out.js");
        assert!(store.link(id, FileMode::Regular, &other).is_none());
        assert!(!other.exists());

        fs::remove_file(&out).expect("rm");
        let linked = store
            .link(id, FileMode::Regular, &other)
            .expect("linked into a new directory");
        assert_eq!(fs::read(&other).expect("read"), b"built\n");
        assert_eq!(linked.nlink(), 2);
        // Only one path at a time.
        assert!(store.link(id, FileMode::Regular, &out).is_none());
        // Not as an executable, which is kept apart.
        fs::remove_file(&other).expect("rm");
        assert!(store.link(id, FileMode::Executable, &out).is_none());

        // Written into through the restored output, then removed: the copy no longer holds the
        // blob, so it is not linked, and it is gone.
        store.link(id, FileMode::Regular, &out).expect("linked");
        fs::write(&out, b"edited\n").expect("write in place");
        fs::remove_file(&out).expect("rm");
        assert!(store.link(id, FileMode::Regular, &out).is_none());
        assert!(!out.exists());
        assert_eq!(store.prune(&|_| true, true).expect("prune"), (0, 0));
        assert_eq!(
            fs::read_dir(dir.path().join("blobs"))
                .expect("fans")
                .count(),
            1
        );
        let fan = fs::read_dir(dir.path().join("blobs"))
            .expect("fans")
            .next()
            .expect("fan")
            .expect("entry");
        assert_eq!(fs::read_dir(fan.path()).expect("fan").count(), 0);
    }

    #[test]
    fn files_with_other_links_or_special_bits_are_not_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Materialized::new(dir.path().join("blobs"));
        let (out, _, id) = written(dir.path(), "a", b"shared\n");
        fs::hard_link(&out, dir.path().join("b")).expect("link");
        let meta = fs::symlink_metadata(&out).expect("stat");
        assert!(store.keep(&out, &meta, id, FileMode::Regular).is_none());

        let (tool, _, id) = written(dir.path(), "tool", b"#!/bin/sh\n");
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).expect("chmod");
        let meta = fs::symlink_metadata(&tool).expect("stat");
        assert!(store.keep(&tool, &meta, id, FileMode::Executable).is_none());
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
        let meta = fs::symlink_metadata(&tool).expect("stat");
        assert!(store.keep(&tool, &meta, id, FileMode::Regular).is_none());
        assert!(store.keep(&tool, &meta, id, FileMode::Executable).is_some());
        fs::remove_file(&tool).expect("rm");
        let linked = store.link(id, FileMode::Executable, &tool).expect("linked");
        assert_eq!(linked.permissions().mode() & 0o777, 0o755);

        // Another user's copy is not linked (only root can make one to try).
        if nix::unistd::geteuid().is_root() {
            let (out, meta, id) = written(dir.path(), "theirs", b"theirs\n");
            store
                .keep(&out, &meta, id, FileMode::Regular)
                .expect("kept");
            fs::remove_file(&out).expect("rm");
            let kept = store.path(id, FileMode::Regular).expect("a path");
            std::os::unix::fs::lchown(&kept, Some(1), None).expect("chown");
            assert!(store.link(id, FileMode::Regular, &out).is_none());
        }
    }

    #[test]
    fn pruning_keeps_what_is_linked_or_wanted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Materialized::new(dir.path().join("blobs"));
        let mut ids = Vec::new();
        for (name, bytes) in [("live", &b"1"[..]), ("wanted", b"22"), ("stale", b"333")] {
            let (abs, meta, id) = written(dir.path(), name, bytes);
            store
                .keep(&abs, &meta, id, FileMode::Regular)
                .expect("kept");
            ids.push(id);
        }
        fs::remove_file(dir.path().join("wanted")).expect("rm");
        fs::remove_file(dir.path().join("stale")).expect("rm");
        let wanted = |id| id == ids[1];
        assert_eq!(store.prune(&wanted, false).expect("count"), (1, 3));
        assert_eq!(store.prune(&wanted, true).expect("prune"), (1, 3));
        assert_eq!(store.prune(&wanted, true).expect("prune"), (0, 0));
        assert!(
            store
                .link(ids[2], FileMode::Regular, &dir.path().join("x"))
                .is_none()
        );
        assert!(
            store
                .link(ids[1], FileMode::Regular, &dir.path().join("y"))
                .is_some()
        );
        fs::remove_file(dir.path().join("live")).expect("rm");
        assert!(
            store
                .link(ids[0], FileMode::Regular, &dir.path().join("z"))
                .is_some()
        );
    }
}
