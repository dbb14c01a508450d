//! Commits under `refs/weir/` written after the process that made them has ended: a
//! pre-commit hook's cache entries and run record. git waits for the hook's verdict, not for
//! its records, so the hook hands them to a child of its own (`weir __write-refs`) and exits,
//! as `git gc --auto` goes on in the background. A commit's hook then writes no object and no
//! ref itself: on a busy disk each new file cost it about a millisecond.
//!
//! The child holds a lock (`.git/weir/deferred.lock`, `flock`) from before the hook spawns it
//! until it has written everything, and every weir command waits for that lock before it reads
//! anything (see [`Repo::wait_for_deferred`]): weir never sees a run without its record, nor
//! runs a job again for want of an entry still being written. What the child could not write,
//! it says in `.git/weir/deferred-errors`, which the next weir command prints.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use super::repo::{Error, Repo, TreeEntry};

/// Held by the child while it writes.
const LOCK: &str = "deferred.lock";
/// What the child could not write, one line each.
const ERRORS: &str = "deferred-errors";
/// What the child's input starts with.
const MAGIC: &[u8] = b"weir-deferred 1\n";
/// How long a command waits for a child still writing before it goes on without.
const PATIENCE: Duration = Duration::from_secs(10);

/// Commits to write later, each as a new ref (see [`Repo::create_commit_ref`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deferred {
    commits: Vec<Commit>,
}

#[derive(Debug, PartialEq, Eq)]
struct Commit {
    refname: String,
    message: String,
    /// Path in the tree and content of each file.
    files: Vec<(String, Vec<u8>)>,
}

impl Deferred {
    /// Queues what [`Repo::create_commit_ref`] would write with no ref to replace. `false`, and
    /// nothing queued, when an entry is not bytes: a file's content is read when it is written.
    pub fn create_commit_ref(
        &mut self,
        refname: String,
        entries: Vec<TreeEntry>,
        message: String,
    ) -> bool {
        let mut files = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                TreeEntry::Bytes { path, bytes } => files.push((path, bytes)),
                TreeEntry::File { .. } | TreeEntry::Object { .. } => return false,
            }
        }
        self.commits.push(Commit {
            refname,
            message,
            files,
        });
        true
    }

    pub fn is_empty(&self) -> bool {
        self.commits.is_empty()
    }

    /// Every string and byte string is its length (8 bytes, little-endian), then itself.
    fn encode(&self) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.commits.len() as u64).to_le_bytes());
        for commit in &self.commits {
            put(&mut out, commit.refname.as_bytes());
            put(&mut out, commit.message.as_bytes());
            out.extend_from_slice(&(commit.files.len() as u64).to_le_bytes());
            for (path, bytes) in &commit.files {
                put(&mut out, path.as_bytes());
                put(&mut out, bytes);
            }
        }
        out
    }

    /// `None` unless `input` is exactly what [`Deferred::encode`] makes.
    fn decode(input: &[u8]) -> Option<Deferred> {
        struct Cursor<'a>(&'a [u8]);
        impl<'a> Cursor<'a> {
            fn take(&mut self, n: usize) -> Option<&'a [u8]> {
                let (head, rest) = self.0.split_at_checked(n)?;
                self.0 = rest;
                Some(head)
            }
            fn count(&mut self) -> Option<usize> {
                let bytes = self.take(8)?.try_into().ok()?;
                usize::try_from(u64::from_le_bytes(bytes)).ok()
            }
            fn bytes(&mut self) -> Option<Vec<u8>> {
                let n = self.count()?;
                Some(self.take(n)?.to_vec())
            }
            fn string(&mut self) -> Option<String> {
                String::from_utf8(self.bytes()?).ok()
            }
        }
        let mut cursor = Cursor(input.strip_prefix(MAGIC)?);
        let count = cursor.count()?;
        let mut commits = Vec::new();
        for _ in 0..count {
            // Nothing else is weir's to write.
            let refname = cursor.string().filter(|r| r.starts_with("refs/weir/"))?;
            let message = cursor.string()?;
            let files = (0..cursor.count()?)
                .map(|_| Some((cursor.string()?, cursor.bytes()?)))
                .collect::<Option<Vec<_>>>()?;
            commits.push(Commit {
                refname,
                message,
                files,
            });
        }
        cursor.0.is_empty().then_some(Deferred { commits })
    }
}

impl Repo {
    /// Writes `deferred` after this process ends, in a child that weir commands wait for; here
    /// and now when the child cannot be started. The child also takes over `hold`: it keeps
    /// copies open until it exits (see [`spawn_inheriting`](crate::sync::spawn_inheriting)), and
    /// these are closed before it reads its input. Without a child, `hold` is left as it was.
    pub fn write_deferred(&self, deferred: Deferred, hold: &mut Vec<OwnedFd>) -> Result<(), Error> {
        if deferred.is_empty() {
            return Ok(());
        }
        match self.hand_off(&deferred, hold) {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::debug!(%err, "writing the records here: no child to hand them to");
                self.write_now(deferred)
            }
        }
    }

    /// Starts `weir __write-refs` holding the lock and copies of `hold`, with `deferred` on its
    /// stdin.
    fn hand_off(&self, deferred: &Deferred, hold: &mut Vec<OwnedFd>) -> io::Result<()> {
        use nix::fcntl::{FcntlArg, fcntl};
        use std::os::unix::process::CommandExt as _;
        use std::process::{Command, Stdio};
        let dir = self.weir_dir();
        fs::create_dir_all(&dir)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        // An earlier child still writing goes first; one stuck past all patience is left be, and
        // the caller writes the records itself.
        if !patiently(&lock, fs::File::try_lock) {
            return Err(io::Error::other("an earlier child still holds the lock"));
        }
        let exe = std::env::current_exe()?;
        let mut child = crate::sync::spawn_inheriting(
            Command::new(exe)
                .arg("__write-refs")
                .arg(self.gix().common_dir())
                .stdin(Stdio::piped())
                // The lock, as its stdout: the same open file, so the child holds it until it
                // lets it go (see [`write_handed`]).
                .stdout(Stdio::from(lock))
                .stderr(Stdio::null())
                // Not ended by the Ctrl-C that reaches git's process group.
                .process_group(0),
            hold,
        )?;
        // Closed while the child waits for its input: its copies are the last.
        hold.clear();
        let Some(mut stdin) = child.stdin.take() else {
            return Err(io::Error::other("the child has no stdin"));
        };
        let input = deferred.encode();
        // A pipe holds 64 KiB unless asked for more: the whole input, so that the write need
        // not wait for the child to read.
        if let Ok(size) = i32::try_from(input.len())
            && input.len() > 64 * 1024
        {
            let _ = fcntl(&stdin, FcntlArg::F_SETPIPE_SZ(size));
        }
        if let Err(err) = stdin.write_all(&input) {
            // Ended before it reads a cut-short input, which it would report as damaged: the
            // caller writes the records itself.
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
        Ok(())
    }

    /// Writes `deferred` now. A ref that exists already was written by an earlier try.
    fn write_now(&self, deferred: Deferred) -> Result<(), Error> {
        let mut first = Ok(());
        for commit in deferred.commits {
            let entries: Vec<TreeEntry> = commit
                .files
                .into_iter()
                .map(|(path, bytes)| TreeEntry::bytes(path, bytes))
                .collect();
            match self.create_commit_ref(&commit.refname, &entries, &commit.message, None) {
                Ok(_) | Err(Error::RefExists(_)) => {}
                Err(err) => {
                    if first.is_ok() {
                        first = Err(err);
                    }
                }
            }
        }
        first
    }

    /// Waits until a child writing deferred records (see [`Repo::write_deferred`]) is done;
    /// returns what such children could not write, once.
    pub fn wait_for_deferred(&self) -> Vec<String> {
        let dir = self.weir_dir();
        // No file: nothing was ever deferred.
        if let Ok(lock) = fs::File::open(dir.join(LOCK))
            && !patiently(&lock, fs::File::try_lock_shared)
        {
            tracing::debug!("a child writing records is still at it: not waiting longer");
        }
        let errors = dir.join(ERRORS);
        match fs::read_to_string(&errors) {
            Ok(text) => {
                let _ = fs::remove_file(&errors);
                text.lines().map(str::to_owned).collect()
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Takes `lock` with `try_lock` (exclusive or shared), waiting up to [`PATIENCE`] for whoever
/// holds it; `false` if it could not be taken.
fn patiently(lock: &fs::File, try_lock: fn(&fs::File) -> Result<(), fs::TryLockError>) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match try_lock(lock) {
            Ok(()) => return true,
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(fs::TryLockError::WouldBlock) => return false,
            Err(fs::TryLockError::Error(err)) => {
                tracing::debug!(%err, "cannot lock {LOCK}");
                return false;
            }
        }
    }
}

/// `weir __write-refs GIT_DIR`: writes the records on stdin into the repository at `git_dir`
/// (the common git directory). What it cannot write, it also appends to the errors file, which
/// the next weir command prints: the hook that started it is gone. Then it lets go of the lock
/// (its stdout): what else it holds for the hook is closed as it exits, which may wait for the
/// kernel (see [`Repo::write_deferred`]).
pub fn write_handed(git_dir: &Path) -> Result<(), String> {
    let written = write_input(git_dir);
    if let Err(err) = &written {
        let appended = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(git_dir.join("weir").join(ERRORS))
            .and_then(|mut file| file.write_all(format!("{err}\n").as_bytes()));
        if let Err(e) = appended {
            tracing::debug!(%e, "cannot note what was not written");
        }
    }
    // The same open file as the hook's lock: unlocking it here unlocks that. Run by hand, it
    // unlocks nothing.
    if let Ok(stdout) = io::stdout().as_fd().try_clone_to_owned() {
        let _ = fs::File::from(stdout).unlock();
    }
    written
}

/// The records on stdin, written into the repository at `git_dir`.
fn write_input(git_dir: &Path) -> Result<(), String> {
    let mut input = Vec::new();
    io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| Deferred::decode(&input).ok_or_else(|| "its input is damaged".to_owned()))
        .and_then(|deferred| {
            let repo = Repo::open_git_dir(git_dir).map_err(|e| e.to_string())?;
            let refs: Vec<String> = deferred.commits.iter().map(|c| c.refname.clone()).collect();
            repo.write_now(deferred)
                .map_err(|e| format!("{} ({e})", refs.join(", ")))
        })
        .map_err(|err| format!("could not record a pre-commit run: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn what_is_handed_over_is_what_is_written(
            commits in prop::collection::vec(
                ("refs/weir/.*", ".*", prop::collection::vec((".*", prop::collection::vec(any::<u8>(), 0..64)), 0..4)),
                0..4,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let deferred = Deferred {
                commits: commits
                    .into_iter()
                    .map(|(refname, message, files)| Commit { refname, message, files })
                    .collect(),
            };
            let bytes = deferred.encode();
            let decoded = Deferred::decode(&bytes);
            prop_assert_eq!(decoded.as_ref(), Some(&deferred));
            // Cut short anywhere, or with a byte more, it is refused.
            let short = cut.index(bytes.len());
            prop_assert_eq!(Deferred::decode(&bytes[..short]), None);
            let mut long = bytes.clone();
            long.push(0);
            prop_assert_eq!(Deferred::decode(&long), None);
        }
    }

    #[test]
    fn only_refs_under_refs_weir_are_written() {
        let mut deferred = Deferred::default();
        deferred.create_commit_ref("refs/heads/main".into(), Vec::new(), "m".into());
        assert_eq!(Deferred::decode(&deferred.encode()), None);
    }

    #[test]
    fn only_bytes_can_wait() {
        let mut deferred = Deferred::default();
        let file = TreeEntry::File {
            path: "out".into(),
            abs: "/nonexistent".into(),
            mode: super::super::FileMode::Regular,
        };
        assert!(!deferred.create_commit_ref("refs/weir/x".into(), vec![file], "m".into()));
        assert!(deferred.is_empty());
        let bytes = TreeEntry::bytes("run", "{}");
        assert!(deferred.create_commit_ref("refs/weir/x".into(), vec![bytes], "m".into()));
        assert!(!deferred.is_empty());
    }
}
