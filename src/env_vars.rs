//! Every environment variable weir reads, read here and nowhere else (clippy's
//! `disallowed-methods` enforces it), so the set that changes weir's behaviour is easy to audit.

use std::ffi::OsString;

/// The variables a job inherits from weir's own environment; everything else is cleared so that
/// a job sees the same environment on every machine and git's own variables (`GIT_DIR`,
/// `GIT_INDEX_FILE`, …) never leak into it.
pub const JOB_ALLOWLIST: [&str; 6] = ["PATH", "HOME", "USER", "LANG", "TERM", "TMPDIR"];

/// The allowlisted variables that are set in weir's environment, in allowlist order.
pub fn job_passthrough() -> Vec<(&'static str, OsString)> {
    JOB_ALLOWLIST
        .iter()
        .filter_map(|name| {
            #[expect(
                clippy::disallowed_methods,
                reason = "this is the one place env is read"
            )]
            let value = std::env::var_os(name);
            value.map(|v| (*name, v))
        })
        .collect()
}

/// `WEIR_LOG` sets the tracing filter for weir's own diagnostics (off by default).
pub fn log_filter() -> Option<String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place env is read"
    )]
    std::env::var("WEIR_LOG").ok()
}

/// `GIT_INDEX_FILE`, which git sets for the pre-commit hook: during `git commit -a` or
/// `git commit FILE` it names a temporary index holding exactly what is being committed.
pub fn git_index_file() -> Option<std::path::PathBuf> {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place env is read"
    )]
    std::env::var_os("GIT_INDEX_FILE").map(std::path::PathBuf::from)
}

/// Whether `GIT_DIR` or `GIT_COMMON_DIR` names the repository, rather than the directory a
/// command runs in.
pub fn git_dir_given() -> bool {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place env is read"
    )]
    let given = |var| std::env::var_os(var).is_some();
    given("GIT_DIR") || given("GIT_COMMON_DIR")
}

/// The variable a `[secrets]` entry names (`{ env = "VAR" }`), read only when a job that lists
/// the secret is about to run.
pub fn secret(var: &str) -> Option<OsString> {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place env is read"
    )]
    std::env::var_os(var)
}

/// git's per-user attributes file (`$XDG_CONFIG_HOME/git/attributes`, else
/// `$HOME/.config/git/attributes`), which can make git convert files as it stores them.
pub fn git_user_attributes() -> Option<std::path::PathBuf> {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place env is read"
    )]
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".config"))
        });
    config.map(|dir| dir.join("git").join("attributes"))
}
