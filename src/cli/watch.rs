//! `weir watch`: runs the watched jobs once, then, after each burst of file changes, reruns the
//! jobs whose keys changed (and what needs them) in the working tree, with the same keys and
//! cache as every other run. A change during a run cancels the jobs it affects and starts them
//! again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Context;
use super::run::{Execution, execute_with, prepare};
use crate::config::{self, Event, Pipeline};
use crate::deploy::{Deploys, Mode};
use crate::engine::{CacheOptions, Workspace};
use crate::error::{Error, exit};
use crate::git::Repo;
use crate::graph::{Graph, Selection};
use crate::key::{Globs, Manifest};
use crate::report::{JobStatus, Output};
use crate::sync::lock;
use crate::trigger::trust;
use crate::trigger::watch::{self, Notice, Watcher};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to watch (with what they need); default: the jobs whose `on` lists `watch`
    #[arg(value_name = "JOB")]
    names: Vec<String>,
    /// Quiet time after a change before jobs run (e.g. 100ms, 1s)
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = humantime::parse_duration)]
    debounce: Duration,
    /// Poll for changes instead of asking the kernel (for network file systems)
    #[arg(long)]
    poll: bool,
    /// Jobs to run at once (default: the number of cores)
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Print NDJSON events on stdout, as `weir run --json` does
    #[arg(long)]
    json: bool,
}

/// What wakes the watch loop.
enum Msg {
    Notice(Notice),
    Interrupt,
}

/// A run in progress, which the watcher thread may cancel jobs of.
struct Active {
    matcher: Arc<Matcher>,
    restart: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
}

pub fn run(args: Args) -> Result<u8, Error> {
    let context = Context::discover()?;
    let pipeline = context.pipeline()?;
    // Asking to watch is trusting the pipeline as it is, as `weir run` does.
    trust::trust(&context.repo, &read(&pipeline.path)?)?;
    let selection = if args.names.is_empty() {
        Selection::Event(Event::Watch)
    } else {
        Selection::Named(args.names.clone())
    };
    let graph = Graph::select(&pipeline, &selection)?;
    let matcher = Arc::new(Matcher::new(&pipeline, &graph, context.repo.workdir())?);

    let (tx, rx) = mpsc::channel();
    listen_for_interrupts(tx.clone())?;
    let active: Arc<Mutex<Option<Active>>> = Arc::new(Mutex::new(None));
    let notices = forward_notices(context.repo.clone(), Arc::clone(&active), tx);
    let watched = context.repo.watched("")?;
    let dirs: Vec<PathBuf> = watched
        .dirs
        .iter()
        .map(|d| context.repo.workdir().join(d))
        .collect();
    let (watcher, fallback) = Watcher::start(&dirs, args.poll, notices.clone())?;
    if let Some(message) = fallback {
        Output.err(&format!("weir watch: {message}"));
    }
    let mut session = Session {
        context,
        pipeline,
        selection,
        graph,
        matcher,
        active,
        last: BTreeMap::new(),
        manifests: BTreeMap::new(),
        untrusted: None,
        watcher,
        notices,
        args,
    };
    Output.err(&format!(
        "weir watch: watching {} director{} for {}; Ctrl-C stops",
        dirs.len(),
        if dirs.len() == 1 { "y" } else { "ies" },
        session.job_names()
    ));
    session.keys_changed(None)?;
    session.cycle(None)?;
    session.serve(&rx)
}

struct Session {
    context: Context,
    pipeline: Pipeline,
    selection: Selection,
    graph: Graph,
    matcher: Arc<Matcher>,
    active: Arc<Mutex<Option<Active>>>,
    /// By job: how its last run ended and with which key.
    last: BTreeMap<String, (JobStatus, Option<String>)>,
    /// By job: its manifest as last computed, which the next change updates.
    manifests: BTreeMap<String, Manifest>,
    /// The bytes of a changed pipeline that is not trusted yet.
    untrusted: Option<Vec<u8>>,
    watcher: Watcher,
    notices: Sender<Notice>,
    args: Args,
}

impl Session {
    /// Waits for changes and runs what they affect, until interrupted.
    fn serve(&mut self, rx: &Receiver<Msg>) -> Result<u8, Error> {
        loop {
            let first = if self.untrusted.is_some() {
                // Nothing tells when `weir trust` runs: look again every half second.
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => {
                        self.retry_untrusted()?;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return Ok(exit::SUCCESS),
                }
            } else {
                match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => return Ok(exit::SUCCESS),
                }
            };
            // One batch lasts until the files have been quiet for the debounce: a burst, however
            // long, makes one run, which sees its end.
            let quiet = self.args.debounce.saturating_sub(watch::REPORTED_AFTER);
            let mut paths = BTreeSet::new();
            let mut rescan = false;
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    Msg::Interrupt => {
                        Output.err("weir watch: stopped");
                        return Ok(exit::SUCCESS);
                    }
                    Msg::Notice(Notice::Changed(changed)) => paths.extend(changed),
                    Msg::Notice(Notice::Rescan) => rescan = true,
                    Msg::Notice(Notice::Failed(message)) => self.watcher_failed(&message)?,
                }
                next = match rx.recv_timeout(quiet) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Ok(exit::SUCCESS),
                };
            }
            // One bad moment (a file git is rewriting, a job that cannot be keyed) must not end
            // the watch: say what went wrong and wait for the next change.
            if let Err(err) = self.changed(paths, rescan) {
                super::report_error(&err);
                Output.err("weir watch: still watching");
            }
        }
    }

    /// Handles one batch of changed paths.
    fn changed(&mut self, paths: BTreeSet<PathBuf>, mut rescan: bool) -> Result<(), Error> {
        let mut paths: Vec<PathBuf> = paths.into_iter().collect();
        // New directories are watched from now on, and whatever they already hold counts.
        let mut found = Vec::new();
        for dir in paths.iter().filter(|p| p.is_dir()) {
            let Ok(rel) = dir.strip_prefix(self.context.repo.workdir()) else {
                continue;
            };
            let watched = self.context.repo.watched(&rel.to_string_lossy())?;
            for sub in &watched.dirs {
                if self
                    .watcher
                    .add(&self.context.repo.workdir().join(sub))
                    .is_err()
                {
                    rescan = true;
                }
            }
            found.extend(
                watched
                    .files
                    .iter()
                    .map(|f| self.context.repo.workdir().join(f)),
            );
        }
        // A directory itself is nothing a job reads; what is in it is listed on its own.
        paths.retain(|p| !p.is_dir());
        paths.extend(found);
        if paths.iter().any(|p| p == &self.pipeline.path) {
            self.reload()?;
        }
        tracing::debug!(paths = paths.len(), "changes received");
        let candidates = classify(&self.context.repo, &self.matcher, &paths)?;
        tracing::debug!(candidates = candidates.len(), "changes classified");
        let affected = if rescan {
            self.graph_names()
        } else {
            self.matcher.affected(&candidates)
        };
        if affected.is_empty() {
            return Ok(());
        }
        // New ignore rules change what every job reads: compute everything again.
        let ignores_changed = candidates
            .iter()
            .any(|(path, _)| path == ".gitignore" || path.ends_with("/.gitignore"));
        let incremental = (!rescan && !ignores_changed).then_some(candidates.as_slice());
        let rerun = self.keys_changed(incremental)?;
        tracing::debug!(rerun = rerun.len(), "keys computed");
        if rerun.is_empty() {
            return Ok(());
        }
        if !self.args.json {
            let changed: Vec<&String> = candidates
                .iter()
                .filter(|(_, ignored)| !ignored)
                .map(|(path, _)| path)
                .collect();
            let shown = changed
                .iter()
                .take(3)
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let more = changed.len().saturating_sub(3);
            let what = match (changed.len(), more) {
                (0, _) => "files may have changed (rescan)".to_owned(),
                (_, 0) => format!("changed: {shown}"),
                _ => format!("changed: {shown} and {more} more"),
            };
            let names: Vec<&str> = rerun.iter().map(String::as_str).collect();
            Output.err(&format!("weir watch: {what}; running {}", names.join(", ")));
        }
        self.cycle(Some(rerun))
    }

    /// Runs `names` (with what they need), or every watched job.
    fn cycle(&mut self, names: Option<BTreeSet<String>>) -> Result<(), Error> {
        let graph = match names {
            None => self.graph.clone(),
            Some(names) => Graph::select(
                &self.pipeline,
                &Selection::Named(names.into_iter().collect()),
            )?,
        };
        let unchanged = self
            .last
            .iter()
            .filter_map(|(name, (status, key))| {
                status
                    .is_success()
                    .then(|| key.clone().map(|k| (name.clone(), k)))
                    .flatten()
            })
            .collect();
        let (restart, restart_rx) = tokio::sync::mpsc::unbounded_channel();
        *lock(&self.active) = Some(Active {
            matcher: Arc::clone(&self.matcher),
            restart,
        });
        let done = execute_with(
            &self.context,
            &self.pipeline,
            &graph,
            Execution {
                trigger: Event::Watch,
                workspace: Workspace::Worktree,
                cache: CacheOptions {
                    no_cache: false,
                    explain: false,
                    unchanged,
                    manifests: self.manifests.clone(),
                    // It decides what to run from its own manifests.
                    remember: false,
                    early: None,
                    known: BTreeMap::new(),
                    defer: false,
                },
                parallel: self.args.jobs.map(usize::from),
                // One failing job must not stop the others in an edit loop.
                keep_going: true,
                json: self.args.json,
                files: BTreeMap::new(),
                source: self.context.repo.head()?,
                deploy: Mode::Normal,
                restart: Some(restart_rx),
            },
        );
        *lock(&self.active) = None;
        for job in done?.jobs {
            self.last.insert(job.name, (job.status, job.key));
        }
        Ok(())
    }

    /// The watched jobs whose key now differs from their last run's, or that did not finish
    /// last time: what a change must rerun. With `changed` (the only files that changed since
    /// the manifests were last computed, each with whether git ignores it), manifests are
    /// updated from the last ones instead of reading every input again.
    fn keys_changed(
        &mut self,
        changed: Option<&[(String, bool)]>,
    ) -> Result<BTreeSet<String>, Error> {
        let (plan, engine) = prepare(
            &self.context,
            &self.pipeline,
            &self.graph,
            Workspace::Worktree,
            CacheOptions::default(),
            &BTreeMap::new(),
            Deploys::new(String::new(), None, Mode::Normal),
        )?;
        let mut keys: Vec<String> = vec![String::new(); plan.len()];
        let mut rerun = BTreeSet::new();
        for position in self.graph.topological_order() {
            let name = &plan[position].name;
            let needs: Vec<(String, String)> = plan[position]
                .needs
                .iter()
                .map(|&n| (plan[n].name.clone(), keys[n].clone()))
                .collect();
            let manifest = match (changed, self.manifests.get(name)) {
                (Some(changed), Some(previous)) => {
                    engine.manifest_after(position, &needs, previous, changed)
                }
                _ => engine.manifest(position, &needs),
            };
            // A key that cannot be computed (a failing `key_cmd`) reruns the job, which says why.
            match manifest {
                Ok(manifest) => {
                    keys[position] = manifest.key();
                    self.manifests.insert(name.clone(), manifest);
                }
                Err(_) => {
                    self.manifests.remove(name);
                }
            }
            let rerun_it = match self.last.get(name) {
                None => true,
                Some((status, key)) => {
                    keys[position].is_empty()
                        || key.as_deref() != Some(keys[position].as_str())
                        || matches!(status, JobStatus::Cancelled | JobStatus::Skipped)
                }
            };
            if rerun_it {
                rerun.insert(name.clone());
            }
        }
        Ok(rerun)
    }

    /// The pipeline file changed: uses the new one if it is valid and trusted. Errors are
    /// reported at once; a valid but untrusted pipeline waits for `weir trust`.
    fn reload(&mut self) -> Result<(), Error> {
        let Ok(bytes) = std::fs::read(&self.pipeline.path) else {
            Output.err("weir watch: the pipeline file is gone; keeping the last one");
            return Ok(());
        };
        self.untrusted = None;
        if self.parse(&bytes).is_none() {
            return Ok(());
        }
        let shown = self
            .pipeline
            .path
            .strip_prefix(self.context.repo.workdir())
            .unwrap_or(&self.pipeline.path)
            .display()
            .to_string();
        if let Err(untrusted) = trust::check(&self.context.repo, &bytes, &shown) {
            Output.err(&format!("weir watch: {untrusted}"));
            Output.err("weir watch: keeping the last trusted pipeline until then");
            self.untrusted = Some(bytes);
            return Ok(());
        }
        self.load(&bytes);
        Ok(())
    }

    /// While a changed pipeline waits for `weir trust`: uses it once it is trusted.
    fn retry_untrusted(&mut self) -> Result<(), Error> {
        let Some(bytes) = self.untrusted.clone() else {
            return Ok(());
        };
        if trust::is_trusted(&self.context.repo, &bytes) {
            self.untrusted = None;
            self.load(&bytes);
            let rerun = self.keys_changed(None)?;
            if !rerun.is_empty() {
                return self.cycle(Some(rerun));
            }
        }
        Ok(())
    }

    /// Parses `bytes` as the pipeline; on errors, reports them and returns `None`.
    fn parse(&self, bytes: &[u8]) -> Option<(Pipeline, Graph, Matcher)> {
        let parsed = config::parse(
            config::FILE_NAME,
            &self.pipeline.path,
            &self.pipeline.root,
            bytes,
        )
        .map_err(Error::from)
        .and_then(|pipeline| {
            let graph = Graph::select(&pipeline, &self.selection)?;
            let matcher = Matcher::new(&pipeline, &graph, self.context.repo.workdir())?;
            Ok((pipeline, graph, matcher))
        });
        match parsed {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                super::report_error(&err);
                Output.err("weir watch: keeping the last valid pipeline until the file is fixed");
                None
            }
        }
    }

    /// Uses `bytes` as the pipeline from now on, if they parse.
    fn load(&mut self, bytes: &[u8]) {
        if let Some((pipeline, graph, matcher)) = self.parse(bytes) {
            Output.err("weir watch: reloaded the pipeline");
            self.pipeline = pipeline;
            self.graph = graph;
            self.matcher = Arc::new(matcher);
            self.manifests.clear();
        }
    }

    /// The kernel stopped watching (its limit): polls from now on.
    fn watcher_failed(&mut self, message: &str) -> Result<(), Error> {
        Output.err(&format!("weir watch: {message}"));
        if self.watcher.polls() {
            return Ok(());
        }
        let watched = self.context.repo.watched("")?;
        let dirs: Vec<PathBuf> = watched
            .dirs
            .iter()
            .map(|d| self.context.repo.workdir().join(d))
            .collect();
        let (watcher, _) = Watcher::start(&dirs, true, self.notices.clone())?;
        self.watcher = watcher;
        Ok(())
    }

    fn graph_names(&self) -> BTreeSet<String> {
        self.graph
            .jobs
            .iter()
            .map(|&i| self.pipeline.jobs[i].name.clone())
            .collect()
    }

    fn job_names(&self) -> String {
        self.graph_names()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What each watched job reads and writes.
struct Matcher {
    /// The pipeline root relative to the work tree, as a path prefix (`""` or `dir/`).
    prefix: String,
    jobs: Vec<WatchedJob>,
}

struct WatchedJob {
    name: String,
    /// `None`: every file.
    inputs: Option<Globs>,
    outputs: Globs,
    /// Positions of this job and of every watched job that needs it, directly or not.
    downstream: Vec<usize>,
}

impl Matcher {
    fn new(pipeline: &Pipeline, graph: &Graph, workdir: &Path) -> Result<Matcher, Error> {
        let glob_error = |job: &str, e: globset::Error| Error::Usage {
            message: format!("invalid glob in job `{job}`: {e}"),
            hint: None,
        };
        let mut jobs = Vec::with_capacity(graph.jobs.len());
        for &index in &graph.jobs {
            let job = &pipeline.jobs[index];
            jobs.push(WatchedJob {
                name: job.name.clone(),
                inputs: match &job.inputs {
                    None => None,
                    Some(globs) => Some(Globs::new(globs).map_err(|e| glob_error(&job.name, e))?),
                },
                outputs: Globs::new(&job.outputs).map_err(|e| glob_error(&job.name, e))?,
                downstream: Vec::new(),
            });
        }
        for start in 0..graph.jobs.len() {
            let mut seen = BTreeSet::from([start]);
            let mut stack = vec![start];
            while let Some(at) = stack.pop() {
                for (next, needs) in graph.needs.iter().enumerate() {
                    if needs.contains(&at) && seen.insert(next) {
                        stack.push(next);
                    }
                }
            }
            jobs[start].downstream = seen.into_iter().collect();
        }
        let mut prefix = pipeline
            .root
            .strip_prefix(workdir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Ok(Matcher { prefix, jobs })
    }

    /// Whether `path` (relative to the pipeline root) is one a watched job writes.
    fn is_output(&self, path: &str) -> bool {
        self.jobs.iter().any(|j| j.outputs.matches(path))
    }

    /// The jobs that read one of `paths` (relative to the pipeline root, each with whether git
    /// ignores it), and what needs them. An ignored file is read only where a job names it.
    fn affected(&self, paths: &[(String, bool)]) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for job in &self.jobs {
            let reads = paths.iter().any(|(path, ignored)| match &job.inputs {
                None => !ignored,
                Some(globs) => globs.reads(path, *ignored),
            });
            if reads {
                names.extend(job.downstream.iter().map(|&i| self.jobs[i].name.clone()));
            }
        }
        names
    }
}

/// The paths of `changed` (absolute) that a job could read, relative to the pipeline root,
/// each with whether git ignores it: not in `.git`, not outside the pipeline root, not a job's
/// own output.
fn classify(
    repo: &Repo,
    matcher: &Matcher,
    changed: &[PathBuf],
) -> Result<Vec<(String, bool)>, Error> {
    let mut candidates = Vec::new();
    for path in changed {
        let Ok(rel) = path.strip_prefix(repo.workdir()) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        if rel.is_empty() || rel == ".git" || rel.starts_with(".git/") {
            continue;
        }
        let Some(in_root) = rel.strip_prefix(&matcher.prefix) else {
            continue;
        };
        if in_root.is_empty() || matcher.is_output(in_root) {
            continue;
        }
        candidates.push(rel.clone());
    }
    let ignored = repo.ignored(&candidates)?;
    Ok(candidates
        .into_iter()
        .zip(ignored)
        .filter_map(|(rel, ignored)| {
            rel.strip_prefix(&matcher.prefix)
                .map(|p| (p.to_owned(), ignored))
        })
        .collect())
}

/// Passes the watcher's notices on to the loop, first cancelling the jobs of a run in progress
/// that a change affects.
fn forward_notices(
    repo: Repo,
    active: Arc<Mutex<Option<Active>>>,
    to_loop: Sender<Msg>,
) -> Sender<Notice> {
    let (tx, rx) = mpsc::channel::<Notice>();
    std::thread::spawn(move || {
        for notice in rx {
            if let Notice::Changed(paths) = &notice
                && let Some(active) = lock(&active).as_ref()
                && let Ok(candidates) = classify(&repo, &active.matcher, paths)
            {
                let affected = active.matcher.affected(&candidates);
                if !affected.is_empty() {
                    let _ = active.restart.send(affected.into_iter().collect());
                }
            }
            if to_loop.send(Msg::Notice(notice)).is_err() {
                break;
            }
        }
    });
    tx
}

/// Ctrl-C, SIGTERM or SIGHUP ends the watch (a run in progress stops its jobs on its own).
fn listen_for_interrupts(to_loop: Sender<Msg>) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    // Registered here, before any run, so that a Ctrl-C while idle is seen too.
    let mut signals = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ];
        kinds
            .into_iter()
            .map(signal)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::io("cannot handle Ctrl-C", e))
    })?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let [a, b, c] = signals.as_mut_slice() else {
                return;
            };
            tokio::select! {
                _ = a.recv() => {}
                _ = b.recv() => {}
                _ = c.recv() => {}
            }
            let _ = to_loop.send(Msg::Interrupt);
        });
    });
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}
