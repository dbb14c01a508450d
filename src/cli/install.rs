use std::path::Path;

use crate::config::{self, Pipeline};
use crate::error::{Error, exit};
use crate::git::Repo;
use crate::report::Output;
use crate::trigger::install;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<u8, Error> {
    let super::Context { cwd, repo } = super::Context::discover_allow_bare()?;
    // A server has no working-tree pipeline: what it runs comes from its default branch. Loaded
    // before installing anything, so that a broken pipeline changes nothing.
    let pipeline = if repo.is_bare() {
        None
    } else {
        find_pipeline(&cwd, &repo)?
    };
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("cannot find the path of the running weir binary", e))?;
    for action in install::install(&repo, &exe)? {
        Output.out(&action.to_string());
    }
    if let Some(pipeline) = pipeline {
        super::trust::trust_pipeline(&cwd, &repo, &pipeline)?;
    } else if !repo.is_bare() {
        Output.out(&format!(
            "no {} yet; once there is one, run `weir trust` to let hooks run it",
            config::FILE_NAME
        ));
    }
    Ok(exit::SUCCESS)
}

/// The pipeline `weir run` would use here, if there is one yet.
fn find_pipeline(cwd: &Path, repo: &Repo) -> Result<Option<Pipeline>, Error> {
    match config::load(cwd, repo.workdir()) {
        Ok(pipeline) => Ok(Some(pipeline)),
        // Hooks can go in before the pipeline exists.
        Err(config::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}
