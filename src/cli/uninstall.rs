use crate::error::{Error, exit};
use crate::report::Output;
use crate::trigger::install;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<u8, Error> {
    let repo = super::Context::discover_allow_bare()?.repo;
    let actions = install::uninstall(&repo)?;
    if actions.is_empty() {
        Output.out("no weir hooks to remove");
    }
    for action in actions {
        Output.out(&action.to_string());
    }
    Ok(exit::SUCCESS)
}
