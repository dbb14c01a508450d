//! The memo of the jobs that last hit the cache in the working tree with their outputs in
//! place: for each, the stat data of every path its key and its hit were decided from (input
//! files, the directories searched for untracked ones, the stored outputs on disk), the key and
//! the cache entry. While none of that stat data has changed, and neither has what else the
//! key is made of (checked by the caller's `given` hash) nor the set of tracked paths, the job
//! hits again with nothing to restore: a run compares stats, where it would list inputs, hash
//! a manifest and compare every output with the entry's listing.
//!
//! A job is remembered only when nothing it read could change unseen: every file and directory
//! last changed a while before the run started (file times come from a coarse clock, and a
//! file changed twice within one tick keeps its times), and no ignore rule decided what it
//! reads. Kept per machine and working tree in `.git/weir/memo` (a linked worktree's in its
//! own git directory); losing it costs one ordinary run.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gix::ObjectId;

use super::files::{IndexSnapshot, RawStat, StatAt};
use super::repo::Repo;
use crate::sync::lock;

/// Format version, first word of the file.
const HEADER: &str = "weir-memo 1";

/// How long before a run a path must have last changed for its stat data to be trusted.
const SETTLED: Duration = Duration::from_secs(1);

/// The stat data compared: what any change to a file, or to a directory's entries, moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    mode: u32,
    size: i64,
    pub(super) ino: u64,
    pub(super) dev: u64,
    pub(super) mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Seen {
    /// What `stat` says of `path` (following a symlink); `None` if there is nothing there.
    pub(super) fn at(path: &Path) -> Option<Seen> {
        nix::sys::stat::stat(path).ok().map(|st| Seen::of(&st))
    }

    fn of(st: &RawStat) -> Seen {
        Seen {
            mode: st.st_mode,
            size: st.st_size,
            ino: st.st_ino,
            dev: st.st_dev,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    pub(super) fn encode(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:o} {} {} {} {} {} {} {}",
            self.mode,
            self.size,
            self.ino,
            self.dev,
            self.mtime.0,
            self.mtime.1,
            self.ctime.0,
            self.ctime.1
        );
    }

    /// The eight fields [`Seen::encode`] wrote, each followed by a space, from the start of
    /// `text`; and the rest of it. By hand: a run reads thousands of them.
    fn decode(text: &[u8]) -> Option<(Seen, &[u8])> {
        let mut at = 0;
        let mut number = |radix: u64| {
            let mut n: u64 = 0;
            let start = at;
            while let Some(digit) = text.get(at).and_then(|&b| char::from(b).to_digit(10)) {
                n = n.checked_mul(radix)?.checked_add(u64::from(digit))?;
                at += 1;
            }
            (at > start && text.get(at) == Some(&b' ')).then(|| {
                at += 1;
                n
            })
        };
        let mode = u32::try_from(number(8)?).ok()?;
        let size = i64::try_from(number(10)?).ok()?;
        let ino = number(10)?;
        let dev = number(10)?;
        let mut time = || {
            Some((
                i64::try_from(number(10)?).ok()?,
                i64::try_from(number(10)?).ok()?,
            ))
        };
        let mtime = time()?;
        let ctime = time()?;
        let seen = Seen {
            mode,
            size,
            ino,
            dev,
            mtime,
            ctime,
        };
        Some((seen, text.get(at..)?))
    }
}

/// How a path was read, and so how it is looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `lstat` of a file (an input, or a stored output on disk).
    File,
    /// `stat` of a directory whose entries were listed (links followed, as listing does).
    Dir,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::File => 'f',
            Kind::Dir => 'd',
        }
    }
}

/// What deciding a job's key and hit read from the file system, as it was read; paths are
/// kept relative to the work tree.
#[derive(Debug, Default)]
pub struct Reads {
    /// Where the paths given are, relative to the work tree (`""`: its root).
    under: String,
    seen: Vec<(Kind, String, Option<Seen>)>,
    /// Something decided what was read that stat data cannot stand for (an ignore rule).
    unsure: bool,
}

impl Reads {
    /// Reads of paths given relative to `under`, a directory of the work tree (relative to it).
    pub fn under(under: &Path) -> Reads {
        Reads {
            under: under.to_string_lossy().into_owned(),
            ..Reads::default()
        }
    }

    fn path(&self, rel: &str) -> String {
        match (self.under.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_owned(),
            (false, true) => self.under.clone(),
            (false, false) => format!("{}/{rel}", self.under),
        }
    }

    /// `lstat` of file `rel` gave `st` (`None`: nothing there).
    pub(super) fn file(&mut self, rel: &str, st: Option<&RawStat>) {
        let path = self.path(rel);
        self.seen.push((Kind::File, path, st.map(Seen::of)));
    }

    /// Directory `abs` (`rel`) is about to be listed.
    pub(super) fn dir(&mut self, rel: &str, abs: &Path) {
        let path = self.path(rel);
        match nix::sys::stat::stat(abs) {
            Ok(st) => self.seen.push((Kind::Dir, path, Some(Seen::of(&st)))),
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {
                self.seen.push((Kind::Dir, path, None));
            }
            Err(_) => self.unsure = true,
        }
    }

    /// What was read was decided by something stat data does not show.
    pub(super) fn unsure(&mut self) {
        self.unsure = true;
    }
}

/// A remembered hit: the job's key and the cache entry's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub key: String,
    pub commit: ObjectId,
}

/// A remembered hit whose paths are all as they were, and what it was decided with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recalled {
    pub given: String,
    pub hit: Remembered,
}

/// The memo file as loaded, and this run's changes to it.
pub struct Memo {
    file: PathBuf,
    /// A hash of the tracked paths: the memo holds nothing when they differ from the file's.
    tracked: String,
    text: String,
    /// Each job's section in `text`, with the hash of its text.
    sections: HashMap<String, (Range<usize>, String)>,
    /// Jobs remembered anew (`Some`) or forgotten (`None`) by this run.
    changes: Mutex<BTreeMap<String, Option<String>>>,
    /// Paths whose times are not before this may change unseen and are not remembered.
    settled: (i64, i64),
}

impl Memo {
    /// The repository's memo, for a run in the working tree whose index is `index`, started
    /// at `now`. An unreadable or foreign file, or one written when other paths were tracked,
    /// holds nothing.
    pub fn load(repo: &Repo, index: &IndexSnapshot, now: SystemTime) -> Memo {
        let file = repo.worktree_weir_dir().join("memo");
        let tracked = tracked_hash(index);
        let settled = now
            .checked_sub(SETTLED)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| {
                (
                    i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    i64::from(d.subsec_nanos()),
                )
            })
            .unwrap_or_default();
        let text = fs::read_to_string(&file).unwrap_or_default();
        let sections = sections(&text, &tracked).unwrap_or_default();
        Memo {
            file,
            tracked,
            text,
            sections,
            changes: Mutex::new(BTreeMap::new()),
            settled,
        }
    }

    /// Whether any job is remembered.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// Whether `job` is remembered.
    pub fn has(&self, job: &str) -> bool {
        self.sections.contains_key(job)
    }

    /// Every job remembered.
    pub fn jobs(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().map(String::as_str)
    }

    /// `job`'s remembered hit, if nothing it read in the work tree at `root` has changed
    /// since; the caller checks that what it was given is still the same.
    pub fn recall(&self, job: &str, root: &Path) -> Option<Recalled> {
        let (range, hash) = self.sections.get(job)?;
        let body = self.text.get(range.clone())?;
        if blake3::hash(body.as_bytes()).to_hex().as_str() != hash {
            return None;
        }
        let mut lines = body.lines();
        let given = lines.next()?.strip_prefix("given ")?.to_owned();
        let key = lines.next()?.strip_prefix("key ")?.to_owned();
        let commit = ObjectId::from_hex(lines.next()?.strip_prefix("commit ")?.as_bytes()).ok()?;
        let mut at = StatAt::default();
        for line in lines {
            let (kind, rest) = line.as_bytes().split_first_chunk::<2>()?;
            let (seen, path) = match rest.strip_prefix(b"- ") {
                Some(path) => (None, path),
                None => {
                    let (seen, path) = Seen::decode(rest)?;
                    (Some(seen), path)
                }
            };
            // What follows ASCII fields: a whole UTF-8 string.
            let abs = root.join(line.get(line.len() - path.len()..)?);
            let now = match kind {
                b"f " => at.lstat(&abs).ok()?.as_ref().map(Seen::of),
                b"d " => match nix::sys::stat::stat(&abs) {
                    Ok(st) => Some(Seen::of(&st)),
                    Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => None,
                    Err(_) => return None,
                },
                _ => return None,
            };
            if now != seen {
                return None;
            }
        }
        Some(Recalled {
            given,
            hit: Remembered { key, commit },
        })
    }

    /// Remembers that `job`, given `given`, hit `hit` after reading `reads`; forgets it instead
    /// if any of that could change unseen.
    pub fn remember(&self, job: &str, given: &str, hit: &Remembered, mut reads: Reads) {
        let unsettled = |seen: &Option<Seen>| {
            seen.is_some_and(|s| s.mtime >= self.settled || s.ctime >= self.settled)
        };
        let why = if reads.unsure {
            Some("an ignore rule decided what it reads")
        } else if job.contains('\n') || reads.seen.iter().any(|(_, p, _)| p.contains('\n')) {
            Some("a name holds a line break")
        } else if let Some((_, path, _)) = reads.seen.iter().find(|(_, _, s)| unsettled(s)) {
            tracing::debug!(job, path, "changed too recently to remember");
            Some("a path changed too recently")
        } else {
            None
        };
        if let Some(why) = why {
            tracing::debug!(job, why, "hit not remembered");
            self.forget(job);
            return;
        }
        // In path order, each directory's files together, for `StatAt`.
        reads.seen.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
        reads.seen.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let mut body = format!("given {given}\nkey {}\ncommit {}\n", hit.key, hit.commit);
        for (kind, path, seen) in &reads.seen {
            body.push(kind.letter());
            body.push(' ');
            match seen {
                Some(seen) => seen.encode(&mut body),
                None => body.push('-'),
            }
            body.push(' ');
            body.push_str(path);
            body.push('\n');
        }
        lock(&self.changes).insert(job.to_owned(), Some(body));
    }

    /// Forgets every job `keep` rejects (gone from the pipeline).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut changes = lock(&self.changes);
        for job in self.sections.keys().filter(|job| !keep(job)) {
            changes.insert(job.clone(), None);
        }
    }

    /// Forgets `job` (it did not hit, or its hit cannot be remembered).
    pub fn forget(&self, job: &str) {
        if self.sections.contains_key(job) {
            lock(&self.changes).insert(job.to_owned(), None);
        }
    }

    /// Writes the memo back if this run changed it.
    pub fn save(&self) -> io::Result<()> {
        let changes = lock(&self.changes);
        if changes.is_empty() {
            return Ok(());
        }
        let mut text = format!("{HEADER} {}\n", self.tracked);
        let kept = self
            .sections
            .iter()
            .filter(|(job, _)| !changes.contains_key(*job))
            .filter_map(|(job, (range, _))| Some((job.as_str(), self.text.get(range.clone())?)));
        let new = changes
            .iter()
            .filter_map(|(job, body)| Some((job.as_str(), body.as_deref()?)));
        for (job, body) in kept.chain(new) {
            let hash = blake3::hash(body.as_bytes()).to_hex();
            let _ = writeln!(text, "job {} {hash} {job}", body.len());
            text.push_str(body);
        }
        if let Some(dir) = self.file.parent() {
            fs::create_dir_all(dir)?;
        }
        crate::statefile::replace(&self.file, text.as_bytes())
    }
}

/// A hash of the paths `index` tracks: which files are tracked decides what a job reads, and
/// which untracked files an ignore rule would be asked about.
fn tracked_hash(index: &IndexSnapshot) -> String {
    let mut hasher = blake3::Hasher::new();
    for (path, _) in index.known() {
        hasher.update(path.as_bytes());
        hasher.update(b"\0");
    }
    hasher.finalize().to_hex().to_string()
}

/// Where each job's section is in `text`, with its hash; `None` if the file is not a memo
/// written when the tracked paths hashed to `tracked`.
fn sections(text: &str, tracked: &str) -> Option<HashMap<String, (Range<usize>, String)>> {
    let (header, _) = text.split_once('\n')?;
    if header.strip_prefix(HEADER)?.trim() != tracked {
        return None;
    }
    let mut sections = HashMap::new();
    let mut at = header.len() + 1;
    while at < text.len() {
        let line_end = at + text[at..].find('\n')?;
        let mut words = text[at..line_end].splitn(4, ' ');
        if words.next()? != "job" {
            return None;
        }
        let len: usize = words.next()?.parse().ok()?;
        let hash = words.next()?.to_owned();
        let job = words.next()?.to_owned();
        let start = line_end + 1;
        let end = start.checked_add(len).filter(|&end| end <= text.len())?;
        sections.insert(job, (start..end, hash));
        at = end;
    }
    Some(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::test_repo;

    /// A memo whose run starts in a while: files written by the test count as settled.
    fn memo(repo: &Repo) -> Memo {
        let index = repo.index_snapshot().expect("read the index");
        Memo::load(repo, &index, SystemTime::now() + Duration::from_secs(5))
    }

    fn hit() -> Remembered {
        Remembered {
            key: "k".repeat(64),
            commit: ObjectId::null(gix::hash::Kind::Sha1),
        }
    }

    /// A repository whose work tree holds `src/a.txt`.
    fn repo_with_src() -> (tempfile::TempDir, Repo) {
        let (dir, repo) = test_repo();
        fs::create_dir(dir.path().join("src")).expect("mkdir");
        fs::write(dir.path().join("src/a.txt"), "one").expect("write");
        (dir, repo)
    }

    /// What a job read: `src/a.txt`, the `src` directory, and a missing `extra.txt`.
    fn reads(root: &Path) -> Reads {
        let mut reads = Reads::default();
        let mut at = StatAt::default();
        reads.dir("src", &root.join("src"));
        let st = at.lstat(&root.join("src/a.txt")).expect("lstat");
        reads.file("src/a.txt", st.as_ref());
        reads.file("extra.txt", None);
        reads
    }

    fn remembered(repo: &Repo, root: &Path) -> Option<Remembered> {
        let memo = memo(repo);
        memo.remember("build", "given", &hit(), reads(root));
        memo.save().expect("save the memo");
        recall(repo, root, "given")
    }

    /// The hit `memo` recalls for `build` if it was given `given`.
    fn recall(repo: &Repo, root: &Path, given: &str) -> Option<Remembered> {
        memo(repo)
            .recall("build", root)
            .filter(|r| r.given == given)
            .map(|r| r.hit)
    }

    #[test]
    fn a_hit_is_recalled_until_anything_it_read_changes() {
        let (dir, repo) = repo_with_src();
        let root = dir.path();

        assert_eq!(remembered(&repo, root), Some(hit()));
        assert_eq!(recall(&repo, root, "other given"), None);
        assert_eq!(memo(&repo).recall("test", root), None);

        // The same bytes written again: the change time moves.
        fs::write(root.join("src/a.txt"), "one").expect("write");
        assert_eq!(recall(&repo, root, "given"), None);

        assert_eq!(remembered(&repo, root), Some(hit()));
        fs::write(root.join("src/b.txt"), "new").expect("write");
        assert_eq!(
            recall(&repo, root, "given"),
            None,
            "a file added to a listed directory"
        );

        assert_eq!(remembered(&repo, root), Some(hit()));
        fs::write(root.join("extra.txt"), "appeared").expect("write");
        assert_eq!(recall(&repo, root, "given"), None);
    }

    #[test]
    fn jobs_gone_from_the_pipeline_are_forgotten() {
        let (dir, repo) = repo_with_src();
        let root = dir.path();
        let both = memo(&repo);
        both.remember("build", "given", &hit(), reads(root));
        both.remember("lint", "given", &hit(), reads(root));
        both.save().expect("save the memo");

        let renamed = memo(&repo);
        renamed.retain(|job| job == "lint");
        renamed.save().expect("save the memo");
        assert!(!memo(&repo).has("build"));
        assert!(memo(&repo).has("lint"));
    }

    #[test]
    fn nothing_is_remembered_that_could_change_unseen() {
        let (dir, repo) = repo_with_src();
        let root = dir.path();
        let index = repo.index_snapshot().expect("read the index");

        // Written just now, by a run starting now.
        let now = Memo::load(&repo, &index, SystemTime::now());
        now.remember("build", "given", &hit(), reads(root));
        now.save().expect("save the memo");
        assert_eq!(recall(&repo, root, "given"), None);

        // Decided by an ignore rule.
        let later = memo(&repo);
        let mut unsure = reads(root);
        unsure.unsure();
        later.remember("build", "given", &hit(), unsure);
        later.save().expect("save the memo");
        assert_eq!(recall(&repo, root, "given"), None);
    }

    #[test]
    fn another_set_of_tracked_paths_or_a_damaged_section_forgets_every_job() {
        let (dir, repo) = repo_with_src();
        let root = dir.path();
        assert_eq!(remembered(&repo, root), Some(hit()));

        let file = repo.worktree_weir_dir().join("memo");
        let text = fs::read_to_string(&file).expect("read the memo");
        let key = format!("key {}", hit().key);
        let other = format!("key {}", "j".repeat(64));
        fs::write(&file, text.replace(&key, &other)).expect("write");
        assert_eq!(recall(&repo, root, "given"), None);

        fs::write(&file, &text).expect("write");
        assert_eq!(recall(&repo, root, "given"), Some(hit()));
        crate::git::test_git(root, &["add", "src/a.txt"]);
        assert_eq!(recall(&repo, root, "given"), None);
    }
}
