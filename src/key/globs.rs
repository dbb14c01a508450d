use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A job's `inputs` or `outputs` globs, with what a file search needs to know about them.
///
/// The two forms nearly every pipeline uses, a path (`Cargo.toml`) and everything under a
/// directory (`src/**`), are matched by comparing strings; only the other patterns go into a
/// [`GlobSet`]. Building one for `src/**` builds an Aho-Corasick automaton, which cost a
/// 50-job pipeline 3 ms on every run.
#[derive(Debug, Clone)]
pub struct Globs {
    /// Patterns that are neither a plain path nor a plain directory followed by `/**`.
    set: Option<GlobSet>,
    /// Paths matched exactly.
    paths: Vec<String>,
    /// `dir/` for each `dir/**`; `""` for `**`.
    under: Vec<String>,
    walk: Vec<String>,
    explicit: Vec<String>,
}

impl Globs {
    /// Compiles globs relative to the pipeline root. The configuration has validated them.
    pub fn new(patterns: &[String]) -> Result<Globs, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut complex = false;
        let mut paths = Vec::new();
        let mut under = Vec::new();
        let mut walk: Vec<String> = Vec::new();
        let mut explicit = Vec::new();
        for pattern in patterns {
            match simple(pattern) {
                Some(Simple::Under(dir)) => under.push(dir),
                Some(Simple::Path) => paths.push(pattern.clone()),
                None => {
                    builder.add(GlobBuilder::new(pattern).literal_separator(true).build()?);
                    complex = true;
                }
            }
            let components: Vec<&str> = pattern.split('/').collect();
            let literal = components
                .iter()
                .take_while(|c| !c.contains(['*', '?', '[', '{']))
                .count();
            if literal == components.len() {
                explicit.push(pattern.clone());
            } else {
                walk.push(components[..literal].join("/"));
            }
        }
        // A directory inside another is walked with it.
        walk.sort();
        walk.dedup();
        let mut kept: Vec<String> = Vec::new();
        for dir in walk {
            if !kept
                .iter()
                .any(|k| k.is_empty() || dir == *k || dir.starts_with(&format!("{k}/")))
            {
                kept.push(dir);
            }
        }
        Ok(Globs {
            set: complex.then(|| builder.build()).transpose()?,
            paths,
            under,
            walk: kept,
            explicit,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.under.iter().any(|dir| path.starts_with(dir.as_str()))
            || self.paths.iter().any(|p| p == path)
            || self.set.as_ref().is_some_and(|set| set.is_match(path))
    }

    /// Whether a job with these input globs reads `path`: it matches, and, if git ignores it,
    /// a glob names it outright.
    pub fn reads(&self, path: &str, ignored: bool) -> bool {
        self.matches(path) && (!ignored || self.explicit.iter().any(|e| e == path))
    }

    /// Directories to search, relative to the root (`""` is the root itself).
    pub fn walk_dirs(&self) -> &[String] {
        &self.walk
    }

    /// Globs without wildcards: paths named outright.
    pub fn explicit(&self) -> &[String] {
        &self.explicit
    }

    /// Path prefixes every match starts with: each walked directory (with a trailing `/`)
    /// and each explicit path.
    pub fn prefixes(&self) -> Vec<String> {
        if self.walk.iter().any(String::is_empty) {
            return vec![String::new()];
        }
        self.walk
            .iter()
            .map(|dir| format!("{dir}/"))
            .chain(self.explicit.iter().cloned())
            .collect()
    }
}

/// How a pattern that needs no [`GlobSet`] matches.
enum Simple {
    /// Exactly the pattern.
    Path,
    /// Every path that starts with this (`dir/`, or `""` for everything).
    Under(String),
}

/// Whether `pattern` is a plain path, or a plain directory followed by `/**` (or just `**`):
/// no character globset reads as special, so matching it as a string is what globset would do
/// (and it cannot be a malformed glob).
pub(crate) fn is_plain(pattern: &str) -> bool {
    simple(pattern).is_some()
}

/// How `pattern` matches if it is plain (see [`is_plain`]).
fn simple(pattern: &str) -> Option<Simple> {
    let plain = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', '\\']);
    if pattern == "**" {
        return Some(Simple::Under(String::new()));
    }
    if let Some(dir) = pattern.strip_suffix("/**") {
        return (!dir.is_empty() && plain(dir)).then(|| Simple::Under(format!("{dir}/")));
    }
    plain(pattern).then_some(Simple::Path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(patterns: &[&str]) -> Globs {
        Globs::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn an_ignored_file_is_read_only_where_a_glob_names_it() {
        let g = globs(&["src/**", "local.cfg"]);
        assert!(g.reads("src/a.rs", false));
        assert!(!g.reads("src/gen.rs", true));
        assert!(g.reads("local.cfg", true));
        assert!(!g.reads("other.cfg", false));
    }

    #[test]
    fn patterns_matched_as_strings_match_what_globset_matches() {
        let patterns = "** src/** src a.b src/**/x.rs src/* a\\*b src[12]/** dir/** ./src/** \
                        src/**/** a/b/** {a,b}/** *.rs a]b/**";
        let paths = "src src/ src/a src/a/b srcx/a a.b a*b src1/a dir dir/x ./src/a a/b a/b/c \
                     b/c x.rs d/x.rs a]b/c src/x.rs";
        for pattern in patterns.split_whitespace() {
            let mut reference = GlobSetBuilder::new();
            reference.add(
                GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .unwrap(),
            );
            let reference = reference.build().unwrap();
            let ours = globs(&[pattern]);
            for path in paths.split_whitespace() {
                assert_eq!(
                    ours.matches(path),
                    reference.is_match(path),
                    "`{pattern}` on `{path}`"
                );
            }
        }
    }

    #[test]
    fn stars_stay_within_a_directory_and_double_stars_cross_them() {
        let g = globs(&["src/*.rs", "docs/**"]);
        assert!(g.matches("src/lib.rs"));
        assert!(!g.matches("src/deep/lib.rs"));
        assert!(g.matches("docs/a/b/c.md"));
        assert!(!g.matches("README.md"));
    }

    #[test]
    fn search_starts_at_the_literal_prefix_and_literals_are_explicit() {
        let g = globs(&[
            "packages/p1/src/**",
            "packages/p1/src/deep/*.js",
            "Cargo.toml",
            "**/*.rs",
        ]);
        assert_eq!(g.walk_dirs(), [""]);
        assert_eq!(g.explicit(), ["Cargo.toml"]);
        let g = globs(&[
            "packages/p1/src/**",
            "packages/p1/src/deep/*.js",
            "scripts/build.sh",
        ]);
        assert_eq!(g.walk_dirs(), ["packages/p1/src"]);
    }
}
