//! What weir remembers between runs so that checking restored outputs reads nothing it already
//! knows: the content ids of files git does not track (a job's outputs), trusted while their stat
//! data is unchanged (git's index trick: a stat, not a hash); and the output listings of cache
//! entries, by commit id, which never go stale because a commit never changes. Kept per machine
//! in `.git/weir/stat-cache` and `.git/weir/listings`.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use gix::ObjectId;

use super::files::{FileId, FileMode, hash_file};
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
}

/// Shared by every job of a run; lookups lock briefly, hashing happens outside the lock.
pub struct StatCache {
    file: PathBuf,
    /// Keyed by absolute path.
    entries: Mutex<HashMap<PathBuf, Known>>,
    /// When the file was last written, in seconds: an entry modified in that second or later
    /// may have changed again unseen ("racily clean") and is hashed anyway.
    written: i64,
    dirty: AtomicBool,
    listings: Listings,
}

type Known = (FileStat, FileMode, ObjectId);

/// Listings by (commit, directory).
type ListingMap = HashMap<(ObjectId, String), Vec<TreeItem>>;

/// The blobs under a directory of a commit's tree (as [`Repo::tree_items`] lists them), keyed by
/// commit and directory; loaded on first use.
struct Listings {
    file: PathBuf,
    known: std::sync::OnceLock<Mutex<ListingMap>>,
    /// Listings asked for since loading: kept first when the file is trimmed.
    used: Mutex<Vec<(ObjectId, String)>>,
    dirty: AtomicBool,
}

impl StatCache {
    /// The repository's cache; an unreadable or foreign file counts as empty.
    pub fn load(repo: &Repo) -> StatCache {
        let file = repo.weir_dir().join("stat-cache");
        let (entries, written) = fs::read_to_string(&file)
            .ok()
            .map(|text| parse(&text))
            .unwrap_or_default();
        StatCache {
            file,
            entries: Mutex::new(entries),
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

    /// The blobs under `dir` of `commit`'s tree, as [`Repo::tree_items`] lists them (names
    /// unchecked), read from the trees only the first time.
    pub fn tree_items(
        &self,
        repo: &Repo,
        commit: ObjectId,
        dir: &str,
    ) -> Result<Vec<TreeItem>, Error> {
        let key = (commit, dir.to_owned());
        let known = self
            .listings
            .known
            .get_or_init(|| Mutex::new(load_listings(&self.listings.file)));
        lock(&self.listings.used).push(key.clone());
        if let Some(items) = lock(known).get(&key) {
            return Ok(items.clone());
        }
        let items = repo.tree_items(commit, dir)?;
        lock(known).insert(key, items.clone());
        self.listings.dirty.store(true, Ordering::Relaxed);
        Ok(items)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Known>> {
        lock(&self.entries)
    }

    /// The mode and content id of the file at `base/rel`, or `None` if there is none. Hashes
    /// only when the stat data differs from what was recorded.
    pub fn file_id(&self, base: &Path, rel: &str) -> Result<Option<FileId>, Error> {
        let abs = base.join(rel);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(meta) => meta,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::Io(abs, e)),
        };
        let Some(mode) = FileMode::of(&meta) else {
            return Ok(None);
        };
        let stat = FileStat::of(&meta);
        let known = self.lock().get(&abs).copied();
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
        let id = hash_file(&abs, mode, meta.len())?;
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
        for (path, (stat, mode, id)) in self.lock().iter() {
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
        let mut order: Vec<&(ObjectId, String)> = Vec::with_capacity(known.len());
        let mut seen = std::collections::HashSet::new();
        for key in used.iter().rev().chain(known.keys()) {
            if known.contains_key(key) && seen.insert(key) {
                order.push(key);
            }
        }
        let mut text = format!("{LISTINGS_HEADER}\n");
        for key in order.into_iter().take(MAX_LISTINGS) {
            let (commit, dir) = key;
            let items = &known[key];
            let plain = |s: &str| !s.contains('\n');
            if !plain(dir) || !items.iter().all(|i| plain(&i.path)) {
                continue;
            }
            text.push_str(&format!("commit {commit} {} {dir}\n", items.len()));
            for item in items {
                text.push_str(&format!("{:o} {} {}\n", item.mode, item.id, item.path));
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

/// The listings in `file`; an unreadable or foreign file, or a damaged listing, gives nothing
/// for that listing (it is then read from the trees again).
fn load_listings(file: &Path) -> ListingMap {
    let mut known = HashMap::new();
    let Ok(text) = fs::read_to_string(file) else {
        return known;
    };
    let mut lines = text.lines();
    if lines.next() != Some(LISTINGS_HEADER) {
        return known;
    }
    while let Some(line) = lines.next() {
        let mut head = line.splitn(4, ' ');
        let (Some("commit"), Some(commit), Some(count), Some(dir)) =
            (head.next(), head.next(), head.next(), head.next())
        else {
            return known;
        };
        let (Ok(commit), Ok(count)) = (ObjectId::from_hex(commit.as_bytes()), count.parse()) else {
            return known;
        };
        let items: Vec<TreeItem> = lines
            .by_ref()
            .take(count)
            .map_while(|line| {
                let mut parts = line.splitn(3, ' ');
                let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
                let id = ObjectId::from_hex(parts.next()?.as_bytes()).ok()?;
                let path = parts.next()?.to_owned();
                Some(TreeItem { path, mode, id })
            })
            .collect();
        if items.len() != count {
            // A truncated or damaged file: what follows cannot be trusted to line up.
            return known;
        }
        known.insert((commit, dir.to_owned()), items);
    }
    known
}

/// The entries of a cache file and when it was written; a foreign file gives nothing.
fn parse(text: &str) -> (HashMap<PathBuf, Known>, i64) {
    // Sized up front: growing the map entry by entry was a good part of loading it.
    let lines = text.bytes().filter(|&b| b == b'\n').count();
    let mut entries = HashMap::with_capacity(lines);
    let mut lines = text.lines();
    let Some(written) = lines
        .next()
        .and_then(|h| h.strip_prefix(HEADER))
        .and_then(|rest| rest.trim().parse().ok())
    else {
        return (entries, 0);
    };
    for line in lines {
        let fields: Vec<&str> = line.splitn(9, ' ').collect();
        let [mode, id, size, ms, mns, cs, cns, ino, path] = fields.as_slice() else {
            continue;
        };
        let (Some(mode), Ok(id)) = (
            FileMode::from_octal(mode),
            ObjectId::from_hex(id.as_bytes()),
        ) else {
            continue;
        };
        let parse = |s: &str| s.parse::<i64>().ok();
        let (Some(ms), Some(mns), Some(cs), Some(cns)) =
            (parse(ms), parse(mns), parse(cs), parse(cns))
        else {
            continue;
        };
        let (Ok(size), Ok(ino)) = (size.parse(), ino.parse()) else {
            continue;
        };
        let stat = FileStat {
            size,
            mtime: (ms, mns),
            ctime: (cs, cns),
            ino,
        };
        entries.insert(PathBuf::from(path), (stat, mode, id));
    }
    (entries, written)
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
        assert_eq!(
            damaged.tree_items(&repo, one, "outputs").unwrap(),
            truth(one)
        );
        assert_eq!(
            damaged.tree_items(&repo, two, "outputs").unwrap(),
            truth(two)
        );
    }
}
