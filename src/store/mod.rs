//! What weir keeps as git objects under `refs/weir/`: cache entries, run records and the
//! deployment ledger.

pub mod cache;
pub mod ledger;
mod runs;

pub use runs::{Error, JobSummary, RunSummary, Runs, new_run_id};

/// `value` as pretty JSON with a final newline, as weir stores records for `git show` to read.
fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    // Serialising weir's plain record structs cannot fail.
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
