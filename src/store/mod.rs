//! What weir keeps as git objects under `refs/weir/`: for now, run records.

mod runs;

pub use runs::{Error, JobSummary, RunSummary, Runs, new_run_id};
