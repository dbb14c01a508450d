use crate::error::{Error, exit};
use crate::report::Output;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    let pipeline = context.pipeline()?;
    let path = pipeline
        .path
        .strip_prefix(&context.cwd)
        .unwrap_or(&pipeline.path)
        .display()
        .to_string();
    Output.out(&format!("{path} is valid: {} job(s)", pipeline.jobs.len()));
    Ok(exit::SUCCESS)
}
