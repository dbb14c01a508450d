//! The only module that touches gix or runs `git`: finding the repository, writing objects and
//! refs with compare-and-swap, and reading them back.

mod repo;

pub use repo::{Error, Repo, TreeFile};
