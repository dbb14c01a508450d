//! What git hooks hand weir, and what weir hands back: the refs a push updates, the staged files
//! a job is selected for, `{files}` expansion, and applying a fixer's changes.

use globset::{GlobBuilder, GlobSetBuilder};

/// The all-zero id git uses for "no commit" (a created or deleted ref).
const ZERO: &str = "0000000000000000000000000000000000000000";

/// One line of a pre-push or post-receive hook's stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub refname: String,
    /// The commit the ref moves to; `None` when it is deleted.
    pub new: Option<String>,
}

/// Parses pre-push stdin: `<local ref> <local sha> <remote ref> <remote sha>` per line.
pub fn parse_pre_push(input: &str) -> Vec<RefUpdate> {
    input
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_local_ref, local_sha, remote_ref, _remote_sha] = fields.as_slice() else {
                return None;
            };
            Some(RefUpdate {
                refname: (*remote_ref).to_owned(),
                new: (*local_sha != ZERO).then(|| (*local_sha).to_owned()),
            })
        })
        .collect()
}

/// Parses post-receive stdin: `<old sha> <new sha> <ref>` per line.
pub fn parse_post_receive(input: &str) -> Vec<RefUpdate> {
    input
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_old, new, refname] = fields.as_slice() else {
                return None;
            };
            Some(RefUpdate {
                refname: (*refname).to_owned(),
                new: (*new != ZERO).then(|| (*new).to_owned()),
            })
        })
        .collect()
}

/// The files among `staged` that match `globs` (relative to the pipeline root). A glob without a
/// `/` matches a file name in any directory (`*.rs` is every Rust file), as in pre-commit and
/// lefthook.
pub fn select(globs: &[String], staged: &[String]) -> Result<Vec<String>, globset::Error> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        let pattern = if glob.contains('/') {
            glob.clone()
        } else {
            format!("**/{glob}")
        };
        builder.add(GlobBuilder::new(&pattern).literal_separator(true).build()?);
    }
    let set = builder.build()?;
    Ok(staged.iter().filter(|p| set.is_match(p)).cloned().collect())
}

/// `files` joined as shell words, each quoted so that no name is split or expanded.
pub fn shell_quote(files: &[String]) -> String {
    files
        .iter()
        .map(|f| {
            if !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b))
            {
                f.clone()
            } else {
                format!("'{}'", f.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_push_lines_name_the_ref_and_the_new_commit() {
        let a = "a".repeat(40);
        let input = format!(
            "refs/heads/main {a} refs/heads/main {ZERO}\nrefs/heads/gone {ZERO} refs/heads/gone {a}\n"
        );
        let updates = parse_pre_push(&input);
        assert_eq!(updates[0].new.as_deref(), Some(a.as_str()));
        assert_eq!(updates[0].refname, "refs/heads/main");
        assert_eq!(updates[1].new, None);
        let received = parse_post_receive(&format!("{ZERO} {a} refs/heads/main\n"));
        assert_eq!(received[0].new.as_deref(), Some(a.as_str()));
    }

    #[test]
    fn bare_globs_match_names_anywhere_and_paths_match_from_the_root() {
        let staged: Vec<String> = ["src/a.rs", "b.rs", "docs/x.md", "src/deep/c.RS"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            select(&["*.rs".into()], &staged).unwrap(),
            ["src/a.rs", "b.rs"]
        );
        assert_eq!(select(&["docs/*".into()], &staged).unwrap(), ["docs/x.md"]);
    }

    #[test]
    fn quoting_keeps_every_name_one_word() {
        let files = vec![
            "plain.rs".to_owned(),
            "with space.rs".into(),
            "it's.rs".into(),
            "$(x).rs".into(),
        ];
        assert_eq!(
            shell_quote(&files),
            r#"plain.rs 'with space.rs' 'it'\''s.rs' '$(x).rs'"#
        );
    }
}
