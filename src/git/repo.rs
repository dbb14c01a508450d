use std::path::{Path, PathBuf};

use gix::ObjectId;
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
    #[error("{0}")]
    Gix(#[from] gix::Error),
}

/// A file to store in a tree: its path inside the tree and its bytes.
pub struct TreeFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// An open repository with a working tree.
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

    /// The root of the working tree.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Writes `files` as a tree, a parentless commit of it, and creates `refname` pointing at it.
    /// Objects are written before the ref, and the ref must not exist yet, so a crash at any point
    /// leaves either no ref or a ref to a complete commit.
    pub fn create_commit_ref(
        &self,
        refname: &str,
        files: &[TreeFile],
        message: &str,
    ) -> Result<ObjectId, Error> {
        let name: FullName = refname
            .try_into()
            .map_err(|_| Error::RefName(refname.to_owned()))?;
        let mut editor = self
            .repo
            .edit_tree(ObjectId::empty_tree(self.repo.object_hash()))?;
        for file in files {
            let blob = self.repo.write_blob(&file.bytes)?;
            editor.upsert(file.path.as_str(), EntryKind::Blob, blob)?;
        }
        let tree = editor.write()?;
        let signature = self.signature();
        let commit = gix::objs::Commit {
            tree: tree.detach(),
            parents: Default::default(),
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        let commit = self.repo.write_object(&commit)?.detach();
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: message.lines().next().unwrap_or_default().into(),
                },
                expected: PreviousValue::MustNotExist,
                new: Target::Object(commit),
            },
            name,
            deref: false,
        };
        self.repo.edit_reference(edit).map_err(|err| {
            if self
                .repo
                .try_find_reference(refname)
                .ok()
                .flatten()
                .is_some()
            {
                Error::RefExists(refname.to_owned())
            } else {
                Error::Gix(err)
            }
        })?;
        Ok(commit)
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
    /// fixed one, so that recording a run never fails for want of `user.name`.
    fn signature(&self) -> gix::actor::Signature {
        let time = gix::date::Time::now_local_or_utc();
        match self.repo.committer() {
            Some(Ok(sig)) => gix::actor::Signature {
                name: sig.name.to_owned(),
                email: sig.email.to_owned(),
                time,
            },
            _ => gix::actor::Signature {
                name: "weir".into(),
                email: "weir@localhost".into(),
                time,
            },
        }
    }
}
