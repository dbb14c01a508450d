//! `weir install` and `weir uninstall`: writing the hook shims (`hooks/shim.sh`) into the
//! repository's hooks directory, keeping any hook that was already there as
//! `<hook>.weir-chained` (the shim runs it first), and putting it back on uninstall.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::git::Repo;

/// The shim template; `@HOOK@` and `@WEIR@` are filled in at install.
const TEMPLATE: &str = include_str!("../../hooks/shim.sh");

/// Starts the line that marks a file as weir's own shim.
const MARKER: &[u8] = b"# weir hook shim";

/// Hooks installed in a repository with a working tree.
pub const WORKTREE_HOOKS: [&str; 3] = ["pre-commit", "pre-push", "post-merge"];

/// Hooks installed in a bare repository (a server).
pub const BARE_HOOKS: [&str; 1] = ["post-receive"];

/// The suffix of a hook that was there before weir and is run by weir's shim.
pub const CHAINED_SUFFIX: &str = ".weir-chained";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Git(#[from] crate::git::Error),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] io::Error),
    #[error("cannot remove {}", .0.display())]
    Remove(PathBuf, #[source] io::Error),
    #[error("cannot rename {} to {}", .0.display(), .1.display())]
    Rename(PathBuf, PathBuf, #[source] io::Error),
    #[error(
        "{} is not weir's hook and {} already exists, so it cannot be kept and chained",
        .hook.display(),
        .chained.display()
    )]
    Conflict { hook: PathBuf, chained: PathBuf },
}

impl Error {
    /// What to do about it, when weir can tell.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Conflict { chained, .. } => Some(format!(
                "move {} somewhere else (or delete it), then run `weir install` again",
                chained.display()
            )),
            _ => None,
        }
    }
}

/// What happened to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub hook: &'static str,
    /// The hook's path.
    pub path: PathBuf,
    pub kind: ActionKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// No hook was there; the shim was written.
    Installed,
    /// weir's shim was there and was rewritten (a new weir path or template).
    Updated,
    /// weir's shim was there exactly as it would be written.
    Unchanged,
    /// Another hook was there: it was kept as `<hook>.weir-chained` and the shim runs it first.
    Chained,
    /// weir's shim was removed.
    Removed,
    /// weir's shim was removed and the hook it chained was put back.
    Restored,
    /// The hook is not weir's and was left alone.
    Foreign,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (hook, path) = (self.hook, self.path.display());
        match self.kind {
            ActionKind::Installed => write!(f, "{hook}: installed {path}"),
            ActionKind::Updated => write!(f, "{hook}: updated {path}"),
            ActionKind::Unchanged => write!(f, "{hook}: already installed {path}"),
            ActionKind::Chained => write!(
                f,
                "{hook}: installed {path}; the hook that was there is kept as \
                 {hook}{CHAINED_SUFFIX} and runs first"
            ),
            ActionKind::Removed => write!(f, "{hook}: removed {path}"),
            ActionKind::Restored => {
                write!(
                    f,
                    "{hook}: removed weir's shim; the original hook is back at {path}"
                )
            }
            ActionKind::Foreign => write!(f, "{hook}: left alone {path} (not weir's hook)"),
        }
    }
}

/// The hooks weir installs in `repo`.
pub fn hooks_for(repo: &Repo) -> &'static [&'static str] {
    if repo.is_bare() {
        &BARE_HOOKS
    } else {
        &WORKTREE_HOOKS
    }
}

/// Whether `bytes` are one of weir's shims (of any version).
pub fn is_shim(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .any(|line| line.starts_with(MARKER))
}

/// The shim for `hook` that runs the weir binary at `weir_exe`.
pub fn shim(hook: &str, weir_exe: &Path) -> Vec<u8> {
    let text = TEMPLATE.replace("@HOOK@", hook);
    let quoted = shell_quote(weir_exe.as_os_str().as_bytes());
    let mut parts = text.as_bytes().split_inclusive(|&b| b == b'\n');
    let mut out = Vec::with_capacity(text.len() + quoted.len());
    // Line by line, so that the bytes of a path that is not UTF-8 go through untouched.
    for line in parts.by_ref() {
        match line.windows(6).position(|w| w == b"@WEIR@") {
            Some(at) => {
                out.extend_from_slice(&line[..at]);
                out.extend_from_slice(&quoted);
                out.extend_from_slice(&line[at + 6..]);
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

/// `bytes` as one single-quoted sh word.
fn shell_quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Writes weir's shims into the hooks directory of `repo`, running `weir_exe`. A hook that is
/// already there and not weir's is kept and chained. Nothing is written unless every hook can
/// be installed.
pub fn install(repo: &Repo, weir_exe: &Path) -> Result<Vec<Action>, Error> {
    let dir = repo.hooks_dir()?;
    fs::create_dir_all(&dir).map_err(|e| Error::Write(dir.clone(), e))?;

    // Decide everything before touching anything, so that a conflict on the last hook does not
    // leave the first ones installed.
    let mut plan = Vec::new();
    for &hook in hooks_for(repo) {
        let path = dir.join(hook);
        let chained = chained_path(&path);
        let shim = shim(hook, weir_exe);
        let kind = match read_optional(&path)? {
            None => ActionKind::Installed,
            Some(bytes) if is_shim(&bytes) => {
                if bytes == shim && is_executable(&path)? {
                    ActionKind::Unchanged
                } else {
                    ActionKind::Updated
                }
            }
            Some(_) if exists(&chained)? => {
                return Err(Error::Conflict {
                    hook: path,
                    chained,
                });
            }
            Some(_) => ActionKind::Chained,
        };
        plan.push((Action { hook, path, kind }, chained, shim));
    }

    let mut actions = Vec::with_capacity(plan.len());
    for (action, chained, shim) in plan {
        if action.kind == ActionKind::Chained {
            // A rename keeps the hook byte-identical, with its mode and even as a symlink.
            fs::rename(&action.path, &chained)
                .map_err(|e| Error::Rename(action.path.clone(), chained.clone(), e))?;
        }
        if action.kind != ActionKind::Unchanged {
            super::atomic::write(&action.path, &shim, 0o755)
                .map_err(|e| Error::Write(action.path.clone(), e))?;
        }
        actions.push(action);
    }
    Ok(actions)
}

/// Removes weir's shims from the hooks directory of `repo` and puts back the hooks they chained.
/// Hooks that are not weir's are left alone and reported.
pub fn uninstall(repo: &Repo) -> Result<Vec<Action>, Error> {
    let dir = repo.hooks_dir()?;
    let mut actions = Vec::new();
    // Every hook weir may have installed, whatever kind of repository this is now.
    for &hook in WORKTREE_HOOKS.iter().chain(BARE_HOOKS.iter()) {
        let path = dir.join(hook);
        let chained = chained_path(&path);
        let kind = match read_optional(&path)? {
            Some(bytes) if !is_shim(&bytes) => ActionKind::Foreign,
            current => {
                if current.is_some() {
                    fs::remove_file(&path).map_err(|e| Error::Remove(path.clone(), e))?;
                }
                if exists(&chained)? {
                    fs::rename(&chained, &path)
                        .map_err(|e| Error::Rename(chained.clone(), path.clone(), e))?;
                    ActionKind::Restored
                } else if current.is_some() {
                    ActionKind::Removed
                } else {
                    continue;
                }
            }
        };
        actions.push(Action { hook, path, kind });
    }
    Ok(actions)
}

fn chained_path(hook: &Path) -> PathBuf {
    let mut name = hook.file_name().unwrap_or_default().to_os_string();
    name.push(CHAINED_SUFFIX);
    hook.with_file_name(name)
}

/// The bytes of the file at `path`, or `None` when there is none.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A dangling symlink reads as missing but is still someone's hook.
            if fs::symlink_metadata(path).is_ok() {
                Ok(Some(Vec::new()))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(Error::Read(path.to_path_buf(), e)),
    }
}

/// Whether anything (even a dangling symlink) is at `path`.
fn exists(path: &Path) -> Result<bool, Error> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Read(path.to_path_buf(), e)),
    }
}

fn is_executable(path: &Path) -> Result<bool, Error> {
    let meta = fs::metadata(path).map_err(|e| Error::Read(path.to_path_buf(), e))?;
    Ok(meta.permissions().mode() & 0o111 == 0o111)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_names_its_hook_and_quotes_the_binary_path() {
        let shim = shim("pre-push", Path::new("/opt/it's here/weir"));
        let text = String::from_utf8(shim.clone()).unwrap();
        assert!(text.contains("hook=pre-push\n"), "{text}");
        assert!(text.contains("weir='/opt/it'\\''s here/weir'\n"), "{text}");
        assert!(
            !text.contains("@HOOK@") && !text.contains("@WEIR@"),
            "{text}"
        );
        assert!(is_shim(&shim));
    }

    #[test]
    fn another_hook_is_not_mistaken_for_a_shim() {
        assert!(!is_shim(
            b"#!/bin/sh\n# runs weir hook shim things\nexit 0\n"
        ));
        assert!(!is_shim(b""));
    }
}
