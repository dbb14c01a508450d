//! Everything weir prints. Commands build events or text and hand them here; human and machine
//! (`--json`) output are separate renderers of the same events.

mod event;
pub mod graph;
mod human;
mod json;
mod output;

pub use event::{JobStatus, RunEvent, RunOutcome};
pub use human::format_duration;
pub use output::{Output, Reporter, ReporterKind};
