use std::path::Path;

use crate::config::FILE_NAME;
use crate::error::{Error, exit};
use crate::report::Output;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<u8, Error> {
    let context = super::Context::discover()?;
    let root = context.repo.workdir();
    let path = root.join(FILE_NAME);
    if path.exists() {
        return Err(Error::Usage {
            message: format!("{} already exists", path.display()),
            hint: Some("weir init never overwrites a pipeline; edit it, or remove it first".into()),
        });
    }
    let (text, found) = starter(root);
    std::fs::write(&path, text)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    let found = if found.is_empty() {
        "no known project files".to_owned()
    } else {
        found.join(", ")
    };
    Output.out(&format!(
        "wrote {} for {found}; try `weir run`",
        path.display()
    ));
    Ok(exit::SUCCESS)
}

/// One ecosystem's starter jobs: `(name, on, needs, run)`.
type Jobs = Vec<(&'static str, &'static str, Option<&'static str>, String)>;

/// A starter pipeline for what the repository at `root` looks like, and what was recognised.
pub fn starter(root: &Path) -> (String, Vec<&'static str>) {
    let mut found: Vec<(&'static str, Jobs)> = Vec::new();
    if root.join("Cargo.toml").is_file() {
        found.push((
            "Cargo",
            vec![
                (
                    "fmt",
                    "[\"pre-commit\", \"manual\"]",
                    None,
                    "cargo fmt --check".into(),
                ),
                (
                    "clippy",
                    "[\"pre-push\", \"manual\"]",
                    None,
                    "cargo clippy --all-targets -- -D warnings".into(),
                ),
                (
                    "test",
                    "[\"pre-push\", \"merge\", \"manual\"]",
                    None,
                    "cargo test".into(),
                ),
            ],
        ));
    }
    if let Some(jobs) = npm_jobs(root) {
        found.push(("npm", jobs));
    }
    if [
        "pyproject.toml",
        "setup.py",
        "setup.cfg",
        "requirements.txt",
    ]
    .iter()
    .any(|f| root.join(f).is_file())
    {
        found.push((
            "Python",
            vec![(
                "test",
                "[\"pre-push\", \"merge\", \"manual\"]",
                None,
                "python3 -m pytest".into(),
            )],
        ));
    }
    if let Some(jobs) = make_jobs(root) {
        found.push(("Make", jobs));
    }

    let mut text = String::from(
        "# weir pipeline. `weir run` runs every job, `weir run JOB` one job and what it needs,\n\
         # `weir graph` shows how they depend on each other.\n",
    );
    if found.is_empty() {
        text.push_str("\n[jobs.hello]\nrun = \"echo hello from weir\"\n");
    }
    let prefix = found.len() > 1;
    for (ecosystem, jobs) in &found {
        let name = |job: &str| {
            if prefix {
                format!("{}-{job}", ecosystem.to_lowercase())
            } else {
                job.to_owned()
            }
        };
        text.push_str(&format!("\n# {ecosystem}\n"));
        for (job, on, needs, run) in jobs {
            text.push_str(&format!("[jobs.{}]\non = {on}\n", name(job)));
            if let Some(need) = needs {
                text.push_str(&format!("needs = [\"{}\"]\n", name(need)));
            }
            text.push_str(&format!("run = {}\n\n", toml_string(run)));
        }
    }
    (text, found.iter().map(|(e, _)| *e).collect())
}

fn npm_jobs(root: &Path) -> Option<Jobs> {
    let manifest = std::fs::read(root.join("package.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap_or_default();
    let scripts = manifest.get("scripts").and_then(|s| s.as_object());
    let has = |script: &str| scripts.is_some_and(|s| s.contains_key(script));
    let install = if root.join("package-lock.json").is_file() {
        "npm ci"
    } else {
        "npm install"
    };
    let mut jobs: Jobs = vec![("deps", "[\"manual\"]", None, install.into())];
    if has("lint") {
        jobs.push((
            "lint",
            "[\"pre-commit\", \"manual\"]",
            Some("deps"),
            "npm run lint".into(),
        ));
    }
    if has("build") {
        jobs.push((
            "build",
            "[\"pre-push\", \"merge\", \"manual\"]",
            Some("deps"),
            "npm run build".into(),
        ));
    }
    if has("test") {
        jobs.push((
            "test",
            "[\"pre-push\", \"merge\", \"manual\"]",
            Some("deps"),
            "npm test".into(),
        ));
    }
    Some(jobs)
}

fn make_jobs(root: &Path) -> Option<Jobs> {
    let makefile = ["Makefile", "makefile", "GNUmakefile"]
        .iter()
        .find_map(|f| std::fs::read_to_string(root.join(f)).ok())?;
    let has = |target: &str| {
        makefile
            .lines()
            .any(|l| l.starts_with(&format!("{target}:")))
    };
    let mut jobs: Jobs = vec![(
        "build",
        "[\"pre-push\", \"merge\", \"manual\"]",
        None,
        "make".into(),
    )];
    for target in ["check", "test"] {
        if has(target) {
            let job = if target == "check" { "check" } else { "test" };
            jobs.push((
                job,
                "[\"pre-push\", \"merge\", \"manual\"]",
                Some("build"),
                format!("make {target}"),
            ));
        }
    }
    Some(jobs)
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
