use crate::error::{Error, exit};
use crate::report::{JobStatus, Output};
use crate::store::{RunSummary, Runs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many runs to list
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// Print one JSON object per run
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    let runs = Runs::new(&context.repo).list()?;
    if runs.is_empty() && !args.json {
        Output.err("no runs recorded yet; `weir run` records one");
    }
    for (summary, _) in runs.iter().take(args.limit) {
        if args.json {
            Output.out(&serde_json::to_string(summary).unwrap_or_default());
        } else {
            Output.out(&line(summary));
        }
    }
    Ok(exit::SUCCESS)
}

/// `ID  TIME  TRIGGER  OUTCOME  JOBS`, one run per line.
pub fn line(run: &RunSummary) -> String {
    format!(
        "{}  {}  {:<10}  {:<9}  {}",
        run.id,
        run.started,
        run.trigger,
        run.outcome.as_str(),
        jobs(run)
    )
}

fn jobs(run: &RunSummary) -> String {
    let mut parts = Vec::new();
    for status in [
        JobStatus::Passed,
        JobStatus::Cached,
        JobStatus::Failed,
        JobStatus::TimedOut,
        JobStatus::Cancelled,
        JobStatus::Skipped,
        JobStatus::Waiting,
    ] {
        let n = run.count(status);
        if n > 0 {
            parts.push(format!("{n} {}", status.as_str()));
        }
    }
    format!("{} job(s): {}", run.jobs.len(), parts.join(", "))
}
