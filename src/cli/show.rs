use std::time::Duration;

use crate::error::{Error, exit};
use crate::report::{Output, format_duration};
use crate::store::{Error as StoreError, Runs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: its id or a unique prefix of it, or of its random part (default: the latest)
    run: Option<String>,
    /// Show only this job
    #[arg(long)]
    job: Option<String>,
    /// Print the run summary as JSON instead
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    let runs = Runs::new(&context.repo);
    let (summary, commit) = match &args.run {
        Some(query) => runs.find(query)?,
        None => runs
            .list()?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound("the latest run".to_owned()))?,
    };
    if args.json {
        let text = match &args.job {
            Some(name) => match summary.jobs.iter().find(|j| &j.name == name) {
                Some(job) => serde_json::to_string_pretty(job),
                None => return Err(no_such_job(&summary, name)),
            },
            None => serde_json::to_string_pretty(&summary),
        };
        Output.out(&text.unwrap_or_default());
        return Ok(exit::SUCCESS);
    }
    if args.job.is_none() {
        Output.out(&super::log::line(&summary));
    }
    let mut shown = false;
    for job in &summary.jobs {
        if args.job.as_ref().is_some_and(|name| name != &job.name) {
            continue;
        }
        shown = true;
        let mut header = format!(
            "── {}: {} in {}",
            job.name,
            job.status.as_str(),
            format_duration(Duration::from_millis(job.duration_ms))
        );
        if job.attempts > 1 {
            header.push_str(&format!(" after {} attempts", job.attempts));
        }
        if let Some(reason) = &job.reason {
            header.push_str(&format!(" ({reason})"));
        }
        Output.out(&header);
        if let Some(log) = runs.log(commit, &job.name)? {
            Output.out_bytes(&log);
            if !log.ends_with(b"\n") && !log.is_empty() {
                Output.out("");
            }
        }
    }
    if let (Some(name), false) = (&args.job, shown) {
        return Err(no_such_job(&summary, name));
    }
    Ok(exit::SUCCESS)
}

fn no_such_job(summary: &crate::store::RunSummary, name: &str) -> Error {
    let jobs: Vec<&str> = summary.jobs.iter().map(|j| j.name.as_str()).collect();
    Error::Usage {
        message: format!("run {} has no job `{name}`", summary.id),
        hint: Some(format!("its jobs: {}", jobs.join(", "))),
    }
}
