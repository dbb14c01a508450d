//! The content a hook is about: the staged index, a commit's tree, the branch HEAD is on; and
//! writing fixes back to the index. Everything here reads exactly what git would commit, push or
//! merge, never the working tree.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::index::entry::Flags;

use super::files::FileMode;
use super::memo::Seen;
use super::repo::{Error, Repo};

/// The staged index.
#[derive(Default)]
pub struct Staged {
    /// Stage 0, without intent-to-add entries.
    pub entries: Vec<Entry>,
    /// The index's cache-tree: the tree id of each directory the index knows to be unchanged
    /// since it last wrote a tree.
    pub trees: Option<gix::index::extension::Tree>,
    /// The stat data `git add` saw for each of `entries`.
    pub stats: Vec<gix::index::entry::Stat>,
    /// When the index was written (seconds, nanoseconds): a file modified since then, or in the
    /// same clock tick, may differ from what its stat data says.
    pub written: (i64, u32),
    /// The index file as `stat` saw it before it was read.
    pub(super) file: Option<Seen>,
    /// Which of `entries` git checks by content, whatever their stat data says: files it looks
    /// at in the working tree (not skipped, not assumed unchanged) modified in the second the
    /// index was written or later (see `racy`).
    pub(super) racy: Vec<usize>,
    /// Whether the index is split (`core.splitIndex`): part of it lives in another file.
    pub(super) split: bool,
}

/// How the staged index differs from a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Staged files that are not in the tree as staged.
    pub changed: Vec<String>,
    /// Files of the tree that are not staged.
    pub deleted: Vec<String>,
}

/// A file in the index or a tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub path: String,
    pub mode: FileMode,
    pub id: ObjectId,
}

impl Repo {
    /// The staged files: stage 0 of the index at `index_file` (git's `GIT_INDEX_FILE` inside a
    /// hook, which is a temporary index during `git commit -a` or `git commit FILE`), else the
    /// repository's index. Intent-to-add entries stage no content and are left out.
    pub fn staged(&self, index_file: Option<&Path>) -> Result<Vec<Entry>, Error> {
        Ok(self.staged_with_trees(index_file)?.entries)
    }

    /// The index file `index_file` names (`GIT_INDEX_FILE`), relative to the work tree, or
    /// the repository's own.
    pub(super) fn index_file(&self, index_file: Option<&Path>) -> PathBuf {
        match index_file {
            Some(path) if path.is_absolute() => path.to_path_buf(),
            Some(path) => self.workdir().join(path),
            None => self.gix().index_path(),
        }
    }

    /// The checksum git wrote at the end of the index file (as hex), read without the rest:
    /// the same checksum is the same staged content. `None` without an index, or when git
    /// writes none (`index.skipHash`).
    pub fn index_checksum(&self, index_file: Option<&Path>) -> Option<String> {
        let len = self.gix().object_hash().len_in_bytes();
        index_file_checksum(&self.index_file(index_file), len)
    }

    /// [`Repo::staged`], with the index's cache-tree and what the index knows of each file in
    /// the working tree.
    pub fn staged_with_trees(&self, index_file: Option<&Path>) -> Result<Staged, Error> {
        let path = self.index_file(index_file);
        let file = Seen::at(&path);
        let Some(mut index) = self.read_index(&path)? else {
            return Ok(Staged::default());
        };
        let written = index.timestamp();
        let unlooked = Flags::SKIP_WORKTREE | Flags::ASSUME_VALID;
        let mut entries = Vec::with_capacity(index.entries().len());
        let mut stats = Vec::with_capacity(index.entries().len());
        let mut racy = Vec::new();
        for entry in index.entries() {
            if entry.stage_raw() != 0 || entry.flags.contains(Flags::INTENT_TO_ADD) {
                continue;
            }
            let Some(mode) = FileMode::of_index(entry.mode) else {
                continue;
            };
            if i64::from(entry.stat.mtime.secs) >= written.unix_seconds()
                && !entry.flags.intersects(unlooked)
            {
                racy.push(entries.len());
            }
            entries.push(Entry {
                path: entry.path(&index).to_str_lossy().into_owned(),
                mode,
                id: entry.id,
            });
            stats.push(entry.stat);
        }
        let trees = index.remove_tree();
        Ok(Staged {
            entries,
            trees,
            stats,
            written: (written.unix_seconds(), written.nanoseconds()),
            file,
            racy,
            split: index.link().is_some(),
        })
    }

    /// Whether git may store any working-tree file's content differently from the file itself
    /// (line-ending conversion, clean filters such as git-lfs) by a setting that applies to
    /// every file: then only the object database says what is staged. (A `.gitattributes` in
    /// the tree applies to its own directory; see `workspace::Worktree`.)
    pub fn converts_everywhere(&self) -> bool {
        let config = self.gix().config_snapshot();
        let set = |key: &str| {
            config
                .string(key)
                .is_some_and(|v| !v.eq_ignore_ascii_case(b"false"))
        };
        let user_attributes =
            crate::env_vars::git_user_attributes().is_some_and(|file| file.exists());
        set("core.autocrlf")
            || config.string("core.eol").is_some()
            || config.string("core.attributesFile").is_some()
            || user_attributes
            || self.git_dir().join("info/attributes").exists()
    }

    /// The staged paths that differ from `tree` (HEAD's), and the paths in `tree` that are not
    /// staged. Directories whose cache-tree id equals the tree's are skipped without reading
    /// them, as `git diff --cached` does.
    pub fn staged_changes(
        &self,
        staged: &[Entry],
        trees: Option<&gix::index::extension::Tree>,
        tree: Option<ObjectId>,
    ) -> Result<Changes, Error> {
        let Some(root) = tree else {
            return Ok(Changes {
                changed: staged.iter().map(|e| e.path.clone()).collect(),
                deleted: Vec::new(),
            });
        };
        let valid = |node: Option<&gix::index::extension::Tree>| {
            node.filter(|n| n.num_entries.is_some()).map(|n| n.id)
        };
        let mut known = BTreeMap::new();
        let mut same_dirs: std::collections::HashSet<_, foldhash::fast::RandomState> =
            std::collections::HashSet::default();
        if valid(trees) == Some(root) {
            // The whole index matches HEAD.
            return Ok(Changes::default());
        }
        let mut stack = vec![(root, trees, String::new())];
        while let Some((id, node, dir)) = stack.pop() {
            let tree = self.gix().find_tree(id)?;
            for entry in tree.decode()?.entries {
                let name = entry.filename.to_str_lossy();
                let path = if dir.is_empty() {
                    name.into_owned()
                } else {
                    format!("{dir}/{name}")
                };
                if entry.mode.is_tree() {
                    let child = node.and_then(|n| {
                        n.children
                            .iter()
                            .find(|c| c.name.as_slice() == entry.filename.as_bytes())
                    });
                    if valid(child) == Some(entry.oid.to_owned()) {
                        same_dirs.insert(path);
                    } else {
                        stack.push((entry.oid.to_owned(), child, path));
                    }
                } else {
                    let mode = FileMode::from_git(u32::from(entry.mode.value()));
                    known.insert(path, (mode, entry.oid.to_owned()));
                }
            }
        }
        // The unchanged directory above the path, with its slash: one lookup per level, not a
        // scan of every unchanged directory for every staged file.
        let unchanged_dir = |path: &str| {
            path.match_indices('/')
                .find(|&(end, _)| same_dirs.contains(&path[..end]))
                .map(|(end, _)| end + 1)
        };
        let mut changed = Vec::new();
        // The entries are sorted, so the others beneath an unchanged directory follow the
        // first at once: they are passed over by their prefix, without a lookup each.
        let mut passing = "";
        for entry in staged {
            let path = entry.path.as_str();
            if !passing.is_empty() && path.starts_with(passing) {
                continue;
            }
            if let Some(end) = unchanged_dir(path) {
                passing = &path[..end];
                continue;
            }
            if known
                .get(path)
                .is_none_or(|(mode, id)| *id != entry.id || *mode != Some(entry.mode))
            {
                changed.push(entry.path.clone());
            }
        }
        let deleted = known
            .into_keys()
            .filter(|path| {
                staged
                    .binary_search_by(|e| e.path.as_str().cmp(path))
                    .is_err()
            })
            .collect();
        Ok(Changes { changed, deleted })
    }

    /// The paths of files (submodules included) that differ between trees `a` and `b`, reading
    /// only directories whose ids differ; `None` once more than `budget` directories would have
    /// to be read.
    pub fn tree_changes(
        &self,
        a: ObjectId,
        b: ObjectId,
        budget: usize,
    ) -> Result<Option<Vec<String>>, Error> {
        let mut changed = Vec::new();
        let mut stack = vec![(Some(a), Some(b), String::new())];
        let mut read = 0;
        while let Some((a, b, dir)) = stack.pop() {
            if a == b {
                continue;
            }
            read += 1;
            if read > budget {
                return Ok(None);
            }
            let mut sides: [BTreeMap<String, (u32, ObjectId)>; 2] = Default::default();
            for (side, id) in sides.iter_mut().zip([a, b]) {
                let Some(id) = id else { continue };
                for entry in self.gix().find_tree(id)?.decode()?.entries {
                    let name = entry.filename.to_str_lossy();
                    let path = if dir.is_empty() {
                        name.into_owned()
                    } else {
                        format!("{dir}/{name}")
                    };
                    side.insert(path, (u32::from(entry.mode.value()), entry.oid.to_owned()));
                }
            }
            let [left, right] = sides;
            let paths: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
            for path in paths {
                let (l, r) = (left.get(path), right.get(path));
                if l == r {
                    continue;
                }
                let tree = |side: Option<&(u32, ObjectId)>| {
                    side.filter(|(mode, _)| *mode == 0o40000).map(|(_, id)| *id)
                };
                let blob =
                    |side: Option<&(u32, ObjectId)>| side.is_some_and(|(m, _)| *m != 0o40000);
                if tree(l).is_some() || tree(r).is_some() {
                    stack.push((tree(l), tree(r), path.clone()));
                }
                if blob(l) || blob(r) {
                    changed.push(path.clone());
                }
            }
        }
        changed.sort();
        Ok(Some(changed))
    }

    /// The id of HEAD's tree; `None` before the first commit.
    pub fn head_tree(&self) -> Result<Option<ObjectId>, Error> {
        self.head()?
            .map(|commit| self.commit_tree(commit))
            .transpose()
    }

    /// The files of `commit`'s tree (submodules left out).
    pub fn commit_files(&self, commit: ObjectId) -> Result<Vec<Entry>, Error> {
        self.files_under(commit, "")
    }

    /// The files under `dir` of the tree of `commit`, with paths relative to `dir`; entries that
    /// are not files (submodules) are left out.
    pub fn files_under(&self, commit: ObjectId, dir: &str) -> Result<Vec<Entry>, Error> {
        let mut entries = Vec::new();
        for item in self.tree_items(commit, dir)? {
            let Some(mode) = FileMode::from_git(item.mode) else {
                continue;
            };
            entries.push(Entry {
                path: item.path,
                mode,
                id: item.id,
            });
        }
        entries.sort();
        Ok(entries)
    }

    /// The commit HEAD points at; `None` before the first commit.
    pub fn head(&self) -> Result<Option<ObjectId>, Error> {
        match self.gix().head()?.id() {
            Some(id) => Ok(Some(id.detach())),
            None => Ok(None),
        }
    }

    /// The branch HEAD is on (`main`), `None` when detached.
    pub fn head_branch(&self) -> Option<String> {
        let name = self.gix().head_name().ok()??;
        name.as_bstr()
            .to_str()
            .ok()
            .and_then(|n| n.strip_prefix("refs/heads/"))
            .map(str::to_owned)
    }

    /// The commit `rev` names.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId, Error> {
        Ok(self.gix().rev_parse_single(rev)?.detach())
    }

    /// The default branch as git knows it: `origin/HEAD`'s branch, else `init.defaultBranch`,
    /// else `main`.
    pub fn default_branch(&self) -> String {
        if let Ok(Some(reference)) = self.gix().try_find_reference("refs/remotes/origin/HEAD")
            && let Some(target) = reference.target().try_name()
            && let Ok(name) = target.as_bstr().to_str()
            && let Some(branch) = name.strip_prefix("refs/remotes/origin/")
        {
            return branch.to_owned();
        }
        self.gix()
            .config_snapshot()
            .string("init.defaultBranch")
            .map(|b| b.to_str_lossy().into_owned())
            .unwrap_or_else(|| "main".to_owned())
    }

    /// Points index entries at new blobs (`git update-index --index-info`), in the index at
    /// `index_file` when given. git re-reads the index after the pre-commit hook, so the commit
    /// takes these.
    pub fn update_index(&self, index_file: Option<&Path>, updates: &[Entry]) -> Result<(), Error> {
        let mut input = String::new();
        for entry in updates {
            input.push_str(&format!(
                "{} {}\t{}\n",
                entry.mode.as_octal(),
                entry.id,
                entry.path
            ));
        }
        let mut command = self.git_command();
        command.args(["update-index", "--index-info"]);
        if let Some(index) = index_file {
            command.env("GIT_INDEX_FILE", index);
        }
        run_with_input(command, input.as_bytes()).map(|_| ())
    }

    /// A three-way merge of one file's contents (`git merge-file`): `Some(merged)` when the two
    /// sides apply cleanly to `base`, `None` when they conflict.
    pub fn merge_file(
        &self,
        ours: &[u8],
        base: &[u8],
        theirs: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        let dir = tempfile::TempDir::new().map_err(|e| Error::Io(std::env::temp_dir(), e))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).map_err(|e| Error::Io(path.clone(), e))?;
            Ok::<_, Error>(path)
        };
        let (ours, base, theirs) = (
            write("ours", ours)?,
            write("base", base)?,
            write("theirs", theirs)?,
        );
        let output = self
            .git_command()
            .args(["merge-file", "-p", "--quiet"])
            .arg(&ours)
            .arg(&base)
            .arg(&theirs)
            .output()
            .map_err(|e| Error::GitCommand {
                command: "git merge-file".into(),
                detail: e.to_string(),
            })?;
        match output.status.code() {
            Some(0) => Ok(Some(output.stdout)),
            Some(n) if n > 0 => Ok(None),
            _ => Err(Error::GitCommand {
                command: "git merge-file".into(),
                detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            }),
        }
    }
}

fn run_with_input(mut command: Command, input: &[u8]) -> Result<Vec<u8>, Error> {
    let failed = |detail: String| Error::GitCommand {
        command: "git update-index".into(),
        detail,
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

/// [`Repo::index_checksum`] of the index file at `path`, whose hash is `len` bytes long, for a
/// caller that has not opened the repository.
pub fn index_file_checksum(path: &Path, len: usize) -> Option<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::End(-i64::try_from(len).ok()?)).ok()?;
    let mut checksum = vec![0; len];
    file.read_exact(&mut checksum).ok()?;
    let id = ObjectId::try_from(checksum.as_slice()).ok()?;
    (!id.is_null()).then(|| id.to_string())
}
