//! Keys: the canonical manifest of everything that can change a job's result (its commands,
//! environment, inputs' blob ids, upstream keys, platform), the blake3 key of that manifest, and
//! what changed between two manifests (`weir explain`).

mod explain;
mod globs;
mod manifest;

pub use explain::diff;
pub use globs::Globs;
pub(crate) use globs::is_plain;
pub use manifest::{Input, Manifest, ParseError};
