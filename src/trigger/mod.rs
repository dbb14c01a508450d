//! What makes weir run without being asked: the git hooks it installs (and the events they
//! become), and the trust that gates them, so that a pipeline pulled from someone else never runs
//! on this machine until its exact content has been reviewed.

mod atomic;
pub mod hook;
pub mod install;
pub mod trust;
pub mod watch;
