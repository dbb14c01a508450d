use crate::deploy::{Deploys, Mode};
use crate::engine::{CacheOptions, Workspace};
use crate::error::{Error, exit};
use crate::graph::{Graph, Selection};
use crate::report::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job to explain
    job: String,
    /// Print the job's key and changes as JSON
    #[arg(long)]
    json: bool,
}

/// Says whether `weir run JOB` would restore a stored result, and if not, what changed since
/// the newest stored one. Computes keys like a run does, without running anything.
pub fn run(args: Args) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    let pipeline = context.pipeline()?;
    let graph = Graph::select(&pipeline, &Selection::Named(vec![args.job.clone()]))?;
    let (plan, engine) = super::run::prepare(
        &context,
        &pipeline,
        &graph,
        Workspace::Worktree,
        CacheOptions::default(),
        &Default::default(),
        Deploys::new(String::new(), None, Mode::Normal),
    )?;
    let mut keys: Vec<String> = vec![String::new(); plan.len()];
    let mut verdict = None;
    for position in graph.topological_order() {
        let needs: Vec<(String, String)> = plan[position]
            .needs
            .iter()
            .map(|&n| (plan[n].name.clone(), keys[n].clone()))
            .collect();
        let manifest = engine
            .manifest(position, &needs)
            .map_err(|message| Error::Usage {
                message: format!(
                    "cannot compute the key of `{}`: {message}",
                    plan[position].name
                ),
                hint: None,
            })?;
        keys[position] = manifest.key();
        if plan[position].name == args.job {
            verdict = Some((manifest, position));
        }
    }
    let Some((manifest, position)) = verdict else {
        return Ok(exit::USAGE);
    };
    let key = &keys[position];
    let job = &pipeline.jobs[graph.jobs[position]];
    let stored = engine
        .lookup(position, key)
        .map_err(|message| Error::Usage {
            message,
            hint: None,
        })?;
    let (state, changes) = if !job.cache {
        ("runs every time (cache = false)", Vec::new())
    } else if stored.is_some() {
        ("would be restored from the cache", Vec::new())
    } else {
        ("would run", engine.explain(position, &manifest))
    };
    if args.json {
        let value = serde_json::json!({
            "job": args.job,
            "key": key,
            "hit": stored.is_some() && job.cache,
            "changes": changes,
        });
        Output.out(&value.to_string());
    } else {
        Output.out(&format!("{}: {state} (key {key})", args.job));
        for change in changes {
            Output.out(&format!("  {change}"));
        }
    }
    Ok(exit::SUCCESS)
}
