use std::time::Duration;

use super::{JobStatus, RunEvent, RunOutcome};

/// `0.42s`, `12.3s`, `2m 05s`, `1h 02m`: short, and precise where it matters.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.2}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h {:02}m", d.as_secs() / 3600, (d.as_secs() % 3600) / 60)
    }
}

/// The line saying how a job ended.
pub fn job_finished(
    job: &str,
    status: JobStatus,
    duration: Duration,
    attempts: u32,
    reason: Option<&str>,
) -> String {
    let took = format_duration(duration);
    let attempts = if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    };
    match (status, reason) {
        (JobStatus::Passed, _) => format!("{job}: passed in {took}{attempts}"),
        (JobStatus::Cached, Some(reason)) => format!("{job}: cached ({reason})"),
        (JobStatus::Cached, None) => format!("{job}: cached"),
        (JobStatus::Skipped, Some(reason)) => format!("{job}: skipped ({reason})"),
        (JobStatus::Skipped, None) => format!("{job}: skipped"),
        (JobStatus::Waiting, Some(reason)) => format!("{job}: waiting ({reason})"),
        (status, Some(reason)) => {
            format!("{job}: {} ({reason}) in {took}{attempts}", status.as_str())
        }
        (status, None) => format!("{job}: {} in {took}{attempts}", status.as_str()),
    }
}

/// The lines explaining why a job's key missed.
pub fn explained(job: &str, key: &str, changes: &[String]) -> String {
    let mut text = format!(
        "{job}: no stored result for key {}",
        &key[..key.len().min(12)]
    );
    for change in changes {
        text.push_str(&format!("\n  {change}"));
    }
    text
}

/// The closing summary of a run.
pub fn run_finished(event: &RunEvent) -> Option<String> {
    let RunEvent::RunFinished {
        outcome,
        duration,
        passed,
        cached,
        failed,
        cancelled,
        skipped,
        waiting,
        record,
        ..
    } = event
    else {
        return None;
    };
    let mut parts = vec![format!("{passed} passed")];
    if *cached > 0 {
        parts.push(format!("{cached} cached"));
    }
    if *failed > 0 {
        parts.push(format!("{failed} failed"));
    }
    if *cancelled > 0 {
        parts.push(format!("{cancelled} cancelled"));
    }
    if *skipped > 0 {
        parts.push(format!("{skipped} skipped"));
    }
    if *waiting > 0 {
        parts.push(format!("{waiting} waiting for approval"));
    }
    let verdict = match outcome {
        RunOutcome::Passed => "run passed",
        RunOutcome::Failed => "run failed",
        RunOutcome::Cancelled => "run cancelled",
    };
    let mut line = format!(
        "{verdict}: {} in {}",
        parts.join(", "),
        format_duration(*duration)
    );
    if let Some(record) = record {
        line.push_str(&format!(" (recorded as {record})"));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(420)), "0.42s");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m 05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h 02m");
    }
}
