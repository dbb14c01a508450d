//! The command line: parse, call the engine, render. One file per subcommand.

mod cache;
mod deploy;
mod explain;
mod graph;
mod hook;
mod init;
mod install;
mod log;
mod run;
mod show;
mod trust;
mod uninstall;
mod validate;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Error, exit};
use crate::git::Repo;
use crate::report::Output;
use crate::{config, env_vars};

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "A git-native CI/CD engine that runs inside a repository"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a starter .pipeline.toml for this repository
    Init(init::Args),
    /// Check .pipeline.toml and report every error in it
    Validate(validate::Args),
    /// Run jobs and what they need
    Run(run::Args),
    /// Say whether a job would be restored from the cache, and if not, what changed
    Explain(explain::Args),
    /// Inspect, check, trim and share the cache
    #[command(subcommand)]
    Cache(cache::Command),
    /// Run what a git hook runs (the shims `weir install` writes call this)
    Hook(hook::Args),
    /// Print the job graph
    Graph(graph::Args),
    /// List recent runs
    Log(log::Args),
    /// Show one run with its logs
    Show(show::Args),
    /// Install weir's git hooks (keeping and chaining any already there) and trust the pipeline
    Install(install::Args),
    /// Remove weir's git hooks and put back the ones they chained
    Uninstall(uninstall::Args),
    /// Trust the current .pipeline.toml, so that hooks run it on this machine
    Trust(trust::Args),
    /// Deploy the release waiting for approval in an environment
    Approve(deploy::EnvArgs),
    /// Drop the release waiting for approval in an environment
    Reject(deploy::EnvArgs),
    /// Show what each environment runs, what waits for approval and what is locked
    Status,
    /// List an environment's deployment ledger, or check it with --verify
    History(deploy::HistoryArgs),
    /// Deploy an earlier release of an environment again
    Rollback(deploy::RollbackArgs),
    /// Clear an environment's deploy lock left by a process that died, recording it
    Unlock(deploy::EnvArgs),
    /// Share the deployment ledgers through a git remote
    #[command(subcommand)]
    Ledger(deploy::LedgerCommand),
    /// Run the watched jobs, then rerun the ones whose inputs change, until Ctrl-C
    Watch(watch::Args),
    /// Write the records a pre-commit hook handed over on stdin (weir starts it itself)
    #[command(name = "__write-refs", hide = true)]
    WriteRefs { git_dir: PathBuf },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> u8 {
    init_tracing();
    tracing::debug!("started");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Init(args) => init::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Run(args) => run::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Cache(command) => cache::run(command),
        Command::Hook(args) => hook::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Log(args) => log::run(args),
        Command::Show(args) => show::run(args),
        Command::Install(args) => install::run(args),
        Command::Uninstall(args) => uninstall::run(args),
        Command::Trust(args) => trust::run(args),
        Command::Approve(args) => deploy::approve(args),
        Command::Reject(args) => deploy::reject(args),
        Command::Status => deploy::status(),
        Command::History(args) => deploy::history(args),
        Command::Rollback(args) => deploy::rollback(args),
        Command::Unlock(args) => deploy::unlock(args),
        Command::Ledger(command) => deploy::ledger(command),
        Command::Watch(args) => watch::run(args),
        Command::WriteRefs { git_dir } => Ok(match crate::git::write_handed(&git_dir) {
            Ok(()) => exit::SUCCESS,
            Err(err) => {
                Output.err(&format!("error: {err}"));
                exit::FAILURE
            }
        }),
    };
    // The snapshot watches this command is done with (see `release_parked`).
    crate::workspace::release_parked();
    tracing::debug!("done");
    match result {
        Ok(code) => code,
        Err(err) => {
            report_error(&err);
            err.exit_code()
        }
    }
}

fn report_error(err: &Error) {
    let out = Output;
    if let Error::Config(config::Error::Invalid(diagnostics)) = err {
        // Diagnostics render their own `error:` headers, one per problem.
        out.err(&diagnostics.to_string());
        return;
    }
    out.err(&format!("error: {err}"));
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.err(&format!("caused by: {cause}"));
        source = cause.source();
    }
    if let Some(hint) = err.hint() {
        out.err(&format!("help: {hint}"));
    }
}

fn init_tracing() {
    if let Some(filter) = env_vars::log_filter() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// The current directory, the repository around it and its pipeline.
struct Context {
    cwd: PathBuf,
    repo: Repo,
}

impl Context {
    fn discover() -> Result<Context, Error> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::io("cannot read the current directory", e))?;
        let repo = Repo::discover(&cwd)?;
        Ok(Context::new(cwd, repo))
    }

    /// Like `discover`, but a bare repository (a server) is fine too.
    fn discover_allow_bare() -> Result<Context, Error> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::io("cannot read the current directory", e))?;
        let repo = Repo::discover_allow_bare(&cwd)?;
        Ok(Context::new(cwd, repo))
    }

    /// Waits for the records an earlier hook handed to a child to be written: what a
    /// command reads includes them (see [`Repo::wait_for_deferred`]).
    fn new(cwd: PathBuf, repo: Repo) -> Context {
        for error in repo.wait_for_deferred() {
            Output.err(&format!("warning: {error}"));
        }
        Context { cwd, repo }
    }

    fn pipeline(&self) -> Result<config::Pipeline, Error> {
        Ok(config::load(&self.cwd, self.repo.workdir())?)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
