//! What weir keeps as git objects under `refs/weir/`: cache entries, run records and the
//! deployment ledger.

pub mod cache;
pub mod ledger;
mod runs;

pub use runs::{Error, JobSummary, RunSummary, Runs, new_run_id};
