//! Run records: one parentless commit per run at `refs/weir/runs/<time>-<id>`, whose tree holds
//! `run` (a JSON summary of every job) and, for each job that printed anything, `jobs/<job>/log`,
//! so plain `git show` can read them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use super::to_json;
use crate::exec::RunResult;
use crate::git::{self, Deferred, Repo, TreeEntry};
use crate::report::{JobStatus, RunOutcome};

pub const PREFIX: &str = "refs/weir/runs/";
/// The version of the record format, bumped on incompatible changes. 2: jobs that did not run
/// (hits, skipped jobs) have no `jobs/<job>/` files. 3: no `jobs/<job>/result`, which repeated
/// the job's entry in `run`.
const FORMAT: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no run matches `{0}`")]
    NotFound(String),
    #[error("`{query}` matches {count} runs")]
    Ambiguous { query: String, count: usize },
    #[error("the run record {refname} is unreadable")]
    Unreadable {
        refname: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Git(#[from] git::Error),
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NotFound(_) | Error::Ambiguous { .. } => {
                Some("`weir log` lists recent runs".to_owned())
            }
            _ => None,
        }
    }
}

/// The `run` file of a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub format: u32,
    pub id: String,
    pub trigger: String,
    pub outcome: RunOutcome,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_ms: u64,
    pub weir_version: String,
    pub jobs: Vec<JobSummary>,
}

/// One job's entry in a record's `run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSummary {
    pub name: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    pub duration_ms: u64,
}

impl RunSummary {
    pub fn new(id: &str, trigger: &str, started: SystemTime, result: &RunResult) -> RunSummary {
        RunSummary {
            format: FORMAT,
            id: id.to_owned(),
            trigger: trigger.to_owned(),
            outcome: result.outcome,
            started: rfc3339(started),
            duration_ms: millis(result.duration),
            weir_version: env!("CARGO_PKG_VERSION").to_owned(),
            jobs: result
                .jobs
                .iter()
                .map(|job| JobSummary {
                    name: job.name.clone(),
                    status: job.status,
                    attempts: job.attempts,
                    exit_code: job.exit_code,
                    key: job.key.clone(),
                    reason: job.reason.clone(),
                    started: job.started.map(rfc3339),
                    duration_ms: millis(job.duration),
                })
                .collect(),
        }
    }

    pub fn count(&self, status: JobStatus) -> usize {
        self.jobs.iter().filter(|j| j.status == status).count()
    }
}

/// A new run id: `<UTC time to the millisecond>-<8 hex>`, so ref names sort by start time.
pub fn new_run_id(now: SystemTime) -> String {
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    let hash = hasher.finalize().to_hex();
    let compact: String = humantime::format_rfc3339_millis(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{compact}-{}", &hash[..8])
}

/// What a run's record is made of: its ref, its tree's files and its commit message.
fn contents(summary: &RunSummary, result: &RunResult) -> (String, Vec<TreeEntry>, String) {
    // `run` describes every job in full; only logs have files of their own. A job whose log is
    // the same as last time then has the same tree as well, and writes no new object.
    let mut files = vec![TreeEntry::bytes("run", to_json(summary))];
    for job in result.jobs.iter().filter(|job| !job.log.is_empty()) {
        files.push(TreeEntry::bytes(
            format!("jobs/{}/log", job.name),
            job.log.clone(),
        ));
    }
    let message = format!(
        "weir run {}: {} ({})\n",
        summary.id,
        summary.outcome.as_str(),
        summary.trigger
    );
    (format!("{PREFIX}{}", summary.id), files, message)
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Run records in one repository.
pub struct Runs<'a> {
    repo: &'a Repo,
}

impl<'a> Runs<'a> {
    pub fn new(repo: &'a Repo) -> Runs<'a> {
        Runs { repo }
    }

    /// Writes the record of a finished run; returns its ref name.
    pub fn record(&self, summary: &RunSummary, result: &RunResult) -> Result<String, Error> {
        let (refname, files, message) = contents(summary, result);
        self.repo
            .create_commit_ref(&refname, &files, &message, None)?;
        Ok(refname)
    }

    /// Queues the record of a finished run in `later` (see [`Repo::write_deferred`]); returns
    /// its ref name.
    pub fn record_later(summary: &RunSummary, result: &RunResult, later: &mut Deferred) -> String {
        let (refname, files, message) = contents(summary, result);
        // Every file is bytes: it always can wait.
        later.create_commit_ref(refname.clone(), files, message);
        refname
    }

    /// Every recorded run, newest first.
    pub fn list(&self) -> Result<Vec<(RunSummary, ObjectId)>, Error> {
        let mut runs = Vec::new();
        for (refname, id) in self.repo.refs_under(PREFIX)?.into_iter().rev() {
            runs.push((self.summary(&refname, id)?, id));
        }
        Ok(runs)
    }

    /// The run whose id (or the random part of it) starts with `query`.
    pub fn find(&self, query: &str) -> Result<(RunSummary, ObjectId), Error> {
        let query = query.strip_prefix(PREFIX).unwrap_or(query);
        let refs = self.repo.refs_under(PREFIX)?;
        let matches: Vec<_> = refs
            .into_iter()
            .filter(|(refname, _)| {
                let id = &refname[PREFIX.len()..];
                let random = id.rsplit('-').next().unwrap_or(id);
                id.starts_with(query) || random.starts_with(query)
            })
            .collect();
        match matches.as_slice() {
            [] => Err(Error::NotFound(query.to_owned())),
            [(refname, id)] => Ok((self.summary(refname, *id)?, *id)),
            many => {
                // An exact id wins over longer ids it is a prefix of.
                if let Some((refname, id)) = many.iter().find(|(r, _)| &r[PREFIX.len()..] == query)
                {
                    return Ok((self.summary(refname, *id)?, *id));
                }
                Err(Error::Ambiguous {
                    query: query.to_owned(),
                    count: many.len(),
                })
            }
        }
    }

    /// A job's captured log in a run.
    pub fn log(&self, commit: ObjectId, job: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.repo.read_file(commit, &format!("jobs/{job}/log"))?)
    }

    fn summary(&self, refname: &str, id: ObjectId) -> Result<RunSummary, Error> {
        let unreadable = |source: Box<dyn std::error::Error + Send + Sync>| Error::Unreadable {
            refname: refname.to_owned(),
            source,
        };
        let bytes = self
            .repo
            .read_file(id, "run")?
            .ok_or_else(|| unreadable("it has no `run` file".into()))?;
        serde_json::from_slice(&bytes).map_err(|e| unreadable(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_differ() {
        let early = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let late = early + Duration::from_secs(1);
        let a = new_run_id(early);
        assert_eq!(&a[..21], "20270115T080000.000Z-");
        assert!(new_run_id(late) > a);
        assert!(new_run_id(early + Duration::from_millis(1)) > a);
        assert_ne!(new_run_id(early + Duration::from_nanos(1)), a);
    }
}
