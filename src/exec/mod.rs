//! Running jobs: the scheduler walks the DAG, each job's steps run as process groups with their
//! output masked for secrets and captured within a fixed budget, and timeouts and Ctrl-C end
//! whole process trees.

mod capture;
mod keys;
mod mask;
mod orphans;
mod process;
mod scheduler;
mod secrets;

pub use capture::CappedLog;
pub use keys::{Before, Finished, JobSecrets, Keys, NoCache, Recovery, Rollback, Stored};
pub use mask::Patterns;
pub use orphans::{adopt_orphans, end_orphans, helper};
pub use process::{GRACE, Stop, find_shell};
pub use scheduler::{JobResult, Options, PlannedJob, RunResult, run};
pub use secrets::{Secret, resolve as resolve_secret};
