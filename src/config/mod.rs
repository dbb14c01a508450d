//! `.pipeline.toml`: finding it, parsing it and validating it into [`Pipeline`]. Every problem
//! in the file is reported at once, each as a rustc-style snippet pointing at the offending text.
//! Nothing outside this module sees raw TOML.

mod diagnostic;
mod load;
pub mod model;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use load::{Error, FILE_NAME, load, parse, ref_name_problem};
pub use model::*;
