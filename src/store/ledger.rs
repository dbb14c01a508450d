//! The deployment ledger: one chain of commits per environment at `refs/weir/deploy/<env>`,
//! each entry's parent the entry before it. An entry's tree holds `entry` (what happened, as
//! JSON) and, for an entry about a release, `source/` (the deployed commit's tree) and
//! `artifact/` (the outputs of the jobs the deploy needs), so any entry can be deployed again.
//! Appends are compare-and-swap transactions, retried on a race: never last-writer-wins.

use std::collections::BTreeMap;
use std::time::SystemTime;

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use super::to_json;
use crate::git::{self, Repo, TreeEntry};

pub const PREFIX: &str = "refs/weir/deploy/";
/// The version of the entry format, bumped on incompatible changes.
const FORMAT: u32 = 1;
/// Appends lost to a concurrent writer before giving up.
const ATTEMPTS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ledger entry {commit} of `{environment}` is unreadable: {reason}")]
    Unreadable {
        environment: String,
        commit: ObjectId,
        reason: String,
    },
    #[error("could not append to the ledger of `{0}`: other writers kept moving it")]
    Contended(String),
    #[error("`{environment}` has no ledger entry `{query}`")]
    NoEntry { environment: String, query: String },
    #[error(transparent)]
    Git(#[from] git::Error),
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// A deploy (or a redeploy by `weir rollback`) began; its outcome follows in a later entry.
    Started,
    /// The release is live.
    Succeeded,
    /// The deploy or its health check failed; `detail` says whether it was rolled back.
    Failed,
    /// Stopped by Ctrl-C.
    Cancelled,
    /// The process deploying died; recorded by `weir unlock`.
    Interrupted,
    /// Not deployed: a newer release was already live, or replaced it while it waited.
    Superseded,
    /// Waits for `weir approve`.
    AwaitingApproval,
    Approved,
    Rejected,
    /// `weir rollback` redeployed an earlier entry's release, which is live again.
    RolledBack,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Succeeded => "succeeded",
            Event::Failed => "failed",
            Event::Cancelled => "cancelled",
            Event::Interrupted => "interrupted",
            Event::Superseded => "superseded",
            Event::AwaitingApproval => "awaiting-approval",
            Event::Approved => "approved",
            Event::Rejected => "rejected",
            Event::RolledBack => "rolled-back",
        }
    }

    /// Whether the entry's release is live after it.
    pub fn makes_live(self) -> bool {
        matches!(self, Event::Succeeded | Event::RolledBack)
    }

    /// Whether the entry closes a `started` one.
    pub fn is_outcome(self) -> bool {
        matches!(
            self,
            Event::Succeeded
                | Event::Failed
                | Event::Cancelled
                | Event::Interrupted
                | Event::RolledBack
        )
    }
}

/// The `entry` file of a ledger commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    /// Position in the chain, from 1.
    pub seq: u64,
    pub environment: String,
    pub event: Event,
    /// The deploy job.
    pub job: String,
    /// The commit the release was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The keys of the jobs the deploy needs, by job: which artifact this is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, String>,
    /// The git identity of whoever did it.
    pub who: String,
    /// RFC 3339, UTC.
    pub when: String,
    /// The run that did it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The entry this one answers: the `started` entry an outcome closes, the waiting entry an
    /// approval or rejection is for, the entry a rollback redeployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<u64>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a release is: the commit it came from and the artifact that was built for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub commit: Option<ObjectId>,
    pub artifacts: BTreeMap<String, String>,
    /// The tree of `commit`, stored as `source/` so that the release can be deployed again.
    pub source: Option<ObjectId>,
    /// What goes under `artifact/`.
    pub files: Vec<ArtifactFile>,
}

/// One file of an artifact: from the workspace, or already in the object database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactFile {
    Disk {
        path: String,
        abs: std::path::PathBuf,
        mode: git::FileMode,
    },
    Stored {
        path: String,
        mode: u32,
        id: ObjectId,
    },
}

/// One entry of a ledger, as read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub commit: ObjectId,
    pub record: Record,
}

/// What to append: everything but the chain position and the time, which the ledger sets.
#[derive(Debug, Clone)]
pub struct NewRecord<'a> {
    pub event: Event,
    pub job: &'a str,
    pub release: Option<&'a Release>,
    pub run: Option<&'a str>,
    pub of: Option<u64>,
    pub detail: Option<String>,
}

pub fn refname(environment: &str) -> String {
    format!("{PREFIX}{environment}")
}

/// The ledgers of one repository.
pub struct Ledger<'a> {
    repo: &'a Repo,
}

impl<'a> Ledger<'a> {
    pub fn new(repo: &'a Repo) -> Ledger<'a> {
        Ledger { repo }
    }

    /// The environments that have a ledger, sorted.
    pub fn environments(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .repo
            .refs_under(PREFIX)?
            .into_iter()
            .map(|(name, _)| name[PREFIX.len()..].to_owned())
            .collect())
    }

    /// Appends an entry to `environment`'s ledger; returns it.
    pub fn append(&self, environment: &str, new: &NewRecord<'_>) -> Result<Entry, Error> {
        let refname = refname(environment);
        let who = self.repo.identity();
        for _ in 0..ATTEMPTS {
            let tip = self.repo.find_ref(&refname)?;
            let seq = match tip {
                Some(tip) => self.read(environment, tip)?.seq + 1,
                None => 1,
            };
            let record = Record {
                format: FORMAT,
                seq,
                environment: environment.to_owned(),
                event: new.event,
                job: new.job.to_owned(),
                commit: new.release.and_then(|r| r.commit).map(|c| c.to_string()),
                artifacts: new.release.map(|r| r.artifacts.clone()).unwrap_or_default(),
                who: who.clone(),
                when: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                run: new.run.map(str::to_owned),
                of: new.of,
                detail: new.detail.clone(),
            };
            let mut files = vec![TreeEntry::bytes("entry", to_json(&record))];
            if let Some(release) = new.release {
                if let Some(source) = release.source {
                    files.push(TreeEntry::Object {
                        path: "source".to_owned(),
                        mode: 0o40000,
                        id: source,
                    });
                }
                for file in &release.files {
                    files.push(match file {
                        ArtifactFile::Disk { path, abs, mode } => TreeEntry::File {
                            path: format!("artifact/{path}"),
                            abs: abs.clone(),
                            mode: *mode,
                        },
                        ArtifactFile::Stored { path, mode, id } => TreeEntry::Object {
                            path: format!("artifact/{path}"),
                            mode: *mode,
                            id: *id,
                        },
                    });
                }
            }
            let short = record
                .commit
                .as_deref()
                .map_or("", |c| &c[..c.len().min(12)]);
            let message = format!(
                "weir deploy {environment} #{seq}: {} {short}\n",
                record.event.as_str()
            );
            match self.repo.append_commit_ref(&refname, &files, &message, tip) {
                Ok(commit) => return Ok(Entry { commit, record }),
                Err(git::Error::RefExists(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(Error::Contended(environment.to_owned()))
    }

    /// Every entry of `environment`'s ledger, newest first.
    pub fn entries(&self, environment: &str) -> Result<Vec<Entry>, Error> {
        let mut entries = Vec::new();
        let mut next = self.repo.find_ref(&refname(environment))?;
        while let Some(commit) = next {
            let record = self.read(environment, commit)?;
            next = self.repo.commit_parents(commit)?.first().copied();
            entries.push(Entry { commit, record });
        }
        Ok(entries)
    }

    /// The release an entry is about, as stored in it.
    pub fn release(&self, entry: &Entry) -> Result<Release, Error> {
        let commit = match &entry.record.commit {
            Some(hex) => {
                Some(
                    ObjectId::from_hex(hex.as_bytes()).map_err(|e| Error::Unreadable {
                        environment: entry.record.environment.clone(),
                        commit: entry.commit,
                        reason: format!("bad commit id: {e}"),
                    })?,
                )
            }
            None => None,
        };
        let source = self.repo.subtree(entry.commit, "source")?;
        let files = self
            .repo
            .tree_items(entry.commit, "artifact")?
            .into_iter()
            .map(|item| ArtifactFile::Stored {
                path: item.path,
                mode: item.mode,
                id: item.id,
            })
            .collect();
        Ok(Release {
            commit,
            artifacts: entry.record.artifacts.clone(),
            source,
            files,
        })
    }

    /// Checks the chain of `environment`: every entry readable and of this environment, numbered
    /// 1, 2, 3… from the first, with one parent each (none for the first), answering only
    /// entries before it, and with every object it names present. Returns the problems found.
    pub fn verify(&self, environment: &str) -> Result<(usize, Vec<String>), Error> {
        let mut problems = Vec::new();
        let mut chain = Vec::new();
        let mut next = self.repo.find_ref(&refname(environment))?;
        while let Some(commit) = next {
            let parents = self.repo.commit_parents(commit)?;
            if parents.len() > 1 {
                problems.push(format!("{commit}: has {} parents, not one", parents.len()));
            }
            match self.read(environment, commit) {
                Ok(record) => chain.push((commit, record, parents.is_empty())),
                Err(err) => problems.push(err.to_string()),
            }
            next = parents.first().copied();
        }
        let count = chain.len();
        chain.reverse();
        for (position, (commit, record, root)) in chain.iter().enumerate() {
            let expected = position as u64 + 1;
            if record.seq != expected {
                problems.push(format!(
                    "{commit}: numbered #{}, but it is entry #{expected} of the chain",
                    record.seq
                ));
            }
            if *root != (position == 0) {
                problems.push(format!("#{}: the chain is broken here", record.seq));
            }
            if record.environment != environment {
                problems.push(format!(
                    "#{}: recorded for environment `{}`",
                    record.seq, record.environment
                ));
            }
            if let Some(of) = record.of
                && of >= record.seq
            {
                problems.push(format!(
                    "#{}: answers #{of}, which is not an earlier entry",
                    record.seq
                ));
            }
            for item in self.repo.tree_items(*commit, "")? {
                if !self.repo.has_object(item.id) {
                    problems.push(format!(
                        "#{}: `{}` ({}) is missing from the object database",
                        record.seq, item.path, item.id
                    ));
                }
            }
        }
        Ok((count, problems))
    }

    /// The entry of `environment` that `query` names: its number (`3` or `#3`) or a prefix of
    /// its commit id.
    pub fn find(&self, environment: &str, query: &str) -> Result<Entry, Error> {
        let entries = self.entries(environment)?;
        let number = query.strip_prefix('#').unwrap_or(query).parse::<u64>().ok();
        entries
            .into_iter()
            .find(|e| {
                Some(e.record.seq) == number
                    || (query.len() >= 4 && e.commit.to_string().starts_with(query))
            })
            .ok_or_else(|| Error::NoEntry {
                environment: environment.to_owned(),
                query: query.to_owned(),
            })
    }

    fn read(&self, environment: &str, commit: ObjectId) -> Result<Record, Error> {
        let unreadable = |reason: String| Error::Unreadable {
            environment: environment.to_owned(),
            commit,
            reason,
        };
        let bytes = self
            .repo
            .read_file(commit, "entry")?
            .ok_or_else(|| unreadable("it has no `entry` file".to_owned()))?;
        serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))
    }
}

/// The state of an environment, read from its ledger (newest first).
#[derive(Debug, Clone, Default)]
pub struct State<'e> {
    /// The entry whose release is live.
    pub live: Option<&'e Entry>,
    /// The release waiting for approval, if one does.
    pub waiting: Option<&'e Entry>,
    /// A `started` entry with no outcome yet: a deploy in progress, or one that was interrupted.
    pub unfinished: Option<&'e Entry>,
}

impl<'e> State<'e> {
    pub fn of(entries: &'e [Entry]) -> State<'e> {
        let answered = |seq: u64, pred: &dyn Fn(Event) -> bool| {
            entries
                .iter()
                .any(|e| e.record.of == Some(seq) && pred(e.record.event))
        };
        let live = entries.iter().find(|e| e.record.event.makes_live());
        let waiting = entries
            .iter()
            .find(|e| e.record.event == Event::AwaitingApproval)
            .filter(|e| {
                !answered(e.record.seq, &|ev| {
                    matches!(ev, Event::Approved | Event::Rejected | Event::Superseded)
                })
            });
        let unfinished = entries
            .iter()
            .find(|e| e.record.event == Event::Started)
            .filter(|e| !answered(e.record.seq, &Event::is_outcome));
        State {
            live,
            waiting,
            unfinished,
        }
    }
}
