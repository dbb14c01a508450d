//! Every CLI test, in one binary so the crate links once.

mod cache;
mod commands;
mod common;
mod config_errors;
mod deploy;
mod hook_safety;
mod hooks;
mod install;
mod process;
mod records;
mod run;
mod secrets;
mod watch;
