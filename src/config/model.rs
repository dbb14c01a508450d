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
    /// `[cache]`.
    pub cache: CacheSettings,
    /// `[secrets]`: where each secret's value comes from. Values are never read here: only
    /// when a job that lists the secret is about to run.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Jobs in the order the file declares them.
    pub jobs: Vec<Job>,
}

/// `[cache]`: where shared cache entries live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSettings {
    /// The remote `weir cache push/pull` use when none is given; `None` means `origin`.
    pub remote: Option<String>,
    pub pull: CachePull,
}

/// When `weir run` fetches cache entries by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachePull {
    /// Only `weir cache pull` fetches.
    #[default]
    Never,
    /// Before running a job whose key has no local entry, fetch just that key's ref.
    OnMiss,
}

/// Where a secret's value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of weir's own environment.
    Env(String),
    /// A file, relative to the pipeline root.
    File(PathBuf),
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
    /// A deploy job (`environment = "…"`): never part of a plain `weir run`, never cached.
    pub environment: Option<String>,
    /// Globs of the files the job reads, relative to the pipeline root; `None` means every
    /// tracked file.
    pub inputs: Option<Vec<String>>,
    /// Globs of the files the job writes, stored with its cache entry and restored on a hit.
    pub outputs: Vec<String>,
    /// Whether results are cached: `cache = false` opts out; always false for deploy jobs.
    pub cache: bool,
    /// Extra strings that are part of the key (`key = [...]`).
    pub key: Vec<String>,
    /// A command whose output is part of the key, e.g. a tool's version (`key_cmd`).
    pub key_cmd: Option<String>,
    /// Names from `[secrets]` the job receives as environment variables (`secrets = [...]`).
    pub secrets: Vec<String>,
    /// pre-commit: globs of staged files that select the job; `{files}` in its steps expands
    /// to the matching staged files. `None`: the job always runs.
    pub files: Option<Vec<String>>,
    /// pre-commit: the job may modify files; its changes are applied to the index and the
    /// working tree when they apply cleanly.
    pub fix: bool,
    /// What a deploy job does besides its steps; empty for other jobs.
    pub deploy: Deploy,
    /// Byte range of the job's `[jobs.NAME]` header (or key) in the file, for later diagnostics.
    pub span: Range<usize>,
}

/// The deploy-only keys of a job with `environment`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deploy {
    /// `approval = true`: the run stops at this job until `weir approve ENV`.
    pub approval: bool,
    /// A command run after the deploy's steps; its failure fails the deploy.
    pub health: Option<String>,
    /// A command run when the deploy or its health check fails; without it, weir redeploys the
    /// artifact of the environment's previous successful deployment.
    pub rollback: Option<String>,
}
