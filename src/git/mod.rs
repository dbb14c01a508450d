//! The only module that touches gix or runs `git`: finding the repository, writing objects and
//! refs with compare-and-swap, and reading them back.

mod deferred;
mod files;
mod loose;
mod materialized;
mod memo;
mod racy;
mod remote;
mod repo;
mod snapshot;
mod statcache;

pub use deferred::{Deferred, write_handed};
pub use files::{FileId, FileMode, IndexSnapshot, Query, StatAt, Watched, clean_file, read_whole};
pub use materialized::Materialized;
pub use memo::{Memo, Reads, Recalled, Remembered};
pub use racy::Settled;
pub use repo::{Error, Repo, TreeEntry, TreeItem};
pub use snapshot::{Changes, Entry, Staged, index_file_checksum};
pub(crate) use statcache::FileStat;
pub use statcache::StatCache;

/// Runs `git args` in `dir` with no user or system config, for unit tests; its stdout, trimmed.
#[cfg(test)]
pub(crate) fn test_git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A new empty repository in a temporary directory, made by `git init` with no user or system
/// config: for unit tests that need a real repository.
#[cfg(test)]
pub(crate) fn test_repo() -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .expect("run git init");
    assert!(status.success());
    let repo = Repo::discover(dir.path()).expect("open the new repository");
    (dir, repo)
}
