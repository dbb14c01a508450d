//! Running jobs: the scheduler walks the DAG, each job's steps run as process groups with their
//! output captured within a fixed budget, and timeouts and Ctrl-C end whole process trees.

mod capture;
mod keys;
mod mask;
mod orphans;
mod process;
mod scheduler;

pub use capture::CappedLog;
pub use keys::{Before, Keys, NoCache};
pub use mask::{Masker, Patterns};
pub use orphans::{adopt_orphans, end_orphans};
pub use process::{GRACE, Stop, find_shell};
pub use scheduler::{JobResult, Options, PlannedJob, RunResult, run};
