use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How one job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    Passed,
    /// A stored result for the same key was restored instead of running.
    Cached,
    Failed,
    TimedOut,
    Cancelled,
    /// Never started: something it needs did not pass, or the run stopped first, or (a
    /// deploy) a newer release was already deployed.
    Skipped,
    /// A deploy that waits for `weir approve`; what needs it is skipped, and the run passes.
    Waiting,
}

impl JobStatus {
    /// Whether the job's result is good: what depends on it may run.
    pub fn is_success(self) -> bool {
        matches!(self, JobStatus::Passed | JobStatus::Cached)
    }

    /// Whether the job makes its run fail.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            JobStatus::Failed | JobStatus::TimedOut | JobStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Passed => "passed",
            JobStatus::Cached => "cached",
            JobStatus::Failed => "failed",
            JobStatus::TimedOut => "timed-out",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Skipped => "skipped",
            JobStatus::Waiting => "waiting",
        }
    }
}

/// How a whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    Passed,
    Failed,
    Cancelled,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Passed => "passed",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
        }
    }
}

/// What happens during a run, in the order it happens. `--json` prints each as one line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run: String,
        trigger: String,
        jobs: Vec<String>,
    },
    JobStarted {
        job: String,
        attempt: u32,
        attempts: u32,
    },
    /// Why a job's key has no stored result (`--explain`).
    JobExplained {
        job: String,
        key: String,
        changes: Vec<String>,
    },
    /// Something about a job the user should know that does not change its status, such as a
    /// result not cached because an output holds a secret value.
    JobWarning { job: String, message: String },
    /// One line of a job's output; human renderers print it, `--json` leaves it out.
    #[serde(skip)]
    JobOutput { job: String, line: String },
    JobFinished {
        job: String,
        status: JobStatus,
        #[serde(rename = "duration_ms", serialize_with = "millis")]
        duration: Duration,
        attempts: u32,
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Why it did not pass, in words.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The end of its log, for human renderers to show on failure.
        #[serde(skip)]
        tail: String,
    },
    RunFinished {
        run: String,
        outcome: RunOutcome,
        #[serde(rename = "duration_ms", serialize_with = "millis")]
        duration: Duration,
        passed: usize,
        cached: usize,
        failed: usize,
        cancelled: usize,
        skipped: usize,
        /// Deploys waiting for approval.
        waiting: usize,
        /// The ref the run is recorded under.
        #[serde(skip_serializing_if = "Option::is_none")]
        record: Option<String>,
    },
}

fn millis<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
