//! Deployments: `approve`, `reject`, `status`, `history`, `rollback`, `unlock` and
//! `ledger push/pull`. Each reads or appends to the environments' ledgers.

use std::collections::{BTreeMap, BTreeSet};

use super::Context;
use super::run::{Execution, execute, exit_code};
use crate::config::{self, Event};
use crate::deploy::{self, Mode, lock};
use crate::engine::{CacheOptions, Workspace};
use crate::error::{Error, exit};
use crate::graph::Graph;
use crate::report::Output;
use crate::store::ledger::{self, Entry, Ledger, NewRecord, State};

#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// The environment (a deploy job's `environment`)
    #[arg(value_parser = parse_environment)]
    environment: String,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The environment (a deploy job's `environment`)
    #[arg(value_parser = parse_environment)]
    environment: String,
    /// Check the chain instead of listing it: numbering, parents, objects present
    #[arg(long)]
    verify: bool,
    /// Print one JSON object per entry
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The environment (a deploy job's `environment`)
    #[arg(value_parser = parse_environment)]
    environment: String,
    /// The ledger entry to deploy again: its number (`3`) or commit id; default: the release that
    /// was live before the current one
    #[arg(long, value_name = "ENTRY")]
    to: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Push every environment's ledger to a remote (refused if the remote's has diverged)
    Push {
        /// Default: `[cache] remote`, else origin
        remote: Option<String>,
    },
    /// Fetch every environment's ledger from a remote (refused if the local one has diverged)
    Pull {
        /// Default: `[cache] remote`, else origin
        remote: Option<String>,
    },
}

/// `weir approve ENV`: deploys the release that waits for approval in `ENV`.
pub fn approve(args: EnvArgs) -> Result<u8, Error> {
    let context = Context::discover_allow_bare()?;
    let env = &args.environment;
    let (waiting, release) = answer(&context, env, ledger::Event::Approved)?;
    let seq = waiting.record.seq;
    Output.err(&format!(
        "weir: #{seq} approved; deploying {} to `{env}`",
        deploy::short_hex(waiting.record.commit.as_deref())
    ));
    deploy_entry(
        &context,
        env,
        &waiting,
        Mode::Approved {
            entry: seq,
            release,
        },
    )
}

/// `weir reject ENV`: drops the release that waits for approval in `ENV`.
pub fn reject(args: EnvArgs) -> Result<u8, Error> {
    let context = Context::discover_allow_bare()?;
    let env = &args.environment;
    let (waiting, _) = answer(&context, env, ledger::Event::Rejected)?;
    Output.err(&format!(
        "weir: #{} rejected: {} will not be deployed to `{env}`",
        waiting.record.seq,
        deploy::short_hex(waiting.record.commit.as_deref())
    ));
    Ok(exit::SUCCESS)
}

/// Records `event` (an approval or a rejection) for the release waiting in `env`; returns the
/// waiting entry and its release.
fn answer(
    context: &Context,
    env: &str,
    event: ledger::Event,
) -> Result<(Entry, ledger::Release), Error> {
    let ledger = Ledger::new(&context.repo);
    let entries = ledger.entries(env)?;
    let waiting = State::of(&entries).waiting.ok_or_else(|| Error::Usage {
        message: format!("nothing waits for approval in `{env}`"),
        hint: Some("`weir status` shows what waits".to_owned()),
    })?;
    let release = ledger.release(waiting)?;
    ledger.append(
        env,
        &NewRecord {
            event,
            job: &waiting.record.job,
            release: Some(&release),
            run: None,
            of: Some(waiting.record.seq),
            detail: None,
        },
    )?;
    Ok((waiting.clone(), release))
}

/// `weir rollback ENV [--to ENTRY]`: deploys an earlier entry's release again.
pub fn rollback(args: RollbackArgs) -> Result<u8, Error> {
    let context = Context::discover_allow_bare()?;
    let env = &args.environment;
    let ledger = Ledger::new(&context.repo);
    let entries = ledger.entries(env)?;
    let target = match &args.to {
        Some(query) => ledger.find(env, query)?,
        None => previous_release(&entries)
            .cloned()
            .ok_or_else(|| Error::Usage {
                message: format!("`{env}` has no earlier successful deployment to roll back to"),
                hint: Some(format!(
                    "`weir history {env}` lists its ledger; `--to ENTRY` picks one"
                )),
            })?,
    };
    if target.record.commit.is_none() && ledger.release(&target)?.source.is_none() {
        return Err(Error::Usage {
            message: format!(
                "ledger entry #{} of `{env}` holds no release to deploy",
                target.record.seq
            ),
            hint: Some(format!("`weir history {env}` lists its ledger")),
        });
    }
    let release = ledger.release(&target)?;
    Output.err(&format!(
        "weir: rolling `{env}` back to #{} ({})",
        target.record.seq,
        deploy::short_hex(target.record.commit.as_deref())
    ));
    deploy_entry(
        &context,
        env,
        &target,
        Mode::Rollback {
            entry: target.record.seq,
            release,
        },
    )
}

/// `weir status`: what each environment runs, what waits for approval, what is locked.
pub fn status() -> Result<u8, Error> {
    let context = Context::discover_allow_bare()?;
    let ledger = Ledger::new(&context.repo);
    let mut environments: BTreeSet<String> = ledger.environments()?.into_iter().collect();
    if let Ok(pipeline) = context.pipeline() {
        environments.extend(pipeline.jobs.iter().filter_map(|j| j.environment.clone()));
    }
    if environments.is_empty() {
        Output.err("no environments: no job has `environment` and no ledger exists");
        return Ok(exit::SUCCESS);
    }
    for env in &environments {
        let entries = ledger.entries(env)?;
        let state = State::of(&entries);
        Output.out(&format!("{env}:"));
        match state.live {
            Some(live) => Output.out(&format!(
                "  live: #{} {} ({}, {} by {})",
                live.record.seq,
                deploy::short_hex(live.record.commit.as_deref()),
                live.record.event.as_str(),
                live.record.when,
                live.record.who
            )),
            None => Output.out("  live: nothing deployed yet"),
        }
        if let Some(waiting) = state.waiting {
            Output.out(&format!(
                "  waiting for approval: #{} {} (since {}); `weir approve {env}` or `weir reject {env}`",
                waiting.record.seq,
                deploy::short_hex(waiting.record.commit.as_deref()),
                waiting.record.when
            ));
        }
        let holder = lock::holder(&context.repo, env);
        match (&holder, state.unfinished) {
            (Some(holder), _) if holder.alive() => {
                Output.out(&format!("  deploying now: {}", holder.describe()));
            }
            (Some(holder), _) => Output.out(&format!(
                "  locked by {}, which is no longer running; `weir unlock {env}` clears it",
                holder.describe()
            )),
            (None, Some(unfinished)) => Output.out(&format!(
                "  #{} started but has no outcome (interrupted)",
                unfinished.record.seq
            )),
            (None, None) => {}
        }
    }
    Ok(exit::SUCCESS)
}

/// `weir history ENV [--verify]`.
pub fn history(args: HistoryArgs) -> Result<u8, Error> {
    let context = Context::discover_allow_bare()?;
    let env = &args.environment;
    let ledger = Ledger::new(&context.repo);
    if args.verify {
        let (count, problems) = ledger.verify(env)?;
        for problem in &problems {
            Output.out(problem);
        }
        Output.err(&format!(
            "{count} entries of `{env}` checked, {} problems",
            problems.len()
        ));
        return Ok(if problems.is_empty() {
            exit::SUCCESS
        } else {
            exit::FAILURE
        });
    }
    let entries = ledger.entries(env)?;
    if entries.is_empty() {
        Output.err(&format!("`{env}` has no ledger yet"));
        return Ok(exit::SUCCESS);
    }
    let state = State::of(&entries);
    let running = lock::holder(&context.repo, env).is_some_and(|h| h.alive());
    for entry in &entries {
        let record = &entry.record;
        if args.json {
            let mut value = serde_json::to_value(record).unwrap_or_default();
            value["id"] = entry.commit.to_string().into();
            Output.out(&value.to_string());
            continue;
        }
        let mut event = record.event.as_str().to_owned();
        if state.unfinished.is_some_and(|u| u.record.seq == record.seq) {
            event.push_str(if running {
                " (in progress)"
            } else {
                " (interrupted: no outcome recorded)"
            });
        }
        let mut line = format!(
            "#{:<4} {:<18} {:<12}  {}  {}",
            record.seq,
            event,
            deploy::short_hex(record.commit.as_deref()),
            record.when,
            record.who
        );
        if let Some(of) = record.of {
            line.push_str(&format!("  (#{of})"));
        }
        if let Some(detail) = &record.detail {
            line.push_str(&format!("  {detail}"));
        }
        Output.out(&line);
    }
    Ok(exit::SUCCESS)
}

/// `weir unlock ENV`: clears a lock whose holder died, recording the interruption.
pub fn unlock(args: EnvArgs) -> Result<u8, Error> {
    let context = Context::discover_allow_bare()?;
    let env = &args.environment;
    let Some(holder) = lock::holder(&context.repo, env) else {
        Output.err(&format!("`{env}` is not locked"));
        return Ok(exit::SUCCESS);
    };
    if holder.alive() {
        return Err(Error::Usage {
            message: format!(
                "`{env}` is locked by {}, which is running",
                holder.describe()
            ),
            hint: Some("wait for it to finish, or stop it (Ctrl-C) first".to_owned()),
        });
    }
    let ledger = Ledger::new(&context.repo);
    let entries = ledger.entries(env)?;
    if let Some(unfinished) = State::of(&entries).unfinished {
        let release = ledger.release(unfinished)?;
        ledger.append(
            env,
            &NewRecord {
                event: ledger::Event::Interrupted,
                job: &unfinished.record.job,
                release: Some(&release),
                run: unfinished.record.run.as_deref(),
                of: Some(unfinished.record.seq),
                detail: Some(format!(
                    "process {} died during the deploy; recorded by `weir unlock`",
                    holder.pid
                )),
            },
        )?;
        Output.err(&format!(
            "recorded #{} as interrupted",
            unfinished.record.seq
        ));
    }
    lock::clear(&context.repo, env)?;
    Output.err(&format!("unlocked `{env}`"));
    Ok(exit::SUCCESS)
}

/// `weir ledger push/pull`.
pub fn ledger(command: LedgerCommand) -> Result<u8, Error> {
    let context = Context::discover_allow_bare()?;
    let spec = format!("{}*:{}*", ledger::PREFIX, ledger::PREFIX);
    match command {
        LedgerCommand::Push { remote } => {
            let remote = super::cache::remote_or_default(&context, remote);
            let report = context.repo.push(&remote, &[spec])?;
            let pushed = report
                .lines()
                .filter(|l| l.starts_with('*') || l.starts_with(' '))
                .count();
            Output.err(&format!("pushed {pushed} ledger(s) to {remote}"));
        }
        LedgerCommand::Pull { remote } => {
            let remote = super::cache::remote_or_default(&context, remote);
            context.repo.fetch(&remote, &[spec])?;
            let count = Ledger::new(&context.repo).environments()?.len();
            Output.err(&format!(
                "fetched the ledgers from {remote}; {count} environment(s) known"
            ));
        }
    }
    Ok(exit::SUCCESS)
}

/// The newest release that was live before the current one and differs from it.
fn previous_release(entries: &[Entry]) -> Option<&Entry> {
    let mut live = entries.iter().filter(|e| e.record.event.makes_live());
    let current = live.next()?;
    let same = |e: &&Entry| {
        e.record.commit == current.record.commit && e.record.artifacts == current.record.artifacts
    };
    live.find(|e| !same(e))
}

/// Deploys `entry`'s release to `env` in a snapshot of it, with the deploy job as the pipeline
/// of the release's own commit defines it.
fn deploy_entry(context: &Context, env: &str, entry: &Entry, mode: Mode) -> Result<u8, Error> {
    let repo = &context.repo;
    let (dir, entries) = deploy::materialize(repo, env, entry).map_err(|message| Error::Usage {
        message: format!(
            "cannot prepare #{} for deploying: {message}",
            entry.record.seq
        ),
        hint: None,
    })?;
    // The pipeline root sits where the current one does, relative to the repository root.
    let rel = context
        .pipeline()
        .ok()
        .and_then(|p| {
            p.root
                .strip_prefix(repo.workdir())
                .ok()
                .map(|r| r.to_path_buf())
        })
        .unwrap_or_default();
    let root = dir.join(rel);
    let file = root.join(config::FILE_NAME);
    let bytes = std::fs::read(&file).map_err(|e| {
        Error::io(
            format!(
                "the release of #{} has no {} to deploy it with",
                entry.record.seq,
                config::FILE_NAME
            ),
            e,
        )
    })?;
    let pipeline = config::parse(config::FILE_NAME, &file, &root, &bytes)?;
    let job = &entry.record.job;
    let Some(index) = pipeline
        .jobs
        .iter()
        .position(|j| &j.name == job && j.environment.as_deref() == Some(env))
    else {
        return Err(Error::Usage {
            message: format!(
                "the pipeline of #{} has no deploy job `{job}` for `{env}`",
                entry.record.seq
            ),
            hint: None,
        });
    };
    let graph = Graph {
        jobs: vec![index],
        needs: vec![Vec::new()],
    };
    let source = entry
        .record
        .commit
        .as_deref()
        .and_then(|hex| gix::ObjectId::from_hex(hex.as_bytes()).ok());
    let outcome = execute(
        context,
        &pipeline,
        &graph,
        Execution {
            trigger: Event::Manual,
            workspace: Workspace::Snapshot {
                root,
                dir,
                entries,
                watch: None,
            },
            cache: CacheOptions::default(),
            parallel: Some(1),
            keep_going: false,
            json: false,
            files: BTreeMap::new(),
            source,
            deploy: mode,
            restart: None,
        },
    )?;
    Ok(exit_code(outcome))
}

/// An environment name as `.pipeline.toml` accepts it: it is part of a ref name and a file name.
fn parse_environment(name: &str) -> Result<String, String> {
    match config::ref_name_problem(name) {
        None => Ok(name.to_owned()),
        Some(problem) => Err(format!("not an environment name: {problem}")),
    }
}
