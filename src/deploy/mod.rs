//! Deploy jobs: one at a time per environment, superseded releases skipped, approval gates,
//! rollback, and every step recorded in the environment's ledger (`store::ledger`).

pub mod lock;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use gix::ObjectId;

use crate::exec::{Before, Finished, JobSecrets, Recovery, Rollback};
use crate::git::{Entry as FileEntry, Repo};
use crate::report::JobStatus;
use crate::store::ledger::{self, ArtifactFile, Event, Ledger, NewRecord, Release, State};
use crate::sync;
use crate::workspace::Snapshot;
use lock::{Attempt, EnvLock};

/// What a deploy job is, as the deploy logic needs it.
#[derive(Debug, Clone)]
pub struct DeployJob {
    pub name: String,
    pub environment: String,
    pub approval: bool,
    pub steps: Vec<String>,
    /// The job's working directory relative to the repository root.
    pub dir: PathBuf,
    /// Every job it needs, directly or not, that is not a deploy job: whose outputs (and keys)
    /// make up the artifact it deploys.
    pub upstream: Vec<String>,
}

/// What a deploy job deploys: the keys and the output files of the jobs upstream of it.
#[derive(Debug, Clone, Default)]
pub struct Artifact {
    pub keys: BTreeMap<String, String>,
    pub files: Vec<ArtifactFile>,
}

/// Why a run deploys.
#[derive(Debug, Clone, Default)]
pub enum Mode {
    /// A run reached the deploy job: its release is the workspace's commit and the outputs of
    /// what the job needs.
    #[default]
    Normal,
    /// `weir approve`: deploys the waiting release of ledger entry `entry`.
    Approved { entry: u64, release: Release },
    /// `weir rollback`: deploys again the release of ledger entry `entry`.
    Rollback { entry: u64, release: Release },
}

/// The deploys of one run.
pub struct Deploys {
    run: String,
    /// The commit the run's workspace holds, if it holds one.
    source: Option<ObjectId>,
    mode: Mode,
    active: Mutex<HashMap<usize, Active>>,
}

/// A deploy that has started: the lock it holds and its `started` entry.
struct Active {
    lock: EnvLock,
    job: DeployJob,
    started: u64,
    release: Release,
    /// The ledger entry a failure was rolled back to, once one was.
    recovered_to: Option<u64>,
}

impl Deploys {
    pub fn new(run: String, source: Option<ObjectId>, mode: Mode) -> Deploys {
        Deploys {
            run,
            source,
            mode,
            active: Mutex::new(HashMap::new()),
        }
    }

    /// Before deploy job `index` runs: takes the environment's lock (or asks to wait for it),
    /// skips a superseded release, stops at an approval gate, and records the start.
    /// `artifact` gives the keys of the jobs upstream and the files they produced (only asked
    /// in [`Mode::Normal`]); `secrets` reads the job's secrets (only asked when it will run).
    pub fn before(
        &self,
        repo: &Repo,
        index: usize,
        job: &DeployJob,
        artifact: impl FnOnce() -> Result<Artifact, String>,
        secrets: impl FnOnce() -> Result<JobSecrets, String>,
    ) -> Result<Before, String> {
        let env = &job.environment;
        let lock = match lock::try_lock(repo, env, &self.run, &job.name).map_err(err)? {
            Attempt::Taken(lock) => lock,
            Attempt::Held {
                holder,
                alive: true,
            } => {
                return Ok(Before::Later {
                    reason: format!(
                        "waiting for the deploy to `{env}` by {} to finish",
                        holder.describe()
                    ),
                });
            }
            Attempt::Held {
                holder,
                alive: false,
            } => {
                return Err(format!(
                    "`{env}` is locked by {}, which is no longer running; nothing was deployed. \
                     If no deploy to `{env}` is in progress, `weir unlock {env}` clears the lock \
                     and records the interruption",
                    holder.describe()
                ));
            }
        };
        self.deploy_locked(repo, index, job, artifact, secrets, lock)
    }

    fn deploy_locked(
        &self,
        repo: &Repo,
        index: usize,
        job: &DeployJob,
        artifact: impl FnOnce() -> Result<Artifact, String>,
        secrets: impl FnOnce() -> Result<JobSecrets, String>,
        lock: EnvLock,
    ) -> Result<Before, String> {
        let env = &job.environment;
        let ledger = Ledger::new(repo);
        // Whatever goes wrong before the deploy starts, the lock must not outlive it.
        let fail = |lock: EnvLock, e: String| {
            lock.release();
            Err(e)
        };
        let (release, of, detail) = match &self.mode {
            Mode::Normal => {
                let Artifact { keys, files } = match artifact() {
                    Ok(artifact) => artifact,
                    Err(e) => return fail(lock, e),
                };
                let source = match self.source.map(|c| repo.commit_tree(c)).transpose() {
                    Ok(source) => source,
                    Err(e) => return fail(lock, e.to_string()),
                };
                let release = Release {
                    commit: self.source,
                    artifacts: keys,
                    source,
                    files,
                };
                (release, None, None)
            }
            Mode::Approved { entry, release } => (
                release.clone(),
                Some(*entry),
                Some(format!("approved #{entry}")),
            ),
            Mode::Rollback { entry, release } => (
                release.clone(),
                Some(*entry),
                Some(format!("redeploying #{entry}")),
            ),
        };
        let entries = match ledger.entries(env) {
            Ok(entries) => entries,
            Err(e) => return fail(lock, e.to_string()),
        };
        let state = State::of(&entries);
        let append = |event, of, detail: Option<String>| {
            ledger
                .append(
                    env,
                    &NewRecord {
                        event,
                        job: &job.name,
                        release: Some(&release),
                        run: Some(&self.run),
                        of,
                        detail,
                    },
                )
                .map_err(err)
        };
        if let Mode::Normal = self.mode
            && let Some(superseded_by) = superseded(repo, &release, state.live)
        {
            let detail = format!(
                "`{env}` already runs {superseded_by}, which contains {}",
                short(release.commit)
            );
            let appended = append(Event::Superseded, None, Some(detail.clone()));
            lock.release();
            appended?;
            return Ok(Before::Hold {
                status: JobStatus::Skipped,
                reason: format!("superseded: {detail}"),
            });
        }
        if let Mode::Normal = self.mode
            && job.approval
        {
            if let Some(older) = state.waiting {
                let replaced = append(
                    Event::Superseded,
                    Some(older.record.seq),
                    Some(format!(
                        "#{} is replaced by a newer release waiting for approval",
                        older.record.seq
                    )),
                );
                if let Err(e) = replaced {
                    return fail(lock, e);
                }
            }
            let waiting = append(Event::AwaitingApproval, None, None);
            lock.release();
            let waiting = waiting?;
            return Ok(Before::Hold {
                status: JobStatus::Waiting,
                reason: format!(
                    "#{} waits for approval: `weir approve {env}` deploys {}, `weir reject {env}` drops it",
                    waiting.record.seq,
                    short(release.commit)
                ),
            });
        }
        // Read only now: a release waiting for approval does not need the values here.
        let secrets = match secrets() {
            Ok(secrets) => secrets,
            Err(e) => return fail(lock, e),
        };
        let started = match append(Event::Started, of, detail) {
            Ok(started) => started,
            Err(e) => return fail(lock, e),
        };
        sync::lock(&self.active).insert(
            index,
            Active {
                lock,
                job: job.clone(),
                started: started.record.seq,
                release,
                recovered_to: None,
            },
        );
        Ok(Before::Run {
            key: String::new(),
            store: false,
            explain: None,
            secrets,
            notes: vec![format!(
                "deploying {} to `{env}` (ledger entry #{})",
                short(self.release_commit(index)),
                started.record.seq
            )],
        })
    }

    fn release_commit(&self, index: usize) -> Option<ObjectId> {
        sync::lock(&self.active)
            .get(&index)
            .and_then(|a| a.release.commit)
    }

    /// Deploy job `index` failed without a `rollback` command: prepares the release that was
    /// live before it to be deployed again, if there was one.
    pub fn recover(&self, repo: &Repo, index: usize) -> Result<Option<Recovery>, String> {
        let mut active = sync::lock(&self.active);
        let Some(active) = active.get_mut(&index) else {
            return Ok(None);
        };
        let ledger = Ledger::new(repo);
        let entries = ledger.entries(&active.job.environment).map_err(err)?;
        let Some(previous) = entries
            .iter()
            .filter(|e| e.record.seq < active.started)
            .find(|e| e.record.event.makes_live())
        else {
            return Ok(None);
        };
        let (dir, _) = materialize(
            repo,
            &format!("rollback-{}", active.job.environment),
            previous,
        )?;
        active.recovered_to = Some(previous.record.seq);
        Ok(Some(Recovery {
            cwd: dir.join(&active.job.dir),
            steps: active.job.steps.clone(),
            what: format!(
                "redeploying #{} ({})",
                previous.record.seq,
                short_hex(previous.record.commit.as_deref())
            ),
        }))
    }

    /// Deploy job `index` is over: records its outcome and releases the lock.
    pub fn finished(&self, repo: &Repo, index: usize, end: &Finished) -> Result<(), String> {
        let Some(active) = sync::lock(&self.active).remove(&index) else {
            return Ok(());
        };
        let rolled = match (end.rollback, active.recovered_to) {
            (Rollback::Succeeded, Some(to)) => Some(format!("rolled back to #{to}")),
            (Rollback::Succeeded, None) => Some("rolled back with `rollback`".to_owned()),
            (Rollback::Failed, _) => Some("the rollback failed".to_owned()),
            (Rollback::Nothing, _) => Some("nothing to roll back to".to_owned()),
            (Rollback::NotNeeded, _) => None,
        };
        let (event, detail) = match (end.status, &self.mode) {
            (JobStatus::Passed, Mode::Rollback { entry, .. }) => {
                (Event::RolledBack, Some(format!("redeployed #{entry}")))
            }
            (JobStatus::Passed, _) => (Event::Succeeded, None),
            (JobStatus::Cancelled, _) => (Event::Cancelled, None),
            _ => {
                let reason = end.reason.as_deref().unwrap_or("failed");
                // The scheduler's reason ends with a word on the rollback; this one says more.
                let reason = reason.split("; ").next().unwrap_or(reason);
                let detail = match rolled {
                    Some(rolled) => format!("{reason}; {rolled}"),
                    None => reason.to_owned(),
                };
                (Event::Failed, Some(detail))
            }
        };
        let appended = Ledger::new(repo).append(
            &active.job.environment,
            &NewRecord {
                event,
                job: &active.job.name,
                release: Some(&active.release),
                run: Some(&self.run),
                of: Some(active.started),
                detail,
            },
        );
        active.lock.release();
        appended.map(|_| ()).map_err(err)
    }
}

/// Writes `entry`'s release (its source tree with its artifact on top) into snapshot `name`;
/// returns the directory and the files in it.
pub fn materialize(
    repo: &Repo,
    name: &str,
    entry: &ledger::Entry,
) -> Result<(PathBuf, Vec<FileEntry>), String> {
    let mut files: BTreeMap<String, FileEntry> = BTreeMap::new();
    for dir in ["source", "artifact"] {
        for file in repo.files_under(entry.commit, dir).map_err(err)? {
            files.insert(file.path.clone(), file);
        }
    }
    let entries: Vec<FileEntry> = files.into_values().collect();
    let snapshot = Snapshot::new(repo, &format!("deploy-{name}"));
    snapshot.sync(repo, &entries).map_err(err)?;
    Ok((snapshot.dir, entries))
}

/// The live release `release` is older than, if it is: `Some(description)` when the live
/// commit contains the release's commit and is not that commit.
fn superseded(repo: &Repo, release: &Release, live: Option<&ledger::Entry>) -> Option<String> {
    let commit = release.commit?;
    let live_entry = live?;
    let live_commit = ObjectId::from_hex(live_entry.record.commit.as_ref()?.as_bytes()).ok()?;
    if live_commit == commit || !repo.has_object(live_commit) {
        return None;
    }
    repo.is_ancestor(commit, live_commit)
        .ok()?
        .then(|| format!("#{} ({})", live_entry.record.seq, short(Some(live_commit))))
}

pub fn short(commit: Option<ObjectId>) -> String {
    match commit {
        Some(c) => c.to_string()[..12].to_owned(),
        None => "the working tree".to_owned(),
    }
}

pub fn short_hex(commit: Option<&str>) -> String {
    match commit {
        Some(c) => c[..c.len().min(12)].to_owned(),
        None => "no commit".to_owned(),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}
