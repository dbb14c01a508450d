use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{JobStatus, RunEvent, human, json};

/// Plain text to stdout or stderr. Write errors (a closed pipe, as in `weir log | head`) are
/// ignored: there is no one left to tell.
#[derive(Debug, Default, Clone, Copy)]
pub struct Output;

impl Output {
    pub fn out(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    pub fn out_bytes(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
    }

    /// One write per line: stderr is unbuffered, and `writeln!` would write the newline
    /// apart (a system call more per line, and a line another process can split).
    pub fn err(&self, text: &str) {
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// How run events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReporterKind {
    /// A terminal: a live line per running job, the tail of a failed job's log.
    Live,
    /// Not a terminal: plain lines, job output prefixed with the job's name.
    Plain,
    /// NDJSON events on stdout.
    Json,
}

/// Lines of a failed job's log shown on a terminal.
const TAIL_LINES: usize = 20;

/// Renders run events as they happen.
pub struct Reporter {
    kind: ReporterKind,
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    width: usize,
}

impl Reporter {
    pub fn new(kind: ReporterKind) -> Reporter {
        let target = match kind {
            ReporterKind::Live => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        };
        Reporter {
            kind,
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            width: 0,
        }
    }

    pub fn event(&mut self, event: &RunEvent) {
        match self.kind {
            ReporterKind::Json => {
                if let Some(line) = json::line(event) {
                    Output.out(&line);
                }
            }
            ReporterKind::Plain => self.plain(event),
            ReporterKind::Live => self.live(event),
        }
    }

    fn plain(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { run, trigger, jobs } => {
                self.width = jobs.iter().map(String::len).max().unwrap_or(0);
                Output.err(&format!("run {run} ({trigger}): {} job(s)", jobs.len()));
            }
            RunEvent::JobStarted {
                job,
                attempt,
                attempts,
            } => {
                if *attempt > 1 {
                    Output.err(&format!("{job}: attempt {attempt}/{attempts}"));
                } else {
                    Output.err(&format!("{job}: started"));
                }
            }
            RunEvent::JobOutput { job, line } => {
                Output.err(&format!("{job:>width$} | {line}", width = self.width));
            }
            RunEvent::JobWarning { job, message } => {
                Output.err(&format!("warning: job `{job}`: {message}"));
            }
            RunEvent::JobExplained { job, key, changes } => {
                Output.err(&human::explained(job, key, changes));
            }
            RunEvent::JobFinished {
                job,
                status,
                duration,
                attempts,
                reason,
                ..
            } => Output.err(&human::job_finished(
                job,
                *status,
                *duration,
                *attempts,
                reason.as_deref(),
            )),
            RunEvent::RunFinished { .. } => {
                if let Some(line) = human::run_finished(event) {
                    Output.err(&line);
                }
            }
        }
    }

    fn live(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { run, trigger, jobs } => {
                self.width = jobs.iter().map(String::len).max().unwrap_or(0);
                let _ = self
                    .multi
                    .println(format!("run {run} ({trigger}): {} job(s)", jobs.len()));
            }
            RunEvent::JobStarted {
                job,
                attempt,
                attempts,
            } => {
                let bar = self.bars.entry(job.clone()).or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                let label = if *attempt > 1 {
                    format!("{job:<w$} (attempt {attempt}/{attempts})", w = self.width)
                } else {
                    format!("{job:<w$}", w = self.width)
                };
                bar.set_message(label);
            }
            RunEvent::JobOutput { .. } => {}
            RunEvent::JobWarning { job, message } => {
                let _ = self
                    .multi
                    .println(format!("warning: job `{job}`: {message}"));
            }
            RunEvent::JobExplained { job, key, changes } => {
                let _ = self.multi.println(human::explained(job, key, changes));
            }
            RunEvent::JobFinished {
                job,
                status,
                duration,
                attempts,
                reason,
                tail,
                ..
            } => {
                if let Some(bar) = self.bars.remove(job) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                let mut text =
                    human::job_finished(job, *status, *duration, *attempts, reason.as_deref());
                if matches!(status, JobStatus::Failed | JobStatus::TimedOut) {
                    for line in last_lines(tail, TAIL_LINES) {
                        text.push_str("\n  │ ");
                        text.push_str(line);
                    }
                }
                let _ = self.multi.println(text);
            }
            RunEvent::RunFinished { .. } => {
                for (_, bar) in self.bars.drain() {
                    bar.finish_and_clear();
                }
                let _ = self.multi.clear();
                if let Some(line) = human::run_finished(event) {
                    Output.err(&line);
                }
            }
        }
    }
}

fn last_lines(text: &str, n: usize) -> impl Iterator<Item = &str> {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    lines.into_iter().skip(skip)
}
