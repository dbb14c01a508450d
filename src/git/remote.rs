//! Sharing refs with other repositories. gix cannot push yet (gitoxide#306), so both directions
//! run the `git` binary, which also brings the user's remotes, credentials and transports.

use std::process::Command;

use super::repo::{Error, Repo};

impl Repo {
    /// `git fetch REMOTE REFSPEC…`; returns git's report.
    pub fn fetch(&self, remote: &str, refspecs: &[String]) -> Result<String, Error> {
        let mut args = vec![
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            remote,
        ];
        args.extend(refspecs.iter().map(String::as_str));
        self.git(&args)
    }

    /// `git push --porcelain REMOTE REFSPEC…`; returns git's report.
    pub fn push(&self, remote: &str, refspecs: &[String]) -> Result<String, Error> {
        let mut args = vec!["push", "--porcelain", remote];
        args.extend(refspecs.iter().map(String::as_str));
        self.git(&args)
    }

    /// `git` run in this repository, without the variables a hook inherits from git (which
    /// would redirect it elsewhere).
    pub(super) fn git_command(&self) -> Command {
        let mut command = Command::new("git");
        command
            .arg("-C")
            .arg(self.workdir())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
        command
    }

    fn git(&self, args: &[&str]) -> Result<String, Error> {
        let output = self
            .git_command()
            .args(args)
            .output()
            .map_err(|e| Error::GitCommand {
                command: format!("git {}", args.join(" ")),
                detail: e.to_string(),
            })?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            Ok(text)
        } else {
            Err(Error::GitCommand {
                command: format!("git {}", args.join(" ")),
                detail: text.trim().to_owned(),
            })
        }
    }
}
