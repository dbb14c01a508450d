use crate::error::{Error, exit};
use crate::graph::{Graph, Selection};
use crate::report::Output;
use crate::report::graph::{Format, render};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
}

pub fn run(args: Args) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    let pipeline = context.pipeline()?;
    let names = pipeline.jobs.iter().map(|j| j.name.clone()).collect();
    let graph = Graph::select(&pipeline, &Selection::Named(names))?;
    Output.out_bytes(render(&pipeline, &graph, args.format).as_bytes());
    Ok(exit::SUCCESS)
}
