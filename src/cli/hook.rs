//! `weir hook NAME`: what the shims in `.git/hooks` call. Each hook runs its event's jobs on a
//! snapshot of exactly what git is committing, pushing or merging, never the working tree.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::config::{self, Event, Pipeline};
use crate::deploy::Mode;
use crate::engine::{CacheOptions, Workspace};
use crate::env_vars;
use crate::error::{Error, exit};
use crate::git::{Entry, Repo};
use crate::graph::{self, Graph, Selection};
use crate::report::{JobStatus, Output, RunOutcome};
use crate::store::cache::Cache;
use crate::trigger::hook::{self as hooks, RefUpdate};
use crate::trigger::trust;
use crate::workspace::{self, Delta, EarlyWatch, Snapshot, Watch, Worktree};

use super::Context;
use super::run::{Done, Execution, execute_with, exit_code, write_deferred};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The hook: pre-commit, pre-push, post-merge or post-receive
    name: String,
    /// What git passed the hook
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: Args) -> Result<u8, Error> {
    match args.name.as_str() {
        "pre-commit" => pre_commit(speculative_watch()),
        "pre-push" => pre_push(&read_stdin()?),
        "post-merge" => post_merge(),
        "post-receive" => post_receive(&read_stdin()?),
        other => Err(Error::Usage {
            message: format!("weir has no `{other}` hook"),
            hint: Some("hooks: pre-commit, pre-push, post-merge, post-receive".into()),
        }),
    }
}

fn read_stdin() -> Result<String, Error> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::io("cannot read the hook's input", e))?;
    Ok(input)
}

/// The working tree's pipeline and its bytes, if those are trusted on this machine: a pipeline
/// changed by a pull or checkout runs nothing until the user has reviewed it.
fn trusted_pipeline(context: &Context) -> Result<(Pipeline, Vec<u8>), Error> {
    let pipeline = context.pipeline()?;
    let bytes = std::fs::read(&pipeline.path)
        .map_err(|e| Error::io(format!("cannot read {}", pipeline.path.display()), e))?;
    let shown = pipeline
        .path
        .strip_prefix(context.repo.workdir())
        .unwrap_or(&pipeline.path)
        .display()
        .to_string();
    trust::check(&context.repo, &bytes, &shown)?;
    Ok((pipeline, bytes))
}

/// The jobs of `event`, or `None` when the pipeline has none (the hook then does nothing).
fn event_graph(pipeline: &Pipeline, event: Event) -> Result<Option<Graph>, Error> {
    match Graph::select(pipeline, &Selection::Event(event)) {
        Ok(graph) => Ok(Some(graph)),
        Err(graph::Error::NothingForEvent(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Where the pipeline root lies inside a snapshot of the repository.
fn root_in(snapshot: &Path, repo: &Repo, pipeline_root: &Path) -> PathBuf {
    match pipeline_root.strip_prefix(repo.workdir()) {
        Ok(rel) => snapshot.join(rel),
        Err(_) => snapshot.to_path_buf(),
    }
}

/// Syncs snapshot `name` to `entries`, with what a run needs to record what its jobs touch.
fn sync(repo: &Repo, name: &str, entries: &[Entry]) -> Result<(Snapshot, Watch), Error> {
    let snapshot = Snapshot::new(repo, name);
    let prepared = snapshot.prepare(entries)?;
    let watch = snapshot.sync_watched(repo, entries, None, None, prepared, None)?;
    Ok((snapshot, watch))
}

/// A hook's run: `source` is the commit its workspace holds, if it holds one.
fn execution(trigger: Event, workspace: Workspace, source: Option<gix::ObjectId>) -> Execution {
    Execution {
        trigger,
        workspace,
        cache: CacheOptions::default(),
        parallel: None,
        keep_going: false,
        json: false,
        files: BTreeMap::new(),
        source,
        deploy: Mode::Normal,
        restart: None,
    }
}

/// The pre-commit snapshot's watch, started before the repository is even opened when git
/// runs the hook at the top of a main work tree (`.git` a directory there, no `GIT_DIR`) and
/// the index file is not the one the snapshot was last synced from: opening the repository and
/// reading and checking the pipeline take about a millisecond, and on a small commit the job
/// waits for the watch, not for them. [`pre_commit`] keeps it if it is the repository's.
fn speculative_watch() -> Option<(Snapshot, EarlyWatch)> {
    if env_vars::git_dir_given() {
        return None;
    }
    let git_dir = std::env::current_dir().ok()?.join(".git");
    if !git_dir.is_dir() {
        return None;
    }
    let snapshot = Snapshot::in_weir_dir(&git_dir.join("weir"), "pre-commit");
    let index = env_vars::git_index_file().unwrap_or_else(|| git_dir.join("index"));
    let watch = snapshot
        .index_differs(&index)
        .then(|| snapshot.watch_early())??;
    tracing::debug!("started the snapshot's watch before opening the repository");
    Some((snapshot, watch))
}

/// `speculative`: a watch [`speculative_watch`] started, if it did.
fn pre_commit(speculative: Option<(Snapshot, EarlyWatch)>) -> Result<u8, Error> {
    let context = Context::discover()?;
    let (pipeline, bytes) = trusted_pipeline(&context)?;
    let Some(all) = event_graph(&pipeline, Event::PreCommit)? else {
        return Ok(exit::SUCCESS);
    };
    let repo = &context.repo;
    let clock = std::time::Instant::now();
    let index_file = env_vars::git_index_file();
    let snapshot = Snapshot::new(repo, "pre-commit");
    // Unless the snapshot already holds this content (its jobs are then most likely cache
    // hits, and the engine starts a watch only if one runs), its watch starts while the rest
    // is worked out: at once when the index file is not the one the snapshot was last synced
    // from, else once the index is read and the snapshot turns out to differ. An index
    // without a checksum (`index.skipHash`, which `feature.manyFiles` sets) tells nothing.
    let checksum = repo.index_checksum(index_file.as_deref());
    let run_id = staged_run_id(repo, &pipeline, &bytes, checksum.as_deref())?;
    // Another repository's, or not this one's after all: discarded.
    let started = speculative.and_then(|(found, watch)| found.is(&snapshot).then_some(watch));
    if let Some(id) = &run_id
        && let Some(known) = snapshot.remembered_hits(id)
        && entries_present(repo, &known)
    {
        tracing::debug!(jobs = known.len(), "the same staged content hit before");
        drop(started);
        let code = repeat_hits(&context, &pipeline, &snapshot, known)?;
        settle_index(repo, index_file.as_deref());
        return Ok(code);
    }
    let seen = checksum.as_deref().is_some_and(|c| snapshot.synced_from(c));
    let speculative = match checksum {
        Some(_) if !seen => started.or_else(|| snapshot.watch_early()),
        _ => None,
    };
    let crate::git::Staged {
        entries: mut staged,
        trees,
        stats,
        written,
        ..
    } = repo.staged_with_trees(index_file.as_deref())?;
    tracing::debug!(elapsed = ?clock.elapsed(), "read the staged index");
    let prepared = snapshot.prepare(&staged)?;
    let early = match (prepared.untouched(), speculative) {
        (true, Some(speculative)) => {
            speculative.discard();
            None
        }
        (true, None) => None,
        (false, speculative) => speculative.or_else(|| snapshot.watch_early()),
    };
    // What the commit changes: to select jobs by `files`, and to tell the sync which files can
    // differ from what the snapshot held.
    // A snapshot that already holds this content recorded them, against HEAD's tree.
    let head_tree = repo.head_tree()?;
    let recorded = head_tree
        .filter(|_| prepared.untouched())
        .and_then(|tree| snapshot.recorded_changes(tree));
    let changes = match recorded {
        Some(changes) => changes,
        None => repo.staged_changes(&staged, trees.as_ref(), head_tree)?,
    };
    let changed = under_root(repo, &pipeline, &changes.changed);
    tracing::debug!(elapsed = ?clock.elapsed(), "found the staged changes");

    // A job with `files` runs only when a staged file matches.
    let mut files = BTreeMap::new();
    let mut names = Vec::new();
    for &index in &all.jobs {
        let job = &pipeline.jobs[index];
        if !job.on.contains(&Event::PreCommit) {
            continue;
        }
        match &job.files {
            None => names.push(job.name.clone()),
            Some(globs) => {
                let selected = hooks::select(globs, &changed).map_err(|e| Error::Usage {
                    message: format!("invalid `files` glob in job `{}`: {e}", job.name),
                    hint: None,
                })?;
                if !selected.is_empty() {
                    names.push(job.name.clone());
                    files.insert(job.name.clone(), selected);
                }
            }
        }
    }
    if names.is_empty() {
        if let Some(early) = early {
            early.discard();
        }
        if let Some(id) = &run_id {
            snapshot.remember_hits(id, &BTreeMap::new());
        }
        return Ok(exit::SUCCESS);
    }
    let graph = Graph::select(&pipeline, &Selection::Named(names))?;
    // Staged files still as `git add` saw them are copied from the working tree, which is
    // cheaper than inflating their objects, unless git converts files as it stores them.
    let worktree = (!repo.converts_everywhere())
        .then(|| Worktree::new(repo.workdir(), &staged, &stats, written));
    let delta = head_tree.map(|tree| Delta {
        tree,
        changes: &changes,
    });
    let watch = snapshot.sync_watched(repo, &staged, worktree, delta, prepared, early)?;
    if let Some(checksum) = checksum.filter(|_| !seen) {
        snapshot.note_synced_from(&checksum);
    }
    // The staged entries are needed again only to apply fixes.
    let fixers = graph.jobs.iter().any(|&i| pipeline.jobs[i].fix);
    let entries = if fixers {
        staged.clone()
    } else {
        std::mem::take(&mut staged)
    };
    tracing::debug!(elapsed = ?clock.elapsed(), "synced the snapshot");
    let root = root_in(&snapshot.dir, repo, &pipeline.root);
    let mut run = execution(
        Event::PreCommit,
        Workspace::Snapshot {
            root,
            dir: snapshot.dir.clone(),
            entries,
            watch: Some(watch),
        },
        None,
    );
    run.files = files;
    run.cache.defer = true;
    let mut done = execute_with(&context, &pipeline, &graph, run)?;
    snapshot.record(done.touched.as_ref());
    tracing::debug!(elapsed = ?clock.elapsed(), "ran the jobs");
    // Handed over last, so that the child writing them starts when nothing else is left.
    let deferred = done.deferred.take();
    let verdict = conclude(
        done,
        &snapshot,
        run_id.as_deref(),
        fixers.then_some((index_file.as_deref(), staged.as_slice())),
        repo,
    );
    write_deferred(repo, deferred);
    verdict
}

/// The verdict of a pre-commit run that is `done`: its hits remembered under `run_id`, and with
/// `fixers` (the index file and its staged entries), their fixes applied.
fn conclude(
    done: Done,
    snapshot: &Snapshot,
    run_id: Option<&str>,
    fixers: Option<(Option<&Path>, &[Entry])>,
    repo: &Repo,
) -> Result<u8, Error> {
    let (outcome, engine) = (done.outcome, done.engine);
    let hits: Option<BTreeMap<String, String>> = done
        .jobs
        .iter()
        .map(|job| {
            Some((job.name.clone(), job.key.clone()?)).filter(|_| job.status == JobStatus::Cached)
        })
        .collect();
    if let (Some(id), Some(hits), RunOutcome::Passed) = (run_id, hits, outcome) {
        snapshot.remember_hits(id, &hits);
    }
    if outcome != RunOutcome::Passed {
        Output.err("weir: the pre-commit jobs did not pass; nothing was committed");
        return Ok(exit_code(outcome));
    }
    let Some((index_file, staged)) = fixers else {
        return Ok(exit::SUCCESS);
    };
    let changed = engine.changed_files()?;
    apply_fixes(repo, index_file, staged, &snapshot.dir, &changed)
}

/// What decides a pre-commit run, known without reading the index: the staged content (the
/// index file's checksum), HEAD (against which staged files are changes), the pipeline's
/// place and `bytes`, and weir's version. `None` for an index without a checksum.
fn staged_run_id(
    repo: &Repo,
    pipeline: &Pipeline,
    bytes: &[u8],
    checksum: Option<&str>,
) -> Result<Option<String>, Error> {
    let Some(checksum) = checksum else {
        return Ok(None);
    };
    let head = repo.head()?.map(|id| id.to_string()).unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(concat!("weir ", env!("CARGO_PKG_VERSION"), "\n").as_bytes());
    for part in [
        checksum.as_bytes(),
        head.as_bytes(),
        pipeline.path.as_os_str().as_encoded_bytes(),
    ] {
        hasher.update(part);
        hasher.update(b"\n");
    }
    hasher.update(bytes);
    Ok(Some(hasher.finalize().to_hex().to_string()))
}

/// Whether every one of these keys (by job) still has its cache entry.
fn entries_present(repo: &Repo, keys: &BTreeMap<String, String>) -> bool {
    let cache = Cache::new(repo);
    keys.iter()
        .all(|(job, key)| matches!(cache.lookup(job, key), Ok(Some(_))))
}

/// Runs again, as hits with these keys, the jobs of a pre-commit run whose every job hit on the
/// same staged content: what the run would find, without reading the index or syncing.
fn repeat_hits(
    context: &Context,
    pipeline: &Pipeline,
    snapshot: &Snapshot,
    known: BTreeMap<String, String>,
) -> Result<u8, Error> {
    if known.is_empty() {
        return Ok(exit::SUCCESS);
    }
    let graph = Graph::select(pipeline, &Selection::Named(known.keys().cloned().collect()))?;
    let root = root_in(&snapshot.dir, &context.repo, &pipeline.root);
    let mut run = execution(
        Event::PreCommit,
        Workspace::Snapshot {
            root,
            dir: snapshot.dir.clone(),
            entries: Vec::new(),
            watch: None,
        },
        None,
    );
    run.cache.known = known;
    run.cache.defer = true;
    let mut done = execute_with(context, pipeline, &graph, run)?;
    if done.outcome != RunOutcome::Passed {
        Output.err("weir: the pre-commit jobs did not pass; nothing was committed");
    }
    write_deferred(&context.repo, done.deferred.take());
    Ok(exit_code(done.outcome))
}

/// Settles the index's racily clean entries, if it has any (see `git::racy`): git would
/// otherwise hash their files again at every commit of this same content. Done once the jobs
/// are, and only when the same content is committed again, which asks nothing else of weir.
/// Nothing here can fail the commit.
fn settle_index(repo: &Repo, index_file: Option<&Path>) {
    if !repo.index_may_settle(index_file) {
        return;
    }
    let settled = repo.staged_with_trees(index_file).and_then(|staged| {
        if repo.converts_everywhere() {
            return repo.settle_index(index_file, &staged, |_| false);
        }
        let worktree = Worktree::new(
            repo.workdir(),
            &staged.entries,
            &staged.stats,
            staged.written,
        );
        repo.settle_index(index_file, &staged, worktree.stores_as_is())
    });
    tracing::debug!(?settled, "settled the index's racily clean entries");
}

/// `paths` (relative to the repository) that lie under the pipeline root, relative to it.
fn under_root(repo: &Repo, pipeline: &Pipeline, paths: &[String]) -> Vec<String> {
    let prefix = pipeline
        .root
        .strip_prefix(repo.workdir())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if prefix.is_empty() {
        return paths.to_vec();
    }
    paths
        .iter()
        .filter_map(|path| path.strip_prefix(&format!("{prefix}/")).map(str::to_owned))
        .collect()
}

/// Applies what fixers changed in the snapshot to the index and the working tree, when every
/// change applies cleanly to both; else touches nothing, shows the changes and blocks the commit.
fn apply_fixes(
    repo: &Repo,
    index_file: Option<&Path>,
    staged: &[Entry],
    snapshot: &Path,
    changed: &[crate::git::FileId],
) -> Result<u8, Error> {
    if changed.is_empty() {
        return Ok(exit::SUCCESS);
    }
    let staged: BTreeMap<&str, &Entry> = staged.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut updates = Vec::new();
    let mut worktree = Vec::new();
    let mut conflicts = Vec::new();
    for file in changed {
        let Some(old) = staged.get(file.path.as_str()) else {
            continue;
        };
        let fixed_path = snapshot.join(&file.path);
        let fixed = std::fs::read(&fixed_path)
            .map_err(|e| Error::io(format!("cannot read {}", fixed_path.display()), e))?;
        let base = repo.read_blob(old.id)?;
        let target = repo.workdir().join(&file.path);
        let result = match std::fs::read(&target) {
            // No unstaged edits: the working tree takes the fix as is.
            Ok(current) if current == base => Some(fixed.clone()),
            Ok(current) => repo.merge_file(&current, &base, &fixed)?,
            // Deleted in the working tree but staged: only the index is fixed (below).
            Err(_) => None,
        };
        let exists = target.exists();
        match result {
            Some(merged) => {
                let link = std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_symlink());
                if exists && !link {
                    worktree.push((target, file.mode, merged));
                }
                updates.push(Entry {
                    path: file.path.clone(),
                    mode: file.mode,
                    id: repo.write_blob(&fixed)?,
                });
            }
            None if !exists => updates.push(Entry {
                path: file.path.clone(),
                mode: file.mode,
                id: repo.write_blob(&fixed)?,
            }),
            None => conflicts.push((file.path.clone(), base, fixed)),
        }
    }
    if !conflicts.is_empty() {
        Output.err("weir: a fixer's changes conflict with unstaged edits; nothing was touched");
        for (path, base, fixed) in &conflicts {
            Output.err(&unified_diff(path, base, fixed));
        }
        Output.err("help: stage or stash your edits to these files, or apply the fix by hand");
        return Ok(exit::FAILURE);
    }
    repo.update_index(index_file, &updates)?;
    if let Some(real) = partial_commit_index(repo, index_file) {
        // `git commit FILE` commits from a temporary index but has already written the paths'
        // unfixed content to the real one: give it the fix too, where it still holds the
        // content the fixer started from.
        let current = repo.staged(Some(&real))?;
        let fixed: Vec<Entry> = updates
            .iter()
            .filter(|update| {
                let before = staged.get(update.path.as_str()).map(|e| e.id);
                current
                    .iter()
                    .any(|c| c.path == update.path && Some(c.id) == before)
            })
            .cloned()
            .collect();
        repo.update_index(Some(&real), &fixed)?;
    }
    for (target, _, bytes) in &worktree {
        rewrite_keeping_mode(target, bytes)
            .map_err(|e| Error::io(format!("cannot write {}", target.display()), e))?;
    }
    for update in &updates {
        Output.err(&format!("weir: fixed {}", update.path));
    }
    Ok(exit::SUCCESS)
}

/// The real index, when git runs the hook on the temporary index of a partial commit
/// (`git commit FILE`), which it names `next-index-*`; the real one is locked as `index.lock`.
fn partial_commit_index(repo: &Repo, index_file: Option<&Path>) -> Option<PathBuf> {
    let name = index_file?.file_name()?.to_string_lossy().into_owned();
    if !name.starts_with("next-index") {
        return None;
    }
    let locked = repo.git_dir().join("index.lock");
    Some(if locked.exists() {
        locked
    } else {
        repo.git_dir().join("index")
    })
}

/// Replaces a working-tree file's content, keeping its permissions (an unstaged `chmod` or a
/// private 0600 file stays as the user left it).
fn rewrite_keeping_mode(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let permissions = std::fs::metadata(target)?.permissions();
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = target.with_file_name(format!(".{name}.weir-{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::set_permissions(&tmp, permissions))
        .and_then(|()| std::fs::rename(&tmp, target))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

fn unified_diff(path: &str, old: &[u8], new: &[u8]) -> String {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

/// The jobs of `event` on the snapshot of `commit`, with the working tree's pipeline.
fn run_on_commit(
    context: &Context,
    pipeline: &Pipeline,
    graph: &Graph,
    event: Event,
    commit: gix::ObjectId,
) -> Result<RunOutcome, Error> {
    let repo = &context.repo;
    let entries = repo.commit_files(commit)?;
    let (snapshot, watch) = sync(repo, event.as_str(), &entries)?;
    let root = root_in(&snapshot.dir, repo, &pipeline.root);
    let done = execute_with(
        context,
        pipeline,
        graph,
        execution(
            event,
            Workspace::Snapshot {
                root,
                dir: snapshot.dir.clone(),
                entries,
                watch: Some(watch),
            },
            Some(commit),
        ),
    )?;
    snapshot.record(done.touched.as_ref());
    // A push of many refs must not keep a watch open for each until the end.
    workspace::release_parked();
    Ok(done.outcome)
}

fn pre_push(input: &str) -> Result<u8, Error> {
    let context = Context::discover()?;
    let (pipeline, _) = trusted_pipeline(&context)?;
    let Some(graph) = event_graph(&pipeline, Event::PrePush)? else {
        return Ok(exit::SUCCESS);
    };
    for RefUpdate { refname, new } in hooks::parse_pre_push(input) {
        let Some(new) = new else { continue };
        let commit = context.repo.resolve(&new)?;
        Output.err(&format!(
            "weir: pre-push jobs for {refname} at {}",
            &new[..12]
        ));
        let outcome = run_on_commit(&context, &pipeline, &graph, Event::PrePush, commit)?;
        if outcome != RunOutcome::Passed {
            Output.err(&format!(
                "weir: the pre-push jobs failed for {refname}; nothing was pushed"
            ));
            return Ok(exit_code(outcome));
        }
    }
    Ok(exit::SUCCESS)
}

/// Whether the merge pipeline already ran for `commit`; marks it as run.
pub(super) fn first_merge_run(repo: &Repo, commit: &str) -> Result<bool, Error> {
    let dir = repo.weir_dir().join("merged");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let marker = dir.join(commit);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(format!("cannot create {}", marker.display()), e)),
    }
}

fn post_merge() -> Result<u8, Error> {
    let context = Context::discover()?;
    let (pipeline, _) = trusted_pipeline(&context)?;
    let repo = &context.repo;
    let default = pipeline
        .default_branch
        .clone()
        .unwrap_or_else(|| repo.default_branch());
    if repo.head_branch().as_deref() != Some(default.as_str()) {
        return Ok(exit::SUCCESS);
    }
    let Some(graph) = event_graph(&pipeline, Event::Merge)? else {
        return Ok(exit::SUCCESS);
    };
    let Some(commit) = repo.head()? else {
        return Ok(exit::SUCCESS);
    };
    if !first_merge_run(repo, &commit.to_string())? {
        return Ok(exit::SUCCESS);
    }
    let outcome = run_on_commit(&context, &pipeline, &graph, Event::Merge, commit)?;
    Ok(exit_code(outcome))
}

/// The branch whose pushes a server runs the pipeline of, as the server itself says: the
/// branch its HEAD is on, unless the pipeline at that branch's tip names another
/// (`[pipeline] default_branch`). A pushed pipeline has no say: on any other branch it could
/// otherwise name its own branch and run.
fn server_default_branch(repo: &Repo) -> String {
    let head = repo.head_branch().unwrap_or_else(|| repo.default_branch());
    let named = repo
        .resolve(&format!("refs/heads/{head}"))
        .and_then(|tip| repo.read_file(tip, config::FILE_NAME))
        .ok()
        .flatten()
        .and_then(|bytes| {
            let file = Path::new(config::FILE_NAME);
            config::parse(config::FILE_NAME, file, Path::new(""), &bytes).ok()
        })
        .and_then(|pipeline| pipeline.default_branch);
    named.unwrap_or(head)
}

/// On a server: runs the `merge` jobs of the default branch's own pipeline for each push that
/// moves it. A pipeline on any other branch never runs here.
fn post_receive(input: &str) -> Result<u8, Error> {
    let context = Context::discover_allow_bare()?;
    let repo = &context.repo;
    let default = server_default_branch(repo);
    let mut code = exit::SUCCESS;
    for RefUpdate { refname, new } in hooks::parse_post_receive(input) {
        let Some(new) = new else { continue };
        // Nothing of another branch is even written out here, let alone run.
        if refname != format!("refs/heads/{default}") {
            continue;
        }
        let commit = repo.resolve(&new)?;
        let entries = repo.commit_files(commit)?;
        // Synced before the pipeline is known to run: a watch starts with the first job.
        let snapshot = Snapshot::new(repo, "merge");
        snapshot.sync(repo, &entries)?;
        let file = snapshot.dir.join(config::FILE_NAME);
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let pipeline = config::parse(config::FILE_NAME, &file, &snapshot.dir, &bytes)?;
        let Some(graph) = event_graph(&pipeline, Event::Merge)? else {
            continue;
        };
        if !first_merge_run(repo, &new)? {
            continue;
        }
        Output.err(&format!("weir: merge jobs for {refname} at {}", &new[..12]));
        let done = execute_with(
            &context,
            &pipeline,
            &graph,
            execution(
                Event::Merge,
                Workspace::Snapshot {
                    root: snapshot.dir.clone(),
                    dir: snapshot.dir.clone(),
                    entries,
                    watch: Some(snapshot.watch(None)),
                },
                Some(commit),
            ),
        )?;
        snapshot.record(done.touched.as_ref());
        workspace::release_parked();
        code = code.max(exit_code(done.outcome));
    }
    Ok(code)
}
