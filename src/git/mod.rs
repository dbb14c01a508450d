//! The only module that touches gix or runs `git`: finding the repository, writing objects and
//! refs with compare-and-swap, and reading them back.

mod files;
mod remote;
mod repo;
mod snapshot;
mod statcache;

pub use files::{FileId, FileMode, IndexSnapshot, Query, Watched};
pub use repo::{Error, Repo, TreeEntry, TreeItem};
pub use snapshot::Entry;
pub use statcache::StatCache;
