//! Ties keys and the cache store to the scheduler: for each planned job, which files it reads,
//! its manifest and key, whether a stored result can be restored, reading its secrets when it is
//! about to run, and storing new results (never one whose outputs hold a secret value).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::config::{CachePull, Job, Pipeline, SecretSource};
use crate::deploy::{Artifact, DeployJob, Deploys};
use crate::exec::{self, Before, Finished, JobSecrets, Keys, Patterns, Recovery, Secret, Stored};
use crate::git::{
    Deferred, Entry, IndexSnapshot, Memo, Query, Reads, Recalled, Remembered, Repo, StatAt,
    StatCache,
};
use crate::key::{Globs, Input, Manifest, diff};
use crate::store::cache::{self, Cache, NewEntry};
use crate::store::ledger::ArtifactFile;
use crate::sync::lock;
use crate::workspace::{Touched, Tracker, Watch};

/// How a run uses the cache.
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// Run every job even when a result is stored (and store the new one).
    pub no_cache: bool,
    /// Say why each miss missed.
    pub explain: bool,
    /// Uncached jobs known to have passed with these keys (by job name) earlier in this process
    /// (the watcher): the same key again counts as a hit instead of running them again.
    pub unchanged: BTreeMap<String, String>,
    /// Manifests already computed for this run (by job name; the watcher computes them to
    /// decide what to run): used when a job's needs have the keys they were computed with.
    pub manifests: BTreeMap<String, Manifest>,
    /// Take hits from, and keep them in, the memo of the last hits (see [`Memo`]): for
    /// `weir run` in the working tree.
    pub remember: bool,
    /// That memo's work, started early.
    pub early: Option<Early>,
    /// Keys (by job name) of hits known before the run, whose entries were checked: a
    /// pre-commit hook repeating a run whose every job hit.
    pub known: BTreeMap<String, String>,
    /// Queue the entries that can wait, to be written after the process ends (see
    /// [`Engine::take_deferred`]): for a pre-commit hook, whose verdict git waits for.
    pub defer: bool,
}

/// Each of `jobs`' remembered hits in `memo` whose paths are unchanged and whose cache entry is
/// still there: checked on as many threads as there are cores, since checking is mostly waiting
/// on `stat`.
fn recall(repo: &Repo, memo: &Memo, jobs: &[String]) -> HashMap<String, Recalled> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = |repo: &Repo| {
        let cache = Cache::new(repo);
        let mut found = Vec::new();
        loop {
            let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(job) = jobs.get(at) else {
                return found;
            };
            if let Some(recall) = memo.recall(job, repo.workdir())
                && cache.lookup(job, &recall.hit.key).ok() == Some(Some(recall.hit.commit))
            {
                found.push((job.clone(), recall));
            }
        }
    };
    let threads = crate::sync::cores().min(jobs.len());
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .map(|_| {
                let repo = repo.clone();
                crate::sync::spawn_scoped_apart(scope, move || work(&repo))
            })
            .collect();
        let mine = work(repo);
        helpers
            .into_iter()
            .filter_map(|h| h.join().ok())
            .chain([mine])
            .flatten()
            .collect()
    })
}

/// A `weir run`'s memo work, started before its pipeline is loaded: the index read, the memo
/// loaded and every remembered hit checked, on threads of its own (see [`Memo`]). The engine
/// takes what it found.
#[derive(Debug, Clone)]
pub struct Early(Arc<Mutex<Option<std::thread::JoinHandle<Option<EarlyRead>>>>>);

struct EarlyRead {
    index: IndexSnapshot,
    memo: Memo,
    recalled: HashMap<String, Recalled>,
}

impl Early {
    pub fn start(repo: &Repo) -> Early {
        let repo = repo.clone();
        let now = std::time::SystemTime::now();
        let builder = std::thread::Builder::new().name("memo".to_owned());
        let thread = crate::sync::spawn_apart(builder, move || {
            let index = repo.index_snapshot().ok()?;
            let memo = Memo::load(&repo, &index, now);
            let jobs: Vec<String> = memo.jobs().map(str::to_owned).collect();
            let recalled = recall(&repo, &memo, &jobs);
            Some(EarlyRead {
                index,
                memo,
                recalled,
            })
        })
        .ok();
        Early(Arc::new(Mutex::new(thread)))
    }

    fn take(&self) -> Option<EarlyRead> {
        lock(&self.0).take()?.join().ok().flatten()
    }
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
    /// With `watch`, what jobs touch there is watched, for the next sync.
    Snapshot {
        root: PathBuf,
        dir: PathBuf,
        entries: Vec<Entry>,
        watch: Option<Watch>,
    },
}

/// One planned job, as the engine sees it.
pub struct JobSpec {
    pub name: String,
    base: Manifest,
    inputs: Inputs,
    /// What, besides the manifest, decides which files the job reads and which it stores
    /// (its globs), when a hit of the job can be remembered (see [`Memo`]).
    memo: Option<String>,
    fix: bool,
    outputs: Globs,
    key_cmd: Option<String>,
    cwd: PathBuf,
    env: Vec<(String, std::ffi::OsString)>,
    shell: PathBuf,
    cache: bool,
    /// For a deploy job: what deploying needs.
    deploy: Option<DeployJob>,
    /// The secrets the job lists, with where each is read from.
    secrets: Vec<(String, SecretSource)>,
    /// The pipeline root, which secret files are relative to (a snapshot has none of them).
    secrets_root: PathBuf,
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
    /// Handles made from `repo` and no longer in use (see [`Engine::repo`]).
    idle: Mutex<Vec<Repo>>,
    root: PathBuf,
    index: IndexSnapshot,
    jobs: Vec<JobSpec>,
    options: CacheOptions,
    /// The remote to fetch a missing key from, when `[cache] pull = "on-miss"`.
    pull_from: Option<String>,
    /// Content ids of outputs, trusted while their stat data is unchanged, and the listings
    /// of cache entries: what every hit reads. Loaded on first use.
    stats: OnceLock<StatCache>,
    /// The stat cache being loaded on a thread of its own while a run in the working tree
    /// starts, when a hit is possible.
    loading: Mutex<Option<std::thread::JoinHandle<StatCache>>>,
    /// Each job's manifest as of `before`, stored with its result by `after`: what the job's
    /// key was computed from, even if the job changes its inputs while it runs.
    pending: Mutex<Vec<Option<Pending>>>,
    /// Every secret value read in this run, and the patterns that mask them all.
    revealed: Mutex<Revealed>,
    /// The run's deploy jobs: locks held, ledger entries started.
    deploys: Deploys,
    /// The pipeline root relative to the repository root: where artifact paths start.
    root_in_repo: PathBuf,
    /// The key of each job computed so far, by name: the keys a deploy's artifact records.
    keys: Mutex<BTreeMap<String, String>>,
    /// In a snapshot: what the jobs touch there.
    touch: Option<Touch>,
    /// The jobs that last hit in the working tree, for a run that can hit there.
    memo: Option<Memo>,
    /// By job: its remembered hit, when nothing it read has changed and the entry is there.
    recalled: Vec<Option<Recalled>>,
    /// With [`CacheOptions::defer`]: the entries to write once the run is over.
    deferred: Option<Mutex<Deferred>>,
}

/// A repository handle borrowed from an engine's pool, returned when dropped.
struct Pooled<'a> {
    repo: Option<Repo>,
    idle: &'a Mutex<Vec<Repo>>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Repo;

    fn deref(&self) -> &Repo {
        // Only `drop` takes it.
        self.repo
            .as_ref()
            .expect("a pooled handle holds its repository until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(repo) = self.repo.take() {
            lock(self.idle).push(repo);
        }
    }
}

/// What a run's jobs touch in a snapshot, watched from when the first of them starts (a run of
/// cache hits touches nothing and watches nothing).
struct Touch {
    dir: PathBuf,
    watch: Watch,
    state: Mutex<Touching>,
}

enum Touching {
    /// Nothing has run in the snapshot.
    Quiet,
    Watching(Tracker),
    /// Something may have changed it unwatched.
    Unknown,
}

impl Touch {
    /// A job is about to run in the snapshot, which holds the files of `index`.
    fn job_starts(&self, index: &IndexSnapshot) {
        let mut state = lock(&self.state);
        if matches!(*state, Touching::Quiet) {
            self.watch.invalidate();
            let started = std::time::Instant::now();
            *state = match Tracker::start(&self.dir, index.known().map(|(path, _)| path)) {
                Ok(tracker) => Touching::Watching(tracker),
                Err(err) => {
                    tracing::debug!(%err, "cannot watch the snapshot");
                    Touching::Unknown
                }
            };
            tracing::debug!(elapsed = ?started.elapsed(), "watching the snapshot");
        }
    }

    /// Files were written into the snapshot (a restore), whether or not a tracker saw it.
    fn written(&self) {
        self.watch.invalidate();
        if let Touching::Watching(tracker) =
            std::mem::replace(&mut *lock(&self.state), Touching::Unknown)
        {
            // Closed without waiting for the kernel; what it saw no longer matters.
            drop(tracker.finish());
        }
    }

    fn finish(&self) -> Option<Touched> {
        match std::mem::replace(&mut *lock(&self.state), Touching::Unknown) {
            Touching::Quiet => Some(Touched::default()),
            Touching::Watching(tracker) => tracker.finish(),
            Touching::Unknown => None,
        }
    }
}

/// What `after` needs from `before` for a job that runs.
struct Pending {
    manifest: String,
    /// The secrets its outputs must not hold.
    mask: Option<Arc<Patterns>>,
}

#[derive(Default)]
struct Revealed {
    secrets: Vec<Secret>,
    mask: Option<Arc<Patterns>>,
}

impl JobSpec {
    /// `shell`, `cwd` and `env` are what the job runs with (see `cli::run`).
    pub fn new(
        job: &Job,
        shell: PathBuf,
        cwd: PathBuf,
        env: Vec<(String, std::ffi::OsString)>,
        pipeline: &Pipeline,
    ) -> Result<JobSpec, Error> {
        let glob_err = |source| Error::Glob {
            job: job.name.clone(),
            source,
        };
        let mut declared = pipeline.env.clone();
        declared.extend(job.env.clone());
        let secrets: Vec<(String, SecretSource)> = job
            .secrets
            .iter()
            .filter_map(|name| Some((name.clone(), pipeline.secrets.get(name)?.clone())))
            .collect();
        let mut secret_names = job.secrets.clone();
        secret_names.sort();
        Ok(JobSpec {
            name: job.name.clone(),
            base: Manifest {
                job: job.name.clone(),
                shell: "sh".to_owned(),
                dir: job.dir.to_string_lossy().into_owned(),
                steps: job.steps.clone(),
                env: declared,
                secrets: secret_names,
                needs: Default::default(),
                platform: Manifest::this_platform(),
                extra: job.key.clone(),
                inputs: Vec::new(),
            },
            inputs: match &job.inputs {
                None => Inputs::Tracked,
                Some(globs) => Inputs::Globs(Globs::new(globs).map_err(glob_err)?),
            },
            // A `key_cmd` prints what it likes, and deploy jobs never hit.
            memo: (job.cache && job.key_cmd.is_none() && job.environment.is_none())
                .then(|| format!("inputs {:?}\noutputs {:?}\n", job.inputs, job.outputs)),
            fix: job.fix,
            outputs: Globs::new(&job.outputs).map_err(glob_err)?,
            key_cmd: job.key_cmd.clone(),
            cwd,
            env,
            shell,
            cache: job.cache,
            deploy: job.environment.as_ref().map(|environment| DeployJob {
                name: job.name.clone(),
                environment: environment.clone(),
                approval: job.deploy.approval,
                steps: job.steps.clone(),
                dir: job.dir.clone(),
                upstream: Vec::new(),
            }),
            secrets,
            secrets_root: pipeline.root.clone(),
        })
    }
}

impl JobSpec {
    /// Keys the job by exactly these files (paths relative to the pipeline root) when it
    /// declares no `inputs`: a linter given the staged files it checks.
    pub fn read_exactly(&mut self, files: Vec<String>) {
        if matches!(self.inputs, Inputs::Tracked) {
            self.inputs = Inputs::Exact(files);
            self.memo = None;
        }
    }
}

impl Engine {
    pub fn new(
        repo: Repo,
        pipeline: &Pipeline,
        workspace: Workspace,
        mut jobs: Vec<JobSpec>,
        options: CacheOptions,
        deploys: Deploys,
    ) -> Result<Engine, Error> {
        // Where the pipeline root sits in the repository's tree, whichever copy of it runs.
        let root_in_repo = match &workspace {
            Workspace::Worktree => pipeline.root.strip_prefix(repo.workdir()),
            Workspace::Snapshot { root, dir, .. } => root.strip_prefix(dir),
        }
        .map(PathBuf::from)
        .unwrap_or_default();
        for deploy in jobs.iter_mut().filter_map(|j| j.deploy.as_mut()) {
            deploy.dir = root_in_repo.join(&deploy.dir);
            deploy.upstream = upstream(pipeline, &deploy.name);
        }
        // A hook's run (in a snapshot) is a check or two with no outputs: a thread to read the
        // stat cache ahead costs it more than it saves.
        let in_worktree = matches!(workspace, Workspace::Worktree);
        let (early_index, early_memo) = match options.early.as_ref().and_then(Early::take) {
            Some(read) if in_worktree => (Some(read.index), Some((read.memo, read.recalled))),
            _ => (None, None),
        };
        let (index, root, touch) = match workspace {
            Workspace::Worktree => {
                let index = match early_index {
                    Some(index) => index,
                    None => repo.index_snapshot()?,
                };
                (index, pipeline.root.clone(), None)
            }
            Workspace::Snapshot {
                root,
                dir,
                entries,
                watch,
            } => {
                let index = IndexSnapshot::synced(&dir, entries);
                let touch = watch.map(|mut watch| {
                    let state = match watch.tracker.take() {
                        Some(tracker) => Touching::Watching(tracker),
                        None => Touching::Quiet,
                    };
                    Touch {
                        dir,
                        watch,
                        state: Mutex::new(state),
                    }
                });
                (index, root, touch)
            }
        };
        let pull_from = (pipeline.cache.pull == CachePull::OnMiss).then(|| {
            pipeline
                .cache
                .remote
                .clone()
                .unwrap_or_else(|| "origin".to_owned())
        });
        let hits_possible = !options.no_cache && jobs.iter().any(|j| j.cache && j.deploy.is_none());
        let (memo, recalled) = match (options.remember && in_worktree && hits_possible, early_memo)
        {
            (false, _) => (None, None),
            (true, Some((memo, recalled))) => (Some(memo), Some(recalled)),
            (true, None) => (
                Some(Memo::load(&repo, &index, std::time::SystemTime::now())),
                None,
            ),
        };
        if let Some(memo) = &memo {
            memo.retain(|job| pipeline.job(job).is_some());
        }
        // Reading it takes a while (a line per output file), and the first hit needs it,
        // unless the memo has every hit.
        let loading = (in_worktree && hits_possible && memo.as_ref().is_none_or(Memo::is_empty))
            .then(|| {
                let repo = repo.clone();
                let builder = std::thread::Builder::new().name("stat-cache".to_owned());
                crate::sync::spawn_apart(builder, move || StatCache::load_whole(&repo)).ok()
            })
            .flatten();
        let deferred = options.defer.then(Mutex::default);
        let mut engine = Engine {
            repo: Mutex::new(repo),
            idle: Mutex::new(Vec::new()),
            root,
            index,
            pending: Mutex::new((0..jobs.len()).map(|_| None).collect()),
            revealed: Mutex::default(),
            stats: OnceLock::new(),
            loading: Mutex::new(loading),
            jobs,
            options,
            pull_from,
            deploys,
            root_in_repo,
            keys: Mutex::new(BTreeMap::new()),
            touch,
            memo,
            recalled: Vec::new(),
            deferred,
        };
        let started = std::time::Instant::now();
        engine.recalled = match recalled {
            Some(mut found) => engine
                .jobs
                .iter()
                .map(|spec| spec.memo.as_ref().and(found.remove(&spec.name)))
                .collect(),
            None => engine.recall_planned(),
        };
        tracing::debug!(
            recalled = engine.recalled.iter().flatten().count(),
            elapsed = ?started.elapsed(),
            "checked the memo"
        );
        Ok(engine)
    }

    /// Each planned job's remembered hit, if it still holds (but for the job's needs' keys,
    /// which are known only as the run goes).
    fn recall_planned(&self) -> Vec<Option<Recalled>> {
        let Some(memo) = self.memo.as_ref().filter(|m| !m.is_empty()) else {
            return vec![None; self.jobs.len()];
        };
        let names: Vec<String> = self
            .jobs
            .iter()
            .filter(|spec| spec.memo.is_some() && memo.has(&spec.name))
            .map(|spec| spec.name.clone())
            .collect();
        let mut found = recall(&self.repo(), memo, &names);
        self.jobs
            .iter()
            .map(|spec| spec.memo.as_ref().and(found.remove(&spec.name)))
            .collect()
    }

    /// The entries queued with [`CacheOptions::defer`], once every job is over.
    pub fn take_deferred(&self) -> Option<Deferred> {
        Some(std::mem::take(&mut *lock(self.deferred.as_ref()?)))
    }

    /// In a snapshot, what the run's jobs touched there; `None` when that is not known (or the
    /// run was in the working tree). Call it once the run is over.
    pub fn touched(&self) -> Option<Touched> {
        self.touch.as_ref()?.finish()
    }

    fn stats(&self) -> &StatCache {
        self.stats.get_or_init(|| {
            let loading = lock(&self.loading).take();
            loading
                .and_then(|thread| thread.join().ok())
                .unwrap_or_else(|| StatCache::load(&self.repo()))
        })
    }

    /// A handle on the repository for this thread's use. Handles are kept for reuse: a new
    /// one (its object caches and zlib state) cost a 50-job run 150 clones.
    fn repo(&self) -> Pooled<'_> {
        let repo = lock(&self.idle)
            .pop()
            .unwrap_or_else(|| lock(&self.repo).clone());
        Pooled {
            repo: Some(repo),
            idle: &self.idle,
        }
    }

    /// The manifest of job `job` given its needs' keys, as of now.
    pub fn manifest(&self, job: usize, needs: &[(String, String)]) -> Result<Manifest, String> {
        self.manifest_reading(job, needs, None)
    }

    /// [`Engine::manifest`], recording in `reads` every path that decided the inputs.
    fn manifest_reading(
        &self,
        job: usize,
        needs: &[(String, String)],
        mut reads: Option<&mut Reads>,
    ) -> Result<Manifest, String> {
        let spec = &self.jobs[job];
        if let Some(known) = self.options.manifests.get(&spec.name)
            && known.needs.iter().eq(needs.iter().map(|(n, k)| (n, k)))
        {
            return Ok(known.clone());
        }
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
                reads.as_deref_mut(),
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
                    reads.as_deref_mut(),
                )
            }
            Inputs::Exact(paths) => repo.files(
                &self.index,
                &self.root,
                &Query {
                    wanted: &all,
                    walk: &[],
                    explicit: paths,
                    within: Some(&[]),
                },
                reads,
            ),
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
            // `key_cmd` runs without the job's secrets, but whatever it prints goes into a key
            // and a stored manifest: mask it with them (read here for that) and every other
            // value read so far.
            let mask = self.reveal(job)?.mask;
            let masked = |text: String| match &mask {
                Some(mask) => mask.mask_str(&text),
                None => text,
            };
            let output = self.key_cmd(spec, cmd).map_err(masked)?;
            manifest.extra.push(format!("key_cmd: {}", masked(output)));
        }
        Ok(manifest)
    }

    /// Reads job `job`'s secrets, as it is about to run: the variables it gets, and the
    /// patterns of every secret value read in the run so far, its own included.
    fn reveal(&self, job: usize) -> Result<JobSecrets, String> {
        let spec = &self.jobs[job];
        let mut revealed = lock(&self.revealed);
        let mut env = Vec::with_capacity(spec.secrets.len());
        let mut new = false;
        for (name, source) in &spec.secrets {
            let secret = exec::resolve_secret(name, source, &spec.secrets_root)
                .map_err(|e| e.to_string())?;
            env.push((name.clone(), secret.env_value()));
            if !revealed.secrets.iter().any(|s| s.value == secret.value) {
                revealed.secrets.push(secret);
                new = true;
            }
        }
        if new {
            let values = revealed.secrets.iter().map(|s| s.value.as_slice());
            revealed.mask = Some(Arc::new(Patterns::new(values)?));
        }
        Ok(JobSecrets {
            env,
            mask: revealed.mask.clone(),
        })
    }

    /// Job `job`'s manifest from `previous`, knowing that of the files it may read only
    /// `changed` did (paths relative to the pipeline root, each with whether git ignores it):
    /// what the watcher computes instead of reading every input again. Falls back to
    /// [`Engine::manifest`] for a job whose inputs or key it cannot update this way (every
    /// tracked file, which the index decides; a `key_cmd`).
    pub fn manifest_after(
        &self,
        job: usize,
        needs: &[(String, String)],
        previous: &Manifest,
        changed: &[(String, bool)],
    ) -> Result<Manifest, String> {
        let spec = &self.jobs[job];
        let Inputs::Globs(globs) = &spec.inputs else {
            return self.manifest(job, needs);
        };
        if spec.key_cmd.is_some() {
            return self.manifest(job, needs);
        }
        let repo = self.repo();
        let mut manifest = previous.clone();
        manifest.needs = needs.iter().cloned().collect();
        let mut inputs: BTreeMap<String, Input> = std::mem::take(&mut manifest.inputs)
            .into_iter()
            .map(|i| (i.path.clone(), i))
            .collect();
        for (path, ignored) in changed {
            if self.root.join(path).is_dir() {
                // Its files are listed on their own.
                continue;
            }
            let now = repo
                .file_now(&self.root, path)
                .map_err(|e| format!("cannot read the inputs: {e}"))?;
            let Some(file) = now else {
                // Gone, or a directory: nothing of it, or under it if it was one, is read now.
                // A directory that appeared is walked by the watcher, its files listed.
                let under = format!("{path}/");
                inputs.retain(|p, _| p != path && !p.starts_with(&under));
                continue;
            };
            let wanted = globs.reads(path, *ignored);
            if wanted {
                inputs.insert(
                    path.clone(),
                    Input {
                        path: path.clone(),
                        mode: file.mode.as_octal().to_owned(),
                        id: file.id.to_string(),
                    },
                );
            } else {
                inputs.remove(path);
            }
        }
        manifest.inputs = inputs.into_values().collect();
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

    /// A hash of everything that decides `job`'s key besides the files it reads, given its
    /// needs' keys: what a remembered hit must have been decided with. `None` when the job's
    /// hits are not remembered.
    fn given(&self, job: usize, needs: &[(String, String)]) -> Option<String> {
        let spec = &self.jobs[job];
        let globs = spec.memo.as_ref()?;
        let mut base = spec.base.clone();
        base.needs = needs.iter().cloned().collect();
        let mut hasher = blake3::Hasher::new();
        hasher.update(concat!("weir ", env!("CARGO_PKG_VERSION"), "\n").as_bytes());
        hasher.update(self.root.as_os_str().as_encoded_bytes());
        hasher.update(b"\n");
        hasher.update(base.encode().as_bytes());
        hasher.update(globs.as_bytes());
        Some(hasher.finalize().to_hex().to_string())
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

impl Engine {
    /// What [`Keys::before`] answers, before the snapshot's watch hears of it.
    fn decide(&self, job: usize, needs: &[(String, String)]) -> Result<Before, String> {
        let spec = &self.jobs[job];
        if let Some(deploy) = &spec.deploy {
            return self.deploys.before(
                &self.repo(),
                job,
                deploy,
                || self.artifact(deploy),
                || self.reveal(job),
            );
        }
        if let Some(hit) = self.known(job, needs) {
            return Ok(hit);
        }
        let memo = self
            .memo
            .as_ref()
            .and_then(|memo| Some((memo, self.given(job, needs)?)));
        let mut reads = memo.as_ref().map(|_| Reads::under(&self.root_in_repo));
        let manifest = self.manifest_reading(job, needs, reads.as_mut())?;
        let key = manifest.key();
        lock(&self.keys).insert(spec.name.clone(), key.clone());
        if !spec.cache && self.options.unchanged.get(&spec.name) == Some(&key) {
            return Ok(Before::Hit { key, restored: 0 });
        }
        if !spec.cache {
            return Ok(Before::Run {
                key,
                store: false,
                explain: None,
                notes: Vec::new(),
                secrets: self.reveal(job)?,
            });
        }
        let mut notes = Vec::new();
        if !self.options.no_cache
            && let Some(commit) = self.lookup(job, &key)?
        {
            let repo = self.repo();
            let restored = Cache::new(&repo).restore(
                &spec.name,
                &key,
                commit,
                &self.root,
                self.stats(),
                reads.as_mut(),
            );
            match restored {
                Ok(restored) => {
                    if let Some(((memo, given), reads)) = memo.zip(reads) {
                        if restored.written == 0 {
                            let hit = Remembered {
                                key: key.clone(),
                                commit,
                            };
                            memo.remember(&spec.name, &given, &hit, reads);
                        } else {
                            // What it wrote is too new to trust until the next run.
                            memo.forget(&spec.name);
                        }
                    }
                    tracing::debug!(
                        job = %spec.name,
                        written = restored.written,
                        linked = restored.linked,
                        "restored"
                    );
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
        if let Some((memo, _)) = &memo {
            memo.forget(&spec.name);
        }
        let explain = self.options.explain.then(|| self.explain(job, &manifest));
        let secrets = self.reveal(job)?;
        if let Some(slot) = lock(&self.pending).get_mut(job) {
            *slot = Some(Pending {
                manifest: manifest.encode(),
                mask: secrets.mask.clone(),
            });
        }
        Ok(Before::Run {
            key,
            store: true,
            explain,
            notes,
            secrets,
        })
    }
}

impl Keys for Engine {
    fn known(&self, job: usize, needs: &[(String, String)]) -> Option<Before> {
        let spec = &self.jobs[job];
        if let Some(key) = self.options.known.get(&spec.name) {
            lock(&self.keys).insert(spec.name.clone(), key.clone());
            return Some(Before::Hit {
                key: key.clone(),
                restored: 0,
            });
        }
        let recalled = self.recalled.get(job)?.as_ref()?;
        if self.given(job, needs)? != recalled.given {
            return None;
        }
        tracing::debug!(job = %spec.name, "unchanged since it last hit");
        let key = recalled.hit.key.clone();
        lock(&self.keys).insert(spec.name.clone(), key.clone());
        Some(Before::Hit { key, restored: 0 })
    }

    fn before(&self, job: usize, needs: &[(String, String)]) -> Result<Before, String> {
        let before = self.decide(job, needs);
        if let Some(touch) = &self.touch {
            match &before {
                Ok(Before::Run { .. }) => touch.job_starts(&self.index),
                Ok(
                    Before::Hit { restored: 0, .. } | Before::Hold { .. } | Before::Later { .. },
                ) => {}
                // A restore wrote files, or may have before it failed.
                Ok(Before::Hit { .. }) | Err(_) => touch.written(),
            }
        }
        before
    }

    fn after(
        &self,
        job: usize,
        key: &str,
        log: &[u8],
        duration: Duration,
    ) -> Result<Stored, String> {
        let spec = &self.jobs[job];
        if spec.fix
            && self.index.is_synced()
            && !self.changed_files().map_err(|e| e.to_string())?.is_empty()
        {
            // A fixer that changed files has not passed this content: it must run again next
            // time, or its fix would be skipped.
            return Ok(Stored::Done);
        }
        let repo = self.repo();
        let files = self.outputs(&repo, spec)?;
        let Pending { manifest, mask } = lock(&self.pending)
            .get_mut(job)
            .and_then(Option::take)
            .ok_or("the job's manifest is gone")?;
        if let Some(mask) = mask {
            let holding = files_holding(&mask, &self.root, &files)?;
            if !holding.is_empty() {
                let (noun, verb) = if holding.len() == 1 {
                    ("output", "contains")
                } else {
                    ("outputs", "contain")
                };
                return Ok(Stored::Refused {
                    warning: format!(
                        "not cached: its {noun} {} {verb} a secret value",
                        holding.join(", ")
                    ),
                });
            }
        }
        let entry = NewEntry {
            job: &spec.name,
            key,
            manifest: &manifest,
            log,
            duration,
            root: &self.root,
            outputs: &files,
            replace: self.options.no_cache,
        };
        let queued = self
            .deferred
            .as_ref()
            .is_some_and(|later| Cache::store_later(&entry, &mut lock(later)));
        if !queued {
            Cache::new(&repo).store(&entry).map_err(|e| e.to_string())?;
        }
        self.keep_outputs(&repo, &files);
        Ok(Stored::Done)
    }

    fn recover(&self, job: usize) -> Result<Option<Recovery>, String> {
        self.deploys.recover(&self.repo(), job)
    }

    fn finished(&self, job: usize, end: &Finished) -> Result<(), String> {
        self.deploys.finished(&self.repo(), job, end)
    }
}

/// The paths of `files` (under `root`) whose content, or link target, matches `mask`.
fn files_holding(
    mask: &Patterns,
    root: &Path,
    files: &[crate::git::FileId],
) -> Result<Vec<String>, String> {
    use std::os::unix::ffi::OsStringExt;
    let mut holding = Vec::new();
    for file in files {
        let abs = root.join(&file.path);
        let cannot = |e: std::io::Error| format!("cannot read {}: {e}", abs.display());
        let found = if file.mode == crate::git::FileMode::Symlink {
            let target = std::fs::read_link(&abs).map_err(cannot)?;
            mask.found_in(&target.into_os_string().into_vec()[..])
        } else {
            mask.found_in(std::fs::File::open(&abs).map_err(cannot)?)
        }
        .map_err(cannot)?;
        if found {
            holding.push(file.path.clone());
        }
    }
    Ok(holding)
}

impl Engine {
    /// Keeps the regular files among a job's stored outputs as materialized blobs, for a later
    /// restore to link rather than write.
    fn keep_outputs(&self, repo: &Repo, files: &[crate::git::FileId]) {
        let materialized = repo.materialized();
        for file in files {
            let abs = self.root.join(&file.path);
            if let Ok(meta) = std::fs::symlink_metadata(&abs)
                && let Some(meta) = materialized.keep(&abs, &meta, file.id, file.mode)
            {
                // The link changed the file's ctime.
                self.stats()
                    .wrote(&self.root, &file.path, file.mode, file.id, &meta);
            }
        }
    }

    /// The files `spec` declares as outputs that exist now.
    fn outputs(&self, repo: &Repo, spec: &JobSpec) -> Result<Vec<crate::git::FileId>, String> {
        let outputs = &spec.outputs;
        let wanted = |p: &str| outputs.matches(p);
        let mut paths = repo
            .output_paths(&self.root, outputs.walk_dirs(), &wanted)
            .map_err(|e| e.to_string())?;
        paths.extend(outputs.explicit().iter().cloned());
        paths.sort();
        paths.dedup();
        let mut files = Vec::with_capacity(paths.len());
        let mut at = StatAt::default();
        for path in &paths {
            if let Some(file) = self
                .stats()
                .file_id(&mut at, &self.root, path)
                .map_err(|e| e.to_string())?
            {
                files.push(file);
            }
        }
        Ok(files)
    }

    /// A deploy's artifact: the keys and the outputs of the jobs upstream of it, at their paths
    /// in the repository.
    fn artifact(&self, deploy: &DeployJob) -> Result<Artifact, String> {
        let repo = self.repo();
        let mut files = Vec::new();
        let mut keys = BTreeMap::new();
        let mask = lock(&self.revealed).mask.clone();
        for name in &deploy.upstream {
            if let Some(key) = lock(&self.keys).get(name) {
                keys.insert(name.clone(), key.clone());
            }
            let Some(spec) = self.jobs.iter().find(|s| &s.name == name) else {
                continue;
            };
            let outputs = self.outputs(&repo, spec)?;
            if let Some(mask) = &mask {
                let holding = files_holding(mask, &self.root, &outputs)?;
                if !holding.is_empty() {
                    return Err(format!(
                        "not deploying: the artifact would be stored in the ledger, and {} of \
                         `{name}` holds a secret value",
                        holding.join(", ")
                    ));
                }
            }
            for file in outputs {
                files.push(ArtifactFile::Disk {
                    abs: self.root.join(&file.path),
                    path: self
                        .root_in_repo
                        .join(&file.path)
                        .to_string_lossy()
                        .into_owned(),
                    mode: file.mode,
                });
            }
        }
        files.sort_by(|a, b| artifact_path(a).cmp(artifact_path(b)));
        files.dedup_by(|a, b| artifact_path(a) == artifact_path(b));
        Ok(Artifact { keys, files })
    }

    /// Files of the tree the run started from whose content now differs: what fixers changed.
    /// Only meaningful for a synced snapshot, where every file's original id is known.
    pub fn changed_files(&self) -> Result<Vec<crate::git::FileId>, crate::git::Error> {
        let mut changed = Vec::new();
        let mut at = StatAt::default();
        for (path, (mode, id)) in self.index.known() {
            match self.stats().file_id(&mut at, &self.root_of_index(), path)? {
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
        if let Some(memo) = &self.memo
            && let Err(err) = memo.save()
        {
            tracing::debug!(%err, "could not save the memo");
        }
    }
}

/// The jobs `name` needs, directly or not, that are not deploy jobs.
fn upstream(pipeline: &Pipeline, name: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![name.to_owned()];
    while let Some(next) = stack.pop() {
        for need in pipeline
            .job(&next)
            .map(|j| j.needs.as_slice())
            .unwrap_or_default()
        {
            if seen.insert(need.clone()) {
                stack.push(need.clone());
            }
        }
    }
    seen.into_iter()
        .filter(|n| pipeline.job(n).is_some_and(|j| j.environment.is_none()))
        .collect()
}

fn artifact_path(file: &ArtifactFile) -> &str {
    match file {
        ArtifactFile::Disk { path, .. } | ArtifactFile::Stored { path, .. } => path,
    }
}
