//! weir: a git-native CI/CD engine that runs inside a repository.
//!
//! Data flows one way: cli → config → graph → exec → store → report. Only `git` touches gix or
//! the `git` binary; only `exec` is async.

pub mod cli;
pub mod config;
pub mod deploy;
pub mod engine;
pub mod env_vars;
pub mod error;
pub mod exec;
pub mod git;
pub mod graph;
pub mod key;
pub mod report;
mod statefile;
pub mod store;
mod sync;
pub mod trigger;
pub mod workspace;
