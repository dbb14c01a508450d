use std::time::Duration;

/// What the scheduler asks before and after running a job: its key, a stored result to restore
/// instead of running, and storing a new result. Implemented over git outside `exec`, so the
/// scheduler knows nothing of git.
pub trait Keys: Send + Sync + 'static {
    /// Computes the key of job `job` (a position in the plan) given the keys of what it needs
    /// (`(name, key)`), and restores its stored result if there is one. Blocking.
    fn before(&self, job: usize, needs: &[(String, String)]) -> Result<Before, String>;

    /// Stores the result of job `job`, which just passed. Blocking.
    fn after(&self, job: usize, key: &str, log: &[u8], duration: Duration) -> Result<(), String>;
}

/// What to do with a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// Its stored result was restored: do not run it.
    Hit { key: String, restored: usize },
    /// Run it. `store` says whether to keep the result; `explain` why there was nothing
    /// stored (only when asked for); `notes` are things the user should read in its log.
    Run {
        key: String,
        store: bool,
        explain: Option<Vec<String>>,
        notes: Vec<String>,
    },
}

/// Keys for runs that do not cache: every job runs, nothing is stored.
pub struct NoCache;

impl Keys for NoCache {
    fn before(&self, _job: usize, _needs: &[(String, String)]) -> Result<Before, String> {
        Ok(Before::Run {
            key: String::new(),
            store: false,
            explain: None,
            notes: Vec::new(),
        })
    }

    fn after(&self, _: usize, _: &str, _: &[u8], _: Duration) -> Result<(), String> {
        Ok(())
    }
}
