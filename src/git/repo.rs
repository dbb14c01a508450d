use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::files::FileMode;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not inside a git repository (searched upwards from {})", .0.display())]
    NotARepository(PathBuf),
    #[error("the repository at {} has no working tree", .0.display())]
    Bare(PathBuf),
    #[error("ref `{0}` already exists")]
    RefExists(String),
    #[error("invalid ref name `{0}`")]
    RefName(String),
    #[error("`{command}` failed: {detail}")]
    GitCommand { command: String, detail: String },
    #[error("{} is outside the work tree", .0.display())]
    OutsideWorkTree(PathBuf),
    #[error("cannot read {}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error("{0}")]
    Gix(#[from] gix::Error),
}

/// Something to store in a tree at `path`.
pub enum TreeEntry {
    /// These bytes, as a regular file.
    Bytes { path: String, bytes: Vec<u8> },
    /// The file at `abs` in the work tree, streamed into the object database.
    File {
        path: String,
        abs: PathBuf,
        mode: FileMode,
    },
    /// An object already in the database: a blob with its raw git mode, or a tree (`0o40000`).
    Object {
        path: String,
        mode: u32,
        id: ObjectId,
    },
}

impl TreeEntry {
    pub fn bytes(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> TreeEntry {
        TreeEntry::Bytes {
            path: path.into(),
            bytes: bytes.into(),
        }
    }
}

/// Reads exactly `remaining` bytes from `inner`: ends there, and fails if `inner` ends first.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: std::io::Read> std::io::Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being stored",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// One blob in a stored tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeItem {
    /// `/`-joined names from the tree asked about; not yet checked to be safe.
    pub path: String,
    /// The raw git mode (`0o100644`, `0o120000`, …), not yet checked to be allowed.
    pub mode: u32,
    pub id: ObjectId,
}

/// An open repository with a working tree.
#[derive(Clone)]
pub struct Repo {
    repo: gix::Repository,
    workdir: PathBuf,
}

impl Repo {
    /// Finds the repository containing `cwd`.
    pub fn discover(cwd: &Path) -> Result<Repo, Error> {
        let repo = gix::discover(cwd).map_err(|err| {
            if err
                .downcast_any_ref::<gix::discover::upwards::Error>()
                .is_some()
            {
                Error::NotARepository(cwd.to_path_buf())
            } else {
                Error::Gix(err)
            }
        })?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| Error::Bare(repo.git_dir().to_path_buf()))?
            .to_path_buf();
        Ok(Repo { repo, workdir })
    }

    /// Finds the repository containing `cwd`, which may be bare (a server): then there is no
    /// working tree and `workdir()` is the git directory.
    pub fn discover_allow_bare(cwd: &Path) -> Result<Repo, Error> {
        match Repo::discover(cwd) {
            Err(Error::Bare(git_dir)) => {
                let repo = gix::open(&git_dir)?;
                Ok(Repo {
                    repo,
                    workdir: git_dir,
                })
            }
            other => other,
        }
    }

    /// The repository whose (common) git directory is `git_dir`, to write objects and refs in;
    /// [`Repo::workdir`] is then the git directory, as for a bare repository.
    pub fn open_git_dir(git_dir: &Path) -> Result<Repo, Error> {
        let repo = gix::open(git_dir)?;
        Ok(Repo {
            repo,
            workdir: git_dir.to_path_buf(),
        })
    }

    /// This working tree's git directory (per worktree: its index lives here).
    pub fn git_dir(&self) -> &Path {
        self.repo.git_dir()
    }

    /// Whether the repository has no working tree.
    pub fn is_bare(&self) -> bool {
        self.repo.workdir().is_none()
    }

    /// The hooks directory: `core.hooksPath` (relative to the working tree, as git reads it)
    /// when set, else `hooks/` in the common git directory.
    pub fn hooks_dir(&self) -> Result<PathBuf, Error> {
        let configured = self.repo.config_snapshot().trusted_path("core.hooksPath")?;
        Ok(match configured {
            Some(path) if path.is_absolute() => path,
            Some(path) => self.workdir.join(path),
            None => self.repo.common_dir().join("hooks"),
        })
    }

    pub(super) fn gix(&self) -> &gix::Repository {
        &self.repo
    }

    /// Where weir keeps per-machine state: `.git/weir/` (shared by linked worktrees).
    pub fn weir_dir(&self) -> PathBuf {
        self.repo.common_dir().join("weir")
    }

    /// Where weir keeps what concerns this working tree alone: [`Repo::weir_dir`] for the main
    /// one, `.git/worktrees/NAME/weir/` for a linked one (removed with it).
    pub fn worktree_weir_dir(&self) -> PathBuf {
        self.repo.git_dir().join("weir")
    }

    /// The output files kept for restores to link: `.git/weir/blobs/`.
    pub fn materialized(&self) -> super::Materialized {
        super::Materialized::new(self.weir_dir().join("blobs"))
    }

    /// The root of the working tree.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Writes `entries` as a tree, a parentless commit of it, and points `refname` at it:
    /// creating it when `replace` is `None`, else moving it from that commit (compare and swap).
    /// Objects are written before the ref, so a crash at any point leaves either the old ref or a
    /// ref to a complete commit.
    pub fn create_commit_ref(
        &self,
        refname: &str,
        entries: &[TreeEntry],
        message: &str,
        replace: Option<ObjectId>,
    ) -> Result<ObjectId, Error> {
        let commit = self.write_commit(entries, message, None)?;
        self.set_ref(refname, commit, message, replace)?;
        Ok(commit)
    }

    /// Writes `entries` as a tree and a commit of it whose parent is `parent`, and moves
    /// `refname` from `parent` to it (creating it when `parent` is `None`) in one compare-and-swap
    /// transaction: a ref that moved meanwhile fails with [`Error::RefExists`].
    pub fn append_commit_ref(
        &self,
        refname: &str,
        entries: &[TreeEntry],
        message: &str,
        parent: Option<ObjectId>,
    ) -> Result<ObjectId, Error> {
        let commit = self.write_commit(entries, message, parent)?;
        self.set_ref(refname, commit, message, parent)?;
        Ok(commit)
    }

    fn write_commit(
        &self,
        entries: &[TreeEntry],
        message: &str,
        parent: Option<ObjectId>,
    ) -> Result<ObjectId, Error> {
        let empty = gix::objs::Tree::empty();
        let mut editor =
            gix::objs::tree::Editor::new(empty, &self.repo.objects, self.repo.object_hash());
        for entry in entries {
            match entry {
                TreeEntry::Bytes { path, bytes } => {
                    let blob = self.write_blob(bytes)?;
                    editor.upsert(path.split('/'), EntryKind::Blob, blob)?;
                }
                TreeEntry::File { path, abs, mode } => {
                    let (kind, blob) = self.write_file(abs, *mode)?;
                    editor.upsert(path.split('/'), kind, blob)?;
                }
                TreeEntry::Object { path, mode, id } => {
                    let kind = match mode {
                        0o40000 => EntryKind::Tree,
                        0o100755 => EntryKind::BlobExecutable,
                        0o120000 => EntryKind::Link,
                        _ => EntryKind::Blob,
                    };
                    editor.upsert(path.split('/'), kind, *id)?;
                }
            }
        }
        let tree = editor.write(|tree| self.write_object(tree))?;
        let signature = self.signature();
        let commit = gix::objs::Commit {
            tree,
            parents: parent.into_iter().collect(),
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        self.write_object(&commit)
    }

    /// Writes an encoded object (a tree, a commit) into the object database.
    fn write_object(&self, object: &impl gix::objs::WriteTo) -> Result<ObjectId, Error> {
        let mut bytes = Vec::with_capacity(object.size() as usize);
        object
            .write_to(&mut bytes)
            .map_err(|e| Error::Write(self.objects_dir().to_path_buf(), e))?;
        super::loose::write(
            self.objects_dir(),
            self.repo.object_hash(),
            object.kind(),
            &bytes,
        )
    }

    /// Writes `bytes` as a blob into the object database.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<ObjectId, Error> {
        super::loose::write(
            self.objects_dir(),
            self.repo.object_hash(),
            gix::objs::Kind::Blob,
            bytes,
        )
    }

    fn objects_dir(&self) -> &Path {
        self.repo.objects.store_ref().path()
    }

    /// Points `refname` at `commit` if it now points at `expected` (or does not exist, for
    /// `None`).
    fn set_ref(
        &self,
        refname: &str,
        commit: ObjectId,
        message: &str,
        expected: Option<ObjectId>,
    ) -> Result<(), Error> {
        let name: FullName = refname
            .try_into()
            .map_err(|_| Error::RefName(refname.to_owned()))?;
        if expected.is_none() && self.create_loose_ref(refname, commit)? {
            return Ok(());
        }
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: message.lines().next().unwrap_or_default().into(),
                },
                expected: match expected {
                    None => PreviousValue::MustNotExist,
                    Some(old) => PreviousValue::MustExistAndMatch(Target::Object(old)),
                },
                new: Target::Object(commit),
            },
            name,
            deref: false,
        };
        // The reflog (written only where git would keep one) is signed like the commit: gix's
        // default signer would work out the local time zone.
        let signature = self.signature();
        let mut time = gix::date::parse::TimeBuf::default();
        let signer = signature.to_ref(&mut time);
        self.repo
            .edit_references_as([edit], Some(signer))
            .map_err(|err| {
                let now = self.find_ref(refname).ok().flatten();
                if now.is_some() && now != expected {
                    Error::RefExists(refname.to_owned())
                } else {
                    Error::Gix(err)
                }
            })?;
        Ok(())
    }

    /// The tree of `commit`.
    pub fn commit_tree(&self, commit: ObjectId) -> Result<ObjectId, Error> {
        Ok(self.repo.find_commit(commit)?.tree_id()?.detach())
    }

    /// The id of the tree at `path` in the tree of `commit`, if there is one.
    pub fn subtree(&self, commit: ObjectId, path: &str) -> Result<Option<ObjectId>, Error> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        Ok(tree
            .lookup_entry_by_path(path)?
            .filter(|entry| entry.mode().is_tree())
            .map(|entry| entry.object_id()))
    }

    /// The parents of `commit`.
    pub fn commit_parents(&self, commit: ObjectId) -> Result<Vec<ObjectId>, Error> {
        Ok(self
            .repo
            .find_commit(commit)?
            .parent_ids()
            .map(|id| id.detach())
            .collect())
    }

    /// Whether `ancestor` is `commit` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: ObjectId, commit: ObjectId) -> Result<bool, Error> {
        if ancestor == commit {
            return Ok(true);
        }
        let walk = self
            .repo
            .rev_walk([commit])
            .all()
            .map_err(gix::Error::from_error)?;
        for info in walk {
            if info.map_err(gix::Error::from_error)?.id == ancestor {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Who is at the keyboard, as git knows them: `Name <email>` from the configured committer.
    pub fn identity(&self) -> String {
        let signature = self.signature();
        format!("{} <{}>", signature.name, signature.email)
    }

    fn write_file(&self, abs: &Path, mode: FileMode) -> Result<(EntryKind, ObjectId), Error> {
        use gix::objs::Write;
        match mode {
            FileMode::Symlink => {
                let target = super::files::link_target(abs)?;
                Ok((EntryKind::Link, self.write_blob(&target)?))
            }
            FileMode::Regular | FileMode::Executable => {
                let mut file =
                    std::fs::File::open(abs).map_err(|e| Error::Io(abs.to_path_buf(), e))?;
                let len = file
                    .metadata()
                    .map_err(|e| Error::Io(abs.to_path_buf(), e))?
                    .len();
                // The header promises `len` bytes: a file that changes size while it is read
                // (another process rewriting it) must fail the write, not make a corrupt object.
                let mut exact = ExactReader {
                    inner: &mut file,
                    remaining: len,
                };
                let id = self
                    .repo
                    .objects
                    .write_stream(gix::objs::Kind::Blob, len, &mut exact)?;
                let kind = if mode == FileMode::Executable {
                    EntryKind::BlobExecutable
                } else {
                    EntryKind::Blob
                };
                Ok((kind, id))
            }
        }
    }

    /// The index file at `path`, `None` if there is none. Its trailing checksum is not verified,
    /// as git does not when it reads an index: hashing the whole file was most of the cost of
    /// reading a large one.
    pub(super) fn read_index(&self, path: &Path) -> Result<Option<gix::index::File>, Error> {
        if !path.exists() {
            return Ok(None);
        }
        let index = gix::index::File::at(path, self.repo.object_hash(), true, Default::default())
            .map_err(gix::Error::from_error)?;
        Ok(Some(index))
    }

    /// The object `refname` points at, if it exists.
    pub fn find_ref(&self, refname: &str) -> Result<Option<ObjectId>, Error> {
        Ok(self
            .repo
            .try_find_reference(refname)?
            .and_then(|r| r.try_id().map(|id| id.detach())))
    }

    /// Whether the object database has `id`.
    pub fn has_object(&self, id: ObjectId) -> bool {
        self.repo.has_object(id)
    }

    /// The commit time of `commit`, in seconds since the epoch.
    pub fn commit_time(&self, commit: ObjectId) -> Result<i64, Error> {
        Ok(self.repo.find_commit(commit)?.time()?.seconds)
    }

    /// Every blob under `dir` (a `/`-separated path, `""` for the root) of the tree of
    /// `commit`, recursively, in tree order. Names are returned as stored, unchecked.
    pub fn tree_items(&self, commit: ObjectId, dir: &str) -> Result<Vec<TreeItem>, Error> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let start = if dir.is_empty() {
            tree.id
        } else {
            match tree.lookup_entry_by_path(dir)? {
                Some(entry) if entry.mode().is_tree() => entry.object_id(),
                _ => return Ok(Vec::new()),
            }
        };
        let mut items = Vec::new();
        let mut stack = vec![(start, String::new())];
        while let Some((id, prefix)) = stack.pop() {
            let tree = self.repo.find_tree(id)?;
            let decoded = tree.decode()?;
            for entry in decoded.entries.iter().rev() {
                let name = entry.filename.to_str_lossy();
                let path = if prefix.is_empty() {
                    name.into_owned()
                } else {
                    format!("{prefix}/{name}")
                };
                if entry.mode.is_tree() {
                    stack.push((entry.oid.to_owned(), path));
                } else {
                    items.push(TreeItem {
                        path,
                        mode: entry.mode.value().into(),
                        id: entry.oid.to_owned(),
                    });
                }
            }
        }
        Ok(items)
    }

    /// The size in bytes of object `id`.
    pub fn object_size(&self, id: ObjectId) -> Result<u64, Error> {
        Ok(self.repo.find_header(id)?.size())
    }

    /// The bytes of blob `id`.
    pub fn read_blob(&self, id: ObjectId) -> Result<Vec<u8>, Error> {
        Ok(self.repo.find_blob(id)?.take_data())
    }

    /// Creates `refname`, one of weir's own refs, pointing at `commit`, as git's files backend
    /// does: a lock file beside the loose ref, the ref looked up (loose and packed) while it is
    /// held, the lock renamed into place. `false` where that is not enough (a namespace, a
    /// reflog to write, another ref storage), for gix's transaction to do it.
    ///
    /// gix's transaction also locks `packed-refs` for that lookup whenever the file exists, which
    /// makes a new file in `.git/` for every ref written: one of the files a pre-commit hook
    /// made, and among the slowest to make (see `loose::aside`).
    fn create_loose_ref(&self, refname: &str, commit: ObjectId) -> Result<bool, Error> {
        let config = self.repo.config_snapshot();
        let files_backend = config
            .string("extensions.refStorage")
            .is_none_or(|s| s.eq_ignore_ascii_case(b"files"));
        let log_all = config
            .string("core.logAllRefUpdates")
            .is_some_and(|s| s.eq_ignore_ascii_case(b"always"));
        let common = self.repo.common_dir();
        if !refname.starts_with("refs/weir/")
            || self.repo.namespace().is_some()
            || !files_backend
            || log_all
            || common.join("logs").join(refname).exists()
        {
            return Ok(false);
        }
        let path = common.join(refname);
        let lock = common.join(format!("{refname}.lock"));
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
        };
        let locked = |e| Error::Write(lock.clone(), e);
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = lock.parent() {
                    std::fs::create_dir_all(parent).map_err(locked)?;
                }
                open()
            }
            // Someone else is writing it: the same entry, most likely.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return match self.find_ref(refname)? {
                    Some(_) => Err(Error::RefExists(refname.to_owned())),
                    None => Err(locked(e)),
                };
            }
            file => file,
        }
        .map_err(locked)?;
        let written = (|| {
            if self.find_ref(refname)?.is_some() {
                return Err(Error::RefExists(refname.to_owned()));
            }
            std::io::Write::write_all(&mut file, format!("{commit}\n").as_bytes())
                .map_err(locked)?;
            drop(file);
            std::fs::rename(&lock, &path).map_err(|e| Error::Write(path.clone(), e))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&lock);
        }
        written.map(|()| true)
    }

    /// Deletes each `(refname, expected id)` in one transaction; fails, deleting nothing, if
    /// any of them moved meanwhile.
    pub fn delete_refs(&self, refs: &[(String, ObjectId)]) -> Result<(), Error> {
        let mut edits = Vec::with_capacity(refs.len());
        for (refname, id) in refs {
            edits.push(RefEdit {
                change: Change::Delete {
                    expected: PreviousValue::MustExistAndMatch(Target::Object(*id)),
                    log: RefLog::AndReference,
                },
                name: refname
                    .as_str()
                    .try_into()
                    .map_err(|_| Error::RefName(refname.clone()))?,
                deref: false,
            });
        }
        self.repo.edit_references(edits)?;
        Ok(())
    }

    /// The refs under `prefix` (e.g. `refs/weir/runs/`) with the object each points at, sorted by
    /// name.
    pub fn refs_under(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>, Error> {
        let platform = self.repo.references()?;
        let mut refs = Vec::new();
        for reference in platform.prefixed(prefix)? {
            let reference = reference.map_err(gix::Error::from_error)?;
            if let Some(id) = reference.try_id() {
                refs.push((
                    reference.name().as_bstr().to_str_lossy().into_owned(),
                    id.detach(),
                ));
            }
        }
        refs.sort();
        Ok(refs)
    }

    /// The bytes of the file at `path` in the tree of `commit`, if there is one.
    pub fn read_file(&self, commit: ObjectId, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let Some(entry) = tree.lookup_entry_by_path(path)? else {
            return Ok(None);
        };
        if !entry.mode().is_blob() {
            return Ok(None);
        }
        Ok(Some(self.repo.find_blob(entry.object_id())?.take_data()))
    }

    /// The git identity weir records as author of its commits: the configured committer, else a
    /// fixed one, so that recording a run never fails for want of `user.name`. Read from the
    /// configuration as gix's `committer()` resolves it (`committer.*`, `user.*`, then the
    /// fallbacks gix sets from the environment), but without the time that also works out: its
    /// local time zone scans the whole zoneinfo tree, and weir records UTC anyway.
    fn signature(&self) -> gix::actor::Signature {
        let time = gix::date::Time::now_utc();
        let config = self.repo.config_snapshot();
        let first = |keys: &[&str]| keys.iter().find_map(|key| config.string(*key));
        let name = first(&[
            "committer.name",
            "user.name",
            "gitoxide.committer.nameFallback",
        ]);
        let email = first(&[
            "committer.email",
            "user.email",
            "gitoxide.user.emailFallback",
            "gitoxide.committer.emailFallback",
        ]);
        match (name, email) {
            (Some(name), Some(email)) => gix::actor::Signature { name, email, time },
            _ => gix::actor::Signature {
                name: "weir".into(),
                email: "weir@localhost".into(),
                time,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::{test_git as git, test_repo};

    fn create(repo: &Repo, refname: &str) -> Result<ObjectId, Error> {
        let entries = [TreeEntry::bytes("result", "passed\n")];
        repo.create_commit_ref(refname, &entries, "test\n", None)
    }

    /// Every file in `dir` (recursively) whose name ends in `.lock`.
    fn locks(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(locks(&path));
            } else if path.extension().is_some_and(|e| e == "lock") {
                found.push(path);
            }
        }
        found
    }

    #[test]
    fn a_new_ref_is_made_once_whether_the_one_there_is_loose_or_packed() {
        let (dir, repo) = test_repo();
        let git_dir = dir.path().join(".git");
        let first = create(&repo, "refs/weir/t/a").unwrap();
        assert_eq!(
            git(dir.path(), &["rev-parse", "refs/weir/t/a"]),
            first.to_string()
        );
        assert!(matches!(
            create(&repo, "refs/weir/t/a"),
            Err(Error::RefExists(_))
        ));

        // Packed (as `git gc` leaves refs), the ref is still found: nothing is replaced.
        git(dir.path(), &["pack-refs", "--all"]);
        assert!(!git_dir.join("refs/weir/t/a").exists());
        let packed = std::fs::read(git_dir.join("packed-refs")).unwrap();
        assert!(matches!(
            create(&repo, "refs/weir/t/a"),
            Err(Error::RefExists(_))
        ));
        assert_eq!(std::fs::read(git_dir.join("packed-refs")).unwrap(), packed);
        assert_eq!(
            git(dir.path(), &["rev-parse", "refs/weir/t/a"]),
            first.to_string()
        );

        // Beside a packed-refs file, a new ref is made loose, and git reads it.
        let second = create(&repo, "refs/weir/t/b").unwrap();
        assert_eq!(
            git(dir.path(), &["rev-parse", "refs/weir/t/b"]),
            second.to_string()
        );
        assert!(locks(&git_dir).is_empty(), "{:?}", locks(&git_dir));
    }

    #[test]
    fn a_ref_whose_updates_git_would_log_is_logged() {
        let (dir, _) = test_repo();
        git(dir.path(), &["config", "core.logAllRefUpdates", "always"]);
        let repo = Repo::discover(dir.path()).unwrap();
        let id = create(&repo, "refs/weir/t/logged").unwrap();
        let log = git(
            dir.path(),
            &["reflog", "show", "--format=%H", "refs/weir/t/logged"],
        );
        assert_eq!(log, id.to_string());
    }
}
