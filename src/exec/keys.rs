use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::mask::Patterns;
use crate::report::JobStatus;

/// What the scheduler asks before and after running a job: its key, a stored result to restore
/// instead of running, and storing a new result. Implemented over git outside `exec`, so the
/// scheduler knows nothing of git.
pub trait Keys: Send + Sync + 'static {
    /// Computes the key of job `job` (a position in the plan) given the keys of what it needs
    /// (`(name, key)`), and restores its stored result if there is one. Blocking.
    fn before(&self, job: usize, needs: &[(String, String)]) -> Result<Before, String>;

    /// What [`Keys::before`] would answer for job `job`, when that is known without blocking
    /// (a hit checked ahead of the run); `None`: ask `before`.
    fn known(&self, _job: usize, _needs: &[(String, String)]) -> Option<Before> {
        None
    }

    /// Stores the result of job `job`, which just passed. Blocking.
    fn after(
        &self,
        job: usize,
        key: &str,
        log: &[u8],
        duration: Duration,
    ) -> Result<Stored, String>;

    /// For a deploy job that failed without a `rollback` command: how to redeploy what was
    /// there before, if anything was. Blocking.
    fn recover(&self, _job: usize) -> Result<Option<Recovery>, String> {
        Ok(None)
    }

    /// Job `job`, which `before` said to run, is over (whatever its status). Blocking; an error
    /// is reported in the job's log.
    fn finished(&self, _job: usize, _end: &Finished) -> Result<(), String> {
        Ok(())
    }
}

/// What to do with a job.
#[derive(Debug, Clone)]
pub enum Before {
    /// Its stored result was restored: do not run it.
    Hit { key: String, restored: usize },
    /// Run it. `store` says whether to keep the result; `explain` why there was nothing
    /// stored (only when asked for); `notes` are things the user should read in its log;
    /// `secrets` what it receives and what its output must not show.
    Run {
        key: String,
        store: bool,
        explain: Option<Vec<String>>,
        notes: Vec<String>,
        secrets: JobSecrets,
    },
    /// Do not run it, and not what needs it either, without failing the run: it waits for
    /// something outside the run (an approval), or has nothing left to do (a superseded deploy).
    Hold { status: JobStatus, reason: String },
    /// Ask again shortly (another process holds what it needs); `reason` is shown once.
    Later { reason: String },
}

/// How to redeploy the previous release: these steps, run in `cwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub cwd: PathBuf,
    pub steps: Vec<String>,
    /// What is being redeployed, for the log.
    pub what: String,
}

/// How a job that ran ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub status: JobStatus,
    pub reason: Option<String>,
    pub rollback: Rollback,
}

/// Whether a failed deploy was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// Not a failed deploy, or stopped before a rollback could start.
    NotNeeded,
    /// It failed and there was nothing to roll back to.
    Nothing,
    Succeeded,
    Failed,
}

/// A job's secrets, read just before it runs.
#[derive(Clone, Default)]
pub struct JobSecrets {
    /// Added to the job's environment: each secret it lists, as a variable of its name.
    pub env: Vec<(String, OsString)>,
    /// What to mask in its output: every secret value read so far in the run. `None` when
    /// there is none.
    pub mask: Option<Arc<Patterns>>,
}

// By hand, so that no debug print shows a value.
impl std::fmt::Debug for JobSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("JobSecrets")
            .field("names", &names)
            .field("mask", &self.mask)
            .finish()
    }
}

/// Whether a passed job's result was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored, or skipped with nothing to say (a fixer that changed files runs again anyway).
    Done,
    /// Deliberately not stored; the warning says why and is shown to the user.
    Refused { warning: String },
}

/// Keys for runs that do not cache: every job runs, nothing is stored.
pub struct NoCache;

impl Keys for NoCache {
    fn before(&self, _job: usize, _needs: &[(String, String)]) -> Result<Before, String> {
        Ok(Before::Run {
            key: String::new(),
            store: false,
            explain: None,
            notes: Vec::new(),
            secrets: JobSecrets::default(),
        })
    }

    fn after(&self, _: usize, _: &str, _: &[u8], _: Duration) -> Result<Stored, String> {
        Ok(Stored::Done)
    }
}
