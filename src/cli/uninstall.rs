use crate::error::{Error, exit};
use crate::git::Repo;
use crate::report::Output;
use crate::trigger::install;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<u8, Error> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("cannot read the current directory", e))?;
    let repo = Repo::discover_allow_bare(&cwd)?;
    let actions = install::uninstall(&repo)?;
    if actions.is_empty() {
        Output.out("no weir hooks to remove");
    }
    for action in actions {
        Output.out(&action.to_string());
    }
    Ok(exit::SUCCESS)
}
