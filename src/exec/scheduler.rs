use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::capture::{CappedLog, LineSplitter};
use super::keys::{Before, Finished, Keys, Rollback, Stored};
use super::mask::{Masker, Patterns};
use super::process::{Step, StepEnd, Stop, run_step};
use crate::report::{JobStatus, RunEvent, RunOutcome};

/// Bytes of a failed job's log handed to the reporter to show.
const TAIL_BYTES: usize = 8 * 1024;

/// A job ready to run: everything resolved, nothing left to look up.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub name: String,
    /// The shell the steps run with (`sh`, resolved in the job's PATH).
    pub shell: PathBuf,
    pub steps: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, OsString)>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// Positions in the plan of the jobs this one needs.
    pub needs: Vec<usize>,
    /// A deploy job: a failure is rolled back.
    pub deploy: bool,
    /// A deploy's health check, run after its steps as one more.
    pub health: Option<String>,
    /// A deploy's rollback command; without it, [`Keys::recover`] says what to redeploy.
    pub rollback: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Jobs running at once, at least 1.
    pub parallel: usize,
    /// Finish independent branches after a failure instead of stopping.
    pub keep_going: bool,
}

/// How one job of a run ended, with its log.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub name: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    /// The job's key, when it got as far as computing one.
    pub key: Option<String>,
    pub reason: Option<String>,
    pub started: Option<SystemTime>,
    pub duration: Duration,
    pub log: Vec<u8>,
}

/// How the run ended; `jobs` is in plan order.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: RunOutcome,
    pub duration: Duration,
    pub jobs: Vec<JobResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done(JobStatus),
}

/// Runs `plan` as a DAG. `interrupt` carries Ctrl-C: the first asks every job to stop
/// gracefully, the second kills at once. `restart` names jobs to cancel because what they read
/// changed (the watcher): they end as cancelled, without stopping the others. Events go to
/// `on_event` as they happen.
pub async fn run(
    plan: &[PlannedJob],
    options: Options,
    keys: Arc<dyn Keys>,
    mut interrupt: watch::Receiver<Stop>,
    mut restart: Option<mpsc::UnboundedReceiver<Vec<String>>>,
    mut on_event: impl FnMut(&RunEvent),
) -> RunResult {
    let started = Instant::now();
    // One stop channel per job, so that one job can be cancelled alone.
    let mut stops: Vec<Option<watch::Sender<Stop>>> = (0..plan.len()).map(|_| None).collect();
    let stop_all = |stops: &[Option<watch::Sender<Stop>>], request: Stop| {
        for stop in stops.iter().flatten() {
            let _ = stop.send(request);
        }
    };
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<RunEvent>();
    let mut states = vec![State::Waiting; plan.len()];
    let mut results: Vec<Option<JobResult>> = vec![None; plan.len()];
    let mut restarted = vec![false; plan.len()];
    let mut tasks = JoinSet::new();
    let mut running = 0usize;
    let mut stopping = false;
    let mut interrupted = false;
    let mut interrupt_open = true;

    loop {
        while !stopping && running < options.parallel.max(1) {
            let ready = (0..plan.len()).find(|&i| {
                states[i] == State::Waiting
                    && plan[i]
                        .needs
                        .iter()
                        .all(|&n| matches!(states[n], State::Done(s) if s.is_success()))
            });
            let Some(index) = ready else { break };
            states[index] = State::Running;
            running += 1;
            let job = plan[index].clone();
            let needs = plan[index]
                .needs
                .iter()
                .map(|&n| {
                    let key = results[n].as_ref().and_then(|r| r.key.clone());
                    (plan[n].name.clone(), key.unwrap_or_default())
                })
                .collect();
            let (stop_tx, stop_rx) = watch::channel(Stop::No);
            stops[index] = Some(stop_tx);
            let context = JobContext {
                index,
                needs,
                keys: Arc::clone(&keys),
                stop: stop_rx,
                events: events_tx.clone(),
            };
            tasks.spawn(async move { (index, run_job(job, context).await) });
        }
        if running == 0 {
            break;
        }
        tokio::select! {
            Some(event) = events_rx.recv() => on_event(&event),
            Some(joined) = tasks.join_next() => {
                running -= 1;
                // Everything the job said comes before the news that it finished.
                while let Ok(event) = events_rx.try_recv() {
                    on_event(&event);
                }
                let Ok((index, mut result)) = joined else {
                    // A job task only ends this way if it panicked; the run cannot go on soundly.
                    stopping = true;
                    stop_all(&stops, Stop::Graceful);
                    continue;
                };
                if restarted[index] && result.status == JobStatus::Cancelled {
                    result.reason = Some(RESTARTED.to_owned());
                }
                states[index] = State::Done(result.status);
                on_event(&finished_event(&result));
                if result.status.is_failure() && !restarted[index] && !options.keep_going && !stopping {
                    stopping = true;
                    stop_all(&stops, Stop::Graceful);
                }
                results[index] = Some(result);
            }
            changed = interrupt.changed(), if interrupt_open => {
                if changed.is_err() {
                    interrupt_open = false;
                    continue;
                }
                let request = *interrupt.borrow_and_update();
                if request != Stop::No {
                    interrupted = true;
                    stopping = true;
                    stop_all(&stops, request);
                }
            }
            names = recv_restart(&mut restart) => {
                let Some(names) = names else {
                    restart = None;
                    continue;
                };
                for index in (0..plan.len()).filter(|&i| names.contains(&plan[i].name)) {
                    match states[index] {
                        State::Running => {
                            restarted[index] = true;
                            if let Some(stop) = &stops[index] {
                                let _ = stop.send(Stop::Graceful);
                            }
                        }
                        State::Waiting => {
                            restarted[index] = true;
                            let result = JobResult {
                                name: plan[index].name.clone(),
                                status: JobStatus::Cancelled,
                                attempts: 0,
                                exit_code: None,
                                key: None,
                                reason: Some(RESTARTED.to_owned()),
                                started: None,
                                duration: Duration::ZERO,
                                log: Vec::new(),
                            };
                            states[index] = State::Done(JobStatus::Cancelled);
                            on_event(&finished_event(&result));
                            results[index] = Some(result);
                        }
                        State::Done(_) => {}
                    }
                }
            }
        }
    }
    while let Ok(event) = events_rx.try_recv() {
        on_event(&event);
    }

    let jobs: Vec<JobResult> = results
        .into_iter()
        .enumerate()
        .map(|(index, result)| {
            result.unwrap_or_else(|| {
                let reason = skip_reason(plan, &states, index);
                on_event(&RunEvent::JobFinished {
                    job: plan[index].name.clone(),
                    status: JobStatus::Skipped,
                    duration: Duration::ZERO,
                    attempts: 0,
                    exit_code: None,
                    key: None,
                    reason: Some(reason.clone()),
                    tail: String::new(),
                });
                JobResult {
                    name: plan[index].name.clone(),
                    status: JobStatus::Skipped,
                    attempts: 0,
                    exit_code: None,
                    key: None,
                    reason: Some(reason),
                    started: None,
                    duration: Duration::ZERO,
                    log: Vec::new(),
                }
            })
        })
        .collect();
    let outcome = if interrupted {
        RunOutcome::Cancelled
    } else if jobs
        .iter()
        .zip(&restarted)
        .any(|(j, &restarted)| j.status.is_failure() && !restarted)
    {
        RunOutcome::Failed
    } else {
        RunOutcome::Passed
    };
    RunResult {
        outcome,
        duration: started.elapsed(),
        jobs,
    }
}

/// Why a job cancelled by the watcher ended.
const RESTARTED: &str = "cancelled: what it reads changed, so it starts again";

/// The next batch of jobs to restart, or never when there is no restart channel.
async fn recv_restart(
    restart: &mut Option<mpsc::UnboundedReceiver<Vec<String>>>,
) -> Option<Vec<String>> {
    match restart {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn finished_event(result: &JobResult) -> RunEvent {
    RunEvent::JobFinished {
        job: result.name.clone(),
        status: result.status,
        duration: result.duration,
        attempts: result.attempts,
        exit_code: result.exit_code,
        key: result.key.clone(),
        reason: result.reason.clone(),
        tail: tail(&result.log),
    }
}

fn skip_reason(plan: &[PlannedJob], states: &[State], index: usize) -> String {
    let blocked: Vec<&str> = plan[index]
        .needs
        .iter()
        .filter(|&&n| !matches!(states[n], State::Done(s) if s.is_success()))
        .map(|&n| plan[n].name.as_str())
        .collect();
    match blocked.as_slice() {
        [] => "the run stopped before it started".to_owned(),
        [one]
            if states
                .iter()
                .zip(plan)
                .any(|(s, p)| p.name == *one && *s == State::Done(JobStatus::Waiting)) =>
        {
            format!("needs `{one}`, which waits for approval")
        }
        [one] => format!("needs `{one}`, which did not pass"),
        many => format!("needs {}, which did not pass", quoted_list(many)),
    }
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn tail(log: &[u8]) -> String {
    let start = log.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&log[start..]).into_owned()
}

/// What a job task needs besides the job.
struct JobContext {
    index: usize,
    needs: Vec<(String, String)>,
    keys: Arc<dyn Keys>,
    stop: watch::Receiver<Stop>,
    events: mpsc::UnboundedSender<RunEvent>,
}

/// Computes a job's key, restores its stored result or runs every attempt of it and stores the
/// result; the scheduler reports how it finished.
async fn run_job(job: PlannedJob, context: JobContext) -> JobResult {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let JobContext {
        index,
        needs,
        keys,
        mut stop,
        events,
    } = context;
    let ended = |status, reason: Option<String>, key: Option<String>, log: Vec<u8>| JobResult {
        name: job.name.clone(),
        status,
        attempts: 0,
        exit_code: None,
        key,
        reason,
        started: Some(started_at),
        duration: started.elapsed(),
        log,
    };
    let mut waiting = Vec::new();
    let (key, store, notes, secrets) = loop {
        let before = match keys.known(index, &needs) {
            Some(known) => Ok(known),
            None => {
                let keys = Arc::clone(&keys);
                let needs = needs.clone();
                tokio::task::spawn_blocking(move || keys.before(index, &needs))
                    .await
                    .unwrap_or_else(|e| Err(format!("computing the key failed: {e}")))
            }
        };
        match before {
            Err(reason) => {
                let mut log = CappedLog::default();
                log.push(format!("[weir: {reason}]\n").as_bytes());
                return ended(JobStatus::Failed, Some(reason), None, log.to_bytes());
            }
            Ok(Before::Hit { key, restored }) => {
                let reason = match restored {
                    0 => None,
                    n => Some(format!("restored {n} output file(s)")),
                };
                let mut result = ended(JobStatus::Cached, reason, Some(key), Vec::new());
                result.exit_code = Some(0);
                return result;
            }
            Ok(Before::Hold { status, reason }) => {
                let mut log = CappedLog::default();
                log.push(format!("[weir: {reason}]\n").as_bytes());
                return ended(status, Some(reason), None, log.to_bytes());
            }
            Ok(Before::Later { reason }) => {
                if waiting.is_empty() {
                    let line = format!("[weir: {reason}]");
                    let _ = events.send(RunEvent::JobOutput {
                        job: job.name.clone(),
                        line: line.clone(),
                    });
                    waiting = line.into_bytes();
                    waiting.push(b'\n');
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.wait_for(|s| *s != Stop::No) => {
                        return ended(JobStatus::Cancelled, None, None, waiting);
                    }
                }
            }
            Ok(Before::Run {
                key,
                store,
                explain,
                notes,
                secrets,
            }) => {
                if let Some(changes) = explain {
                    let _ = events.send(RunEvent::JobExplained {
                        job: job.name.clone(),
                        key: key.clone(),
                        changes,
                    });
                }
                break (key, store, notes, secrets);
            }
        }
    };
    let mut out = Capture::new(&job.name, secrets.mask, events.clone());
    out.log.push(&waiting);
    for note in notes {
        out.note(&note, true);
    }
    // The job's own variables, then its secrets, which replace any variable of the same name.
    let mut env = job.env.clone();
    for (name, value) in secrets.env {
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    }
    let mut runner = Runner {
        job: &job,
        env,
        out,
        stop: &mut stop,
    };
    if *runner.stop.borrow() != Stop::No {
        let end = Finished {
            status: JobStatus::Cancelled,
            reason: None,
            rollback: Rollback::NotNeeded,
        };
        let log = finish(&keys, index, &end, runner).await;
        return ended(end.status, None, Some(key), log);
    }
    let attempts = job.retries + 1;
    tracing::debug!(job = %job.name, "starting");
    let _ = events.send(RunEvent::JobStarted {
        job: job.name.clone(),
        attempt: 1,
        attempts,
    });
    let mut steps: Vec<(&str, String)> = job
        .steps
        .iter()
        .enumerate()
        .map(|(number, script)| {
            let label = if job.steps.len() > 1 {
                format!(" in step {}", number + 1)
            } else {
                String::new()
            };
            (script.as_str(), label)
        })
        .collect();
    if let Some(health) = &job.health {
        steps.push((health.as_str(), " in the health check".to_owned()));
    }
    let mut last = (JobStatus::Failed, None, None);
    let mut attempt = 0;
    while attempt < attempts {
        attempt += 1;
        if attempt > 1 {
            let _ = events.send(RunEvent::JobStarted {
                job: job.name.clone(),
                attempt,
                attempts,
            });
            runner
                .out
                .note(&format!("attempt {attempt}/{attempts}"), false);
        }
        last = runner.steps(&steps, &job.cwd).await;
        let retry = matches!(last.0, JobStatus::Failed | JobStatus::TimedOut)
            && *runner.stop.borrow() == Stop::No;
        if !retry {
            break;
        }
    }
    let (status, exit_code, mut reason) = last;
    let mut rollback = Rollback::NotNeeded;
    if job.deploy
        && matches!(status, JobStatus::Failed | JobStatus::TimedOut)
        && *runner.stop.borrow() == Stop::No
    {
        rollback = runner.roll_back(&keys, index).await;
        let said = match rollback {
            Rollback::NotNeeded => None,
            Rollback::Nothing => Some("nothing to roll back to"),
            Rollback::Succeeded => Some("rolled back"),
            Rollback::Failed => Some("the rollback failed too"),
        };
        if let Some(said) = said {
            reason = Some(match reason {
                Some(reason) => format!("{reason}; {said}"),
                None => said.to_owned(),
            });
        }
    }
    let duration = started.elapsed();
    if status == JobStatus::Passed && store {
        let bytes = runner.out.log.to_bytes();
        let stored = {
            let key = key.clone();
            let keys = Arc::clone(&keys);
            tokio::task::spawn_blocking(move || keys.after(index, &key, &bytes, duration))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        };
        match stored {
            Ok(Stored::Done) => {}
            Ok(Stored::Refused { warning }) => {
                runner.out.note(&format!("warning: {warning}"), false);
                let _ = events.send(RunEvent::JobWarning {
                    job: job.name.clone(),
                    message: runner.out.masked(&warning),
                });
            }
            // The job passed; failing to cache it only costs a rerun next time.
            Err(err) => runner
                .out
                .note(&format!("could not store the result: {err}"), true),
        }
    }
    let end = Finished {
        status,
        reason: reason.clone(),
        rollback,
    };
    let log = finish(&keys, index, &end, runner).await;
    JobResult {
        name: job.name,
        status,
        attempts: attempt,
        exit_code: if status == JobStatus::Passed {
            Some(0)
        } else {
            exit_code
        },
        key: (!key.is_empty()).then_some(key),
        reason,
        started: Some(started_at),
        duration,
        log,
    }
}

/// Tells `keys` that a job that ran is over; returns its log.
async fn finish(
    keys: &Arc<dyn Keys>,
    index: usize,
    end: &Finished,
    mut runner: Runner<'_>,
) -> Vec<u8> {
    let told = {
        let keys = Arc::clone(keys);
        let end = end.clone();
        tokio::task::spawn_blocking(move || keys.finished(index, &end))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    if let Err(err) = told {
        runner.out.note(&err, true);
    }
    runner.out.log.to_bytes()
}

/// How a sequence of steps ended: status, exit code, why.
type Last = (JobStatus, Option<i32>, Option<String>);

/// Runs one job's steps, capturing their output.
struct Runner<'a> {
    job: &'a PlannedJob,
    /// The job's environment, secrets included.
    env: Vec<(String, std::ffi::OsString)>,
    out: Capture,
    stop: &'a mut watch::Receiver<Stop>,
}

impl Runner<'_> {
    /// Runs `steps` (script, label for messages) in `cwd` in order, stopping at the first that
    /// does not pass, within the job's timeout.
    async fn steps(&mut self, steps: &[(&str, String)], cwd: &std::path::Path) -> Last {
        let job = self.job;
        let deadline = job.timeout.map(|t| Instant::now() + t);
        for (script, step_label) in steps {
            self.out.output(format!("$ {script}\n").as_bytes());
            let step = Step {
                shell: &job.shell,
                script,
                cwd,
                env: &self.env,
                deadline,
            };
            let out = &mut self.out;
            let end = run_step(&step, self.stop, &mut |bytes: &[u8]| out.output(bytes)).await;
            self.out.end_of_stream();
            let last = match end {
                Ok(StepEnd::Exited(status)) if status.success() => continue,
                Ok(StepEnd::Exited(status)) => match status.code() {
                    Some(code) => (
                        JobStatus::Failed,
                        Some(code),
                        Some(format!("exit code {code}{step_label}")),
                    ),
                    None => {
                        use std::os::unix::process::ExitStatusExt;
                        let signal = status.signal().unwrap_or_default();
                        (
                            JobStatus::Failed,
                            None,
                            Some(format!("killed by signal {signal}{step_label}")),
                        )
                    }
                },
                Ok(StepEnd::TimedOut) => (
                    JobStatus::TimedOut,
                    None,
                    job.timeout
                        .map(|t| format!("timed out after {}", humantime::format_duration(t))),
                ),
                Ok(StepEnd::Cancelled) => (JobStatus::Cancelled, None, None),
                Err(err) => (
                    JobStatus::Failed,
                    None,
                    Some(format!("could not start `sh` in {}: {err}", cwd.display())),
                ),
            };
            self.out
                .note(last.2.as_deref().unwrap_or(last.0.as_str()), false);
            return last;
        }
        (JobStatus::Passed, Some(0), None)
    }

    /// A deploy failed: runs its `rollback` command, or else redeploys what `keys` says was
    /// there before.
    async fn roll_back(&mut self, keys: &Arc<dyn Keys>, index: usize) -> Rollback {
        let job = self.job;
        let (steps, cwd, what) = match &job.rollback {
            Some(command) => (
                vec![(command.clone(), " in the rollback".to_owned())],
                job.cwd.clone(),
                format!("running `{command}`"),
            ),
            None => {
                let recovery = {
                    let keys = Arc::clone(keys);
                    tokio::task::spawn_blocking(move || keys.recover(index))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))
                };
                match recovery {
                    Ok(None) => {
                        self.out.note(
                            "the deploy failed and there is no earlier deployment to roll back to",
                            true,
                        );
                        return Rollback::Nothing;
                    }
                    Err(err) => {
                        self.out.note(
                            &format!("the deploy failed and cannot be rolled back: {err}"),
                            true,
                        );
                        return Rollback::Failed;
                    }
                    Ok(Some(recovery)) => (
                        recovery
                            .steps
                            .into_iter()
                            .map(|s| (s, " in the rollback".to_owned()))
                            .collect(),
                        recovery.cwd,
                        recovery.what,
                    ),
                }
            }
        };
        self.out
            .note(&format!("the deploy failed; rolling back: {what}"), true);
        let steps: Vec<(&str, String)> =
            steps.iter().map(|(s, l)| (s.as_str(), l.clone())).collect();
        match self.steps(&steps, &cwd).await.0 {
            JobStatus::Passed => Rollback::Succeeded,
            _ => Rollback::Failed,
        }
    }
}

/// A job's output on its way out: masked for secrets first, then kept in the capped log and
/// sent line by line to the reporter, so nothing unmasked reaches a terminal, an event or a
/// stored log.
struct Capture {
    job: String,
    log: CappedLog,
    lines: LineSplitter,
    masker: Option<Masker>,
    patterns: Option<Arc<Patterns>>,
    events: mpsc::UnboundedSender<RunEvent>,
}

impl Capture {
    fn new(
        job: &str,
        patterns: Option<Arc<Patterns>>,
        events: mpsc::UnboundedSender<RunEvent>,
    ) -> Capture {
        Capture {
            job: job.to_owned(),
            log: CappedLog::default(),
            lines: LineSplitter::default(),
            masker: patterns.clone().map(Masker::new),
            patterns,
            events,
        }
    }

    /// Bytes of a step's output, as they arrive.
    fn output(&mut self, bytes: &[u8]) {
        self.pass(bytes, false);
    }

    /// The step's output ended: what the masker held back, then the last partial line.
    fn end_of_stream(&mut self) {
        self.pass(&[], true);
        let Capture {
            job, lines, events, ..
        } = self;
        lines.finish(|line| {
            let _ = events.send(RunEvent::JobOutput {
                job: job.clone(),
                line,
            });
        });
    }

    fn pass(&mut self, bytes: &[u8], end: bool) {
        let Capture {
            job,
            log,
            lines,
            masker,
            events,
            ..
        } = self;
        let mut pass = |bytes: &[u8]| {
            log.push(bytes);
            lines.push(bytes, |line| {
                let _ = events.send(RunEvent::JobOutput {
                    job: job.clone(),
                    line,
                });
            });
        };
        match masker {
            Some(masker) => {
                masker.push(bytes, &mut pass);
                if end {
                    masker.finish(&mut pass);
                }
            }
            None => pass(bytes),
        }
    }

    /// One of weir's own notes, `[weir: …]` in the log; `show` also sends it as output.
    fn note(&mut self, text: &str, show: bool) {
        let line = format!("[weir: {}]", self.masked(text));
        self.log.push(format!("{line}\n").as_bytes());
        if show {
            let _ = self.events.send(RunEvent::JobOutput {
                job: self.job.clone(),
                line,
            });
        }
    }

    fn masked(&self, text: &str) -> String {
        match &self.patterns {
            Some(patterns) => patterns.mask_str(text),
            None => text.to_owned(),
        }
    }
}
