//! What weir remembers between runs so that checking restored outputs reads nothing it already
//! knows: the content ids of files git does not track (a job's outputs), trusted while their stat
//! data is unchanged (git's index trick: a stat, not a hash); and the output listings of cache
//! entries, by commit id, which never go stale because a commit never changes. Kept per machine
//! in `.git/weir/stat-cache` and `.git/weir/listings`.

use std::collections::HashMap;
use std::fs;
use std::hash::BuildHasher;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use gix::ObjectId;

use super::files::{FileId, FileMode, RawStat, StatAt, hash_file};
use super::memo::Reads;
use super::repo::{Error, Repo, TreeItem};
use crate::sync::lock;

/// Format version, first line of the file.
const HEADER: &str = "weir-stat-cache 1";
/// Format version, first line of the listings file.
const LISTINGS_HEADER: &str = "weir-listings 1";
/// Listings kept at most: those used by the last run, then others, up to this many.
const MAX_LISTINGS: usize = 4096;

/// The stat data that tells a file changed: size, modification and change times (seconds,
/// nanoseconds), inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
}

impl FileStat {
    pub fn of(meta: &fs::Metadata) -> FileStat {
        FileStat {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
        }
    }

    pub(super) fn of_raw(st: &RawStat) -> FileStat {
        FileStat {
            size: u64::try_from(st.st_size).unwrap_or_default(),
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            ino: st.st_ino,
        }
    }
}

/// Shared by every job of a run; lookups lock briefly, hashing happens outside the lock.
pub struct StatCache {
    file: PathBuf,
    /// The file as loaded, read line by line as paths are asked for.
    stored: Stored,
    /// What this run learnt (files hashed or written), keyed by absolute path; wins over
    /// `stored`.
    entries: Mutex<Entries>,
    /// When the file was last written, in seconds: an entry modified in that second or later
    /// may have changed again unseen ("racily clean") and is hashed anyway.
    written: i64,
    dirty: AtomicBool,
    listings: Listings,
}

type Known = (FileStat, FileMode, ObjectId);

type Entries = HashMap<PathBuf, Known, foldhash::fast::RandomState>;

/// A cache file's text, and where each path's line starts, by a hash of the path. Parsing all
/// of it took 1.1 ms for a 2,000-output workspace, before any job could start; a run needs
/// only the lines of its jobs' outputs, each read when asked for.
#[derive(Default)]
struct Stored {
    text: String,
    /// Line starts by path hash; the path is compared on lookup, and of two paths with one
    /// hash only the first is found (the other is hashed again, as if unknown).
    lines: HashMap<u64, usize, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
}

impl Stored {
    fn parse(text: String) -> (Stored, i64) {
        let mut stored = Stored::default();
        let Some((header, _)) = text.split_once('\n') else {
            return (stored, 0);
        };
        let Some(written) = header
            .strip_prefix(HEADER)
            .and_then(|rest| rest.trim().parse().ok())
        else {
            return (stored, 0);
        };
        let mut at = header.len() + 1;
        let mut lines = HashMap::with_capacity_and_hasher(
            text.bytes().filter(|&b| b == b'\n').count(),
            Default::default(),
        );
        while let Some(len) = text[at..].find('\n') {
            if let Some(path) = line_path(&text[at..at + len]) {
                lines.entry(stored.hasher.hash_one(path)).or_insert(at);
            }
            at += len + 1;
        }
        stored.lines = lines;
        stored.text = text;
        (stored, written)
    }

    /// The stored entry of `path`, if its line is sound.
    fn get(&self, path: &str) -> Option<Known> {
        let start = *self.lines.get(&self.hasher.hash_one(path))?;
        let line = self.text[start..].lines().next()?;
        let (known, at) = parse_line(line)?;
        (at == path).then_some(known)
    }

    /// Each stored line with its path.
    fn lines(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text
            .lines()
            .skip(1)
            .filter_map(|line| Some((line, line_path(line)?)))
    }
}

/// The path a cache line ends with: what follows the eighth space.
fn line_path(line: &str) -> Option<&str> {
    line.splitn(9, ' ').nth(8).filter(|p| !p.is_empty())
}

/// Listings by (commit, directory).
type ListingMap = HashMap<(ObjectId, String), Listing, foldhash::fast::RandomState>;

/// A listing as the file holds it: read in full only when a run asks for it, since the file
/// keeps thousands of listings and a run uses one per job.
enum Listing {
    /// Its lines in the file's text: `count` lines from byte `start`.
    Unread {
        start: usize,
        count: usize,
    },
    Read(Vec<TreeItem>),
}

/// The listings file: its text, and where each listing is in it.
#[derive(Default)]
struct ListingFile {
    text: String,
    listings: ListingMap,
}

/// The blobs under a directory of a commit's tree (as [`Repo::tree_items`] lists them), keyed by
/// commit and directory; loaded on first use.
struct Listings {
    file: PathBuf,
    known: std::sync::OnceLock<Mutex<ListingFile>>,
    /// Listings asked for since loading: kept first when the file is trimmed.
    used: Mutex<Vec<(ObjectId, String)>>,
    dirty: AtomicBool,
}

impl Listings {
    /// The listings file, read on first use.
    fn known(&self) -> &Mutex<ListingFile> {
        self.known
            .get_or_init(|| Mutex::new(load_listings(&self.file)))
    }
}

impl StatCache {
    /// The repository's cache; an unreadable or foreign file counts as empty.
    pub fn load(repo: &Repo) -> StatCache {
        let file = repo.weir_dir().join("stat-cache");
        let (stored, written) = fs::read_to_string(&file)
            .map(Stored::parse)
            .unwrap_or_default();
        StatCache {
            file,
            stored,
            entries: Mutex::new(Entries::default()),
            written,
            dirty: AtomicBool::new(false),
            listings: Listings {
                file: repo.weir_dir().join("listings"),
                known: std::sync::OnceLock::new(),
                used: Mutex::new(Vec::new()),
                dirty: AtomicBool::new(false),
            },
        }
    }

    /// [`StatCache::load`], with the listings read too rather than on first use.
    pub fn load_whole(repo: &Repo) -> StatCache {
        let stats = StatCache::load(repo);
        stats.listings.known();
        stats
    }

    /// The blobs under `dir` of `commit`'s tree, as [`Repo::tree_items`] lists them (names
    /// unchecked), read from the trees only the first time.
    pub fn tree_items(
        &self,
        repo: &Repo,
        commit: ObjectId,
        dir: &str,
    ) -> Result<Vec<TreeItem>, Error> {
        let key = (commit, dir.to_owned());
        let known = self.listings.known();
        lock(&self.listings.used).push(key.clone());
        {
            let mut known = lock(known);
            let ListingFile { text, listings } = &mut *known;
            if let Some(listing) = listings.get_mut(&key) {
                if let Listing::Unread { start, count } = *listing {
                    match read_listing(&text[start..], count) {
                        Some(items) => *listing = Listing::Read(items),
                        // Damaged: read from the trees, and written anew.
                        None => {
                            listings.remove(&key);
                        }
                    }
                }
                if let Some(Listing::Read(items)) = listings.get(&key) {
                    return Ok(items.clone());
                }
            }
        }
        let items = repo.tree_items(commit, dir)?;
        lock(known)
            .listings
            .insert(key, Listing::Read(items.clone()));
        self.listings.dirty.store(true, Ordering::Relaxed);
        Ok(items)
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        lock(&self.entries)
    }

    /// The mode and content id of the file at `base/rel`, or `None` if there is none. Hashes
    /// only when the stat data differs from what was recorded.
    pub fn file_id(
        &self,
        at: &mut StatAt,
        base: &Path,
        rel: &str,
    ) -> Result<Option<FileId>, Error> {
        self.file_id_reading(at, base, rel, None)
    }

    /// [`StatCache::file_id`], recording the file's stat data in `reads`.
    pub fn file_id_reading(
        &self,
        at: &mut StatAt,
        base: &Path,
        rel: &str,
        reads: Option<&mut Reads>,
    ) -> Result<Option<FileId>, Error> {
        let abs = base.join(rel);
        let st = match at.lstat(&abs) {
            Ok(st) => st,
            Err(e) => return Err(Error::Io(abs, e)),
        };
        if let Some(reads) = reads {
            reads.file(rel, st.as_ref());
        }
        let Some(st) = st else {
            return Ok(None);
        };
        let Some(mode) = FileMode::of_raw(st.st_mode) else {
            return Ok(None);
        };
        let stat = FileStat::of_raw(&st);
        let known = self.lock().get(&abs).copied().or_else(|| {
            let path = abs.to_str()?;
            self.stored.get(path)
        });
        if let Some((known, known_mode, id)) = known
            && known == stat
            && known_mode == mode
            && stat.mtime.0 < self.written
        {
            return Ok(Some(FileId {
                path: rel.to_owned(),
                mode,
                id,
            }));
        }
        let id = hash_file(&abs, mode, stat.size)?;
        self.lock().insert(abs, (stat, mode, id));
        self.dirty.store(true, Ordering::Relaxed);
        Ok(Some(FileId {
            path: rel.to_owned(),
            mode,
            id,
        }))
    }

    /// Records that weir just wrote `id` to `base/rel`, which now has the metadata `meta`.
    pub fn wrote(&self, base: &Path, rel: &str, mode: FileMode, id: ObjectId, meta: &fs::Metadata) {
        self.lock()
            .insert(base.join(rel), (FileStat::of(meta), mode, id));
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the cache back if anything changed; entries of files that are gone are dropped.
    pub fn save(&self) -> io::Result<()> {
        self.save_listings()?;
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut text = format!("{HEADER} {now}\n");
        let entries = self.lock();
        for (line, path) in self.stored.lines() {
            if !entries.contains_key(Path::new(path)) {
                text.push_str(line);
                text.push('\n');
            }
        }
        for (path, (stat, mode, id)) in entries.iter() {
            let Some(path) = path.to_str().filter(|p| !p.contains('\n')) else {
                continue;
            };
            text.push_str(&format!(
                "{} {id} {} {} {} {} {} {} {path}\n",
                mode.as_octal(),
                stat.size,
                stat.mtime.0,
                stat.mtime.1,
                stat.ctime.0,
                stat.ctime.1,
                stat.ino
            ));
        }
        if let Some(dir) = self.file.parent() {
            fs::create_dir_all(dir)?;
        }
        crate::statefile::replace(&self.file, text.as_bytes())?;
        self.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the listings back if one was added: those used since loading first, then the
    /// others, up to [`MAX_LISTINGS`].
    fn save_listings(&self) -> io::Result<()> {
        let listings = &self.listings;
        let Some(known) = listings.known.get() else {
            return Ok(());
        };
        if !listings.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let known = lock(known);
        let used = lock(&listings.used);
        let mut order: Vec<&(ObjectId, String)> = Vec::with_capacity(known.listings.len());
        let mut seen = std::collections::HashSet::new();
        for key in used.iter().rev().chain(known.listings.keys()) {
            if known.listings.contains_key(key) && seen.insert(key) {
                order.push(key);
            }
        }
        let mut text = format!("{LISTINGS_HEADER}\n");
        for key in order.into_iter().take(MAX_LISTINGS) {
            let (commit, dir) = key;
            let plain = |s: &str| !s.contains('\n');
            match &known.listings[key] {
                Listing::Unread { start, count } => {
                    let lines = lines_end(&known.text[*start..], *count)
                        .map(|end| &known.text[*start..*start + end]);
                    if let Some(lines) = lines {
                        text.push_str(&format!("commit {commit} {count} {dir}\n"));
                        text.push_str(lines);
                    }
                }
                Listing::Read(items) => {
                    if !plain(dir) || !items.iter().all(|i| plain(&i.path)) {
                        continue;
                    }
                    text.push_str(&format!("commit {commit} {} {dir}\n", items.len()));
                    for item in items {
                        text.push_str(&format!("{:o} {} {}\n", item.mode, item.id, item.path));
                    }
                }
            }
        }
        if let Some(dir) = listings.file.parent() {
            fs::create_dir_all(dir)?;
        }
        crate::statefile::replace(&listings.file, text.as_bytes())?;
        listings.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// Where the listings in `file` are; an unreadable or foreign file gives nothing, and a file cut
/// short inside a listing gives the listings before it.
fn load_listings(file: &Path) -> ListingFile {
    let Ok(text) = fs::read_to_string(file) else {
        return ListingFile::default();
    };
    let mut listings = ListingMap::default();
    let Some(mut at) = text
        .strip_prefix(LISTINGS_HEADER)
        .and_then(|rest| rest.strip_prefix('\n'))
        .map(|_| LISTINGS_HEADER.len() + 1)
    else {
        return ListingFile::default();
    };
    while let Some(len) = text[at..].find('\n') {
        let mut head = text[at..at + len].splitn(4, ' ');
        let (Some("commit"), Some(commit), Some(count), Some(dir)) =
            (head.next(), head.next(), head.next(), head.next())
        else {
            break;
        };
        let (Ok(commit), Ok(count)) = (ObjectId::from_hex(commit.as_bytes()), count.parse()) else {
            break;
        };
        let start = at + len + 1;
        // What follows a listing cut short cannot be trusted to line up.
        let Some(end) = lines_end(&text[start..], count) else {
            break;
        };
        listings.insert((commit, dir.to_owned()), Listing::Unread { start, count });
        at = start + end;
    }
    ListingFile { text, listings }
}

/// The length of the first `count` lines of `text`, each ended by a newline, if it has them.
fn lines_end(text: &str, count: usize) -> Option<usize> {
    let mut end = 0;
    for _ in 0..count {
        end += text[end..].find('\n')? + 1;
    }
    Some(end)
}

/// The `count` items at the start of `text`, or `None` if one of them is damaged.
fn read_listing(text: &str, count: usize) -> Option<Vec<TreeItem>> {
    text.lines()
        .take(count)
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
            let id = ObjectId::from_hex(parts.next()?.as_bytes()).ok()?;
            let path = parts.next()?.to_owned();
            Some(TreeItem { path, mode, id })
        })
        .collect::<Option<Vec<_>>>()
        .filter(|items| items.len() == count)
}

/// A cache line's entry and path; `None` if it is damaged.
fn parse_line(line: &str) -> Option<(Known, &str)> {
    let mut fields = line.splitn(9, ' ');
    let mut next = || fields.next().unwrap_or_default();
    let [mode, id, size, ms, mns, cs, cns, ino, path] = std::array::from_fn(|_| next());
    let mode = FileMode::from_octal(mode)?;
    let id = ObjectId::from_hex(id.as_bytes()).ok()?;
    let number = |s: &str| s.parse::<i64>().ok();
    let stat = FileStat {
        size: size.parse().ok()?,
        mtime: (number(ms)?, number(mns)?),
        ctime: (number(cs)?, number(cns)?),
        ino: ino.parse().ok()?,
    };
    (!path.is_empty()).then_some(((stat, mode, id), path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::TreeEntry;
    use crate::git::test_repo as repo;

    fn entry(repo: &Repo, name: &str, files: &[(&str, &str)]) -> ObjectId {
        let entries: Vec<TreeEntry> = files
            .iter()
            .map(|(path, bytes)| TreeEntry::bytes(*path, bytes.as_bytes()))
            .collect();
        repo.create_commit_ref(&format!("refs/weir/test/{name}"), &entries, "test\n", None)
            .unwrap()
    }

    #[test]
    fn listings_are_kept_per_commit_and_a_damaged_file_is_read_from_the_trees() {
        let (_dir, repo) = repo();
        let one = entry(&repo, "one", &[("outputs/a/x", "1"), ("outputs/b", "2")]);
        let two = entry(&repo, "two", &[("outputs/c", "3"), ("log", "")]);
        let truth = |commit| repo.tree_items(commit, "outputs").unwrap();

        let stats = StatCache::load(&repo);
        assert_eq!(stats.tree_items(&repo, one, "outputs").unwrap(), truth(one));
        assert_eq!(stats.tree_items(&repo, two, "outputs").unwrap(), truth(two));
        stats.save().unwrap();

        let again = StatCache::load(&repo);
        assert_eq!(again.tree_items(&repo, two, "outputs").unwrap(), truth(two));
        assert_eq!(again.tree_items(&repo, one, "outputs").unwrap(), truth(one));
        // The directory is part of the key: the whole tree is listed on its own.
        let whole = again.tree_items(&repo, two, "").unwrap();
        assert_eq!(whole, repo.tree_items(two, "").unwrap());
        assert_eq!(whole.len(), 2);

        // Cut the file short inside a listing: nothing from there on is believed.
        let file = repo.weir_dir().join("listings");
        let text = fs::read_to_string(&file).unwrap();
        let cut = text.trim_end().rsplit_once('\n').unwrap().0;
        fs::write(&file, cut).unwrap();
        let damaged = StatCache::load(&repo);
        let listed_truly = |stats: &StatCache| {
            for commit in [one, two] {
                assert_eq!(
                    stats.tree_items(&repo, commit, "outputs").unwrap(),
                    truth(commit)
                );
            }
        };
        listed_truly(&damaged);

        // A damaged line inside a listing: that listing is read from the trees.
        damaged.save().unwrap();
        let text = fs::read_to_string(&file).unwrap();
        fs::write(&file, text.replacen("100644 ", "10x644 ", 1)).unwrap();
        listed_truly(&StatCache::load(&repo));
    }

    #[test]
    fn stored_ids_are_trusted_while_the_stat_data_holds_and_kept_when_others_change() {
        let (dir, repo) = repo();
        let base = dir.path();
        let old = SystemTime::now() - std::time::Duration::from_secs(3 * 86_400);
        for (name, content) in [("a", "one"), ("b", "two")] {
            fs::write(base.join(name), content).unwrap();
            fs::File::options()
                .write(true)
                .open(base.join(name))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let id = |stats: &StatCache, name: &str| {
            let found = stats.file_id(&mut StatAt::default(), base, name);
            found.unwrap().unwrap().id
        };
        let stats = StatCache::load(&repo);
        let (a, b) = (id(&stats, "a"), id(&stats, "b"));
        stats.save().unwrap();

        // A stored line is believed without reading the file: claim `a` holds `b`'s content.
        let file = repo.weir_dir().join("stat-cache");
        let text = fs::read_to_string(&file).unwrap();
        fs::write(&file, text.replace(&a.to_string(), &b.to_string())).unwrap();
        let stats = StatCache::load(&repo);
        assert_eq!(id(&stats, "a"), b);

        // A file that changed is hashed again; saving keeps the other file's stored line.
        fs::write(base.join("b"), "three").unwrap();
        let three = id(&stats, "b");
        assert_ne!(three, b);
        stats.save().unwrap();
        let stats = StatCache::load(&repo);
        assert_eq!(id(&stats, "a"), b, "the stored line of `a` was kept");
        assert_eq!(id(&stats, "b"), three);

        // A damaged line counts as unknown.
        let text = fs::read_to_string(&file).unwrap();
        let damaged: String = text
            .lines()
            .map(|line| match line.ends_with("/a") {
                true => format!("{}\n", line.replacen(' ', " x", 3)),
                false => format!("{line}\n"),
            })
            .collect();
        fs::write(&file, damaged).unwrap();
        assert_eq!(id(&StatCache::load(&repo), "a"), a);
    }
}
