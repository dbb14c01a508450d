use std::collections::BTreeMap;
use std::fmt::Write;

/// The version of the manifest encoding; part of every key, so a change of encoding can never
/// collide with old entries.
pub const VERSION: u32 = 1;

/// One input file: path relative to the pipeline root, git mode, git blob id (hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Input {
    pub path: String,
    pub mode: String,
    pub id: String,
}

/// Everything that can change a job's result. Encoded canonically (sorted, escaped, versioned)
/// so that equal manifests give equal keys on every machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub job: String,
    pub shell: String,
    pub dir: String,
    pub steps: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Names only: a secret's value never enters a key.
    pub secrets: Vec<String>,
    /// Upstream job name → its key.
    pub needs: BTreeMap<String, String>,
    pub platform: String,
    /// `key = [...]` strings and `key_cmd` output.
    pub extra: Vec<String>,
    /// Sorted by path.
    pub inputs: Vec<Input>,
}

#[derive(Debug, thiserror::Error)]
#[error("line {line} of the manifest: {message}")]
pub struct ParseError {
    line: usize,
    message: String,
}

impl Manifest {
    /// The platform this build of weir runs on.
    pub fn this_platform() -> String {
        format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
    }

    pub fn encode(&self) -> String {
        let mut out = format!("weir-manifest {VERSION}\n");
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let _ = writeln!(out, "job {}", q(&self.job));
        let _ = writeln!(out, "shell {}", q(&self.shell));
        let _ = writeln!(out, "dir {}", q(&self.dir));
        let _ = writeln!(out, "platform {}", q(&self.platform));
        for step in &self.steps {
            let _ = writeln!(out, "step {}", q(step));
        }
        for (k, v) in &self.env {
            let _ = writeln!(out, "env {} {}", q(k), q(v));
        }
        for name in &self.secrets {
            let _ = writeln!(out, "secret {}", q(name));
        }
        for (job, key) in &self.needs {
            let _ = writeln!(out, "need {} {}", q(job), q(key));
        }
        for extra in &self.extra {
            let _ = writeln!(out, "extra {}", q(extra));
        }
        for input in &self.inputs {
            let _ = writeln!(out, "input {} {} {}", input.mode, input.id, q(&input.path));
        }
        out
    }

    /// The key: blake3 of the encoding, 64 hex characters.
    pub fn key(&self) -> String {
        blake3::hash(self.encode().as_bytes()).to_hex().to_string()
    }

    pub fn parse(text: &str) -> Result<Manifest, ParseError> {
        let mut manifest = Manifest::default();
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header == format!("weir-manifest {VERSION}") => {}
            _ => {
                return Err(ParseError {
                    line: 1,
                    message: format!("not a version {VERSION} manifest"),
                });
            }
        }
        for (number, line) in lines {
            let err = |message: &str| ParseError {
                line: number + 1,
                message: message.to_owned(),
            };
            let (tag, rest) = line.split_once(' ').ok_or_else(|| err("no value"))?;
            if tag == "input" {
                let mut parts = rest.splitn(3, ' ');
                let (Some(mode), Some(id), Some(path)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(err("an input needs a mode, an id and a path"));
                };
                manifest.inputs.push(Input {
                    path: serde_json::from_str(path).map_err(|_| err("bad path"))?,
                    mode: mode.to_owned(),
                    id: id.to_owned(),
                });
                continue;
            }
            let values: Vec<String> = serde_json::Deserializer::from_str(rest)
                .into_iter::<String>()
                .collect::<Result<_, _>>()
                .map_err(|_| err("bad string"))?;
            match (tag, values.as_slice()) {
                ("job", [v]) => manifest.job = v.clone(),
                ("shell", [v]) => manifest.shell = v.clone(),
                ("dir", [v]) => manifest.dir = v.clone(),
                ("platform", [v]) => manifest.platform = v.clone(),
                ("step", [v]) => manifest.steps.push(v.clone()),
                ("env", [k, v]) => {
                    manifest.env.insert(k.clone(), v.clone());
                }
                ("secret", [v]) => manifest.secrets.push(v.clone()),
                ("need", [job, key]) => {
                    manifest.needs.insert(job.clone(), key.clone());
                }
                ("extra", [v]) => manifest.extra.push(v.clone()),
                _ => return Err(err(&format!("unexpected `{tag}` line"))),
            }
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        Manifest {
            job: "build".into(),
            shell: "sh".into(),
            dir: "pkg \"quoted\"".into(),
            steps: vec!["cargo build".into(), "echo 'done'\nnext".into()],
            env: [("RUST_LOG".to_string(), "debug".to_string())].into(),
            secrets: vec!["TOKEN".into()],
            needs: [("fmt".to_string(), "ab".repeat(32))].into(),
            platform: "linux-x86_64".into(),
            extra: vec!["rustc 1.95".into()],
            inputs: vec![
                Input {
                    path: "src/a b.rs".into(),
                    mode: "100644".into(),
                    id: "1".repeat(40),
                },
                Input {
                    path: "x\ny".into(),
                    mode: "100755".into(),
                    id: "2".repeat(40),
                },
            ],
        }
    }

    #[test]
    fn the_encoding_round_trips() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.encode()).unwrap(), m);
        assert_eq!(m.key().len(), 64);
    }

    #[test]
    fn a_foreign_or_corrupt_manifest_is_refused() {
        assert!(Manifest::parse("weir-manifest 999\n").is_err());
        assert!(Manifest::parse("weir-manifest 1\nbogus \"x\"\n").is_err());
    }

    /// One mutation of one component of the manifest.
    fn mutate(m: &mut Manifest, which: usize, text: &str) {
        let t = text.to_owned();
        match which {
            0 => m.job.push_str(&t),
            1 => m.shell.push_str(&t),
            2 => m.dir.push_str(&t),
            3 => m.steps.push(t),
            4 => m.steps[0].push_str(&t),
            5 => {
                m.env.insert(format!("K{t}"), t);
            }
            6 => {
                let v = m.env.get_mut("RUST_LOG").unwrap();
                v.push_str(&t);
            }
            7 => m.secrets.push(t),
            8 => {
                m.needs.insert(format!("j{t}"), "k".into());
            }
            9 => {
                let v = m.needs.get_mut("fmt").unwrap();
                v.push_str(&t);
            }
            10 => m.platform.push_str(&t),
            11 => m.extra.push(t),
            12 => m.inputs[0].path.push_str(&t),
            13 => m.inputs[0].id = format!("{}{t}", &m.inputs[0].id[..39]),
            14 => m.inputs[1].mode = "100644".into(),
            15 => {
                m.inputs.pop();
            }
            _ => m.inputs.push(Input {
                path: format!("zz{t}"),
                mode: "100644".into(),
                id: "3".repeat(40),
            }),
        }
    }

    proptest! {
        #[test]
        fn any_change_to_any_component_changes_the_key(which in 0usize..17, text in "[a-z0-9 \"\\n]{1,8}") {
            let base = sample();
            let mut changed = sample();
            mutate(&mut changed, which, &text);
            prop_assume!(changed != base);
            prop_assert_ne!(changed.key(), base.key());
        }

        #[test]
        fn equal_manifests_give_equal_keys(env in proptest::collection::btree_map("[A-Z]{1,4}", "[a-z]{0,4}", 0..5)) {
            let mut a = sample();
            let mut b = sample();
            // Built in different orders, the same content encodes the same way.
            for (k, v) in env.iter() {
                a.env.insert(k.clone(), v.clone());
            }
            for (k, v) in env.iter().rev() {
                b.env.insert(k.clone(), v.clone());
            }
            prop_assert_eq!(a.key(), b.key());
        }
    }
}
