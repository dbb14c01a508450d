use std::path::Path;

use crate::config::Pipeline;
use crate::error::{Error, exit};
use crate::git::Repo;
use crate::report::Output;
use crate::trigger::trust;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    let pipeline = context.pipeline()?;
    trust_pipeline(&context.cwd, &context.repo, &pipeline)?;
    Ok(exit::SUCCESS)
}

/// Trusts the current content of `pipeline`'s file and says so.
pub(super) fn trust_pipeline(cwd: &Path, repo: &Repo, pipeline: &Pipeline) -> Result<(), Error> {
    let path = &pipeline.path;
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    trust::trust(repo, &bytes)?;
    let shown = path.strip_prefix(cwd).unwrap_or(path).display();
    let id = trust::id(&bytes);
    Output.out(&format!("trusted {shown} (blake3 {})", &id[..12]));
    Ok(())
}
