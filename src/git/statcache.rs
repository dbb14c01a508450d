//! Content ids of files git does not track (a job's outputs), trusted while their stat data is
//! unchanged: git's index trick, so that checking restored outputs costs a stat, not a hash.
//! Kept per machine in `.git/weir/stat-cache`.

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
use super::repo::{Error, Repo};

/// Format version, first line of the file.
const HEADER: &str = "weir-stat-cache 1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl Stat {
    fn of(meta: &fs::Metadata) -> Stat {
        Stat {
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
}

type Known = (Stat, FileMode, ObjectId);

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
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Known>> {
        // A poisoned lock means another job panicked mid-insert; the map is still usable.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let stat = Stat::of(&meta);
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

    /// Records that weir just wrote `id` to `base/rel`.
    pub fn wrote(&self, base: &Path, rel: &str, mode: FileMode, id: ObjectId) {
        let abs = base.join(rel);
        if let Ok(meta) = fs::symlink_metadata(&abs) {
            self.lock().insert(abs, (Stat::of(&meta), mode, id));
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the cache back if anything changed; entries of files that are gone are dropped.
    pub fn save(&self) -> io::Result<()> {
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
        let tmp = self
            .file
            .with_extension(format!("tmp-{}", std::process::id()));
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &self.file)?;
        self.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// The entries of a cache file and when it was written; a foreign file gives nothing.
fn parse(text: &str) -> (HashMap<PathBuf, Known>, i64) {
    let mut entries = HashMap::new();
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
        let stat = Stat {
            size,
            mtime: (ms, mns),
            ctime: (cs, cns),
            ino,
        };
        entries.insert(PathBuf::from(path), (stat, mode, id));
    }
    (entries, written)
}
