use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{Event, Job, Pipeline};
use crate::deploy::{Deploys, Mode};
use crate::engine::{CacheOptions, Early, Engine, JobSpec, Workspace};
use crate::env_vars;
use crate::error::{Error, exit};
use crate::exec::{self, Keys, Options, PlannedJob, Stop};
use crate::git::{Deferred, Repo};
use crate::graph::{Graph, Selection};
use crate::report::{JobStatus, Output, Reporter, ReporterKind, RunEvent, RunOutcome};
use crate::store::{RunSummary, Runs, new_run_id};
use crate::workspace;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to run (with what they need); default: every job that is not a deploy job
    #[arg(value_name = "JOB", conflicts_with = "event")]
    names: Vec<String>,
    /// Run the jobs whose `on` lists this event, and what they need
    #[arg(long, value_parser = parse_event)]
    event: Option<Event>,
    /// Jobs to run at once (default: the number of cores)
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// After a failure, finish the jobs that do not depend on it
    #[arg(long)]
    keep_going: bool,
    /// With `--event merge`: run even if the merge jobs already ran for this commit
    #[arg(long, requires = "event")]
    force: bool,
    /// Run every job even if a result for its key is stored (the new result is stored)
    #[arg(long)]
    no_cache: bool,
    /// Say, for each job that runs, why no stored result matched
    #[arg(long)]
    explain: bool,
    /// Print NDJSON events on stdout
    #[arg(long)]
    json: bool,
}

fn parse_event(name: &str) -> Result<Event, String> {
    Event::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
        format!("unknown event; expected one of: {}", all.join(", "))
    })
}

pub fn run(args: Args) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    // A plain `weir run` checks the hits it remembers while its pipeline loads.
    let early = (!args.no_cache && args.names.is_empty() && args.event.is_none())
        .then(|| Early::start(&context.repo));
    let pipeline = context.pipeline()?;
    // Asking for a run is trusting the pipeline as it is: hooks may run it from now on.
    let bytes = std::fs::read(&pipeline.path)
        .map_err(|e| Error::io(format!("cannot read {}", pipeline.path.display()), e))?;
    crate::trigger::trust::trust(&context.repo, &bytes)?;
    let (selection, trigger) = match args.event {
        Some(event) => (Selection::Event(event), event),
        None if args.names.is_empty() => (Selection::AllButDeploy, Event::Manual),
        None => (Selection::Named(args.names.clone()), Event::Manual),
    };
    let graph = Graph::select(&pipeline, &selection)?;
    if trigger == Event::Merge
        && let Some(commit) = context.repo.head()?
        && !super::hook::first_merge_run(&context.repo, &commit.to_string())?
        && !args.force
    {
        Output.err(&format!(
            "the merge jobs already ran for {commit}; `weir run --event merge --force` runs them again"
        ));
        return Ok(exit::SUCCESS);
    }
    let outcome = execute(
        &context,
        &pipeline,
        &graph,
        Execution {
            trigger,
            workspace: Workspace::Worktree,
            cache: CacheOptions {
                no_cache: args.no_cache,
                explain: args.explain,
                unchanged: BTreeMap::new(),
                manifests: BTreeMap::new(),
                remember: true,
                early,
                known: BTreeMap::new(),
                defer: false,
            },
            parallel: args.jobs.map(usize::from),
            keep_going: args.keep_going,
            json: args.json,
            files: BTreeMap::new(),
            source: context.repo.head()?,
            deploy: Mode::Normal,
            restart: None,
        },
    )?;
    Ok(exit_code(outcome))
}

/// What a run does besides which jobs: how it was triggered, where jobs run, and how.
pub(super) struct Execution {
    pub trigger: Event,
    pub workspace: Workspace,
    pub cache: CacheOptions,
    /// Jobs at once; `None` for the number of cores.
    pub parallel: Option<usize>,
    pub keep_going: bool,
    pub json: bool,
    /// For pre-commit jobs with `files`: the staged files each was selected for, which `{files}`
    /// expands to and which key a job without `inputs`.
    pub files: BTreeMap<String, Vec<String>>,
    /// The commit the workspace holds, if it holds one: what deploy jobs deploy.
    pub source: Option<gix::ObjectId>,
    /// Why deploy jobs deploy.
    pub deploy: Mode,
    /// Names of jobs to cancel mid-run because what they read changed (the watcher).
    pub restart: Option<tokio::sync::mpsc::UnboundedReceiver<Vec<String>>>,
}

pub(super) fn exit_code(outcome: RunOutcome) -> u8 {
    match outcome {
        RunOutcome::Passed => exit::SUCCESS,
        RunOutcome::Failed => exit::FAILURE,
        RunOutcome::Cancelled => exit::INTERRUPTED,
    }
}

/// Runs `graph`'s jobs, reports them and records the run. Returns how it ended, and the engine
/// (for what the jobs changed).
pub(super) fn execute(
    context: &super::Context,
    pipeline: &Pipeline,
    graph: &Graph,
    execution: Execution,
) -> Result<RunOutcome, Error> {
    execute_with(context, pipeline, graph, execution).map(|done| done.outcome)
}

/// How a run ended, for callers that look further.
pub(super) struct Done {
    pub outcome: RunOutcome,
    /// The engine, which knows what the jobs changed.
    pub engine: Arc<Engine>,
    /// In a snapshot, what the jobs touched there, if that is known.
    pub touched: Option<crate::workspace::Touched>,
    /// How each job ended, in plan order.
    pub jobs: Vec<exec::JobResult>,
    /// With [`CacheOptions::defer`]: the cache entries and the run record, queued. The caller
    /// hands them over with [`write_deferred`] once it has nothing else to do.
    pub deferred: Option<Deferred>,
}

/// Writes what a run with [`CacheOptions::defer`] queued (see [`Repo::write_deferred`]); a
/// failure is a warning, which changes no verdict. The child that writes it also closes the
/// snapshot watches the command is done with (see [`workspace::release_parked`]).
pub(super) fn write_deferred(repo: &Repo, deferred: Option<Deferred>) {
    let Some(deferred) = deferred else {
        return;
    };
    let mut parked = workspace::take_parked();
    let written = repo.write_deferred(deferred, &mut parked);
    // What the child did not take over.
    workspace::park(parked);
    if let Err(err) = written {
        Output.err(&format!("warning: could not record the run: {err}"));
    }
}

/// [`execute`], also handing back the engine and whether anything ran.
pub(super) fn execute_with(
    context: &super::Context,
    pipeline: &Pipeline,
    graph: &Graph,
    execution: Execution,
) -> Result<Done, Error> {
    let Execution {
        trigger,
        workspace,
        cache,
        parallel,
        keep_going,
        json,
        files,
        source,
        deploy,
        restart,
    } = execution;
    let started = SystemTime::now();
    let id = new_run_id(started);
    let deploys = Deploys::new(id.clone(), source, deploy);
    let (plan, engine) = prepare(context, pipeline, graph, workspace, cache, &files, deploys)?;
    tracing::debug!("run prepared");
    let parallel = parallel.unwrap_or_else(crate::sync::cores);
    let kind = if json {
        ReporterKind::Json
    } else if std::io::stderr().is_terminal() {
        ReporterKind::Live
    } else {
        ReporterKind::Plain
    };
    let mut reporter = Reporter::new(kind);
    reporter.event(&RunEvent::RunStarted {
        run: id.clone(),
        trigger: trigger.to_string(),
        jobs: plan.iter().map(|j| j.name.clone()).collect(),
    });
    // One thread drives the scheduler and the jobs' pipes; the work that blocks (keys, restores,
    // stores) runs on the blocking pool. Worker threads would only add start-up and wake-ups:
    // the jobs themselves are processes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let options = Options {
        parallel,
        keep_going,
    };
    exec::adopt_orphans();
    let engine = Arc::new(engine);
    let result = runtime.block_on(async {
        let interrupt = listen_for_interrupts()?;
        let keys: Arc<dyn Keys> = engine.clone();
        let result = exec::run(&plan, options, keys, interrupt, restart, |event| {
            reporter.event(event)
        })
        .await;
        engine.finish();
        Ok::<_, Error>(result)
    })?;

    exec::end_orphans(exec::GRACE);
    let summary = RunSummary::new(&id, trigger.as_str(), started, &result);
    let recording = std::time::Instant::now();
    // Some only with `CacheOptions::defer`.
    let mut deferred = engine.take_deferred();
    let recorded = match &mut deferred {
        Some(later) => Ok(Runs::record_later(&summary, &result, later)),
        None => Runs::new(&context.repo).record(&summary, &result),
    };
    let record = match recorded {
        Ok(refname) => Some(refname),
        Err(err) => {
            // The run itself is over; failing to record it must not change its verdict.
            Output.err(&format!("warning: could not record the run: {err}"));
            None
        }
    };
    tracing::debug!(elapsed = ?recording.elapsed(), "recorded the run");
    reporter.event(&RunEvent::RunFinished {
        run: id,
        outcome: result.outcome,
        duration: result.duration,
        passed: summary.count(JobStatus::Passed),
        cached: summary.count(JobStatus::Cached),
        failed: summary.count(JobStatus::Failed) + summary.count(JobStatus::TimedOut),
        cancelled: summary.count(JobStatus::Cancelled),
        skipped: summary.count(JobStatus::Skipped),
        waiting: summary.count(JobStatus::Waiting),
        record,
    });
    Ok(Done {
        outcome: result.outcome,
        touched: engine.touched(),
        engine,
        jobs: result.jobs,
        deferred,
    })
}

/// The scheduler's plan for `graph`, and the engine that keys and caches its jobs.
pub(super) fn prepare(
    context: &super::Context,
    pipeline: &Pipeline,
    graph: &Graph,
    workspace: Workspace,
    options: CacheOptions,
    files: &BTreeMap<String, Vec<String>>,
    deploys: Deploys,
) -> Result<(Vec<PlannedJob>, Engine), Error> {
    let root = match &workspace {
        Workspace::Worktree => pipeline.root.clone(),
        Workspace::Snapshot { root, .. } => root.clone(),
    };
    let mut plan = plan(pipeline, graph, &root);
    if let Workspace::Snapshot { dir, .. } = &workspace {
        // A snapshot lives inside `.git`: without a ceiling, `git` run by a job would find the
        // user's repository from there and could change their index.
        let ceiling = dir.parent().unwrap_or(dir).as_os_str().to_owned();
        for job in &mut plan {
            job.env
                .push(("GIT_CEILING_DIRECTORIES".to_owned(), ceiling.clone()));
        }
    }
    let mut specs = Vec::with_capacity(plan.len());
    for (planned, &index) in plan.iter_mut().zip(&graph.jobs) {
        let job = &pipeline.jobs[index];
        let mut spec = JobSpec::new(
            job,
            planned.shell.clone(),
            planned.cwd.clone(),
            planned.env.clone(),
            pipeline,
        )?;
        if let Some(selected) = files.get(&job.name) {
            let quoted = crate::trigger::hook::shell_quote(selected);
            for step in &mut planned.steps {
                *step = step.replace("{files}", &quoted);
            }
            spec.read_exactly(selected.clone());
        }
        specs.push(spec);
    }
    let engine = Engine::new(
        context.repo.clone(),
        pipeline,
        workspace,
        specs,
        options,
        deploys,
    )?;
    Ok((plan, engine))
}

/// Resolves the selected jobs into what the scheduler needs; their dirs are under `root`.
fn plan(pipeline: &Pipeline, graph: &Graph, root: &std::path::Path) -> Vec<PlannedJob> {
    let passthrough = env_vars::job_passthrough();
    // Jobs almost always share one PATH: looking for `sh` along it once per PATH saves a stat
    // per directory per job.
    let mut shells: BTreeMap<Option<OsString>, std::path::PathBuf> = BTreeMap::new();
    graph
        .jobs
        .iter()
        .zip(&graph.needs)
        .map(|(&index, needs)| {
            let job = &pipeline.jobs[index];
            let env = job_env(&passthrough, pipeline, job);
            let path = env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone());
            let shell = shells
                .entry(path)
                .or_insert_with_key(|path| exec::find_shell(path.as_deref()))
                .clone();
            PlannedJob {
                name: job.name.clone(),
                shell,
                steps: job.steps.clone(),
                cwd: root.join(&job.dir),
                env,
                timeout: job.timeout,
                retries: job.retries,
                needs: needs.clone(),
                deploy: job.environment.is_some(),
                health: job.deploy.health.clone(),
                rollback: job.deploy.rollback.clone(),
            }
        })
        .collect()
}

/// The allowlisted variables, then `[env]`, then the job's `env`; later ones win.
fn job_env(
    passthrough: &[(&'static str, OsString)],
    pipeline: &Pipeline,
    job: &Job,
) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = passthrough
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    for (key, value) in pipeline.env.iter().chain(&job.env) {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.into()));
    }
    env
}

/// Ctrl-C (or SIGTERM, or the terminal hanging up) once asks jobs to stop gracefully; twice
/// kills them at once.
fn listen_for_interrupts() -> Result<watch::Receiver<Stop>, Error> {
    let handle = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| Error::io(format!("cannot handle {name}"), e))
    };
    let mut interrupt = handle(SignalKind::interrupt(), "Ctrl-C")?;
    let mut terminate = handle(SignalKind::terminate(), "SIGTERM")?;
    let mut hangup = handle(SignalKind::hangup(), "SIGHUP")?;
    let (tx, rx) = watch::channel(Stop::No);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = interrupt.recv() => {}
                Some(()) = terminate.recv() => {}
                Some(()) = hangup.recv() => {}
                else => break,
            }
            let next = if *tx.borrow() == Stop::No {
                Stop::Graceful
            } else {
                Stop::Now
            };
            if tx.send(next).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
