//! Cache entries: a commit at `refs/weir/cache/<job>/<key>` whose tree holds `manifest`, `log`,
//! `result` and `outputs/…` (the job's output files at their paths, with exec bits and
//! symlinks). Restoring checks every stored path before writing any.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use crate::git::{
    self, Deferred, FileId, FileMode, Reads, Repo, StatAt, StatCache, TreeEntry, TreeItem,
};

pub const PREFIX: &str = "refs/weir/cache/";
const OUTPUTS: &str = "outputs";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cache entry {key} of `{job}` is refused: {path}: {reason}")]
    Unsafe {
        job: String,
        key: String,
        path: String,
        reason: String,
    },
    #[error("cannot restore {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error("cannot prune the kept copies of outputs in .git/weir/blobs")]
    Prune(#[source] std::io::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
}

/// The `result` file of an entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryResult {
    pub job: String,
    pub key: String,
    pub duration_ms: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub weir_version: String,
    pub outputs: usize,
}

/// One cache entry, as listed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub job: String,
    pub key: String,
    pub refname: String,
    pub commit: ObjectId,
}

/// A result to store.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    pub job: &'a str,
    pub key: &'a str,
    /// The encoded manifest the key was computed from.
    pub manifest: &'a str,
    pub log: &'a [u8],
    pub duration: Duration,
    /// The directory output paths are relative to.
    pub root: &'a Path,
    pub outputs: &'a [FileId],
    /// Replace an entry already stored for the key (`weir run --no-cache`).
    pub replace: bool,
}

/// How a restore went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Files written or linked.
    pub written: usize,
    /// Of those, the ones linked to a kept copy.
    pub linked: usize,
    pub unchanged: usize,
}

pub fn refname(job: &str, key: &str) -> String {
    format!("{PREFIX}{job}/{key}")
}

/// The cache in one repository.
pub struct Cache<'a> {
    repo: &'a Repo,
}

impl<'a> Cache<'a> {
    pub fn new(repo: &'a Repo) -> Cache<'a> {
        Cache { repo }
    }

    pub fn lookup(&self, job: &str, key: &str) -> Result<Option<ObjectId>, Error> {
        Ok(self.repo.find_ref(&refname(job, key))?)
    }

    /// Stores a successful result. Returns false if an entry for the key already existed (a
    /// concurrent run stored it first), which is just as good, unless `replace` is set.
    pub fn store(&self, entry: &NewEntry<'_>) -> Result<bool, Error> {
        let (refname, entries, message) = contents(entry);
        let old = if entry.replace {
            self.lookup(entry.job, entry.key)?
        } else {
            None
        };
        match self
            .repo
            .create_commit_ref(&refname, &entries, &message, old)
        {
            Ok(_) => Ok(true),
            Err(git::Error::RefExists(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Queues [`Cache::store`] in `later` instead, when it can wait: an entry with no outputs
    /// (their files are read as they are stored) and none to replace. `false` when it cannot.
    pub fn store_later(entry: &NewEntry<'_>, later: &mut Deferred) -> bool {
        if entry.replace || !entry.outputs.is_empty() {
            return false;
        }
        let (refname, entries, message) = contents(entry);
        later.create_commit_ref(refname, entries, message)
    }

    /// Makes the outputs stored in `commit` present under `root`: every stored path is checked
    /// first, and nothing is written if any is unsafe. Files already equal are left alone.
    pub fn restore(
        &self,
        job: &str,
        key: &str,
        commit: ObjectId,
        root: &Path,
        stats: &StatCache,
        mut reads: Option<&mut Reads>,
    ) -> Result<Restored, Error> {
        let items = stats.tree_items(self.repo, commit, OUTPUTS)?;
        let mut disk = DiskCheck::new(root);
        let mut at = StatAt::default();
        let mut plan = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        let mut restored = Restored::default();
        for item in &items {
            let refuse = |reason: String| Error::Unsafe {
                job: job.to_owned(),
                key: key.to_owned(),
                path: item.path.clone(),
                reason,
            };
            let mode = check_item(item).map_err(refuse)?;
            if mode == FileMode::Symlink {
                let target = self.repo.read_blob(item.id)?;
                check_link(&item.path, &target).map_err(refuse)?;
            }
            if !seen.insert(item.path.clone()) {
                return Err(refuse("it is stored twice".into()));
            }
            let current = stats.file_id_reading(&mut at, root, &item.path, reads.as_deref_mut())?;
            if current
                .as_ref()
                .is_some_and(|c| c.mode == mode && c.id == item.id)
            {
                restored.unchanged += 1;
                continue;
            }
            // Only what will be written needs its way there checked.
            disk.check(&item.path).map_err(refuse)?;
            plan.push((item, mode, current.is_none()));
        }
        // A stored file must not also be a directory of another stored file.
        for item in &items {
            let mut parent = Path::new(&item.path).parent();
            while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
                if seen.contains(dir.to_string_lossy().as_ref()) {
                    return Err(Error::Unsafe {
                        job: job.to_owned(),
                        key: key.to_owned(),
                        path: item.path.clone(),
                        reason: format!("{} is stored as a file too", dir.display()),
                    });
                }
                parent = dir.parent();
            }
        }

        if plan.is_empty() {
            // The fully cached run's case: nothing to write, nothing more to look at.
            return Ok(restored);
        }
        let materialized = self.repo.materialized();
        for (item, mode, missing) in plan {
            let abs = root.join(&item.path);
            // A missing file is linked to a kept copy when there is one; a file in the way is
            // written over (see `write_file`).
            let meta = match missing
                .then(|| materialized.link(item.id, mode, &abs))
                .flatten()
            {
                Some(meta) => {
                    restored.linked += 1;
                    meta
                }
                None => {
                    let bytes = self.repo.read_blob(item.id)?;
                    let meta =
                        write_file(&abs, mode, &bytes).map_err(|e| Error::Write(abs.clone(), e))?;
                    materialized
                        .keep(&abs, &meta, item.id, mode)
                        .unwrap_or(meta)
                }
            };
            stats.wrote(root, &item.path, mode, item.id, &meta);
            restored.written += 1;
        }
        Ok(restored)
    }

    /// The manifest stored with an entry.
    pub fn manifest(&self, commit: ObjectId) -> Result<Option<String>, Error> {
        Ok(self
            .repo
            .read_file(commit, "manifest")?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The newest entry of `job`: by commit time, then by the stored time to the millisecond
    /// (commit times have whole seconds).
    pub fn newest(&self, job: &str) -> Result<Option<Entry>, Error> {
        let mut newest: Option<((i64, String), Entry)> = None;
        for entry in self.entries_of(&format!("{PREFIX}{job}/"))? {
            let time = self.stored_at(entry.commit)?;
            if newest.as_ref().is_none_or(|(t, _)| time > *t) {
                newest = Some((time, entry));
            }
        }
        Ok(newest.map(|(_, e)| e))
    }

    /// When an entry was stored, in an order that sorts: commit time in seconds, then the
    /// stored RFC 3339 time with milliseconds.
    pub fn stored_at(&self, commit: ObjectId) -> Result<(i64, String), Error> {
        let precise = self.result(commit)?.map(|r| r.time).unwrap_or_default();
        Ok((self.repo.commit_time(commit)?, precise))
    }

    /// Every entry, sorted by job then key.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        self.entries_of(PREFIX)
    }

    fn entries_of(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        let mut entries = Vec::new();
        for (refname, commit) in self.repo.refs_under(prefix)? {
            let Some((job, key)) = refname[PREFIX.len()..].rsplit_once('/') else {
                continue;
            };
            entries.push(Entry {
                job: job.to_owned(),
                key: key.to_owned(),
                refname: refname.clone(),
                commit,
            });
        }
        Ok(entries)
    }

    /// The entry's result file.
    pub fn result(&self, commit: ObjectId) -> Result<Option<EntryResult>, Error> {
        Ok(self
            .repo
            .read_file(commit, "result")?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Seconds since the entry was stored.
    pub fn age(&self, commit: ObjectId) -> Result<Duration, Error> {
        let time = self.repo.commit_time(commit)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Ok(Duration::from_secs(
            now.saturating_sub(u64::try_from(time).unwrap_or(0)),
        ))
    }

    /// Total bytes of an entry's outputs.
    pub fn size(&self, commit: ObjectId) -> Result<u64, Error> {
        let mut total = 0;
        for item in self.repo.tree_items(commit, OUTPUTS)? {
            total += self.repo.object_size(item.id)?;
        }
        Ok(total)
    }

    /// Problems with an entry: missing objects, unsafe paths. Empty when it is sound.
    pub fn verify(&self, entry: &Entry) -> Vec<String> {
        let items = match self.repo.tree_items(entry.commit, "") {
            Ok(items) => items,
            Err(e) => return vec![format!("unreadable: {e}")],
        };
        let mut problems = Vec::new();
        for name in ["manifest", "log", "result"] {
            if !items.iter().any(|i| i.path == name) {
                problems.push(format!("no `{name}`"));
            }
        }
        for item in &items {
            if !self.repo.has_object(item.id) {
                problems.push(format!("{}: object {} is missing", item.path, item.id));
                continue;
            }
            let Some(path) = item.path.strip_prefix("outputs/") else {
                continue;
            };
            let checked = TreeItem {
                path: path.to_owned(),
                ..item.clone()
            };
            match check_item(&checked) {
                Err(reason) => problems.push(format!("{}: {reason}", item.path)),
                Ok(FileMode::Symlink) => {
                    if let Err(reason) = self
                        .repo
                        .read_blob(item.id)
                        .map_err(|e| e.to_string())
                        .and_then(|target| check_link(path, &target))
                    {
                        problems.push(format!("{}: {reason}", item.path));
                    }
                }
                Ok(_) => {}
            }
        }
        problems
    }

    /// Removes the kept copies of outputs (see [`git::Materialized`]) that no file links and no
    /// entry holds but those in `leaving`; only counts them unless `remove`. Returns how many
    /// files and bytes they are.
    pub fn prune_materialized(
        &self,
        leaving: &[Entry],
        remove: bool,
    ) -> Result<(usize, u64), Error> {
        let mut held = HashSet::new();
        for entry in self.entries()? {
            if leaving.iter().any(|l| l.refname == entry.refname) {
                continue;
            }
            for item in self.repo.tree_items(entry.commit, OUTPUTS)? {
                held.insert(item.id);
            }
        }
        self.repo
            .materialized()
            .prune(&|id| held.contains(&id), remove)
            .map_err(Error::Prune)
    }

    /// Deletes entries, in one transaction.
    pub fn remove(&self, entries: &[Entry]) -> Result<(), Error> {
        let refs: Vec<(String, ObjectId)> = entries
            .iter()
            .map(|e| (e.refname.clone(), e.commit))
            .collect();
        Ok(self.repo.delete_refs(&refs)?)
    }
}

/// The mode of a stored output, if its path and mode are allowed.
pub fn check_item(item: &TreeItem) -> Result<FileMode, String> {
    let mode = match item.mode {
        0o100644 => FileMode::Regular,
        0o100755 => FileMode::Executable,
        0o120000 => FileMode::Symlink,
        other => {
            return Err(format!(
                "mode {other:o} is not a file, executable or symlink"
            ));
        }
    };
    check_path(&item.path)?;
    Ok(mode)
}

/// A stored path must be relative, plain and outside `.git`.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with('/') {
        return Err("the path is absolute".into());
    }
    for component in path.split('/') {
        match component {
            "" => return Err("the path has an empty component".into()),
            "." | ".." => return Err(format!("the path has a `{component}` component")),
            c if c.eq_ignore_ascii_case(".git") => {
                return Err("the path goes into `.git`".into());
            }
            c if c.contains('\0') || c.contains('\\') => {
                return Err("the path has a NUL or backslash".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// A stored symlink at `path` pointing at `target` must stay inside the workspace and out of
/// `.git`.
pub fn check_link(path: &str, target: &[u8]) -> Result<(), String> {
    let target = String::from_utf8_lossy(target);
    if target.starts_with('/') {
        return Err(format!("the symlink points at an absolute path `{target}`"));
    }
    let mut depth: usize = path.split('/').count() - 1;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    format!("the symlink points outside the workspace (`{target}`)")
                })?;
            }
            c if c.eq_ignore_ascii_case(".git") => {
                return Err(format!("the symlink points into `.git` (`{target}`)"));
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// What is already on disk must not take a write elsewhere: no directory where the file goes, no
/// file where a directory is needed, no symlinked directory leading out of the workspace.
struct DiskCheck<'a> {
    root: &'a Path,
    canonical_root: Option<PathBuf>,
    /// Directories already found sound.
    good: BTreeSet<PathBuf>,
}

impl<'a> DiskCheck<'a> {
    fn new(root: &'a Path) -> DiskCheck<'a> {
        DiskCheck {
            root,
            canonical_root: None,
            good: BTreeSet::new(),
        }
    }

    fn check(&mut self, path: &str) -> Result<(), String> {
        let abs = self.root.join(path);
        if fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
            return Err("a directory is in the way".into());
        }
        let mut dir = self.root.to_path_buf();
        let parents: Vec<Component> = Path::new(path).components().collect();
        for component in &parents[..parents.len().saturating_sub(1)] {
            dir.push(component);
            if self.good.contains(&dir) {
                continue;
            }
            match fs::symlink_metadata(&dir) {
                Err(_) => break,
                Ok(meta) if meta.file_type().is_symlink() => {
                    let real = fs::canonicalize(&dir).map_err(|e| e.to_string())?;
                    if self.canonical_root.is_none() {
                        self.canonical_root =
                            Some(fs::canonicalize(self.root).map_err(|e| e.to_string())?);
                    }
                    if !self
                        .canonical_root
                        .as_ref()
                        .is_some_and(|r| real.starts_with(r))
                    {
                        return Err(format!(
                            "{} is a symlink leading outside the workspace",
                            dir.display()
                        ));
                    }
                }
                Ok(meta) if !meta.is_dir() => {
                    return Err(format!("{} is a file, not a directory", dir.display()));
                }
                Ok(_) => {}
            }
            self.good.insert(dir.clone());
        }
        Ok(())
    }
}

/// What a cache entry is made of: its ref, its tree's files and its commit message.
fn contents(entry: &NewEntry<'_>) -> (String, Vec<TreeEntry>, String) {
    let NewEntry {
        job,
        key,
        manifest,
        log,
        duration,
        root,
        outputs,
        replace: _,
    } = *entry;
    let result = EntryResult {
        job: job.to_owned(),
        key: key.to_owned(),
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        weir_version: env!("CARGO_PKG_VERSION").to_owned(),
        outputs: outputs.len(),
    };
    let mut entries = vec![
        TreeEntry::bytes("manifest", manifest.as_bytes()),
        TreeEntry::bytes("log", log),
        TreeEntry::bytes(
            "result",
            serde_json::to_vec_pretty(&result).unwrap_or_default(),
        ),
    ];
    for file in outputs {
        entries.push(TreeEntry::File {
            path: format!("{OUTPUTS}/{}", file.path),
            abs: root.join(&file.path),
            mode: file.mode,
        });
    }
    (
        refname(job, key),
        entries,
        format!("weir cache {job} {key}\n"),
    )
}

/// Writes one file in place, as `cp` does: a regular file is rewritten, so no inode is created
/// or freed (creating and deleting thousands of them is what makes ext4 slow here); anything else
/// in the way is replaced, and so is a file with other links, which may be a kept copy (see
/// [`git::Materialized`]) that must not change. The old content is overwritten, not truncated
/// first: truncating frees the file's blocks (a discard on some disks) and waits for their
/// writeback, which cost about a millisecond a file; the file is only cut to length afterwards,
/// when the new content is shorter. Returns the written file's metadata (as `lstat` gives it),
/// which saves callers a stat.
pub(crate) fn write_file(
    abs: &Path,
    mode: FileMode,
    bytes: &[u8],
) -> std::io::Result<fs::Metadata> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let existing = fs::symlink_metadata(abs).ok();
    match &existing {
        None => {
            if let Some(parent) = abs.parent()
                && !parent.exists()
            {
                fs::create_dir_all(parent)?;
            }
        }
        Some(meta) if !meta.is_file() || mode == FileMode::Symlink || meta.nlink() > 1 => {
            fs::remove_file(abs)?;
        }
        Some(_) => {}
    }
    if mode == FileMode::Symlink {
        use std::os::unix::ffi::OsStrExt;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(bytes), abs)?;
        return fs::symlink_metadata(abs);
    }
    let bits = if mode == FileMode::Executable {
        0o755
    } else {
        0o644
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(bits)
        .open(abs)?;
    fill(&mut file, bytes, bits)
}

/// Writes `bytes` over the start of `file`, opened for writing, cuts what was there beyond them,
/// and gives it permission `bits`; its metadata once done.
pub(crate) fn fill(file: &mut fs::File, bytes: &[u8], bits: u32) -> std::io::Result<fs::Metadata> {
    file.write_all(bytes)?;
    finish(file, bytes.len() as u64, bits)
}

/// Cuts `file`, whose first `len` bytes were just written, to that length, and gives it
/// permission `bits`; its metadata once done.
pub(crate) fn finish(file: &mut fs::File, len: u64, bits: u32) -> std::io::Result<fs::Metadata> {
    use std::os::unix::fs::PermissionsExt;
    let mut meta = file.metadata()?;
    if meta.len() > len {
        file.set_len(len)?;
        meta = file.metadata()?;
    }
    // An existing file keeps its old mode, and the umask may narrow a new one.
    if meta.permissions().mode() & 0o777 != bits {
        file.set_permissions(fs::Permissions::from_mode(bits))?;
        meta = file.metadata()?;
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../../x",
            "..",
            "./a",
            "a//b",
            ".git/hooks/x",
            "a/.GIT/config",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} passed");
        }
        for good in ["dist/app", "a/b.c/d", ".github/x", "x..y"] {
            assert!(check_path(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(check_link("dist/latest", b"app-1.0").is_ok());
        assert!(check_link("dist/sub/latest", b"../app").is_ok());
        assert!(check_link("dist/latest", b"../../etc/passwd").is_err());
        assert!(check_link("latest", b"/etc/passwd").is_err());
        assert!(check_link("link", b"../x").is_err());
        assert!(check_link("dist/link", b"../.git/config").is_err());
    }

    proptest! {
        /// Whatever a stored path is, an accepted one resolves inside the workspace.
        #[test]
        fn accepted_paths_stay_inside(parts in proptest::collection::vec("(\\.\\.|\\.|[a-z]{1,3}|\\.git|)", 1..5)) {
            let path = parts.join("/");
            if check_path(&path).is_ok() {
                let root = Path::new("/root/ws");
                let joined = root.join(&path);
                let mut depth = 0i32;
                for c in Path::new(&path).components() {
                    match c {
                        Component::Normal(_) => depth += 1,
                        _ => prop_assert!(false, "{path} has {c:?}"),
                    }
                }
                prop_assert!(depth >= 1 && joined.starts_with(root));
            }
        }

        #[test]
        fn accepted_links_stay_inside(path in "[a-z]{1,3}(/[a-z]{1,3}){0,2}", target in "((\\.\\.|[a-z]{1,2}|\\.)/){0,4}[a-z]{1,2}") {
            if check_link(&path, target.as_bytes()).is_ok() {
                let mut depth = path.split('/').count() as i32 - 1;
                for c in target.split('/') {
                    match c {
                        ".." => depth -= 1,
                        "." | "" => {}
                        _ => depth += 1,
                    }
                    prop_assert!(depth >= 0);
                }
            }
        }
    }
}
