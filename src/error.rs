//! The top-level error, how it maps to an exit code, and the exit codes themselves.

use crate::{config, deploy, engine, git, graph, store, trigger, workspace};

/// Exit codes, as documented in the README.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    /// A job failed.
    pub const FAILURE: u8 = 1;
    /// Bad usage or configuration; nothing ran.
    pub const USAGE: u8 = 2;
    /// Interrupted by Ctrl-C (or SIGTERM).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Graph(#[from] graph::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Cache(#[from] store::cache::Error),
    #[error(transparent)]
    Ledger(#[from] store::ledger::Error),
    #[error(transparent)]
    Lock(#[from] deploy::lock::Error),
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Workspace(#[from] workspace::Error),
    #[error(transparent)]
    Install(#[from] trigger::install::Error),
    #[error(transparent)]
    Trust(#[from] trigger::trust::Error),
    /// A hook refused to run a pipeline that is not trusted on this machine.
    #[error(transparent)]
    Untrusted(#[from] trigger::trust::Untrusted),
    #[error(transparent)]
    Watch(#[from] trigger::watch::Error),
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Graph(_) | Error::Usage { .. } => exit::USAGE,
            Error::Git(git::Error::NotARepository(_) | git::Error::Bare(_)) => exit::USAGE,
            Error::Store(store::Error::NotFound(_) | store::Error::Ambiguous { .. }) => exit::USAGE,
            Error::Install(trigger::install::Error::Conflict { .. }) => exit::USAGE,
            Error::Ledger(store::ledger::Error::NoEntry { .. }) => exit::USAGE,
            Error::Git(_)
            | Error::Store(_)
            | Error::Cache(_)
            | Error::Ledger(_)
            | Error::Lock(_)
            | Error::Engine(_)
            | Error::Workspace(_)
            | Error::Install(_)
            | Error::Trust(_)
            | Error::Untrusted(_)
            | Error::Watch(_)
            | Error::Io { .. } => exit::FAILURE,
        }
    }

    /// What to do about it, when weir can tell.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Graph(e) => e.hint(),
            Error::Store(e) => e.hint(),
            Error::Git(git::Error::NotARepository(_)) => {
                Some("weir runs inside a git repository; `git init` makes one".to_owned())
            }
            Error::Usage { hint, .. } => hint.clone(),
            Error::Install(e) => e.hint(),
            Error::Ledger(store::ledger::Error::NoEntry { environment, .. }) => Some(format!(
                "`weir history {environment}` lists its entries"
            )),
            // Config errors carry their hints in their own rendering.
            Error::Config(_)
            | Error::Git(_)
            | Error::Cache(_)
            | Error::Ledger(_)
            | Error::Lock(_)
            | Error::Engine(_)
            | Error::Workspace(_)
            | Error::Trust(_)
            // Its message ends with what to do, so that no caller can forget to show it.
            | Error::Untrusted(_)
            | Error::Watch(_)
            | Error::Io { .. } => None,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
