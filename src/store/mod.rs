//! What weir keeps as git objects under `refs/weir/`: cache entries and run records.

pub mod cache;
mod runs;

pub use runs::{Error, JobSummary, RunSummary, Runs, new_run_id};
