use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A job's `inputs` or `outputs` globs, with what a file search needs to know about them.
#[derive(Debug, Clone)]
pub struct Globs {
    set: GlobSet,
    walk: Vec<String>,
    explicit: Vec<String>,
}

impl Globs {
    /// Compiles globs relative to the pipeline root. The configuration has validated them.
    pub fn new(patterns: &[String]) -> Result<Globs, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut walk: Vec<String> = Vec::new();
        let mut explicit = Vec::new();
        for pattern in patterns {
            builder.add(GlobBuilder::new(pattern).literal_separator(true).build()?);
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
            set: builder.build()?,
            walk: kept,
            explicit,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
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
