//! Ties keys and the cache store to the scheduler: for each planned job, which files it reads,
//! its manifest and key, whether a stored result can be restored, and storing new results.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::config::{CachePull, Job, Pipeline};
use crate::exec::{Before, Keys};
use crate::git::{Entry, IndexSnapshot, Query, Repo, StatCache};
use crate::key::{Globs, Input, Manifest, diff};
use crate::store::cache::{self, Cache, NewEntry};

/// How a run uses the cache.
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// Run every job even when a result is stored (and store the new one).
    pub no_cache: bool,
    /// Say why each miss missed.
    pub explain: bool,
}

/// Which files a job reads.
enum Inputs {
    /// Every tracked file (no `inputs` key).
    Tracked,
    Globs(Globs),
    /// Exactly these paths: a pre-commit job's selected staged files.
    Exact(Vec<String>),
}

/// Where a run's jobs read their files.
pub enum Workspace {
    /// The working tree, keyed through the index's stat data.
    Worktree,
    /// A snapshot directory synced to these entries; `root` is the pipeline root inside it.
    Snapshot {
        root: PathBuf,
        dir: PathBuf,
        entries: Vec<Entry>,
    },
}

/// One planned job, as the engine sees it.
pub struct JobSpec {
    pub name: String,
    base: Manifest,
    inputs: Inputs,
    fix: bool,
    outputs: Globs,
    key_cmd: Option<String>,
    cwd: PathBuf,
    env: Vec<(String, std::ffi::OsString)>,
    shell: PathBuf,
    cache: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid glob in job `{job}`")]
    Glob {
        job: String,
        #[source]
        source: globset::Error,
    },
    #[error(transparent)]
    Git(#[from] crate::git::Error),
}

pub struct Engine {
    repo: Mutex<Repo>,
    root: PathBuf,
    index: IndexSnapshot,
    jobs: Vec<JobSpec>,
    options: CacheOptions,
    /// The remote to fetch a missing key from, when `[cache] pull = "on-miss"`.
    pull_from: Option<String>,
    /// Content ids of outputs, trusted while their stat data is unchanged.
    /// Loaded on first use: a run whose jobs have no outputs never needs it.
    stats: OnceLock<StatCache>,
    /// Each job's manifest as of `before`, stored with its result by `after`: what the job's
    /// key was computed from, even if the job changes its inputs while it runs.
    manifests: Mutex<Vec<Option<String>>>,
}

impl JobSpec {
    /// `shell`, `cwd` and `env` are what the job runs with (see `cli::run`).
    pub fn new(
        job: &Job,
        shell: PathBuf,
        cwd: PathBuf,
        env: Vec<(String, std::ffi::OsString)>,
        pipeline_env: &std::collections::BTreeMap<String, String>,
    ) -> Result<JobSpec, Error> {
        let glob_err = |source| Error::Glob {
            job: job.name.clone(),
            source,
        };
        let mut declared = pipeline_env.clone();
        declared.extend(job.env.clone());
        Ok(JobSpec {
            name: job.name.clone(),
            base: Manifest {
                job: job.name.clone(),
                shell: "sh".to_owned(),
                dir: job.dir.to_string_lossy().into_owned(),
                steps: job.steps.clone(),
                env: declared,
                secrets: Vec::new(),
                needs: Default::default(),
                platform: Manifest::this_platform(),
                extra: job.key.clone(),
                inputs: Vec::new(),
            },
            inputs: match &job.inputs {
                None => Inputs::Tracked,
                Some(globs) => Inputs::Globs(Globs::new(globs).map_err(glob_err)?),
            },
            fix: job.fix,
            outputs: Globs::new(&job.outputs).map_err(glob_err)?,
            key_cmd: job.key_cmd.clone(),
            cwd,
            env,
            shell,
            cache: job.cache,
        })
    }
}

impl JobSpec {
    /// Keys the job by exactly these files (paths relative to the pipeline root) when it
    /// declares no `inputs`: a linter given the staged files it checks.
    pub fn read_exactly(&mut self, files: Vec<String>) {
        if matches!(self.inputs, Inputs::Tracked) {
            self.inputs = Inputs::Exact(files);
        }
    }
}

impl Engine {
    pub fn new(
        repo: Repo,
        pipeline: &Pipeline,
        workspace: Workspace,
        jobs: Vec<JobSpec>,
        options: CacheOptions,
    ) -> Result<Engine, Error> {
        let (index, root) = match workspace {
            Workspace::Worktree => (repo.index_snapshot()?, pipeline.root.clone()),
            Workspace::Snapshot { root, dir, entries } => {
                (IndexSnapshot::synced(&dir, &entries), root)
            }
        };
        let pull_from = (pipeline.cache.pull == CachePull::OnMiss).then(|| {
            pipeline
                .cache
                .remote
                .clone()
                .unwrap_or_else(|| "origin".to_owned())
        });
        Ok(Engine {
            repo: Mutex::new(repo),
            root,
            index,
            manifests: Mutex::new(vec![None; jobs.len()]),
            stats: OnceLock::new(),
            jobs,
            options,
            pull_from,
        })
    }

    fn stats(&self) -> &StatCache {
        self.stats.get_or_init(|| StatCache::load(&self.repo()))
    }

    fn repo(&self) -> Repo {
        lock(&self.repo).clone()
    }

    /// The manifest of job `job` given its needs' keys, as of now.
    pub fn manifest(&self, job: usize, needs: &[(String, String)]) -> Result<Manifest, String> {
        let spec = &self.jobs[job];
        let repo = self.repo();
        let mut manifest = spec.base.clone();
        manifest.needs = needs.iter().cloned().collect();
        let all = |_: &str| true;
        let files = match &spec.inputs {
            Inputs::Tracked => repo.files(
                &self.index,
                &self.root,
                &Query {
                    wanted: &all,
                    walk: &[],
                    explicit: &[],
                    within: None,
                },
            ),
            Inputs::Globs(globs) => {
                let wanted = |p: &str| globs.matches(p);
                let prefixes = globs.prefixes();
                repo.files(
                    &self.index,
                    &self.root,
                    &Query {
                        wanted: &wanted,
                        walk: globs.walk_dirs(),
                        explicit: globs.explicit(),
                        within: Some(&prefixes),
                    },
                )
            }
            Inputs::Exact(paths) => {
                let set: std::collections::HashSet<&str> =
                    paths.iter().map(String::as_str).collect();
                let wanted = |p: &str| set.contains(p);
                repo.files(
                    &self.index,
                    &self.root,
                    &Query {
                        wanted: &wanted,
                        walk: &[],
                        explicit: paths,
                        within: Some(paths),
                    },
                )
            }
        }
        .map_err(|e| format!("cannot read the inputs: {e}"))?;
        manifest.inputs = files
            .into_iter()
            .map(|f| Input {
                path: f.path,
                mode: f.mode.as_octal().to_owned(),
                id: f.id.to_string(),
            })
            .collect();
        if let Some(cmd) = &spec.key_cmd {
            manifest
                .extra
                .push(format!("key_cmd: {}", self.key_cmd(spec, cmd)?));
        }
        Ok(manifest)
    }

    fn key_cmd(&self, spec: &JobSpec, cmd: &str) -> Result<String, String> {
        let output = Command::new(&spec.shell)
            .arg("-c")
            .arg(cmd)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("`key_cmd` could not start: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "`key_cmd` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// What changed since the newest stored result of `job`, or why there is nothing to compare.
    pub fn explain(&self, job: usize, manifest: &Manifest) -> Vec<String> {
        let repo = self.repo();
        let cache = Cache::new(&repo);
        let previous = cache
            .newest(&self.jobs[job].name)
            .ok()
            .flatten()
            .and_then(|entry| cache.manifest(entry.commit).ok().flatten());
        match previous.map(|text| Manifest::parse(&text)) {
            None => vec!["no result of this job is stored yet".to_owned()],
            Some(Err(e)) => vec![format!("the newest stored manifest is unreadable: {e}")],
            Some(Ok(old)) => {
                let changes = diff(&old, manifest);
                if changes.is_empty() {
                    vec!["same manifest as the newest stored result".to_owned()]
                } else {
                    changes
                }
            }
        }
    }

    /// Whether `job`'s key has a stored result (fetching it first if so configured).
    pub fn lookup(&self, job: usize, key: &str) -> Result<Option<gix::ObjectId>, String> {
        let repo = self.repo();
        let cache = Cache::new(&repo);
        let name = &self.jobs[job].name;
        let found = cache.lookup(name, key).map_err(|e| e.to_string())?;
        if found.is_some() {
            return Ok(found);
        }
        if let Some(remote) = &self.pull_from {
            let refname = cache::refname(name, key);
            // A remote without the key is an ordinary miss.
            if repo
                .fetch(remote, &[format!("+{refname}:{refname}")])
                .is_ok()
            {
                return cache.lookup(name, key).map_err(|e| e.to_string());
            }
        }
        Ok(None)
    }
}

impl Keys for Engine {
    fn before(&self, job: usize, needs: &[(String, String)]) -> Result<Before, String> {
        let spec = &self.jobs[job];
        let manifest = self.manifest(job, needs)?;
        let key = manifest.key();
        if !spec.cache {
            return Ok(Before::Run {
                key,
                store: false,
                explain: None,
                notes: Vec::new(),
            });
        }
        let mut notes = Vec::new();
        if !self.options.no_cache
            && let Some(commit) = self.lookup(job, &key)?
        {
            let repo = self.repo();
            let restored =
                Cache::new(&repo).restore(&spec.name, &key, commit, &self.root, self.stats());
            match restored {
                Ok(restored) => {
                    return Ok(Before::Hit {
                        key,
                        restored: restored.written,
                    });
                }
                Err(err @ cache::Error::Unsafe { .. }) => {
                    notes.push(format!("{err}; running the job instead"));
                }
                Err(err) => return Err(err.to_string()),
            }
        }
        let explain = self.options.explain.then(|| self.explain(job, &manifest));
        if let Some(slot) = lock(&self.manifests).get_mut(job) {
            *slot = Some(manifest.encode());
        }
        Ok(Before::Run {
            key,
            store: true,
            explain,
            notes,
        })
    }

    fn after(&self, job: usize, key: &str, log: &[u8], duration: Duration) -> Result<(), String> {
        let spec = &self.jobs[job];
        if spec.fix
            && self.index.is_synced()
            && !self.changed_files().map_err(|e| e.to_string())?.is_empty()
        {
            // A fixer that changed files has not passed this content: it must run again next
            // time, or its fix would be skipped.
            return Ok(());
        }
        let repo = self.repo();
        let outputs = &spec.outputs;
        let wanted = |p: &str| outputs.matches(p);
        let mut paths = repo
            .output_paths(&self.root, outputs.walk_dirs(), &wanted)
            .map_err(|e| e.to_string())?;
        paths.extend(outputs.explicit().iter().cloned());
        paths.sort();
        paths.dedup();
        let mut files = Vec::with_capacity(paths.len());
        for path in &paths {
            if let Some(file) = self
                .stats()
                .file_id(&self.root, path)
                .map_err(|e| e.to_string())?
            {
                files.push(file);
            }
        }
        let manifest = lock(&self.manifests)
            .get_mut(job)
            .and_then(Option::take)
            .ok_or("the job's manifest is gone")?;
        Cache::new(&repo)
            .store(&NewEntry {
                job: &spec.name,
                key,
                manifest: &manifest,
                log,
                duration,
                root: &self.root,
                outputs: &files,
                replace: self.options.no_cache,
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl Engine {
    /// Files of the tree the run started from whose content now differs: what fixers changed.
    /// Only meaningful for a synced snapshot, where every file's original id is known.
    pub fn changed_files(&self) -> Result<Vec<crate::git::FileId>, crate::git::Error> {
        let mut changed = Vec::new();
        for (path, (mode, id)) in self.index.known() {
            match self.stats().file_id(&self.root_of_index(), path)? {
                Some(now) if now.mode == mode && now.id == id => {}
                Some(now) => changed.push(now),
                // A deleted file is not a fix weir applies.
                None => {}
            }
        }
        Ok(changed)
    }

    fn root_of_index(&self) -> PathBuf {
        self.index.root().to_path_buf()
    }

    /// Saves what the run learnt about files' content ids; losing it only costs hashing again.
    pub fn finish(&self) {
        if let Some(stats) = self.stats.get()
            && let Err(err) = stats.save()
        {
            tracing::debug!(%err, "could not save the stat cache");
        }
    }
}

/// A poisoned lock only means another job panicked; the data behind it is still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
