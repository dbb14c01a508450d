//! Finding `.pipeline.toml`, parsing it with spans, and validating it into the model. Validation
//! walks toml's spanned tables by hand rather than through serde so that every problem in the file
//! is reported at once, each pointing at the exact key or value at fault.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::diagnostic::{Diagnostic, Diagnostics};
use super::model::{CachePull, CacheSettings, Deploy, Event, Job, Pipeline, SecretSource};

/// The config file's name, looked for in the working directory and its parents.
pub const FILE_NAME: &str = ".pipeline.toml";

const TOP_KEYS: &[&str] = &["pipeline", "env", "jobs", "cache", "secrets"];
const PIPELINE_KEYS: &[&str] = &["default_branch"];
const CACHE_KEYS: &[&str] = &["remote", "pull"];
const PULL_MODES: [(&str, CachePull); 2] =
    [("never", CachePull::Never), ("on-miss", CachePull::OnMiss)];
const JOB_KEYS: &[&str] = &[
    "run",
    "files",
    "fix",
    "needs",
    "on",
    "env",
    "timeout",
    "retries",
    "dir",
    "environment",
    "approval",
    "health",
    "rollback",
    "inputs",
    "outputs",
    "cache",
    "key",
    "key_cmd",
    "secrets",
];
const SECRET_KEYS: &[&str] = &["env", "file"];
const MAX_RETRIES: i64 = 100;
const MAX_NAME_LEN: usize = 100;
const NAME_HINT: &str = "names may contain ASCII letters, digits, `_`, `.` and `-`, must start with \
                         a letter, digit or `_`, and cannot contain `..` or end in `.` or `.lock`";
const EMPTY_JOBS_HINT: &str = "add a job, e.g. `[jobs.build]` with `run = \"make\"`";
const DURATION_HINT: &str = "e.g. \"90s\", \"10m\", \"1h\"";
const GLOB_ROOT_HINT: &str = "globs are relative to the directory holding .pipeline.toml";
const ENV_NAME_HINT: &str =
    "names use ASCII letters, digits and `_`, and do not start with a digit";
const SECRET_SOURCE_HINT: &str =
    "give exactly one source: `{ env = \"VAR\" }` or `{ file = \"path\" }`";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", not_found_message(cwd, repo_root))]
    NotFound { cwd: PathBuf, repo_root: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Renders every diagnostic with its snippet, then a count; print it as is.
    #[error("{0}")]
    Invalid(Diagnostics),
}

fn not_found_message(cwd: &Path, repo_root: &Path) -> String {
    let searched = if cwd == repo_root {
        format!("in the repository root {}", repo_root.display())
    } else if cwd.starts_with(repo_root) {
        format!(
            "in {} or any parent up to the repository root {}",
            cwd.display(),
            repo_root.display()
        )
    } else {
        format!(
            "found: {} is outside the repository {}",
            cwd.display(),
            repo_root.display()
        )
    };
    // The hint is part of the message so that no caller can forget to show it.
    format!("no {FILE_NAME} {searched}\nhelp: run `weir init` to create one")
}

/// Finds the nearest `.pipeline.toml` from `cwd` up to `repo_root` (inclusive) and validates it.
/// The directory holding the file becomes the pipeline root.
pub fn load(cwd: &Path, repo_root: &Path) -> Result<Pipeline, Error> {
    for dir in cwd.ancestors().take_while(|d| d.starts_with(repo_root)) {
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => return parse(&display_path(cwd, dir), &path, dir, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Read { path, source }),
        }
    }
    Err(Error::NotFound {
        cwd: cwd.to_path_buf(),
        repo_root: repo_root.to_path_buf(),
    })
}

/// The file as the user would type it from where they stand: `.pipeline.toml`, `../.pipeline.toml`.
fn display_path(cwd: &Path, dir: &Path) -> String {
    let mut shown = PathBuf::new();
    if let Ok(below) = cwd.strip_prefix(dir) {
        for _ in below.components() {
            shown.push("..");
        }
    } else {
        shown.push(dir);
    }
    shown.push(FILE_NAME);
    shown.display().to_string()
}

/// Validates the bytes of a config file. `display_path` is only for messages, `path` is recorded
/// in the model, and `root` is where job `dir`s must exist.
pub fn parse(
    display_path: &str,
    path: &Path,
    root: &Path,
    bytes: &[u8],
) -> Result<Pipeline, Error> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // Bytes before the first bad one are unchanged by lossy decoding, so the offset
            // still points at the replacement character standing in for it.
            let at = e.valid_up_to();
            let d = Diagnostic::new(
                "the file is not valid UTF-8",
                at..at + '\u{FFFD}'.len_utf8(),
            )
            .with_hint("save the file as UTF-8");
            let source = String::from_utf8_lossy(bytes).into_owned();
            return Err(Error::Invalid(Diagnostics::new(
                display_path,
                source,
                vec![d],
            )));
        }
    };
    let invalid =
        |diagnostics| Error::Invalid(Diagnostics::new(display_path, text.to_owned(), diagnostics));
    let doc = DeTable::parse(text).map_err(|e| invalid(vec![syntax_error(text, &e)]))?;
    let mut checker = Checker {
        root,
        seen: Seen::new(),
        diagnostics: Vec::new(),
        secret_names: declared_secrets(doc.get_ref()),
        secrets: BTreeMap::new(),
    };
    let (default_branch, env, cache, jobs) = checker.document(doc.get_ref());
    if !checker.diagnostics.is_empty() {
        return Err(invalid(checker.diagnostics));
    }
    Ok(Pipeline {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
        default_branch,
        env,
        cache,
        secrets: checker.secrets,
        jobs,
    })
}

/// The names `[secrets]` declares, known before any job is checked whatever the table order.
fn declared_secrets(doc: &DeTable<'_>) -> Vec<String> {
    doc.iter()
        .find(|(key, _)| key.get_ref().as_ref() == "secrets")
        .and_then(|(_, value)| match value.get_ref() {
            DeValue::Table(table) => Some(
                table
                    .keys()
                    .map(|k| k.get_ref().as_ref().to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

fn syntax_error(text: &str, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let key = text
        .get(span.clone())
        .unwrap_or_default()
        .trim_matches(['"', '\'']);
    if e.message() != "duplicate key" {
        return Diagnostic::new(e.message(), span);
    }
    let Some(head) = text.get(..span.start) else {
        return Diagnostic::new(e.message(), span);
    };
    let line_start = head.rfind('\n').map_or(0, |i| i + 1);
    let before: String = head[line_start..]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    // toml reports a repeated `[jobs.NAME]` header as a duplicate key at NAME.
    if before == "[jobs." {
        Diagnostic::new(format!("job `{key}` is defined twice"), span)
            .with_hint("each job name must appear once")
    } else {
        Diagnostic::new(format!("duplicate key `{key}`"), span)
    }
}

/// A job as validated, plus what cycle detection needs to point at its `needs` entries.
struct Checked {
    job: Job,
    needs_spans: Vec<Range<usize>>,
}

struct Checker<'a> {
    root: &'a Path,
    /// Paths under the root already looked at (see `resolve_dir`).
    seen: Seen,
    diagnostics: Vec<Diagnostic>,
    /// Every name in `[secrets]`, valid or not, for checking jobs' `secrets`.
    secret_names: Vec<String>,
    secrets: BTreeMap<String, SecretSource>,
}

type Env = BTreeMap<String, String>;

impl Checker<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    fn document(&mut self, doc: &DeTable<'_>) -> (Option<String>, Env, CacheSettings, Vec<Job>) {
        let mut default_branch = None;
        let mut env = Env::new();
        let mut cache = CacheSettings::default();
        let mut jobs = None;
        for (key, value) in doc {
            match key.get_ref().as_ref() {
                "pipeline" => default_branch = self.pipeline_section(value),
                "env" => env = self.env(value, "`env`"),
                "secrets" => self.secrets_section(value),
                "jobs" => jobs = Some(self.jobs(key, value)),
                "cache" => cache = self.cache_section(value),
                _ => self.unknown_key(key, TOP_KEYS, "at the top level"),
            }
        }
        let jobs = jobs.unwrap_or_else(|| {
            self.push(Diagnostic::new("no jobs defined", 0..0).with_hint(EMPTY_JOBS_HINT));
            Vec::new()
        });
        self.cycles(&jobs);
        (
            default_branch,
            env,
            cache,
            jobs.into_iter().map(|c| c.job).collect(),
        )
    }

    fn pipeline_section(&mut self, value: &Spanned<DeValue<'_>>) -> Option<String> {
        let table = self.table("`pipeline`", value)?;
        let mut default_branch = None;
        for (key, value) in table {
            match key.get_ref().as_ref() {
                "default_branch" => default_branch = self.default_branch(value),
                _ => self.unknown_key(key, PIPELINE_KEYS, "in `[pipeline]`"),
            }
        }
        default_branch
    }

    fn cache_section(&mut self, value: &Spanned<DeValue<'_>>) -> CacheSettings {
        let mut settings = CacheSettings::default();
        let table = match value.get_ref() {
            DeValue::Table(table) => table,
            other => {
                let mut d = Diagnostic::new(
                    format!(
                        "`cache` must be a table, found {}",
                        article(other.type_str())
                    ),
                    value.span(),
                );
                if matches!(other, DeValue::Boolean(_)) {
                    d = d.with_hint(
                        "to turn caching off for one job, set `cache = false` in that job; \
                         `[cache]` configures the shared cache",
                    );
                }
                self.push(d);
                return settings;
            }
        };
        for (key, value) in table {
            match key.get_ref().as_ref() {
                "remote" => settings.remote = self.remote(value),
                "pull" => settings.pull = self.pull(value),
                _ => self.unknown_key(key, CACHE_KEYS, "in `[cache]`"),
            }
        }
        settings
    }

    fn remote(&mut self, value: &Spanned<DeValue<'_>>) -> Option<String> {
        let what = "`remote` in `[cache]`";
        let remote = self.string(what, value)?;
        let hint = "name a git remote or give its URL, e.g. `remote = \"origin\"`";
        if remote.trim().is_empty() {
            self.push(Diagnostic::new(format!("empty {what}"), value.span()).with_hint(hint));
            return None;
        }
        // It is passed to git as an argument, where a leading `-` would read as an option.
        if remote.starts_with('-') {
            self.push(
                Diagnostic::new(
                    format!("invalid remote `{remote}` in `[cache]`: it starts with `-`"),
                    value.span(),
                )
                .with_hint(hint),
            );
            return None;
        }
        Some(remote.to_owned())
    }

    fn pull(&mut self, value: &Spanned<DeValue<'_>>) -> CachePull {
        let what = "`pull` in `[cache]`";
        let Some(mode) = self.string(what, value) else {
            return CachePull::default();
        };
        if let Some((_, pull)) = PULL_MODES.iter().find(|(name, _)| *name == mode) {
            return *pull;
        }
        let names = PULL_MODES.map(|(name, _)| name);
        let hint = match suggest(mode, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("`pull` is one of {}", backticked(names)),
        };
        self.push(
            Diagnostic::new(format!("unknown value `{mode}` for {what}"), value.span())
                .with_hint(hint),
        );
        CachePull::default()
    }

    fn default_branch(&mut self, value: &Spanned<DeValue<'_>>) -> Option<String> {
        let name = self.string("`default_branch`", value)?;
        let problem = if name.is_empty() {
            Some("it is empty".to_owned())
        } else {
            branch_name_problem(name)
        };
        if let Some(problem) = problem {
            self.push(
                Diagnostic::new(
                    format!("invalid branch name `{name}`: {problem}"),
                    value.span(),
                )
                .with_hint("use a name git accepts, e.g. `default_branch = \"main\"`"),
            );
            return None;
        }
        Some(name.to_owned())
    }

    /// `what` names the table in messages, e.g. "`env`" or "`env` of job `build`".
    fn env(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Env {
        let mut env = Env::new();
        let Some(table) = self.table(what, value) else {
            return env;
        };
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if !is_env_name(name) {
                self.push(
                    Diagnostic::new(
                        format!("invalid environment variable name `{name}` in {what}"),
                        key.span(),
                    )
                    .with_hint(ENV_NAME_HINT),
                );
            }
            match value.get_ref() {
                DeValue::String(s) => {
                    env.insert(name.to_owned(), s.to_string());
                }
                other => {
                    let mut d = Diagnostic::new(
                        format!(
                            "value of `{name}` in {what} must be a string, found {}",
                            article(other.type_str())
                        ),
                        value.span(),
                    );
                    if matches!(
                        other,
                        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_)
                    ) {
                        d = d.with_hint(format!("quote it: `{name} = \"{}\"`", source_text(other)));
                    }
                    self.push(d);
                }
            }
        }
        env
    }

    /// `[secrets]`: `NAME = { env = "VAR" }` or `NAME = { file = "path" }`. Only where each value
    /// comes from is checked: values are read when a job that lists the secret runs.
    fn secrets_section(&mut self, value: &Spanned<DeValue<'_>>) {
        let Some(table) = self.table("`secrets`", value) else {
            return;
        };
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if !is_env_name(name) {
                self.push(
                    Diagnostic::new(format!("invalid secret name `{name}`"), key.span()).with_hint(
                        format!(
                            "a secret reaches its jobs as the variable of its name: {ENV_NAME_HINT}"
                        ),
                    ),
                );
            }
            if let Some(source) = self.secret_source(name, value) {
                self.secrets.insert(name.to_owned(), source);
            }
        }
    }

    fn secret_source(&mut self, name: &str, value: &Spanned<DeValue<'_>>) -> Option<SecretSource> {
        let DeValue::Table(table) = value.get_ref() else {
            // Never echo the value: a string here is most likely the secret itself.
            self.push(
                Diagnostic::new(
                    format!(
                        "secret `{name}` must be a table, found {}",
                        article(value.get_ref().type_str())
                    ),
                    value.span(),
                )
                .with_hint(format!(
                    "say where the value is read from: `{name} = {{ env = \"{name}\" }}` or \
                     `{name} = {{ file = \"path\" }}`; never write the value in .pipeline.toml"
                )),
            );
            return None;
        };
        let mut source = None;
        let mut bad = false;
        for (k, v) in table {
            let field = k.get_ref().as_ref();
            let what = format!("`{field}` of secret `{name}`");
            let found = match field {
                "env" => self.secret_env(&what, v),
                "file" => self.secret_file(&what, v),
                _ => {
                    self.unknown_key(k, SECRET_KEYS, &format!("in secret `{name}`"));
                    bad = true;
                    continue;
                }
            };
            if source.is_some() {
                self.push(
                    Diagnostic::new(
                        format!("secret `{name}` has more than one source"),
                        k.span(),
                    )
                    .with_hint(SECRET_SOURCE_HINT),
                );
                bad = true;
            }
            match found {
                Some(found) => source = source.or(Some(found)),
                None => bad = true,
            }
        }
        if table.is_empty() {
            self.push(
                Diagnostic::new(format!("secret `{name}` has no source"), value.span())
                    .with_hint(SECRET_SOURCE_HINT),
            );
        }
        source.filter(|_| !bad)
    }

    fn secret_env(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Option<SecretSource> {
        let var = self.string(what, value)?;
        if !is_env_name(var) {
            self.push(
                Diagnostic::new(
                    format!("invalid environment variable name `{var}` in {what}"),
                    value.span(),
                )
                .with_hint(ENV_NAME_HINT),
            );
            return None;
        }
        Some(SecretSource::Env(var.to_owned()))
    }

    fn secret_file(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Option<SecretSource> {
        let path = self.string(what, value)?;
        let problem = if path.is_empty() {
            "it is empty"
        } else if Path::new(path).is_absolute() {
            "it is an absolute path"
        } else {
            return Some(SecretSource::File(PathBuf::from(path)));
        };
        self.push(
            Diagnostic::new(
                format!("invalid path `{path}` in {what}: {problem}"),
                value.span(),
            )
            .with_hint(
                "give a path relative to the directory holding .pipeline.toml, \
                     e.g. `file = \".secrets/token\"` (keep it out of git)",
            ),
        );
        None
    }

    /// A job's `secrets`: names declared in `[secrets]`, each once.
    fn job_secrets(&mut self, job: &str, value: &Spanned<DeValue<'_>>) -> Vec<String> {
        let what = format!("`secrets` in job `{job}`");
        let Some(entries) = self.array("secrets", &what, "an array of secret names", value) else {
            return Vec::new();
        };
        let mut secrets: Vec<String> = Vec::new();
        for entry in entries {
            let Some(name) = self.string(&format!("each entry of {what}"), entry) else {
                continue;
            };
            if !self.secret_names.iter().any(|s| s == name) {
                let declared = self.secret_names.iter().map(String::as_str);
                let hint = match suggest(name, declared.clone()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if self.secret_names.is_empty() => {
                        format!("declare it in `[secrets]`, e.g. `{name} = {{ env = \"{name}\" }}`")
                    }
                    None => format!("secrets in this file: {}", backticked(declared)),
                };
                self.push(
                    Diagnostic::new(
                        format!("unknown secret `{name}` in `secrets` of job `{job}`"),
                        entry.span(),
                    )
                    .with_hint(hint),
                );
            } else if secrets.iter().any(|s| s == name) {
                self.push(Diagnostic::new(
                    format!("secret `{name}` is listed twice in `secrets` of job `{job}`"),
                    entry.span(),
                ));
            } else {
                secrets.push(name.to_owned());
            }
        }
        secrets
    }

    fn jobs(&mut self, key: &Spanned<DeString<'_>>, value: &Spanned<DeValue<'_>>) -> Vec<Checked> {
        let table = match value.get_ref() {
            DeValue::Table(table) => table,
            other => {
                let mut d = Diagnostic::new(
                    format!(
                        "`jobs` must be a table, found {}",
                        article(other.type_str())
                    ),
                    value.span(),
                );
                if matches!(other, DeValue::Array(_)) {
                    d = d.with_hint("declare each job as `[jobs.NAME]`, not `[[jobs]]`");
                }
                self.push(d);
                return Vec::new();
            }
        };
        if table.is_empty() {
            self.push(Diagnostic::new("no jobs defined", key.span()).with_hint(EMPTY_JOBS_HINT));
        }
        let names: Vec<&str> = table.keys().map(|k| k.get_ref().as_ref()).collect();
        table
            .iter()
            .filter_map(|(key, value)| self.job(key, value, &names))
            .collect()
    }

    fn job(
        &mut self,
        key: &Spanned<DeString<'_>>,
        value: &Spanned<DeValue<'_>>,
        names: &[&str],
    ) -> Option<Checked> {
        let name = key.get_ref().as_ref();
        if let Some(problem) = ref_name_problem(name) {
            self.push(
                Diagnostic::new(format!("invalid job name `{name}`: {problem}"), key.span())
                    .with_hint(format!("job {NAME_HINT}")),
            );
        }
        let table = self.table(&format!("job `{name}`"), value)?;
        let mut job = Job {
            name: name.to_owned(),
            steps: Vec::new(),
            needs: Vec::new(),
            on: vec![Event::Manual],
            env: Env::new(),
            timeout: None,
            retries: 0,
            dir: PathBuf::new(),
            environment: None,
            inputs: None,
            outputs: Vec::new(),
            cache: true,
            key: Vec::new(),
            key_cmd: None,
            secrets: Vec::new(),
            files: None,
            fix: false,
            deploy: Deploy::default(),
            span: key.span(),
        };
        let mut needs_spans = Vec::new();
        let mut has_run = false;
        let mut is_deploy = false;
        let mut cache_true = None;
        // Keys that only make sense on a deploy job, checked once `environment` is known.
        let mut deploy_only = Vec::new();
        for (k, v) in table {
            let field = k.get_ref().as_ref();
            let what = format!("`{field}` in job `{name}`");
            match field {
                "run" => {
                    has_run = true;
                    job.steps = self.run(&what, v);
                }
                "needs" => {
                    (job.needs, needs_spans) = self.needs(name, v, names);
                }
                "on" => job.on = self.on(&what, v),
                "env" => job.env = self.env(v, &format!("`env` of job `{name}`")),
                "timeout" => job.timeout = self.timeout(&what, v),
                "retries" => job.retries = self.retries(&what, v),
                "dir" => job.dir = self.dir(&what, v),
                "environment" => {
                    is_deploy = true;
                    job.environment = self.environment(&what, v);
                }
                "inputs" => job.inputs = self.globs(field, &what, v),
                "outputs" => job.outputs = self.globs(field, &what, v).unwrap_or_default(),
                "cache" => {
                    if let Some(cache) = self.boolean(field, &what, v) {
                        job.cache = cache;
                        cache_true = cache.then(|| v.span());
                    }
                }
                "key" => job.key = self.strings(field, &what, v),
                "key_cmd" => {
                    job.key_cmd = self.command(
                        &what,
                        v,
                        "a command whose output goes into the key, e.g. `key_cmd = \"rustc --version\"`",
                    );
                }
                "secrets" => job.secrets = self.job_secrets(name, v),
                "files" => job.files = self.globs(field, &what, v),
                "fix" => job.fix = self.boolean(field, &what, v).unwrap_or(false),
                "approval" => {
                    deploy_only.push((field, k.span()));
                    job.deploy.approval = self.boolean(field, &what, v).unwrap_or(false);
                }
                "health" => {
                    deploy_only.push((field, k.span()));
                    job.deploy.health = self.command(
                        &what,
                        v,
                        "a health check, e.g. `health = \"curl -fsS localhost:8080/health\"`",
                    );
                }
                "rollback" => {
                    deploy_only.push((field, k.span()));
                    job.deploy.rollback = self.command(&what, v, "the command that restores the previous release, e.g. `rollback = \"./deploy.sh --previous\"`");
                }
                _ => self.unknown_key(k, JOB_KEYS, &format!("in job `{name}`")),
            }
        }
        // Checked after the loop so that the order of `environment` and `cache` does not matter,
        // and on the key rather than its value so that a bad environment name still counts.
        if let (true, Some(span)) = (is_deploy, cache_true) {
            self.push(
                Diagnostic::new(
                    format!("`cache` in job `{name}` cannot be true: deploy jobs are never cached"),
                    span,
                )
                .with_hint("remove `cache`: a job with `environment` always runs"),
            );
        }
        if job.environment.is_some() {
            job.cache = false;
        } else if !is_deploy {
            for (field, span) in deploy_only {
                self.push(
                    Diagnostic::new(
                        format!("`{field}` in job `{name}` needs `environment`"),
                        span,
                    )
                    .with_hint(format!(
                        "`{field}` only applies to deploy jobs: add `environment = \"staging\"` \
                         (or the environment's name), or remove `{field}`"
                    )),
                );
            }
        }
        if !has_run {
            self.push(
                Diagnostic::new(format!("job `{name}` has no `run`"), key.span())
                    .with_hint("add the command to run, e.g. `run = \"make test\"`"),
            );
        }
        Some(Checked { job, needs_spans })
    }

    fn run(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Vec<String> {
        let empty = |span| {
            Diagnostic::new(format!("empty {what}"), span)
                .with_hint("give the shell command to run, e.g. `run = \"make test\"`")
        };
        match value.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => {
                self.push(empty(value.span()));
                Vec::new()
            }
            DeValue::String(s) => vec![s.to_string()],
            DeValue::Array(steps) if steps.is_empty() => {
                self.push(empty(value.span()));
                Vec::new()
            }
            DeValue::Array(steps) => {
                let mut out = Vec::new();
                for step in steps.iter() {
                    match step.get_ref() {
                        DeValue::String(s) if s.trim().is_empty() => self.push(
                            Diagnostic::new(format!("empty step in {what}"), step.span())
                                .with_hint("remove it or give it a command"),
                        ),
                        DeValue::String(s) => out.push(s.to_string()),
                        other => self.wrong_type(
                            &format!("each step of {what}"),
                            "a string",
                            other,
                            step,
                        ),
                    }
                }
                out
            }
            other => {
                self.wrong_type(what, "a string or an array of strings", other, value);
                Vec::new()
            }
        }
    }

    fn needs(
        &mut self,
        job: &str,
        value: &Spanned<DeValue<'_>>,
        names: &[&str],
    ) -> (Vec<String>, Vec<Range<usize>>) {
        let what = format!("`needs` in job `{job}`");
        let entries = match value.get_ref() {
            DeValue::Array(entries) => entries,
            DeValue::String(s) => {
                self.push(
                    Diagnostic::new(
                        format!("{what} must be an array, found a string"),
                        value.span(),
                    )
                    .with_hint(format!("write `needs = [\"{s}\"]`")),
                );
                return (Vec::new(), Vec::new());
            }
            other => {
                self.wrong_type(&what, "an array of job names", other, value);
                return (Vec::new(), Vec::new());
            }
        };
        let mut needs = Vec::new();
        let mut spans = Vec::new();
        for entry in entries.iter() {
            let Some(need) = self.string(&format!("each entry of {what}"), entry) else {
                continue;
            };
            if !names.contains(&need) {
                let others = names.iter().copied().filter(|n| *n != job);
                let hint = match suggest(need, others.clone()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("jobs in this file: {}", backticked(others)),
                };
                self.push(
                    Diagnostic::new(
                        format!("unknown job `{need}` in `needs` of job `{job}`"),
                        entry.span(),
                    )
                    .with_hint(hint),
                );
            } else if needs.iter().any(|n| n == need) {
                self.push(Diagnostic::new(
                    format!("job `{need}` is listed twice in `needs` of job `{job}`"),
                    entry.span(),
                ));
            } else {
                needs.push(need.to_owned());
                spans.push(entry.span());
            }
        }
        (needs, spans)
    }

    fn on(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Vec<Event> {
        let single = std::slice::from_ref(value);
        let entries = match value.get_ref() {
            DeValue::String(_) => single,
            DeValue::Array(entries) => &entries[..],
            other => {
                self.wrong_type(what, "an array of event names", other, value);
                return vec![Event::Manual];
            }
        };
        let mut events = Vec::new();
        for entry in entries {
            let Some(name) = self.string(&format!("each entry of {what}"), entry) else {
                continue;
            };
            match Event::parse(name) {
                // Listing an event twice is harmless; keep the first.
                Some(event) if events.contains(&event) => {}
                Some(event) => events.push(event),
                None => {
                    let all = Event::ALL.map(Event::as_str);
                    let hint = match suggest(name, all) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("events are {}", backticked(all)),
                    };
                    self.push(
                        Diagnostic::new(format!("unknown event `{name}` in {what}"), entry.span())
                            .with_hint(hint),
                    );
                }
            }
        }
        events
    }

    fn timeout(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Option<std::time::Duration> {
        if let DeValue::Integer(n) = value.get_ref() {
            self.push(
                Diagnostic::new(
                    format!("{what} must be a string, found an integer"),
                    value.span(),
                )
                .with_hint(format!("durations need a unit, e.g. `\"{}s\"`", n.as_str())),
            );
            return None;
        }
        let text = self.string(what, value)?;
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.push(
                    Diagnostic::new(format!("{what} must be greater than zero"), value.span())
                        .with_hint(format!(
                            "remove it for no limit, or give one, {DURATION_HINT}"
                        )),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.push(
                    Diagnostic::new(
                        format!("invalid duration `{text}` for {what}: {e}"),
                        value.span(),
                    )
                    .with_hint(DURATION_HINT),
                );
                None
            }
        }
    }

    fn retries(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> u32 {
        let DeValue::Integer(n) = value.get_ref() else {
            self.wrong_type(what, "an integer", value.get_ref(), value);
            return 0;
        };
        match i64::from_str_radix(n.as_str(), n.radix()) {
            Ok(n @ 0..=MAX_RETRIES) => u32::try_from(n).unwrap_or(0),
            _ => {
                self.push(Diagnostic::new(
                    format!(
                        "{what} must be between 0 and {MAX_RETRIES}, found {}",
                        source_text(value.get_ref())
                    ),
                    value.span(),
                ));
                0
            }
        }
    }

    fn dir(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> PathBuf {
        let Some(raw) = self.string(what, value) else {
            return PathBuf::new();
        };
        match resolve_dir(self.root, raw, &mut self.seen) {
            Ok(dir) => dir,
            Err(problem) => {
                self.push(
                    Diagnostic::new(format!("{what} {problem}"), value.span())
                        .with_hint("`dir` is relative to the directory holding .pipeline.toml"),
                );
                PathBuf::new()
            }
        }
    }

    fn environment(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Option<String> {
        let name = self.string(what, value)?;
        if name.is_empty() {
            self.push(
                Diagnostic::new(format!("empty {what}"), value.span())
                    .with_hint("name the deploy target, e.g. `environment = \"staging\"`"),
            );
            return None;
        }
        // The name becomes part of `refs/weir/deploy/<environment>`.
        if let Some(problem) = ref_name_problem(name) {
            self.push(
                Diagnostic::new(
                    format!("invalid environment name `{name}`: {problem}"),
                    value.span(),
                )
                .with_hint(format!("environment {NAME_HINT}")),
            );
            return None;
        }
        Some(name.to_owned())
    }

    /// `inputs` or `outputs`: an array of globs relative to the pipeline root, kept as written.
    /// `None` when the value is not an array at all.
    fn globs(
        &mut self,
        field: &str,
        what: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<Vec<String>> {
        let entries = self.array(field, what, "an array of globs", value)?;
        let mut globs = Vec::new();
        for entry in entries {
            let Some(glob) = self.string(&format!("each entry of {what}"), entry) else {
                continue;
            };
            match glob_problem(glob) {
                Some((problem, hint)) => self.push(
                    Diagnostic::new(
                        format!("invalid glob `{glob}` in {what}: {problem}"),
                        entry.span(),
                    )
                    .with_hint(hint),
                ),
                None => globs.push(glob.to_owned()),
            }
        }
        Some(globs)
    }

    /// An array of strings, as `key` takes.
    fn strings(&mut self, field: &str, what: &str, value: &Spanned<DeValue<'_>>) -> Vec<String> {
        let Some(entries) = self.array(field, what, "an array of strings", value) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|entry| self.string(&format!("each entry of {what}"), entry))
            .map(str::to_owned)
            .collect()
    }

    /// The entries of an array; a lone string gets a hint to wrap it in a list.
    fn array<'v, 'i>(
        &mut self,
        field: &str,
        what: &str,
        expected: &str,
        value: &'v Spanned<DeValue<'i>>,
    ) -> Option<&'v [Spanned<DeValue<'i>>]> {
        match value.get_ref() {
            DeValue::Array(entries) => Some(&entries[..]),
            DeValue::String(s) => {
                self.push(
                    Diagnostic::new(
                        format!("{what} must be an array, found a string"),
                        value.span(),
                    )
                    .with_hint(format!("use a list: `{field} = [{}]`", toml_string(s))),
                );
                None
            }
            other => {
                self.wrong_type(what, expected, other, value);
                None
            }
        }
    }

    fn boolean(&mut self, field: &str, what: &str, value: &Spanned<DeValue<'_>>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            DeValue::String(s) if matches!(s.as_ref(), "true" | "false") => {
                self.push(
                    Diagnostic::new(
                        format!("{what} must be a boolean, found a string"),
                        value.span(),
                    )
                    .with_hint(format!("drop the quotes: `{field} = {s}`")),
                );
                None
            }
            other => {
                self.wrong_type(what, "a boolean", other, value);
                None
            }
        }
    }

    /// A shell command that must not be empty; `example` says what to give instead.
    fn command(
        &mut self,
        what: &str,
        value: &Spanned<DeValue<'_>>,
        example: &str,
    ) -> Option<String> {
        let cmd = self.string(what, value)?;
        if cmd.trim().is_empty() {
            self.push(
                Diagnostic::new(format!("empty {what}"), value.span())
                    .with_hint(format!("give {example}")),
            );
            return None;
        }
        Some(cmd.to_owned())
    }

    /// One diagnostic per strongly connected group of jobs, naming one cycle through it that
    /// starts at the group's first job in file order.
    fn cycles(&mut self, jobs: &[Checked]) {
        let index: HashMap<&str, usize> = jobs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.job.name.as_str(), i))
            .collect();
        let edges: Vec<Vec<(usize, Range<usize>)>> = jobs
            .iter()
            .map(|c| {
                c.job
                    .needs
                    .iter()
                    .zip(&c.needs_spans)
                    .filter_map(|(n, span)| Some((*index.get(n.as_str())?, span.clone())))
                    .collect()
            })
            .collect();
        let reach: Vec<Vec<bool>> = (0..jobs.len()).map(|s| reachable(&edges, s)).collect();
        let mut reported = vec![false; jobs.len()];
        for start in 0..jobs.len() {
            if reported[start] || !reach[start][start] {
                continue;
            }
            for (other, done) in reported.iter_mut().enumerate() {
                *done |= reach[start][other] && reach[other][start];
            }
            let path = shortest_cycle(&edges, start);
            let names: Vec<&str> = path.iter().map(|&i| jobs[i].job.name.as_str()).collect();
            let span = edges[start]
                .iter()
                .find(|(to, _)| Some(to) == path.get(1))
                .map_or(jobs[start].job.span.clone(), |(_, span)| span.clone());
            self.push(
                Diagnostic::new(format!("dependency cycle: {}", names.join(" → ")), span)
                    .with_hint("a job cannot need itself, directly or through other jobs"),
            );
        }
    }

    fn table<'v, 'i>(
        &mut self,
        what: &str,
        value: &'v Spanned<DeValue<'i>>,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            other => {
                self.wrong_type(what, "a table", other, value);
                None
            }
        }
    }

    fn string<'v>(&mut self, what: &str, value: &'v Spanned<DeValue<'_>>) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s),
            other => {
                self.wrong_type(what, "a string", other, value);
                None
            }
        }
    }

    fn wrong_type(
        &mut self,
        what: &str,
        expected: &str,
        found: &DeValue<'_>,
        at: &Spanned<DeValue<'_>>,
    ) {
        self.push(Diagnostic::new(
            format!(
                "{what} must be {expected}, found {}",
                article(found.type_str())
            ),
            at.span(),
        ));
    }

    fn unknown_key(&mut self, key: &Spanned<DeString<'_>>, valid: &[&str], context: &str) {
        let name = key.get_ref().as_ref();
        let hint = match suggest(name, valid.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("valid keys here: {}", backticked(valid.iter().copied())),
        };
        self.push(
            Diagnostic::new(format!("unknown key `{name}` {context}"), key.span()).with_hint(hint),
        );
    }
}

/// `raw` normalised to a path under `root` naming an existing directory, or what is wrong with it.
/// What is at each path `resolve_dir` looked at: nothing, or its type (not following symlinks).
type Seen = HashMap<PathBuf, Option<fs::FileType>>;

fn resolve_dir(root: &Path, raw: &str, seen: &mut Seen) -> Result<PathBuf, String> {
    let mut dir = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => dir.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !dir.pop() {
                    return Err(format!("`{raw}` leaves the pipeline root"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("must be a relative path, found `{raw}`"));
            }
        }
    }
    // One lstat per component, remembered across jobs (which share their parents): there or
    // not, a directory or not, and whether a symlink is on the way.
    let mut on_the_way = root.to_path_buf();
    let mut through_symlink = false;
    for part in dir.components() {
        on_the_way.push(part);
        let kind = *seen.entry(on_the_way.clone()).or_insert_with(|| {
            fs::symlink_metadata(&on_the_way)
                .ok()
                .map(|m| m.file_type())
        });
        match kind {
            None => return Err(format!("`{raw}` does not exist")),
            Some(kind) if kind.is_symlink() => through_symlink = true,
            Some(kind) if !kind.is_dir() => return Err(format!("`{raw}` is not a directory")),
            Some(_) => {}
        }
    }
    if !through_symlink {
        return Ok(dir);
    }
    // A symlink inside the tree could still lead out of it, or to something else than a
    // directory; lexical checks cannot see that. Resolving paths costs a readlink per
    // component of the root too: only when a symlink is on the way.
    let full = root.join(&dir);
    if !full.is_dir() {
        let state = if full.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(format!("`{raw}` {state}"));
    }
    if let (Ok(root), Ok(real)) = (root.canonicalize(), full.canonicalize())
        && !real.starts_with(&root)
    {
        return Err(format!(
            "`{raw}` leads outside the pipeline root through a symlink"
        ));
    }
    Ok(dir)
}

/// Why `glob` cannot be an `inputs` or `outputs` entry, and a hint for fixing it.
fn glob_problem(glob: &str) -> Option<(String, &'static str)> {
    if glob.is_empty() {
        return Some((
            "it is empty".to_owned(),
            "remove it, or give a path or pattern, e.g. `\"src/**\"`",
        ));
    }
    if glob.starts_with('!') {
        return Some((
            "it starts with `!`".to_owned(),
            "negation is not supported: list only the files to include",
        ));
    }
    if glob.starts_with('/') {
        return Some(("it is an absolute path".to_owned(), GLOB_ROOT_HINT));
    }
    let parts = || glob.split('/');
    if parts().any(|part| part == "..") {
        return Some((
            "it contains a `..` component".to_owned(),
            "globs cannot reach outside the directory holding .pipeline.toml",
        ));
    }
    // Case-insensitive, as on the file systems that fold case `.GIT` is the same directory.
    if parts().any(|part| part.eq_ignore_ascii_case(".git")) {
        return Some((
            "it contains a `.git` component".to_owned(),
            "files inside `.git` are never inputs or outputs",
        ));
    }
    if !crate::key::is_plain(glob)
        && let Err(e) = globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
    {
        return Some((
            e.kind().to_string(),
            "globs use `*`, `**`, `?`, `[abc]` and `{a,b}`; `*` does not match `/`",
        ));
    }
    None
}

/// Jobs reachable from `start` by at least one step (so `start` itself only if on a cycle).
fn reachable(edges: &[Vec<(usize, Range<usize>)>], start: usize) -> Vec<bool> {
    let mut seen = vec![false; edges.len()];
    let mut stack: Vec<usize> = edges[start].iter().map(|(to, _)| *to).collect();
    while let Some(node) = stack.pop() {
        if !std::mem::replace(&mut seen[node], true) {
            stack.extend(edges[node].iter().map(|(to, _)| *to));
        }
    }
    seen
}

/// `start → … → start`, shortest first; only called when `start` is on a cycle.
fn shortest_cycle(edges: &[Vec<(usize, Range<usize>)>], start: usize) -> Vec<usize> {
    let mut parent: Vec<Option<usize>> = vec![None; edges.len()];
    let mut queue = VecDeque::from([start]);
    let mut seen = HashSet::from([start]);
    let mut last = start;
    'search: while let Some(node) = queue.pop_front() {
        for &(to, _) in &edges[node] {
            if to == start {
                last = node;
                break 'search;
            }
            if seen.insert(to) {
                parent[to] = Some(node);
                queue.push_back(to);
            }
        }
    }
    let mut path = vec![start];
    let mut node = last;
    while node != start {
        path.push(node);
        node = parent[node].unwrap_or(start);
    }
    path.push(start);
    let inner = path.len() - 1;
    path[1..inner].reverse();
    path
}

/// Why `name` cannot be a job or environment name, which ends up inside a git ref name.
pub fn ref_name_problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("it is empty".to_owned());
    };
    if name.chars().count() > MAX_NAME_LEN {
        return Some(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Some(format!("it starts with {}", describe(first)));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(format!("it contains {}", describe(c)));
    }
    if name.contains("..") {
        return Some("it contains `..`".to_owned());
    }
    if name.ends_with(".lock") {
        return Some("it ends in `.lock`".to_owned());
    }
    if name.ends_with('.') {
        return Some("it ends in `.`".to_owned());
    }
    None
}

/// The rules of `git check-ref-format --branch` that a single name can break.
fn branch_name_problem(name: &str) -> Option<String> {
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Some(format!("it contains {}", describe(c)));
    }
    for bad in ["..", "@{", "//"] {
        if name.contains(bad) {
            return Some(format!("it contains `{bad}`"));
        }
    }
    if name == "@" {
        return Some("it is `@`".to_owned());
    }
    if name.starts_with('-') || name.starts_with('/') {
        return Some(format!("it starts with `{}`", &name[..1]));
    }
    if name.ends_with('/') || name.ends_with('.') {
        return Some(format!("it ends in `{}`", &name[name.len() - 1..]));
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Some("a part starts with `.` or ends in `.lock`".to_owned());
    }
    None
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        c if c.is_control() || c.is_whitespace() => format!("`{}`", c.escape_debug()),
        c => format!("`{c}`"),
    }
}

fn article(type_name: &str) -> String {
    let an = type_name.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {type_name}", if an { "an" } else { "a" })
}

/// The value as written, for echoing back in hints.
fn source_text(value: &DeValue<'_>) -> String {
    match value {
        DeValue::Integer(n) if n.radix() == 10 => n.as_str().to_owned(),
        DeValue::Integer(n) => i128::from_str_radix(n.as_str(), n.radix())
            .map_or_else(|_| n.as_str().to_owned(), |n| n.to_string()),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        other => other.type_str().to_owned(),
    }
}

/// `s` as a TOML basic string, for echoing a value back inside a hint.
fn toml_string(s: &str) -> String {
    let mut quoted = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn backticked<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words
        .into_iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest candidate, if close enough that the user most likely meant it.
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse_in(root: &Path, src: &str) -> Result<Pipeline, Error> {
        parse(FILE_NAME, &root.join(FILE_NAME), root, src.as_bytes())
    }

    fn valid(src: &str) -> Pipeline {
        match parse_in(Path::new("/nonexistent"), src) {
            Ok(p) => p,
            Err(e) => panic!("expected a valid file, got:\n{e}"),
        }
    }

    fn errors_in(root: &Path, src: &str) -> String {
        match parse_in(root, src) {
            Err(Error::Invalid(d)) => d.to_string(),
            other => panic!("expected diagnostics, got {other:?}"),
        }
    }

    fn errors(src: &str) -> String {
        errors_in(Path::new("/nonexistent"), src)
    }

    /// Each needle must appear in the rendered output, which is shown on failure.
    #[track_caller]
    fn assert_has(out: &str, needles: &[&str]) {
        for needle in needles {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
    }

    #[test]
    fn a_full_file_becomes_the_model() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("web/app")).unwrap();
        let src = r#"
[pipeline]
default_branch = "trunk"

[env]
CARGO_TERM_COLOR = "never"
_X1 = ""

[jobs.fmt]
on = "pre-commit"
run = "cargo fmt --check"

[jobs.build]
on = ["pre-push", "merge", "watch", "merge"]
needs = ["fmt"]
run = ["cargo build", "cargo test"]
timeout = "1h 30m"
retries = 2
dir = "./web/app/"
env = { RUST_LOG = "debug" }

[jobs.staging]
needs = ["build", "fmt"]
environment = "staging"
run = "./deploy.sh staging"
"#;
        let p = parse_in(root.path(), src).unwrap();
        assert_eq!(p.path, root.path().join(".pipeline.toml"));
        assert_eq!(p.root, root.path());
        assert_eq!(p.default_branch.as_deref(), Some("trunk"));
        assert_eq!(
            p.env,
            BTreeMap::from([
                ("CARGO_TERM_COLOR".to_owned(), "never".to_owned()),
                ("_X1".to_owned(), String::new()),
            ])
        );
        let names: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["fmt", "build", "staging"]);

        let fmt = p.job("fmt").unwrap();
        assert_eq!(fmt.steps, ["cargo fmt --check"]);
        assert_eq!(fmt.on, [Event::PreCommit]);
        assert_eq!(&src[fmt.span.clone()], "fmt");

        let build = p.job("build").unwrap();
        assert_eq!(build.steps, ["cargo build", "cargo test"]);
        assert_eq!(build.needs, ["fmt"]);
        assert_eq!(build.on, [Event::PrePush, Event::Merge, Event::Watch]);
        assert_eq!(build.timeout, Some(Duration::from_secs(5400)));
        assert_eq!(build.retries, 2);
        assert_eq!(build.dir, Path::new("web/app"));
        assert_eq!(
            build.env,
            BTreeMap::from([("RUST_LOG".to_owned(), "debug".to_owned())])
        );
        assert_eq!(build.environment, None);

        let staging = p.job("staging").unwrap();
        assert_eq!(staging.needs, ["build", "fmt"]);
        assert_eq!(staging.environment.as_deref(), Some("staging"));
    }

    #[test]
    fn absent_keys_take_their_defaults() {
        let p = valid("[jobs.a]\nrun = \"true\"\n");
        assert_eq!(p.default_branch, None);
        assert!(p.env.is_empty());
        let a = &p.jobs[0];
        assert_eq!(a.on, [Event::Manual]);
        assert!(a.needs.is_empty());
        assert!(a.env.is_empty());
        assert_eq!(a.timeout, None);
        assert_eq!(a.retries, 0);
        assert_eq!(a.dir, PathBuf::new());
        assert_eq!(a.environment, None);
    }

    #[test]
    fn inline_job_tables_and_a_diamond_are_fine() {
        let p = valid(
            "[jobs]\na = { run = \"x\" }\nb = { run = \"x\", needs = [\"a\"] }\n\
             c = { run = \"x\", needs = [\"a\"] }\nd = { run = \"x\", needs = [\"b\", \"c\"] }\n",
        );
        assert_eq!(p.jobs.len(), 4);
        assert_eq!(p.job("d").unwrap().needs, ["b", "c"]);
    }

    #[test]
    fn unknown_job_key_suggests_the_closest() {
        let src = "[jobs.build]\nrun = \"make\"\n\n\nneds = [\"lint\"]\n";
        assert_eq!(
            errors(src),
            "error: unknown key `neds` in job `build`\n \
             --> .pipeline.toml:5:1\n  \
             |\n\
             5 | neds = [\"lint\"]\n  \
             | ^^^^\n  \
             = help: did you mean `needs`?\n\
             \n\
             1 error in .pipeline.toml"
        );
    }

    #[test]
    fn unknown_top_level_key_lists_the_valid_ones() {
        let out = errors("colour = true\n[jobs.a]\nrun = \"x\"\n");
        assert_has(
            &out,
            &[
                "error: unknown key `colour` at the top level\n",
                ".pipeline.toml:1:1\n",
                "1 | colour = true\n  | ^^^^^^\n",
                "= help: valid keys here: `pipeline`, `env`, `jobs`",
            ],
        );
    }

    #[test]
    fn unknown_key_in_pipeline_section() {
        let out = errors("[pipeline]\ndefault-branch = \"main\"\n[jobs.a]\nrun = \"x\"\n");
        assert_has(
            &out,
            &[
                "error: unknown key `default-branch` in `[pipeline]`\n",
                ".pipeline.toml:2:1\n",
                "2 | default-branch = \"main\"\n  | ^^^^^^^^^^^^^^\n",
                "= help: did you mean `default_branch`?",
            ],
        );
    }

    #[test]
    fn toml_syntax_error_points_where_toml_says() {
        let out = errors("[jobs.a]\nrun = 'make\n");
        assert_has(
            &out,
            &[
                "error: invalid literal string, expected `'`\n",
                ".pipeline.toml:2:12\n",
                "2 | run = 'make\n  |            ^\n",
                "1 error in .pipeline.toml",
            ],
        );
    }

    #[test]
    fn a_job_defined_twice_says_so() {
        let src = "[jobs.build]\nrun = \"a\"\n\n[jobs.build]\nrun = \"b\"\n";
        assert_eq!(
            errors(src),
            "error: job `build` is defined twice\n \
             --> .pipeline.toml:4:7\n  \
             |\n\
             4 | [jobs.build]\n  \
             |       ^^^^^\n  \
             = help: each job name must appear once\n\
             \n\
             1 error in .pipeline.toml"
        );
    }

    #[test]
    fn a_key_repeated_in_a_job_is_a_duplicate_key() {
        let out = errors("[jobs.a]\nrun = \"a\"\nrun = \"b\"\n");
        assert_has(
            &out,
            &[
                "error: duplicate key `run`\n",
                ".pipeline.toml:3:1\n",
                "3 | run = \"b\"\n  | ^^^\n",
            ],
        );
        assert!(!out.contains("help:"), "{out}");
    }

    #[test]
    fn invalid_utf8_points_at_the_first_bad_byte() {
        let bytes = b"[jobs.a]\nrun = \"caf\xe9\"\n";
        let out = match parse(
            FILE_NAME,
            Path::new("/x/.pipeline.toml"),
            Path::new("/x"),
            bytes,
        ) {
            Err(Error::Invalid(d)) => d.to_string(),
            other => panic!("expected diagnostics, got {other:?}"),
        };
        assert_has(
            &out,
            &[
                "error: the file is not valid UTF-8\n",
                ".pipeline.toml:2:11\n",
                "2 | run = \"caf\u{FFFD}\"\n  |           ^\n",
            ],
        );
    }

    #[test]
    fn env_values_must_be_strings() {
        let out =
            errors("[env]\nPORT = 8080\nOK = \"1\"\n[jobs.a]\nrun = \"x\"\nenv.DEBUG = true\n");
        assert_has(
            &out,
            &[
                "error: value of `PORT` in `env` must be a string, found an integer\n",
                ".pipeline.toml:2:8\n",
                "2 | PORT = 8080\n  |        ^^^^\n",
                "= help: quote it: `PORT = \"8080\"`",
                "error: value of `DEBUG` in `env` of job `a` must be a string, found a boolean\n",
                ".pipeline.toml:6:13\n",
                "6 | env.DEBUG = true\n  |             ^^^^\n",
                "= help: quote it: `DEBUG = \"true\"`",
                "2 errors in .pipeline.toml",
            ],
        );
    }

    #[test]
    fn env_names_must_be_shell_names() {
        let out = errors("[env]\n\"1X\" = \"a\"\n\"MY-VAR\" = \"b\"\n[jobs.a]\nrun = \"x\"\n");
        assert_has(
            &out,
            &[
                "error: invalid environment variable name `1X` in `env`\n",
                ".pipeline.toml:2:1\n",
                "2 | \"1X\" = \"a\"\n  | ^^^^\n",
                "error: invalid environment variable name `MY-VAR` in `env`\n",
                ".pipeline.toml:3:1\n",
                "2 errors in",
            ],
        );
    }

    #[test]
    fn a_file_without_jobs_is_an_error() {
        let out = errors("[pipeline]\ndefault_branch = \"main\"\n");
        assert_has(
            &out,
            &[
                "error: no jobs defined\n",
                ".pipeline.toml:1:1\n",
                "1 | [pipeline]\n  | ^\n",
                "= help: add a job, e.g. `[jobs.build]` with `run = \"make\"`",
            ],
        );
    }

    #[test]
    fn an_empty_jobs_table_is_an_error() {
        let out = errors("[jobs]\n");
        assert_has(
            &out,
            &[
                "error: no jobs defined\n",
                ".pipeline.toml:1:2\n",
                "1 | [jobs]\n  |  ^^^^\n",
            ],
        );
    }

    #[test]
    fn array_of_jobs_gets_a_hint() {
        let out = errors("[[jobs]]\nrun = \"x\"\n");
        assert_has(
            &out,
            &[
                "error: `jobs` must be a table, found an array\n",
                ".pipeline.toml:1:1\n",
                "= help: declare each job as `[jobs.NAME]`, not `[[jobs]]`",
            ],
        );
    }

    #[test]
    fn a_job_must_be_a_table() {
        let out = errors("[jobs]\nbuild = \"make\"\n");
        assert_has(
            &out,
            &[
                "error: job `build` must be a table, found a string\n",
                ".pipeline.toml:2:9\n",
                "2 | build = \"make\"\n  |         ^^^^^^\n",
            ],
        );
    }

    #[test]
    fn run_is_required_and_not_empty() {
        let src = "[jobs.a]\nneeds = []\n\n[jobs.b]\nrun = \"  \"\n\n[jobs.c]\nrun = []\n\n\
                   [jobs.d]\nrun = [\"make\", \"\"]\n\n[jobs.e]\nrun = 3\n\n[jobs.f]\nrun = [\"x\", 1]\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: job `a` has no `run`\n",
                ".pipeline.toml:1:7\n",
                "1 | [jobs.a]\n  |       ^\n",
                "error: empty `run` in job `b`\n",
                ".pipeline.toml:5:7\n",
                "5 | run = \"  \"\n  |       ^^^^\n",
                "error: empty `run` in job `c`\n",
                ".pipeline.toml:8:7\n",
                "8 | run = []\n  |       ^^\n",
                "error: empty step in `run` in job `d`\n",
                ".pipeline.toml:11:16\n",
                "11 | run = [\"make\", \"\"]\n   |                ^^\n",
                "error: `run` in job `e` must be a string or an array of strings, found an integer\n",
                ".pipeline.toml:14:7\n",
                "error: each step of `run` in job `f` must be a string, found an integer\n",
                ".pipeline.toml:17:13\n",
                "6 errors in .pipeline.toml",
            ],
        );
    }

    #[test]
    fn needs_must_name_jobs_in_the_file() {
        let src = "[jobs.lint]\nrun = \"x\"\n[jobs.build]\nrun = \"x\"\n\
                   needs = [\"lnt\", \"zzz\", \"lint\", \"lint\"]\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: unknown job `lnt` in `needs` of job `build`\n",
                ".pipeline.toml:5:10\n",
                "5 | needs = [\"lnt\", \"zzz\", \"lint\", \"lint\"]\n  |          ^^^^^\n",
                "= help: did you mean `lint`?",
                "error: unknown job `zzz` in `needs` of job `build`\n",
                ".pipeline.toml:5:17\n",
                "= help: jobs in this file: `lint`\n",
                "error: job `lint` is listed twice in `needs` of job `build`\n",
                ".pipeline.toml:5:32\n",
                "3 errors in",
            ],
        );
    }

    #[test]
    fn needs_as_a_string_gets_a_hint() {
        let out = errors("[jobs.a]\nrun = \"x\"\n[jobs.b]\nrun = \"x\"\nneeds = \"a\"\n");
        assert_has(
            &out,
            &[
                "error: `needs` in job `b` must be an array, found a string\n",
                ".pipeline.toml:5:9\n",
                "5 | needs = \"a\"\n  |         ^^^\n",
                "= help: write `needs = [\"a\"]`",
            ],
        );
    }

    #[test]
    fn on_accepts_known_events_only() {
        let out = errors("[jobs.a]\nrun = \"x\"\non = [\"pre_commit\", \"nightly\", 3]\n");
        assert_has(
            &out,
            &[
                "error: unknown event `pre_commit` in `on` in job `a`\n",
                ".pipeline.toml:3:7\n",
                "3 | on = [\"pre_commit\", \"nightly\", 3]\n  |       ^^^^^^^^^^^^\n",
                "= help: did you mean `pre-commit`?",
                "error: unknown event `nightly` in `on` in job `a`\n",
                ".pipeline.toml:3:21\n",
                "= help: events are `manual`, `pre-commit`, `pre-push`, `merge`, `watch`",
                "error: each entry of `on` in job `a` must be a string, found an integer\n",
                ".pipeline.toml:3:32\n",
                "3 errors in",
            ],
        );
    }

    #[test]
    fn timeout_must_be_a_positive_duration() {
        let src = "[jobs.a]\nrun = \"x\"\ntimeout = \"5 parsecs\"\n[jobs.b]\nrun = \"x\"\n\
                   timeout = \"0s\"\n[jobs.c]\nrun = \"x\"\ntimeout = 90\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: invalid duration `5 parsecs` for `timeout` in job `a`: unknown time unit \"parsecs\"",
                ".pipeline.toml:3:11\n",
                "3 | timeout = \"5 parsecs\"\n  |           ^^^^^^^^^^^\n",
                "= help: e.g. \"90s\", \"10m\", \"1h\"\n",
                "error: `timeout` in job `b` must be greater than zero\n",
                ".pipeline.toml:6:11\n",
                "error: `timeout` in job `c` must be a string, found an integer\n",
                ".pipeline.toml:9:11\n",
                "= help: durations need a unit, e.g. `\"90s\"`",
            ],
        );
    }

    #[test]
    fn retries_must_be_a_small_non_negative_integer() {
        let src = "[jobs.a]\nrun = \"x\"\nretries = \"3\"\n[jobs.b]\nrun = \"x\"\nretries = -1\n\
                   [jobs.c]\nrun = \"x\"\nretries = 0x65\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: `retries` in job `a` must be an integer, found a string\n",
                ".pipeline.toml:3:11\n",
                "3 | retries = \"3\"\n  |           ^^^\n",
                "error: `retries` in job `b` must be between 0 and 100, found -1\n",
                ".pipeline.toml:6:11\n",
                "error: `retries` in job `c` must be between 0 and 100, found 101\n",
                ".pipeline.toml:9:11\n",
            ],
        );
        assert_eq!(
            valid("[jobs.a]\nrun = \"x\"\nretries = 100\n").jobs[0].retries,
            100
        );
    }

    #[test]
    fn dir_must_be_an_existing_directory_under_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("web")).unwrap();
        std::fs::write(root.path().join("notes.txt"), "").unwrap();
        let src = "[jobs.a]\nrun = \"x\"\ndir = \"/etc\"\n[jobs.b]\nrun = \"x\"\ndir = \"web/../..\"\n\
                   [jobs.c]\nrun = \"x\"\ndir = \"api\"\n[jobs.d]\nrun = \"x\"\ndir = \"notes.txt\"\n\
                   [jobs.e]\nrun = \"x\"\ndir = 1\n";
        let out = errors_in(root.path(), src);
        assert_has(
            &out,
            &[
                "error: `dir` in job `a` must be a relative path, found `/etc`\n",
                ".pipeline.toml:3:7\n",
                "3 | dir = \"/etc\"\n  |       ^^^^^^\n",
                "= help: `dir` is relative to the directory holding .pipeline.toml",
                "error: `dir` in job `b` `web/../..` leaves the pipeline root\n",
                ".pipeline.toml:6:7\n",
                "error: `dir` in job `c` `api` does not exist\n",
                ".pipeline.toml:9:7\n",
                "error: `dir` in job `d` `notes.txt` is not a directory\n",
                ".pipeline.toml:12:7\n",
                "error: `dir` in job `e` must be a string, found an integer\n",
                "5 errors in",
            ],
        );
        let p = parse_in(
            root.path(),
            "[jobs.a]\nrun = \"x\"\ndir = \"web/../web/.\"\n",
        )
        .unwrap();
        assert_eq!(p.jobs[0].dir, Path::new("web"));
        let p = parse_in(root.path(), "[jobs.a]\nrun = \"x\"\ndir = \".\"\n").unwrap();
        assert_eq!(p.jobs[0].dir, PathBuf::new());
    }

    #[cfg(unix)]
    #[test]
    fn dir_cannot_escape_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        let out = errors_in(root.path(), "[jobs.a]\nrun = \"x\"\ndir = \"out\"\n");
        assert_has(
            &out,
            &[
                "error: `dir` in job `a` `out` leads outside the pipeline root through a symlink\n",
                ".pipeline.toml:3:7\n",
            ],
        );
        // A symlink within the root: to a directory it is fine, to a file it is not one.
        std::fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink(root.path().join("real"), root.path().join("alias")).unwrap();
        std::fs::write(root.path().join("f"), "").unwrap();
        std::os::unix::fs::symlink(root.path().join("f"), root.path().join("flink")).unwrap();
        let p = parse_in(root.path(), "[jobs.a]\nrun = \"x\"\ndir = \"alias\"\n").unwrap();
        assert_eq!(p.jobs[0].dir, Path::new("alias"));
        let out = errors_in(root.path(), "[jobs.a]\nrun = \"x\"\ndir = \"flink\"\n");
        assert_has(
            &out,
            &["error: `dir` in job `a` `flink` is not a directory\n"],
        );
    }

    #[test]
    fn environment_is_a_ref_safe_name() {
        let src = "[jobs.a]\nrun = \"x\"\nenvironment = \"\"\n[jobs.b]\nrun = \"x\"\nenvironment = \"prod/eu\"\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: empty `environment` in job `a`\n",
                ".pipeline.toml:3:15\n",
                "3 | environment = \"\"\n  |               ^^\n",
                "error: invalid environment name `prod/eu`: it contains `/`\n",
                ".pipeline.toml:6:15\n",
            ],
        );
    }

    #[test]
    fn job_names_must_be_safe_in_a_ref() {
        let long = "j".repeat(101);
        let src = format!(
            "[jobs.\"a b\"]\nrun = \"x\"\n[jobs.-x]\nrun = \"x\"\n[jobs.\"a..b\"]\nrun = \"x\"\n\
             [jobs.\"x.lock\"]\nrun = \"x\"\n[jobs.\"x.\"]\nrun = \"x\"\n[jobs.{long}]\nrun = \"x\"\n\
             [jobs.\"\"]\nrun = \"x\"\n[jobs.\"café\"]\nrun = \"x\"\n"
        );
        let out = errors(&src);
        assert_has(
            &out,
            &[
                "error: invalid job name `a b`: it contains a space\n",
                ".pipeline.toml:1:7\n",
                "1 | [jobs.\"a b\"]\n  |       ^^^^^\n",
                "= help: job names may contain ASCII letters, digits, `_`, `.` and `-`",
                "error: invalid job name `-x`: it starts with `-`\n",
                ".pipeline.toml:3:7\n",
                "error: invalid job name `a..b`: it contains `..`\n",
                "error: invalid job name `x.lock`: it ends in `.lock`\n",
                "error: invalid job name `x.`: it ends in `.`\n",
                "it is longer than 100 characters\n",
                "error: invalid job name ``: it is empty\n",
                "error: invalid job name `café`: it contains `é`\n",
                "8 errors in",
            ],
        );
        assert_eq!(
            valid(&format!("[jobs.{}]\nrun = \"x\"\n", &long[1..]))
                .jobs
                .len(),
            1
        );
        assert_eq!(valid("[jobs.\"_a-b.c\"]\nrun = \"x\"\n").jobs.len(), 1);
    }

    #[test]
    fn default_branch_must_be_a_branch_name() {
        let out = errors("[pipeline]\ndefault_branch = \"my branch\"\n[jobs.a]\nrun = \"x\"\n");
        assert_has(
            &out,
            &[
                "error: invalid branch name `my branch`: it contains a space\n",
                ".pipeline.toml:2:18\n",
                "2 | default_branch = \"my branch\"\n  |                  ^^^^^^^^^^^\n",
            ],
        );
        let out = errors("[pipeline]\ndefault_branch = \"\"\n[jobs.a]\nrun = \"x\"\n");
        assert_has(&out, &["error: invalid branch name ``: it is empty\n"]);
        for bad in ["-x", "a..b", "x.lock", "a/.b", "x/", "@", "a:b"] {
            let src = format!("[pipeline]\ndefault_branch = \"{bad}\"\n[jobs.a]\nrun = \"x\"\n");
            assert_has(&errors(&src), &[&format!("invalid branch name `{bad}`")]);
        }
        let p = valid("[pipeline]\ndefault_branch = \"release/v1.2\"\n[jobs.a]\nrun = \"x\"\n");
        assert_eq!(p.default_branch.as_deref(), Some("release/v1.2"));
    }

    #[test]
    fn a_cycle_is_named_in_order_at_its_first_job() {
        let src = "[jobs.a]\nrun = \"x\"\nneeds = [\"b\"]\n\n[jobs.b]\nrun = \"x\"\nneeds = [\"c\"]\n\n\
                   [jobs.c]\nrun = \"x\"\nneeds = [\"a\"]\n";
        assert_eq!(
            errors(src),
            "error: dependency cycle: a → b → c → a\n \
             --> .pipeline.toml:3:10\n  \
             |\n\
             3 | needs = [\"b\"]\n  \
             |          ^^^\n  \
             = help: a job cannot need itself, directly or through other jobs\n\
             \n\
             1 error in .pipeline.toml"
        );
    }

    #[test]
    fn every_cycle_is_reported_including_a_self_need() {
        let src = "[jobs.s]\nrun = \"x\"\nneeds = [\"s\"]\n[jobs.a]\nrun = \"x\"\nneeds = [\"ok\", \"b\"]\n\
                   [jobs.b]\nrun = \"x\"\nneeds = [\"a\"]\n[jobs.ok]\nrun = \"x\"\n\
                   [jobs.top]\nrun = \"x\"\nneeds = [\"a\"]\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: dependency cycle: s → s\n",
                ".pipeline.toml:3:10\n",
                "error: dependency cycle: a → b → a\n",
                ".pipeline.toml:6:16\n",
                "6 | needs = [\"ok\", \"b\"]\n  |                ^^^\n",
                "2 errors in",
            ],
        );
    }

    #[test]
    fn every_error_in_a_file_is_reported_in_source_order() {
        let src = "[jobs.build]\nrun = \"\"\nretries = \"x\"\nneeds = [\"nope\"]\nneds = 1\n";
        let out = errors(src);
        let order = [
            "empty `run` in job `build`",
            "`retries` in job `build` must be an integer",
            "unknown job `nope`",
            "unknown key `neds`",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|m| {
                out.find(m)
                    .unwrap_or_else(|| panic!("missing {m:?} in:\n{out}"))
            })
            .collect();
        assert!(positions.is_sorted(), "out of order:\n{out}");
        assert!(out.ends_with("\n4 errors in .pipeline.toml"), "{out}");
    }

    #[test]
    fn cache_keys_and_globs_become_the_model() {
        let src = r#"
[cache]
remote = "git@example.com:team/cache.git"
pull = "on-miss"

[jobs.build]
run = "cargo build --release"
inputs = ["src/**", "Cargo.{toml,lock}", "crates/*/src/**/*.rs", ".cargo/config.toml"]
outputs = ["target/release/weir"]
key = ["linux", "x86_64"]
key_cmd = "rustc --version"

[jobs.docs]
run = "mdbook build"
inputs = []
cache = false

[jobs.check]
run = "cargo check"
cache = true

[jobs.prod]
environment = "prod"
cache = false
run = "./deploy.sh"

[jobs.staging]
environment = "staging"
run = "./deploy.sh"
"#;
        let p = valid(src);
        assert_eq!(
            p.cache,
            CacheSettings {
                remote: Some("git@example.com:team/cache.git".to_owned()),
                pull: CachePull::OnMiss,
            }
        );

        let build = p.job("build").unwrap();
        assert_eq!(
            build.inputs.as_deref(),
            Some(
                &[
                    "src/**",
                    "Cargo.{toml,lock}",
                    "crates/*/src/**/*.rs",
                    ".cargo/config.toml"
                ]
                .map(String::from)[..]
            )
        );
        assert_eq!(build.outputs, ["target/release/weir"]);
        assert!(build.cache);
        assert_eq!(build.key, ["linux", "x86_64"]);
        assert_eq!(build.key_cmd.as_deref(), Some("rustc --version"));

        let docs = p.job("docs").unwrap();
        assert_eq!(docs.inputs.as_deref(), Some(&[][..]));
        assert!(docs.outputs.is_empty());
        assert!(!docs.cache);

        assert!(p.job("check").unwrap().cache);
        assert!(!p.job("prod").unwrap().cache);
        // Deploy jobs are never cached, whether or not they say so.
        assert!(!p.job("staging").unwrap().cache);
    }

    #[test]
    fn absent_cache_keys_take_their_defaults() {
        let p = valid("[jobs.a]\nrun = \"true\"\n");
        assert_eq!(p.cache, CacheSettings::default());
        assert_eq!(p.cache.pull, CachePull::Never);
        assert_eq!(p.cache.remote, None);
        let a = &p.jobs[0];
        assert_eq!(a.inputs, None);
        assert!(a.outputs.is_empty());
        assert!(a.cache);
        assert!(a.key.is_empty());
        assert_eq!(a.key_cmd, None);

        let p = valid("[cache]\n[jobs.a]\nrun = \"true\"\n");
        assert_eq!(p.cache, CacheSettings::default());
        let p = valid("[cache]\npull = \"never\"\n[jobs.a]\nrun = \"true\"\n");
        assert_eq!(p.cache.pull, CachePull::Never);
    }

    #[test]
    fn inputs_and_outputs_must_be_lists() {
        let src = "[jobs.a]\nrun = \"x\"\ninputs = \"src/**\"\noutputs = 3\n\
                   [jobs.b]\nrun = \"x\"\noutputs = \"say \\\"hi\\\"\"\ninputs = [\"ok\", 1]\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: `inputs` in job `a` must be an array, found a string\n",
                ".pipeline.toml:3:10\n",
                "3 | inputs = \"src/**\"\n  |          ^^^^^^^^\n",
                "= help: use a list: `inputs = [\"src/**\"]`\n",
                "error: `outputs` in job `a` must be an array of globs, found an integer\n",
                ".pipeline.toml:4:11\n",
                "4 | outputs = 3\n  |           ^\n",
                "error: `outputs` in job `b` must be an array, found a string\n",
                ".pipeline.toml:7:11\n",
                "= help: use a list: `outputs = [\"say \\\"hi\\\"\"]`\n",
                "error: each entry of `inputs` in job `b` must be a string, found an integer\n",
                ".pipeline.toml:8:17\n",
                "8 | inputs = [\"ok\", 1]\n  |                 ^\n",
                "4 errors in .pipeline.toml",
            ],
        );
    }

    #[test]
    fn globs_must_stay_inside_the_pipeline_root() {
        let src = "[jobs.a]\nrun = \"x\"\ninputs = [\n  \"\",\n  \"!target/**\",\n  \"/etc/*\",\n  \
                   \"src/../../x\",\n  \"..\",\n  \"a/.git/config\",\n  \".git\",\n  \"**/.GIT/**\",\n  \
                   \"src/[a\",\n  \"[z-a]\",\n  \"{a,b\",\n  \"src/.gitignore\",\n  \"..x/y..\",\n]\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: invalid glob `` in `inputs` in job `a`: it is empty\n",
                ".pipeline.toml:4:3\n",
                "4 |   \"\",\n  |   ^^\n",
                "= help: remove it, or give a path or pattern, e.g. `\"src/**\"`\n",
                "error: invalid glob `!target/**` in `inputs` in job `a`: it starts with `!`\n",
                ".pipeline.toml:5:3\n",
                "5 |   \"!target/**\",\n  |   ^^^^^^^^^^^^\n",
                "= help: negation is not supported: list only the files to include\n",
                "error: invalid glob `/etc/*` in `inputs` in job `a`: it is an absolute path\n",
                ".pipeline.toml:6:3\n",
                "6 |   \"/etc/*\",\n  |   ^^^^^^^^\n",
                "= help: globs are relative to the directory holding .pipeline.toml\n",
                "error: invalid glob `src/../../x` in `inputs` in job `a`: it contains a `..` component\n",
                ".pipeline.toml:7:3\n",
                "= help: globs cannot reach outside the directory holding .pipeline.toml\n",
                "error: invalid glob `..` in `inputs` in job `a`: it contains a `..` component\n",
                ".pipeline.toml:8:3\n",
                "error: invalid glob `a/.git/config` in `inputs` in job `a`: it contains a `.git` component\n",
                ".pipeline.toml:9:3\n",
                "= help: files inside `.git` are never inputs or outputs\n",
                "error: invalid glob `.git` in `inputs` in job `a`: it contains a `.git` component\n",
                ".pipeline.toml:10:3\n",
                "error: invalid glob `**/.GIT/**` in `inputs` in job `a`: it contains a `.git` component\n",
                ".pipeline.toml:11:3\n",
                "error: invalid glob `src/[a` in `inputs` in job `a`: unclosed character class; missing ']'\n",
                ".pipeline.toml:12:3\n",
                "12 |   \"src/[a\",\n   |   ^^^^^^^^\n",
                "= help: globs use `*`, `**`, `?`, `[abc]` and `{a,b}`; `*` does not match `/`\n",
                "error: invalid glob `[z-a]` in `inputs` in job `a`: invalid range; 'z' > 'a'\n",
                ".pipeline.toml:13:3\n",
                "error: invalid glob `{a,b` in `inputs` in job `a`: unclosed alternate group; missing '}'",
                ".pipeline.toml:14:3\n",
                "11 errors in .pipeline.toml",
            ],
        );
        // Names that merely contain `..` or `.git` are fine.
        assert!(!out.contains("src/.gitignore"), "{out}");
        assert!(!out.contains("..x/y.."), "{out}");
    }

    #[test]
    fn output_globs_are_checked_like_input_globs() {
        let out =
            errors("[jobs.a]\nrun = \"x\"\noutputs = [\"dist/**\", \"../out\", \"!*.tmp\"]\n");
        assert_has(
            &out,
            &[
                "error: invalid glob `../out` in `outputs` in job `a`: it contains a `..` component\n",
                ".pipeline.toml:3:23\n",
                "3 | outputs = [\"dist/**\", \"../out\", \"!*.tmp\"]\n  |                       ^^^^^^^^\n",
                "error: invalid glob `!*.tmp` in `outputs` in job `a`: it starts with `!`\n",
                ".pipeline.toml:3:33\n",
                "= help: negation is not supported",
                "2 errors in",
            ],
        );
    }

    #[test]
    fn cache_must_be_a_boolean_and_false_for_deploys() {
        let src = "[jobs.a]\nrun = \"x\"\ncache = \"false\"\n[jobs.b]\nrun = \"x\"\ncache = 1\n\
                   [jobs.c]\nrun = \"x\"\ncache = true\nenvironment = \"prod\"\n\
                   [jobs.d]\nenvironment = \"a b\"\nrun = \"x\"\ncache = true\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: `cache` in job `a` must be a boolean, found a string\n",
                ".pipeline.toml:3:9\n",
                "3 | cache = \"false\"\n  |         ^^^^^^^\n",
                "= help: drop the quotes: `cache = false`\n",
                "error: `cache` in job `b` must be a boolean, found an integer\n",
                ".pipeline.toml:6:9\n",
                "error: `cache` in job `c` cannot be true: deploy jobs are never cached\n",
                ".pipeline.toml:9:9\n",
                "9 | cache = true\n  |         ^^^^\n",
                "= help: remove `cache`: a job with `environment` always runs\n",
                "error: invalid environment name `a b`: it contains a space\n",
                ".pipeline.toml:12:15\n",
                "error: `cache` in job `d` cannot be true: deploy jobs are never cached\n",
                ".pipeline.toml:14:9\n",
                "5 errors in .pipeline.toml",
            ],
        );
    }

    #[test]
    fn key_is_a_list_of_strings_and_key_cmd_a_command() {
        let src = "[jobs.a]\nrun = \"x\"\nkey = \"v1\"\nkey_cmd = \"  \"\n\
                   [jobs.b]\nrun = \"x\"\nkey = [\"v1\", true]\nkey_cmd = [\"rustc\", \"-V\"]\n\
                   [jobs.c]\nrun = \"x\"\nkey = { v = 1 }\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: `key` in job `a` must be an array, found a string\n",
                ".pipeline.toml:3:7\n",
                "3 | key = \"v1\"\n  |       ^^^^\n",
                "= help: use a list: `key = [\"v1\"]`\n",
                "error: empty `key_cmd` in job `a`\n",
                ".pipeline.toml:4:11\n",
                "4 | key_cmd = \"  \"\n  |           ^^^^\n",
                "= help: give a command whose output goes into the key, e.g. `key_cmd = \"rustc --version\"`\n",
                "error: each entry of `key` in job `b` must be a string, found a boolean\n",
                ".pipeline.toml:7:14\n",
                "7 | key = [\"v1\", true]\n  |              ^^^^\n",
                "error: `key_cmd` in job `b` must be a string, found an array\n",
                ".pipeline.toml:8:11\n",
                "error: `key` in job `c` must be an array of strings, found a table\n",
                ".pipeline.toml:11:7\n",
                "5 errors in .pipeline.toml",
            ],
        );
    }

    #[test]
    fn secrets_and_the_jobs_that_list_them_become_the_model() {
        // `[secrets]` after the jobs that use it: table order does not matter.
        let src = r#"
[jobs.deploy]
run = "./deploy.sh"
secrets = ["TOKEN", "SSH_KEY"]

[jobs.build]
run = "make"

[secrets]
TOKEN = { env = "DEPLOY_TOKEN" }

[secrets.SSH_KEY]
file = ".secrets/id_ed25519"
"#;
        let p = valid(src);
        assert_eq!(
            p.secrets,
            BTreeMap::from([
                (
                    "SSH_KEY".to_owned(),
                    SecretSource::File(PathBuf::from(".secrets/id_ed25519"))
                ),
                (
                    "TOKEN".to_owned(),
                    SecretSource::Env("DEPLOY_TOKEN".to_owned())
                ),
            ])
        );
        assert_eq!(p.job("deploy").unwrap().secrets, ["TOKEN", "SSH_KEY"]);
        assert!(p.job("build").unwrap().secrets.is_empty());
    }

    #[test]
    fn secret_sources_are_checked_without_echoing_values() {
        let src = r#"[secrets]
TOKEN = "hunter2-value"
1BAD = { env = "X" }
BOTH = { env = "B", file = "b" }
NONE = {}
ODD = { env = "O", path = "o" }
VAR = { env = "MY-VAR" }
ABS = { file = "/etc/token" }
EMPTY = { file = "" }
[jobs.a]
run = "x"
"#;
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: secret `TOKEN` must be a table, found a string\n",
                ".pipeline.toml:2:9\n",
                "= help: say where the value is read from: `TOKEN = { env = \"TOKEN\" }` or \
                 `TOKEN = { file = \"path\" }`; never write the value in .pipeline.toml\n",
                "error: invalid secret name `1BAD`\n",
                ".pipeline.toml:3:1\n",
                "error: secret `BOTH` has more than one source\n",
                ".pipeline.toml:4:21\n",
                "error: secret `NONE` has no source\n",
                ".pipeline.toml:5:8\n",
                "error: unknown key `path` in secret `ODD`\n",
                ".pipeline.toml:6:20\n",
                "= help: valid keys here: `env`, `file`\n",
                "error: invalid environment variable name `MY-VAR` in `env` of secret `VAR`\n",
                "error: invalid path `/etc/token` in `file` of secret `ABS`: it is an absolute path\n",
                "error: invalid path `` in `file` of secret `EMPTY`: it is empty\n",
                "8 errors in .pipeline.toml",
            ],
        );
        // The hint for a string must not repeat what may be the secret itself.
        assert_eq!(out.matches("hunter2-value").count(), 1, "{out}");
    }

    #[test]
    fn a_job_lists_only_declared_secrets_once() {
        let src = "[secrets]\nDEPLOY_TOKEN = { env = \"T\" }\n\n\
                   [jobs.a]\nrun = \"x\"\nsecrets = [\"DEPLOY_TOKN\", \"DEPLOY_TOKEN\", \"DEPLOY_TOKEN\"]\n\
                   [jobs.b]\nrun = \"x\"\nsecrets = \"DEPLOY_TOKEN\"\n\
                   [jobs.c]\nrun = \"x\"\nsecrets = [\"AWS\"]\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: unknown secret `DEPLOY_TOKN` in `secrets` of job `a`\n",
                ".pipeline.toml:6:12\n",
                "= help: did you mean `DEPLOY_TOKEN`?\n",
                "error: secret `DEPLOY_TOKEN` is listed twice in `secrets` of job `a`\n",
                ".pipeline.toml:6:43\n",
                "error: `secrets` in job `b` must be an array, found a string\n",
                "= help: use a list: `secrets = [\"DEPLOY_TOKEN\"]`\n",
                "error: unknown secret `AWS` in `secrets` of job `c`\n",
                "= help: secrets in this file: `DEPLOY_TOKEN`\n",
                "4 errors in .pipeline.toml",
            ],
        );
        let out = errors("[jobs.a]\nrun = \"x\"\nsecrets = [\"TOKEN\"]\n");
        assert_has(
            &out,
            &["= help: declare it in `[secrets]`, e.g. `TOKEN = { env = \"TOKEN\" }`"],
        );
    }

    #[test]
    fn cache_section_is_checked() {
        let src = "[cache]\nremot = \"origin\"\npull = \"onmiss\"\n[jobs.a]\nrun = \"x\"\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: unknown key `remot` in `[cache]`\n",
                ".pipeline.toml:2:1\n",
                "2 | remot = \"origin\"\n  | ^^^^^\n",
                "= help: did you mean `remote`?\n",
                "error: unknown value `onmiss` for `pull` in `[cache]`\n",
                ".pipeline.toml:3:8\n",
                "3 | pull = \"onmiss\"\n  |        ^^^^^^^^\n",
                "= help: did you mean `on-miss`?\n",
                "2 errors in",
            ],
        );
        let src =
            "[cache]\nremote = \"\"\npull = \"always\"\nttl = \"1d\"\n[jobs.a]\nrun = \"x\"\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: empty `remote` in `[cache]`\n",
                ".pipeline.toml:2:10\n",
                "2 | remote = \"\"\n  |          ^^\n",
                "= help: name a git remote or give its URL, e.g. `remote = \"origin\"`\n",
                "error: unknown value `always` for `pull` in `[cache]`\n",
                "= help: `pull` is one of `never`, `on-miss`\n",
                "error: unknown key `ttl` in `[cache]`\n",
                ".pipeline.toml:4:1\n",
                "= help: valid keys here: `remote`, `pull`\n",
                "3 errors in",
            ],
        );
        let src = "[cache]\nremote = \"--upload-pack=x\"\npull = true\n[jobs.a]\nrun = \"x\"\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: invalid remote `--upload-pack=x` in `[cache]`: it starts with `-`\n",
                ".pipeline.toml:2:10\n",
                "error: `pull` in `[cache]` must be a string, found a boolean\n",
                ".pipeline.toml:3:8\n",
                "2 errors in",
            ],
        );
        let out = errors("cache = false\n[jobs.a]\nrun = \"x\"\n");
        assert_has(
            &out,
            &[
                "error: `cache` must be a table, found a boolean\n",
                ".pipeline.toml:1:9\n",
                "1 | cache = false\n  |         ^^^^^\n",
                "= help: to turn caching off for one job, set `cache = false` in that job",
            ],
        );
        let p = valid("cache = { remote = \"upstream\" }\n[jobs.a]\nrun = \"x\"\n");
        assert_eq!(p.cache.remote.as_deref(), Some("upstream"));
    }

    #[test]
    fn misspelt_cache_keys_suggest_the_right_one() {
        let src = "cach = {}\n[jobs.a]\nrun = \"x\"\ninput = []\noutput = []\nkeycmd = \"x\"\n\
                   caches = false\nkeys = []\n";
        let out = errors(src);
        assert_has(
            &out,
            &[
                "error: unknown key `cach` at the top level\n",
                "= help: did you mean `cache`?\n",
                "error: unknown key `input` in job `a`\n",
                ".pipeline.toml:4:1\n",
                "4 | input = []\n  | ^^^^^\n",
                "= help: did you mean `inputs`?\n",
                "error: unknown key `output` in job `a`\n",
                "= help: did you mean `outputs`?\n",
                "error: unknown key `keycmd` in job `a`\n",
                "= help: did you mean `key_cmd`?\n",
                "error: unknown key `caches` in job `a`\n",
                "= help: did you mean `cache`?\n",
                "error: unknown key `keys` in job `a`\n",
                "= help: did you mean `key`?\n",
                "6 errors in",
            ],
        );
    }

    #[test]
    fn new_key_errors_are_all_reported_together_in_source_order() {
        let src = "[cache]\npull = \"on_miss\"\n\n[jobs.build]\nrun = \"make\"\ninputs = \"src\"\n\
                   outputs = [\"/tmp/out\"]\nkey_cmd = \"\"\n\n[jobs.ship]\nrun = \"x\"\n\
                   environment = \"prod\"\ncache = true\nneeds = [\"biuld\"]\n";
        let out = errors(src);
        let order = [
            "unknown value `on_miss` for `pull` in `[cache]`",
            "`inputs` in job `build` must be an array",
            "invalid glob `/tmp/out` in `outputs` in job `build`",
            "empty `key_cmd` in job `build`",
            "`cache` in job `ship` cannot be true",
            "unknown job `biuld` in `needs` of job `ship`",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|m| {
                out.find(m)
                    .unwrap_or_else(|| panic!("missing {m:?} in:\n{out}"))
            })
            .collect();
        assert!(positions.is_sorted(), "out of order:\n{out}");
        assert_has(
            &out,
            &[
                ".pipeline.toml:2:8\n",
                ".pipeline.toml:6:10\n",
                ".pipeline.toml:7:12\n",
                ".pipeline.toml:8:11\n",
                ".pipeline.toml:13:9\n",
                ".pipeline.toml:14:10\n",
            ],
        );
        assert!(out.ends_with("\n6 errors in .pipeline.toml"), "{out}");
    }

    #[test]
    fn load_walks_up_to_the_nearest_file() {
        let repo = tempfile::tempdir().unwrap();
        let deep = repo.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(repo.path().join(FILE_NAME), "[jobs.top]\nrun = \"x\"\n").unwrap();

        let p = load(&deep, repo.path()).unwrap();
        assert_eq!(p.jobs[0].name, "top");
        assert_eq!(p.root, repo.path());
        assert_eq!(p.path, repo.path().join(FILE_NAME));

        std::fs::write(
            repo.path().join("a").join(FILE_NAME),
            "[jobs.mid]\nrun = \"x\"\n",
        )
        .unwrap();
        let p = load(&deep, repo.path()).unwrap();
        assert_eq!(p.jobs[0].name, "mid");
        assert_eq!(p.root, repo.path().join("a"));
    }

    #[test]
    fn load_shows_the_path_relative_to_cwd() {
        let repo = tempfile::tempdir().unwrap();
        let deep = repo.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(repo.path().join(FILE_NAME), "[jobs.top]\nrun = 1\n").unwrap();
        let from_deep = load(&deep, repo.path()).unwrap_err().to_string();
        assert_has(
            &from_deep,
            &[
                "--> ../../.pipeline.toml:2:7\n",
                "1 error in ../../.pipeline.toml",
            ],
        );
        let from_root = load(repo.path(), repo.path()).unwrap_err().to_string();
        assert_has(&from_root, &["--> .pipeline.toml:2:7\n"]);
    }

    #[test]
    fn load_without_a_file_says_where_it_looked() {
        let repo = tempfile::tempdir().unwrap();
        let deep = repo.path().join("a");
        std::fs::create_dir_all(&deep).unwrap();
        let err = load(&deep, repo.path()).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "no .pipeline.toml in {} or any parent up to the repository root {}\n\
                 help: run `weir init` to create one",
                deep.display(),
                repo.path().display()
            )
        );
        let at_root = load(repo.path(), repo.path()).unwrap_err().to_string();
        assert!(
            at_root.starts_with(&format!(
                "no .pipeline.toml in the repository root {}\n",
                repo.path().display()
            )),
            "{at_root}"
        );
    }

    #[test]
    fn load_reports_unreadable_files() {
        let repo = tempfile::tempdir().unwrap();
        // A directory named like the file cannot be read as one.
        std::fs::create_dir(repo.path().join(FILE_NAME)).unwrap();
        let err = load(repo.path(), repo.path()).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot read {}", repo.path().join(FILE_NAME).display())
        );
    }
}
