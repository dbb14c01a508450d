//! Files of the working tree as git sees them: which exist, their mode, and their blob id,
//! taken from the index when the stat data says the file is unchanged (as `git status` does).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::index::entry::{Mode, Stat};

use super::memo::Reads;
use super::repo::{Error, Repo};
use super::snapshot::Entry;

/// A file's mode, as recorded in trees and manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileMode {
    Regular,
    Executable,
    Symlink,
}

impl FileMode {
    pub fn as_octal(self) -> &'static str {
        match self {
            FileMode::Regular => "100644",
            FileMode::Executable => "100755",
            FileMode::Symlink => "120000",
        }
    }

    pub fn from_octal(s: &str) -> Option<FileMode> {
        match s {
            "100644" => Some(FileMode::Regular),
            "100755" => Some(FileMode::Executable),
            "120000" => Some(FileMode::Symlink),
            _ => None,
        }
    }

    /// The mode of a tree or index entry that is a file; `None` for anything else (a directory,
    /// a submodule).
    pub(super) fn from_git(mode: u32) -> Option<FileMode> {
        match mode {
            0o100644 => Some(FileMode::Regular),
            0o100755 => Some(FileMode::Executable),
            0o120000 => Some(FileMode::Symlink),
            _ => None,
        }
    }

    /// The mode of the file `meta` describes; `None` for anything but a file or symlink.
    pub(super) fn of(meta: &fs::Metadata) -> Option<FileMode> {
        use std::os::unix::fs::MetadataExt;
        FileMode::of_raw(meta.mode())
    }

    /// The mode of a file whose `st_mode` is `mode`.
    pub(super) fn of_raw(mode: u32) -> Option<FileMode> {
        use nix::sys::stat::SFlag;
        let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFLNK {
            Some(FileMode::Symlink)
        } else if kind == SFlag::S_IFREG {
            Some(if mode & 0o111 != 0 {
                FileMode::Executable
            } else {
                FileMode::Regular
            })
        } else {
            None
        }
    }

    pub(super) fn of_index(mode: Mode) -> Option<FileMode> {
        if mode == Mode::FILE {
            Some(FileMode::Regular)
        } else if mode == Mode::FILE_EXECUTABLE {
            Some(FileMode::Executable)
        } else if mode == Mode::SYMLINK {
            Some(FileMode::Symlink)
        } else {
            None
        }
    }
}

/// A file and its content id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    /// Relative to the directory the caller asked about, `/`-separated.
    pub path: String,
    pub mode: FileMode,
    pub id: ObjectId,
}

/// What the index knew of one file.
#[derive(Clone, Copy)]
struct Tracked<'a> {
    mode: FileMode,
    id: ObjectId,
    /// The index's stat data; `None` for a snapshot weir wrote itself, whose ids are known.
    stat: Option<&'a Stat>,
}

/// What the index knew when it was read: enough to name a clean file's blob without reading it.
pub struct IndexSnapshot {
    /// The directory the paths are relative to: the work tree, or a snapshot directory.
    root: PathBuf,
    /// By path relative to `root`, sorted.
    files: Files,
    /// When the index was written, in whole seconds: entries modified since are "racily clean"
    /// and must be hashed, as git does.
    timestamp: i64,
}

/// The entries of an [`IndexSnapshot`].
enum Files {
    /// Read from an index, with each entry's stat data.
    Index(Vec<(Entry, Stat)>),
    /// A snapshot directory weir synced: ids known, no untracked files. Kept as the sync was
    /// given them, which spares a copy of every entry for a run that reads a few.
    Synced(Vec<Entry>),
}

impl Files {
    fn len(&self) -> usize {
        match self {
            Files::Index(files) => files.len(),
            Files::Synced(files) => files.len(),
        }
    }

    fn entry(&self, at: usize) -> &Entry {
        match self {
            Files::Index(files) => &files[at].0,
            Files::Synced(files) => &files[at],
        }
    }

    /// The entry at `at`, with what the index knew of it.
    fn tracked(&self, at: usize) -> (&str, Tracked<'_>) {
        let (entry, stat) = match self {
            Files::Index(files) => (&files[at].0, Some(&files[at].1)),
            Files::Synced(files) => (&files[at], None),
        };
        let tracked = Tracked {
            mode: entry.mode,
            id: entry.id,
            stat,
        };
        (entry.path.as_str(), tracked)
    }

    /// Where the entries for whose path `below` holds end (they must come first).
    fn partition_point(&self, below: impl Fn(&str) -> bool) -> usize {
        match self {
            Files::Index(files) => files.partition_point(|(e, _)| below(&e.path)),
            Files::Synced(files) => files.partition_point(|e| below(&e.path)),
        }
    }

    /// Sorts the entries if they are not: git orders paths by their bytes, which a path that
    /// is not UTF-8 no longer has once made readable.
    fn sort(&mut self) {
        fn by_path<T>(files: &mut Vec<T>, path: impl Fn(&T) -> &str) {
            if !files.is_sorted_by(|a, b| path(a) <= path(b)) {
                files.sort_by(|a, b| path(a).cmp(path(b)));
                files.dedup_by(|a, b| path(a) == path(b));
            }
        }
        match self {
            Files::Index(files) => by_path(files, |(e, _)| &e.path),
            Files::Synced(files) => by_path(files, |e| &e.path),
        }
    }
}

impl IndexSnapshot {
    /// Whether this is a snapshot directory weir synced.
    pub fn is_synced(&self) -> bool {
        matches!(self.files, Files::Synced(_))
    }

    /// The directory the paths are relative to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every entry: path, mode and blob id.
    pub fn known(&self) -> impl Iterator<Item = (&str, (FileMode, ObjectId))> {
        (0..self.files.len()).map(|at| {
            let e = self.files.entry(at);
            (e.path.as_str(), (e.mode, e.id))
        })
    }

    fn get(&self, path: &str) -> Option<Tracked<'_>> {
        let at = self.files.partition_point(|p| p < path);
        (at < self.files.len() && self.files.entry(at).path == path)
            .then(|| self.files.tracked(at).1)
    }

    /// The entries from `start` on, in order.
    fn from(&self, start: &str) -> impl Iterator<Item = (&str, Tracked<'_>)> {
        let at = self.files.partition_point(|p| p < start);
        (at..self.files.len()).map(|at| self.files.tracked(at))
    }

    /// The files of a snapshot directory weir has just synced to `entries`: their ids are
    /// known, and no untracked file belongs to the tree.
    pub fn synced(root: &Path, entries: Vec<Entry>) -> IndexSnapshot {
        let mut files = Files::Synced(entries);
        files.sort();
        IndexSnapshot {
            root: root.to_path_buf(),
            files,
            timestamp: 0,
        }
    }
}

/// Which files a job reads.
pub struct Query<'a> {
    /// Whether a path (relative to the base directory) is wanted.
    pub wanted: &'a dyn Fn(&str) -> bool,
    /// Directories (relative to the base) to search for untracked files that are not ignored;
    /// empty means tracked files only.
    pub walk: &'a [String],
    /// Paths named outright: counted even when untracked and ignored.
    pub explicit: &'a [String],
    /// Only tracked paths starting with one of these (relative to the base) can be wanted;
    /// `None` means any. Saves matching every index entry against every job's globs.
    pub within: Option<&'a [String]>,
}

impl IndexSnapshot {
    /// Whether any tracked path starts with `prefix`.
    fn has_under(&self, prefix: &str) -> bool {
        self.from(prefix)
            .next()
            .is_some_and(|(path, _)| path.starts_with(prefix))
    }
}

/// Git's ignore rules, loaded only if a walk meets a file it has to ask about.
struct Ignores<'r> {
    repo: &'r Repo,
    prefix: &'r str,
    stack: Option<gix::AttributeStack<'r>>,
    /// Directories already judged, relative to the work tree.
    dirs: BTreeMap<String, bool>,
}

impl<'r> Ignores<'r> {
    fn new(repo: &'r Repo, prefix: &'r str) -> Ignores<'r> {
        Ignores {
            repo,
            prefix,
            stack: None,
            dirs: BTreeMap::new(),
        }
    }

    /// Whether any rule was asked about.
    fn consulted(&self) -> bool {
        self.stack.is_some()
    }

    fn ignored(&mut self, repo_rel: &str, is_dir: bool) -> Result<bool, Error> {
        if is_dir && let Some(&known) = self.dirs.get(repo_rel) {
            return Ok(known);
        }
        if self.stack.is_none() {
            let gix = self.repo.gix();
            self.stack = Some(gix.excludes(
                &gix::index::State::new(gix.object_hash()),
                None,
                gix::worktree::stack::state::ignore::Source::WorktreeThenIdMappingIfNotSkipped,
            )?);
        }
        let mode = if is_dir { Mode::DIR } else { Mode::FILE };
        let ignored = match self.stack.as_mut() {
            Some(stack) => stack
                .at_path(Path::new(repo_rel), Some(mode))
                .map(|p| p.is_excluded())
                .unwrap_or(false),
            None => false,
        };
        if is_dir {
            self.dirs.insert(repo_rel.to_owned(), ignored);
        }
        Ok(ignored)
    }

    /// Whether an untracked file is ignored, itself or through a directory above it (below
    /// the base, which the caller asked about).
    fn ignored_with_parents(&mut self, repo_rel: &str) -> Result<bool, Error> {
        let mut dir = repo_rel;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if parent.len() < self.prefix.len() {
                break;
            }
            if self.ignored(parent, true)? {
                return Ok(true);
            }
            dir = parent;
        }
        self.ignored(repo_rel, false)
    }
}

impl Repo {
    /// Reads the index once; every key of a run is computed against this snapshot.
    pub fn index_snapshot(&self) -> Result<IndexSnapshot, Error> {
        let Some(index) = self.read_index(&self.gix().index_path())? else {
            // No index yet (a fresh repository): nothing is tracked.
            return Ok(IndexSnapshot {
                root: self.workdir().to_path_buf(),
                files: Files::Index(Vec::new()),
                timestamp: 0,
            });
        };
        let mut files = Vec::with_capacity(index.entries().len());
        for entry in index.entries() {
            if entry.stage_raw() != 0 {
                continue;
            }
            let Some(mode) = FileMode::of_index(entry.mode) else {
                continue;
            };
            let path = entry.path(&index).to_str_lossy().into_owned();
            let file = Entry {
                path,
                mode,
                id: entry.id,
            };
            files.push((file, entry.stat));
        }
        let mut files = Files::Index(files);
        files.sort();
        Ok(IndexSnapshot {
            root: self.workdir().to_path_buf(),
            files,
            timestamp: index.timestamp().unix_seconds(),
        })
    }

    /// The files under `base` (a directory of the work tree) that `query` selects, with their
    /// content ids, sorted by path. Tracked files come from `index`; a file whose stat data
    /// matches its entry is not read. Deleted files are absent. With `reads`, every path
    /// looked at is recorded there.
    pub fn files(
        &self,
        index: &IndexSnapshot,
        base: &Path,
        query: &Query<'_>,
        mut reads: Option<&mut Reads>,
    ) -> Result<Vec<FileId>, Error> {
        let prefix = prefix_of(&index.root, base)?;
        // Sorted, and none under another, each index entry is looked at once at most.
        let mut within: Vec<&str> = match query.within {
            Some(within) => within.iter().map(String::as_str).collect(),
            None => vec![""],
        };
        within.sort_unstable();
        within.dedup_by(|later, kept| later.starts_with(*kept));
        let mut found = Vec::new();
        let mut at = StatAt::default();
        for within in within {
            let start = format!("{prefix}{within}");
            for (path, tracked) in index.from(&start) {
                if !path.starts_with(&start) {
                    break;
                }
                let rel = &path[prefix.len()..];
                if (query.wanted)(rel)
                    && let Some(file) = tracked_file(
                        &mut at,
                        base,
                        rel,
                        tracked,
                        index.timestamp,
                        reads.as_deref_mut(),
                    )?
                {
                    found.push(file);
                }
            }
        }
        if !query.walk.is_empty() && !index.is_synced() {
            let mut ignores = Ignores::new(self, &prefix);
            let mut untracked = Vec::new();
            for dir in query.walk {
                let visit = &mut |rel: &str, is_dir: bool| {
                    let repo_rel = format!("{prefix}{rel}");
                    if is_dir {
                        // A directory holding tracked files is entered without asking; one
                        // without is skipped if ignored, like `node_modules`.
                        return if index.has_under(&format!("{repo_rel}/")) {
                            Ok(true)
                        } else {
                            Ok(!ignores.ignored(&repo_rel, true)?)
                        };
                    }
                    if index.get(&repo_rel).is_some() || !(query.wanted)(rel) {
                        return Ok(false);
                    }
                    if !ignores.ignored_with_parents(&repo_rel)? {
                        untracked.push(rel.to_owned());
                    }
                    Ok(false)
                };
                walk(base, dir, visit, reads.as_deref_mut())?;
            }
            if ignores.consulted()
                && let Some(reads) = reads.as_deref_mut()
            {
                reads.unsure();
            }
            untracked.sort_unstable();
            untracked.dedup();
            for rel in untracked {
                let abs = base.join(&rel);
                if let Some(file) = file_id(&mut at, &abs, &rel, None, 0, reads.as_deref_mut())? {
                    found.push(file);
                }
            }
        }
        // Tracked and untracked files are different paths: sorted, each is there once.
        found.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let mut named = Vec::new();
        for rel in query.explicit {
            if found.binary_search_by(|f| f.path.as_str().cmp(rel)).is_ok() {
                continue;
            }
            let reads = reads.as_deref_mut();
            let file = match index.get(&format!("{prefix}{rel}")) {
                Some(tracked) => tracked_file(&mut at, base, rel, tracked, index.timestamp, reads)?,
                None => file_id(&mut at, &base.join(rel), rel, None, 0, reads)?,
            };
            named.extend(file);
        }
        if !named.is_empty() {
            found.append(&mut named);
            found.sort_unstable_by(|a, b| a.path.cmp(&b.path));
            found.dedup_by(|a, b| a.path == b.path);
        }
        Ok(found)
    }

    /// Every file (ignored or not, tracked or not) under the directories `dirs` of `base` that
    /// `wanted` accepts, sorted: what a job wrote as its outputs.
    pub fn output_paths(
        &self,
        base: &Path,
        dirs: &[String],
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, Error> {
        let mut paths = Vec::new();
        for dir in dirs {
            walk(
                base,
                dir,
                &mut |rel, is_dir| {
                    if !is_dir && wanted(rel) {
                        paths.push(rel.to_owned());
                    }
                    Ok(true)
                },
                None,
            )?;
        }
        paths.sort();
        paths.dedup();
        Ok(paths)
    }
}

/// What a file watcher watches: directories and the files in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// Directories, relative to the work tree (`""` for its root).
    pub dirs: Vec<String>,
    /// Files in them, relative to the work tree.
    pub files: Vec<String>,
}

impl Repo {
    /// `dir` (relative to the work tree, `""` for all of it) and every directory below it that
    /// git does not ignore, `.git` left out, with the files in them: what a watcher watches.
    pub fn watched(&self, dir: &str) -> Result<Watched, Error> {
        let mut ignores = Ignores::new(self, "");
        let mut watched = Watched {
            dirs: vec![dir.to_owned()],
            files: Vec::new(),
        };
        let visit = &mut |rel: &str, is_dir: bool| {
            if !is_dir {
                watched.files.push(rel.to_owned());
                return Ok(false);
            }
            if ignores.ignored(rel, true)? {
                return Ok(false);
            }
            watched.dirs.push(rel.to_owned());
            Ok(true)
        };
        walk(self.workdir(), dir, visit, None)?;
        Ok(watched)
    }

    /// The mode and blob id of the file at `base/rel` as it is now (hashed), or `None` when
    /// there is no file there.
    pub fn file_now(&self, base: &Path, rel: &str) -> Result<Option<FileId>, Error> {
        file_id(&mut StatAt::default(), &base.join(rel), rel, None, 0, None)
    }

    /// For each of `paths` (relative to the work tree), whether git ignores it: not tracked,
    /// and matched by an ignore rule itself or through a directory above it.
    pub fn ignored(&self, paths: &[String]) -> Result<Vec<bool>, Error> {
        let index = self.gix().index_or_empty()?;
        let tracked: std::collections::HashSet<&[u8]> = index
            .entries()
            .iter()
            .map(|e| e.path(&index).as_ref())
            .collect();
        let mut ignores = Ignores::new(self, "");
        paths
            .iter()
            .map(|path| {
                if tracked.contains(path.as_bytes()) {
                    Ok(false)
                } else {
                    ignores.ignored_with_parents(path)
                }
            })
            .collect()
    }
}

/// `base` relative to `root`, as an index path prefix (`""` or `dir/`).
fn prefix_of(root: &Path, base: &Path) -> Result<String, Error> {
    let rel = base
        .strip_prefix(root)
        .map_err(|_| Error::OutsideWorkTree(base.to_path_buf()))?;
    let mut prefix = rel.to_string_lossy().into_owned();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok(prefix)
}

/// What `lstat` gives.
pub(super) type RawStat = nix::sys::stat::FileStat;

/// `lstat` of files by name in their directory, which stays open while the files asked for
/// are in it: the kernel then looks up one name per file, not every directory of its path
/// (a fifth of the cost of a stat of an output four directories deep). Ask in path order.
#[derive(Default)]
pub struct StatAt {
    /// The directory of the last file asked for, and its descriptor (`None` if it is not
    /// there, or is not a directory).
    dir: Option<(PathBuf, Option<std::os::fd::OwnedFd>)>,
}

impl StatAt {
    /// What `lstat` says of `abs`; `None` when there is nothing there.
    pub(super) fn lstat(&mut self, abs: &Path) -> io::Result<Option<RawStat>> {
        use nix::errno::Errno;
        use nix::fcntl::{AtFlags, OFlag};
        let gone = |e: Errno| matches!(e, Errno::ENOENT | Errno::ENOTDIR);
        let (Some(dir), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Ok(None);
        };
        // As bytes: `Path` equality compares component by component.
        if self
            .dir
            .as_ref()
            .is_none_or(|(open, _)| open.as_os_str() != dir.as_os_str())
        {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            let fd = match nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty()) {
                Ok(fd) => Some(fd),
                Err(e) if gone(e) => None,
                Err(e) => return Err(e.into()),
            };
            self.dir = Some((dir.to_path_buf(), fd));
        }
        let Some((_, Some(fd))) = &self.dir else {
            return Ok(None);
        };
        match nix::sys::stat::fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(e) if gone(e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The git blob id of `bytes`.
pub fn blob_id(bytes: &[u8]) -> Result<ObjectId, Error> {
    Ok(gix::objs::compute_hash(
        gix::hash::Kind::Sha1,
        gix::objs::Kind::Blob,
        bytes,
    )?)
}

/// The mode and blob id of tracked file `rel` under `base`: known outright in a snapshot weir
/// synced, else as [`file_id`] finds it.
fn tracked_file(
    at: &mut StatAt,
    base: &Path,
    rel: &str,
    tracked: Tracked<'_>,
    index_timestamp: i64,
    reads: Option<&mut Reads>,
) -> Result<Option<FileId>, Error> {
    if tracked.stat.is_none() {
        return Ok(Some(FileId {
            path: rel.to_owned(),
            mode: tracked.mode,
            id: tracked.id,
        }));
    }
    file_id(
        at,
        &base.join(rel),
        rel,
        Some(tracked),
        index_timestamp,
        reads,
    )
}

/// The mode and blob id of the file at `abs`, or `None` if there is no file (or a directory).
fn file_id(
    at: &mut StatAt,
    abs: &Path,
    rel: &str,
    tracked: Option<Tracked<'_>>,
    index_timestamp: i64,
    reads: Option<&mut Reads>,
) -> Result<Option<FileId>, Error> {
    let st = at.lstat(abs).map_err(|e| Error::Io(abs.to_path_buf(), e))?;
    if let Some(reads) = reads {
        reads.file(rel, st.as_ref());
    }
    let Some(st) = st else {
        return Ok(None);
    };
    let Some(mode) = FileMode::of_raw(st.st_mode) else {
        return Ok(None);
    };
    if let Some(tracked) = tracked
        && let Some(stat) = tracked.stat
        && tracked.mode == mode
        && i64::from(stat.mtime.secs) < index_timestamp
        && stat_matches(&st, stat)
    {
        return Ok(Some(FileId {
            path: rel.to_owned(),
            mode,
            id: tracked.id,
        }));
    }
    Ok(Some(FileId {
        path: rel.to_owned(),
        mode,
        id: hash_file(abs, mode, u64::try_from(st.st_size).unwrap_or_default())?,
    }))
}

/// The blob id of a file's content (a symlink's target), read as a stream so that a large file
/// is never held in memory.
pub(super) fn hash_file(abs: &Path, mode: FileMode, len: u64) -> Result<ObjectId, Error> {
    if mode == FileMode::Symlink {
        return blob_id(&link_target(abs)?);
    }
    let mut file = fs::File::open(abs).map_err(|e| Error::Io(abs.to_path_buf(), e))?;
    hash_stream(&mut file, len)
}

/// The blob id of the `len` bytes `stream` gives.
pub(super) fn hash_stream(stream: &mut impl io::Read, len: u64) -> Result<ObjectId, Error> {
    static NEVER: AtomicBool = AtomicBool::new(false);
    Ok(gix::objs::compute_stream_hash(
        gix::hash::Kind::Sha1,
        gix::objs::Kind::Blob,
        stream,
        len,
        &mut gix::progress::Discard,
        &NEVER,
    )?)
}

pub(super) fn link_target(abs: &Path) -> Result<Vec<u8>, Error> {
    fs::read_link(abs)
        .map(|target| target.into_os_string().into_encoded_bytes())
        .map_err(|e| Error::Io(abs.to_path_buf(), e))
}

/// The working-tree file `rel` under `root` (the work tree, opened once: the kernel then walks
/// only the file's own path), opened, with its size, when it is still what the index says of it:
/// a regular file whose stat data matches `stat`, modified strictly before the index was
/// `written` (seconds, nanoseconds), as git decides that a file is clean. `None` otherwise.
/// Whoever reads it checks that it still holds that many bytes (see [`read_whole`]).
pub fn clean_file(
    root: &fs::File,
    rel: &str,
    stat: &Stat,
    written: (i64, u32),
) -> Option<(fs::File, usize)> {
    use nix::fcntl::OFlag;
    if (i64::from(stat.mtime.secs), stat.mtime.nsecs) >= written {
        return None;
    }
    // Not following a symlink, and not waiting for a writer of a FIFO: either fails the check.
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let fd = nix::fcntl::openat(
        root,
        rel,
        flags | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    );
    let file = fs::File::from(fd.ok()?);
    let st = nix::sys::stat::fstat(&file).ok()?;
    let same = FileMode::of_raw(st.st_mode).is_some_and(|m| m != FileMode::Symlink)
        && stat_matches(&st, stat)
        && st.st_mtime_nsec as u32 == stat.mtime.nsecs
        && st.st_ctime_nsec as u32 == stat.ctime.nsecs;
    same.then_some((file, usize::try_from(st.st_size).ok()?))
}

/// The `size` bytes of `file` from its start, if it holds exactly that many: grown or cut
/// short since its size was taken, it is not the file that was checked.
pub fn read_whole(file: &fs::File, size: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    // One byte more than the stat gave is asked for: a regular file's read comes up short only
    // at its end, so one read normally tells that the file is whole.
    let mut bytes = vec![0; size + 1];
    let mut filled = 0;
    loop {
        let read = file.read_at(&mut bytes[filled..], filled as u64).ok()?;
        filled += read;
        if read == 0 || filled > size {
            break;
        }
    }
    bytes.truncate(size);
    (filled == size).then_some(bytes)
}

/// Whether `st` matches an index entry's stat data as git compares them by default (whole
/// seconds of mtime and ctime, size, inode, owner; 32-bit fields truncated as git stores them).
fn stat_matches(st: &RawStat, stat: &Stat) -> bool {
    st.st_mtime as u32 == stat.mtime.secs
        && st.st_ctime as u32 == stat.ctime.secs
        && st.st_size as u32 == stat.size
        && st.st_ino as u32 == stat.ino
        && st.st_uid == stat.uid
        && st.st_gid == stat.gid
}

/// Calls `visit(rel, is_dir)` for everything under `base/dir` (not following symlinks, never
/// entering `.git`); a directory is entered only if `visit` returns true for it. With `reads`,
/// each directory listed is recorded there.
fn walk(
    base: &Path,
    dir: &str,
    visit: &mut dyn FnMut(&str, bool) -> Result<bool, Error>,
    mut reads: Option<&mut Reads>,
) -> Result<(), Error> {
    let start: PathBuf = if dir.is_empty() {
        base.to_path_buf()
    } else {
        base.join(dir)
    };
    let mut stack = vec![(start, dir.to_owned())];
    while let Some((abs, rel)) = stack.pop() {
        if let Some(reads) = reads.as_deref_mut() {
            reads.dir(&rel, &abs);
        }
        let entries = match fs::read_dir(&abs) {
            Ok(entries) => entries,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                continue;
            }
            Err(e) => return Err(Error::Io(abs, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::Io(abs.clone(), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == ".git" {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if visit(&child_rel, is_dir)? && is_dir {
                stack.push((entry.path(), child_rel));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::FileStat;
    use crate::git::{test_git as git, test_repo};

    #[test]
    fn stats_by_name_in_an_open_directory_say_what_lstat_says() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join("d/e")).unwrap();
        for (path, bytes) in [("d/a", "1"), ("d/b", "22"), ("d/e/c", "333"), ("f", "4444")] {
            fs::write(base.join(path), bytes).unwrap();
        }
        std::os::unix::fs::symlink("a", base.join("d/link")).unwrap();
        let mut at = StatAt::default();
        // In path order, as callers ask, with a directory left and come back to, a missing
        // directory, and a file asked for as a directory.
        let (file, link) = (Some(FileMode::Regular), Some(FileMode::Symlink));
        for (path, mode) in [
            ("d/a", file),
            ("d/b", file),
            ("d/e", None),
            ("d/e/c", file),
            ("d/link", link),
            ("d/missing", None),
            ("f", file),
            ("f/x", None),
            ("gone/x", None),
            ("d/a", file),
        ] {
            let abs = base.join(path);
            let ours = at.lstat(&abs).unwrap();
            let std = fs::symlink_metadata(&abs).ok();
            assert_eq!(ours.is_some(), std.is_some(), "{path}");
            assert_eq!(
                ours.and_then(|st| FileMode::of_raw(st.st_mode)),
                mode,
                "{path}"
            );
            if let (Some(ours), Some(std)) = (ours, std) {
                use std::os::unix::fs::MetadataExt;
                assert_eq!(
                    (ours.st_ino, ours.st_mode),
                    (std.ino(), std.mode()),
                    "{path}"
                );
                assert_eq!(FileStat::of_raw(&ours), FileStat::of(&std), "{path}");
            }
        }
    }

    #[test]
    fn a_jobs_files_are_listed_once_each_in_order_however_many_ways_they_are_named() {
        let (dir, repo) = test_repo();
        let base = dir.path();
        for (path, bytes) in [
            (".gitignore", "build/\n"),
            ("README", "read me\n"),
            ("src/a.rs", "a\n"),
            ("src/b.rs", "b\n"),
            ("src/sub/c.rs", "c\n"),
            ("srcs.txt", "not under src/\n"),
            ("build/out.txt", "ignored, named outright\n"),
            ("src/new.rs", "untracked\n"),
        ] {
            let abs = base.join(path);
            fs::create_dir_all(abs.parent().unwrap()).unwrap();
            fs::write(abs, bytes).unwrap();
        }
        git(
            base,
            &[
                "add",
                ".gitignore",
                "README",
                "src/a.rs",
                "src/b.rs",
                "src/sub",
                "srcs.txt",
            ],
        );
        let index = repo.index_snapshot().unwrap();
        let names = ["README", "build/out.txt", "missing", "src/a.rs"].map(String::from);
        let within = ["src/", "src/sub/", "src/a.rs", "README", "README"].map(String::from);
        let files = repo
            .files(
                &index,
                base,
                &Query {
                    wanted: &|p: &str| p != "src/b.rs",
                    walk: &["src".to_owned(), "src/sub".to_owned()],
                    explicit: &names,
                    within: Some(&within),
                },
                None,
            )
            .unwrap();
        let listed: Vec<(&str, String)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.id.to_string()))
            .collect();
        let expected: Vec<(&str, String)> = [
            "README",
            "build/out.txt",
            "src/a.rs",
            "src/new.rs",
            "src/sub/c.rs",
        ]
        .into_iter()
        .map(|path| (path, git(base, &["hash-object", path])))
        .collect();
        assert_eq!(listed, expected);

        // In a snapshot weir synced, a named file's id is the one it wrote, as for the others.
        let synced = IndexSnapshot::synced(
            base,
            ["README", "src/a.rs"]
                .into_iter()
                .map(|path| Entry {
                    path: path.to_owned(),
                    mode: FileMode::Regular,
                    id: ObjectId::empty_blob(gix::hash::Kind::Sha1),
                })
                .collect(),
        );
        let files = repo
            .files(
                &synced,
                base,
                &Query {
                    wanted: &|_| true,
                    walk: &[],
                    explicit: &["src/a.rs".to_owned(), "README".to_owned()],
                    within: Some(&[]),
                },
                None,
            )
            .unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["README", "src/a.rs"]);
        assert!(files.iter().all(|f| f.id.is_empty_blob()), "{files:?}");
    }
}
