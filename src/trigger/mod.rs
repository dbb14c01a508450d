//! What starts runs: git hooks, and whether a pipeline is trusted to run from them.

pub mod hook;
