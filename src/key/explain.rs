use std::collections::BTreeMap;

use super::Manifest;

/// Input changes listed before the rest are summarised.
const MAX_FILES: usize = 20;

/// What changed from `old` to `new`, one line per change, most telling first.
pub fn diff(old: &Manifest, new: &Manifest) -> Vec<String> {
    let mut changes = Vec::new();
    if old.platform != new.platform {
        changes.push(format!(
            "platform changed: {} → {}",
            old.platform, new.platform
        ));
    }
    if old.shell != new.shell {
        changes.push(format!("shell changed: {} → {}", old.shell, new.shell));
    }
    if old.dir != new.dir {
        changes.push(format!("dir changed: `{}` → `{}`", old.dir, new.dir));
    }
    if old.steps != new.steps {
        let count = old.steps.len().max(new.steps.len());
        for i in 0..count {
            match (old.steps.get(i), new.steps.get(i)) {
                (Some(a), Some(b)) if a != b => {
                    changes.push(format!("command changed: step {}: `{a}` → `{b}`", i + 1));
                }
                (None, Some(b)) => changes.push(format!("command added: step {}: `{b}`", i + 1)),
                (Some(a), None) => changes.push(format!("command removed: step {}: `{a}`", i + 1)),
                _ => {}
            }
        }
    }
    map_changes(&mut changes, "env", &old.env, &new.env, |_, _| {
        "changed".into()
    });
    if old.secrets != new.secrets {
        changes.push(format!(
            "secrets changed: [{}] → [{}]",
            old.secrets.join(", "),
            new.secrets.join(", ")
        ));
    }
    map_changes(&mut changes, "needs", &old.needs, &new.needs, |_, _| {
        "key changed".into()
    });
    if old.extra != new.extra {
        changes.push("key material changed (`key` or `key_cmd` output)".to_owned());
    }

    let before: BTreeMap<&str, (&str, &str)> = old
        .inputs
        .iter()
        .map(|i| (i.path.as_str(), (i.mode.as_str(), i.id.as_str())))
        .collect();
    let after: BTreeMap<&str, (&str, &str)> = new
        .inputs
        .iter()
        .map(|i| (i.path.as_str(), (i.mode.as_str(), i.id.as_str())))
        .collect();
    let mut files = Vec::new();
    for (path, now) in &after {
        match before.get(path) {
            None => files.push(format!("input {path} added")),
            Some(was) if was.1 != now.1 => files.push(format!("input {path} changed")),
            Some(was) if was.0 != now.0 => {
                files.push(format!("input {path} mode changed: {} → {}", was.0, now.0));
            }
            _ => {}
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        files.push(format!("input {path} removed"));
    }
    files.sort_by(|a, b| a.split(' ').nth(1).cmp(&b.split(' ').nth(1)));
    if files.len() > MAX_FILES {
        let more = files.len() - MAX_FILES;
        files.truncate(MAX_FILES);
        files.push(format!("… and {more} more input changes"));
    }
    changes.extend(files);
    if changes.is_empty() && old.job != new.job {
        changes.push(format!("job renamed: {} → {}", old.job, new.job));
    }
    changes
}

fn map_changes(
    changes: &mut Vec<String>,
    what: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    changed: impl Fn(&str, &str) -> String,
) {
    for (k, v) in new {
        match old.get(k) {
            None => changes.push(format!("{what} {k} added")),
            Some(was) if was != v => changes.push(format!("{what} {k} {}", changed(was, v))),
            _ => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        changes.push(format!("{what} {k} removed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Input;

    fn input(path: &str, id: &str) -> Input {
        Input {
            path: path.into(),
            mode: "100644".into(),
            id: id.into(),
        }
    }

    #[test]
    fn names_each_file_env_command_and_upstream_change() {
        let old = Manifest {
            job: "build".into(),
            steps: vec!["make".into()],
            env: [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "x".to_string()),
            ]
            .into(),
            needs: [("fmt".to_string(), "k1".to_string())].into(),
            inputs: vec![input("a.c", "1"), input("b.c", "2"), input("gone.c", "3")],
            ..Default::default()
        };
        let new = Manifest {
            steps: vec!["make -j2".into()],
            env: [
                ("A".to_string(), "2".to_string()),
                ("C".to_string(), "y".to_string()),
            ]
            .into(),
            needs: [("fmt".to_string(), "k2".to_string())].into(),
            inputs: vec![input("a.c", "1"), input("b.c", "9"), input("new.c", "4")],
            ..old.clone()
        };
        assert_eq!(
            diff(&old, &new),
            [
                "command changed: step 1: `make` → `make -j2`",
                "env A changed",
                "env C added",
                "env B removed",
                "needs fmt key changed",
                "input b.c changed",
                "input gone.c removed",
                "input new.c added",
            ]
        );
        assert!(diff(&old, &old).is_empty());
    }
}
