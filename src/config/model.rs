//! The validated pipeline model. Nothing outside `config` sees raw TOML: every value here has
//! been checked, and every job name is safe to put in a ref name.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    Manual,
    PreCommit,
    PrePush,
    Merge,
    Watch,
}

impl Event {
    pub const ALL: [Event; 5] = [
        Event::Manual,
        Event::PreCommit,
        Event::PrePush,
        Event::Merge,
        Event::Watch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Manual => "manual",
            Event::PreCommit => "pre-commit",
            Event::PrePush => "pre-push",
            Event::Merge => "merge",
            Event::Watch => "watch",
        }
    }

    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole, validated `.pipeline.toml`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory holding the file; job `dir`s are relative to it.
    pub root: PathBuf,
    /// `[pipeline] default_branch`, when set.
    pub default_branch: Option<String>,
    /// `[env]`, passed to every job.
    pub env: BTreeMap<String, String>,
    /// Jobs in the order the file declares them.
    pub jobs: Vec<Job>,
}

impl Pipeline {
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// Steps, each run with `sh -c`; never empty.
    pub steps: Vec<String>,
    pub needs: Vec<String>,
    pub on: Vec<Event>,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// Extra attempts after the first failure.
    pub retries: u32,
    /// Working directory relative to the pipeline root; empty for the root itself.
    pub dir: PathBuf,
    /// A deploy job (`environment = "…"`): never part of a plain `weir run`.
    pub environment: Option<String>,
    /// Byte range of the job's `[jobs.NAME]` header (or key) in the file, for later diagnostics.
    pub span: Range<usize>,
}
