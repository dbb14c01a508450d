use std::time::Duration;

use crate::error::{Error, exit};
use crate::report::Output;
use crate::store::cache::{Cache, Entry, PREFIX};
use crate::store::ledger;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List cache entries: job, key, age, size of outputs
    Ls {
        /// Print one JSON object per entry
        #[arg(long)]
        json: bool,
    },
    /// Check every entry: its objects are present and its paths are safe to restore
    Verify,
    /// Remove entries by count per job and by age (objects go at the next `git gc`), and the
    /// kept copies of outputs that no remaining entry holds
    Gc {
        /// Keep the newest N entries of each job
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Remove entries older than this (e.g. 7d, 12h)
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        max_age: Option<Duration>,
        /// Say what would be removed, and remove nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Push every cache entry and deployment ledger to a remote: any git server is a shared cache
    Push {
        /// Default: `[cache] remote`, else origin
        remote: Option<String>,
    },
    /// Fetch every cache entry and deployment ledger from a remote
    Pull {
        /// Default: `[cache] remote`, else origin
        remote: Option<String>,
    },
}

pub fn run(command: Command) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    let cache = Cache::new(&context.repo);
    match command {
        Command::Ls { json } => {
            for entry in cache.entries()? {
                let age = cache.age(entry.commit)?;
                let size = cache.size(entry.commit)?;
                if json {
                    let value = serde_json::json!({
                        "job": entry.job,
                        "key": entry.key,
                        "age_s": age.as_secs(),
                        "size": size,
                    });
                    Output.out(&value.to_string());
                } else {
                    Output.out(&format!(
                        "{:<24} {}  {:>8}  {}",
                        entry.job,
                        &entry.key[..entry.key.len().min(12)],
                        format_age(age),
                        format_size(size)
                    ));
                }
            }
            Ok(exit::SUCCESS)
        }
        Command::Verify => {
            let entries = cache.entries()?;
            let mut bad = 0;
            for entry in &entries {
                let problems = cache.verify(entry);
                if !problems.is_empty() {
                    bad += 1;
                    Output.out(&format!("{} {}:", entry.job, entry.key));
                    for problem in problems {
                        Output.out(&format!("  {problem}"));
                    }
                }
            }
            Output.err(&format!(
                "{} entries checked, {bad} with problems",
                entries.len()
            ));
            Ok(if bad == 0 {
                exit::SUCCESS
            } else {
                exit::FAILURE
            })
        }
        Command::Gc {
            keep,
            max_age,
            dry_run,
        } => {
            if keep.is_none() && max_age.is_none() {
                return Err(Error::Usage {
                    message: "`weir cache gc` needs `--keep N`, `--max-age DURATION` or both"
                        .into(),
                    hint: Some("e.g. `weir cache gc --keep 5 --max-age 30d`".into()),
                });
            }
            let doomed = select_for_gc(&cache, keep, max_age)?;
            for (entry, age) in &doomed {
                Output.out(&format!(
                    "{} {} {} (age {})",
                    if dry_run { "would remove" } else { "removed" },
                    entry.job,
                    &entry.key[..entry.key.len().min(12)],
                    format_age(*age)
                ));
            }
            let entries: Vec<Entry> = doomed.into_iter().map(|(e, _)| e).collect();
            if !dry_run && !entries.is_empty() {
                cache.remove(&entries)?;
                Output.err(&format!(
                    "removed {} entries; `git gc` reclaims their space",
                    entries.len()
                ));
            }
            // Once the entries are gone (or, for a dry run, as if they were).
            let leaving: &[Entry] = if dry_run { &entries } else { &[] };
            let (files, bytes) = cache.prune_materialized(leaving, !dry_run)?;
            if files > 0 {
                Output.err(&format!(
                    "{} {files} kept output copies ({}) that no entry holds and no file links",
                    if dry_run { "would remove" } else { "removed" },
                    format_size(bytes)
                ));
            }
            Ok(exit::SUCCESS)
        }
        Command::Push { remote } => {
            let remote = remote_or_default(&context, remote);
            let spec = format!("{PREFIX}*:{PREFIX}*");
            let ledgers = format!("{}*:{}*", ledger::PREFIX, ledger::PREFIX);
            let report = context.repo.push(&remote, &[spec, ledgers])?;
            let pushed = report.lines().filter(|l| l.starts_with('*')).count();
            Output.err(&format!("pushed {pushed} new entries to {remote}"));
            Ok(exit::SUCCESS)
        }
        Command::Pull { remote } => {
            let remote = remote_or_default(&context, remote);
            let before = cache.entries()?.len();
            // Cache entries never change once written; a ledger only grows, so one that moved
            // any other way is refused rather than overwritten.
            let ledgers = format!("{}*:{}*", ledger::PREFIX, ledger::PREFIX);
            context
                .repo
                .fetch(&remote, &[format!("+{PREFIX}*:{PREFIX}*"), ledgers])?;
            let after = Cache::new(&context.repo).entries()?.len();
            Output.err(&format!(
                "fetched {} new entries from {remote}",
                after.saturating_sub(before)
            ));
            Ok(exit::SUCCESS)
        }
    }
}

/// Entries to remove: beyond the newest `keep` of each job, or older than `max_age`.
fn select_for_gc(
    cache: &Cache<'_>,
    keep: Option<usize>,
    max_age: Option<Duration>,
) -> Result<Vec<(Entry, Duration)>, Error> {
    let mut aged = Vec::new();
    for entry in cache.entries()? {
        let age = cache.age(entry.commit)?;
        let stored = cache.stored_at(entry.commit)?;
        aged.push((entry, age, stored));
    }
    // Newest first within each job.
    aged.sort_by(|a, b| a.0.job.cmp(&b.0.job).then(b.2.cmp(&a.2)));
    let mut doomed = Vec::new();
    let mut rank = 0;
    let mut job = String::new();
    for (entry, age, _) in aged {
        if entry.job != job {
            job = entry.job.clone();
            rank = 0;
        }
        rank += 1;
        let too_many = keep.is_some_and(|k| rank > k);
        let too_old = max_age.is_some_and(|m| age > m);
        if too_many || too_old {
            doomed.push((entry, age));
        }
    }
    Ok(doomed)
}

pub(super) fn remote_or_default(context: &super::Context, remote: Option<String>) -> String {
    remote
        .or_else(|| context.pipeline().ok().and_then(|p| p.cache.remote))
        .unwrap_or_else(|| "origin".to_owned())
}

/// `42s`, `5m`, `3h`, `12d`: how long ago, roughly.
fn format_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}
