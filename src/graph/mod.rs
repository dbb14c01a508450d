//! The job DAG: which jobs a run selects (with everything they need), and the order they can
//! run in. The configuration has already rejected cycles and unknown `needs`.

use std::collections::{BTreeSet, VecDeque};

use crate::config::{Event, Pipeline};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no job named `{name}` in {file}")]
    UnknownJob {
        name: String,
        file: String,
        suggestion: Option<String>,
    },
    #[error("no job runs on `{0}`")]
    NothingForEvent(Event),
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::UnknownJob {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            Error::UnknownJob { .. } => Some("`weir graph` lists the jobs".to_owned()),
            Error::NothingForEvent(event) => Some(format!(
                "add `on = [\"{event}\"]` to a job in .pipeline.toml"
            )),
        }
    }
}

/// Which jobs a run asks for, before their needs are added.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every job that is not a deploy job.
    AllButDeploy,
    /// These jobs by name.
    Named(Vec<String>),
    /// The jobs whose `on` lists this event.
    Event(Event),
}

/// The selected jobs (indices into `Pipeline::jobs`, in file order) and their edges.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Selected job indices in file order.
    pub jobs: Vec<usize>,
    /// For each entry of `jobs`, the positions (in `jobs`) of the jobs it needs.
    pub needs: Vec<Vec<usize>>,
}

impl Graph {
    /// Selects jobs and closes the selection over `needs`.
    pub fn select(pipeline: &Pipeline, selection: &Selection) -> Result<Graph, Error> {
        let mut roots = Vec::new();
        match selection {
            Selection::AllButDeploy => roots.extend(
                (0..pipeline.jobs.len()).filter(|&i| pipeline.jobs[i].environment.is_none()),
            ),
            Selection::Named(names) => {
                for name in names {
                    let index = pipeline
                        .jobs
                        .iter()
                        .position(|j| &j.name == name)
                        .ok_or_else(|| Error::UnknownJob {
                            name: name.clone(),
                            file: pipeline.path.display().to_string(),
                            suggestion: suggest(name, pipeline.jobs.iter().map(|j| &*j.name)),
                        })?;
                    roots.push(index);
                }
            }
            Selection::Event(event) => {
                roots.extend(
                    (0..pipeline.jobs.len()).filter(|&i| pipeline.jobs[i].on.contains(event)),
                );
                if roots.is_empty() {
                    return Err(Error::NothingForEvent(*event));
                }
            }
        }

        let mut selected = BTreeSet::new();
        let mut queue: VecDeque<usize> = roots.into();
        while let Some(index) = queue.pop_front() {
            if selected.insert(index) {
                for need in &pipeline.jobs[index].needs {
                    if let Some(n) = pipeline.jobs.iter().position(|j| &j.name == need) {
                        queue.push_back(n);
                    }
                }
            }
        }
        let jobs: Vec<usize> = selected.into_iter().collect();
        let needs = jobs
            .iter()
            .map(|&index| {
                pipeline.jobs[index]
                    .needs
                    .iter()
                    .filter_map(|need| jobs.iter().position(|&j| pipeline.jobs[j].name == *need))
                    .collect()
            })
            .collect();
        Ok(Graph { jobs, needs })
    }

    /// Every selected job, in an order where each comes after what it needs (positions in
    /// `jobs`). Ties keep file order, so the output is stable.
    pub fn topological_order(&self) -> Vec<usize> {
        let mut pending: Vec<usize> = self.needs.iter().map(Vec::len).collect();
        let mut dependents = vec![Vec::new(); self.jobs.len()];
        for (job, needs) in self.needs.iter().enumerate() {
            for &need in needs {
                dependents[need].push(job);
            }
        }
        let mut ready: BTreeSet<usize> =
            (0..self.jobs.len()).filter(|&j| pending[j] == 0).collect();
        let mut order = Vec::with_capacity(self.jobs.len());
        while let Some(job) = ready.pop_first() {
            order.push(job);
            for &dependent in &dependents[job] {
                pending[dependent] -= 1;
                if pending[dependent] == 0 {
                    ready.insert(dependent);
                }
            }
        }
        order
    }
}

/// The closest candidate to `name`, if one is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Job;
    use std::path::PathBuf;

    fn job(name: &str, needs: &[&str], on: &[Event], environment: Option<&str>) -> Job {
        Job {
            name: name.to_owned(),
            steps: vec!["true".to_owned()],
            needs: needs.iter().map(|s| s.to_string()).collect(),
            on: on.to_vec(),
            env: Default::default(),
            timeout: None,
            retries: 0,
            dir: PathBuf::new(),
            environment: environment.map(str::to_owned),
            inputs: None,
            outputs: Vec::new(),
            cache: environment.is_none(),
            key: Vec::new(),
            key_cmd: None,
            secrets: Vec::new(),
            files: None,
            fix: false,
            deploy: Default::default(),
            span: 0..0,
        }
    }

    fn pipeline(jobs: Vec<Job>) -> Pipeline {
        Pipeline {
            path: PathBuf::from(".pipeline.toml"),
            root: PathBuf::from("/"),
            default_branch: None,
            env: Default::default(),
            cache: Default::default(),
            secrets: Default::default(),
            jobs,
        }
    }

    fn names(p: &Pipeline, g: &Graph, order: &[usize]) -> Vec<String> {
        order
            .iter()
            .map(|&i| p.jobs[g.jobs[i]].name.clone())
            .collect()
    }

    #[test]
    fn selecting_a_job_pulls_in_its_needs_transitively() {
        let p = pipeline(vec![
            job("test", &["build"], &[Event::Manual], None),
            job("build", &["fmt"], &[Event::Manual], None),
            job("fmt", &[], &[Event::Manual], None),
            job("docs", &[], &[Event::Manual], None),
        ]);
        let g = Graph::select(&p, &Selection::Named(vec!["test".into()])).unwrap();
        assert_eq!(
            names(&p, &g, &g.topological_order()),
            ["fmt", "build", "test"]
        );
    }

    #[test]
    fn default_selection_leaves_out_deploy_jobs_and_event_selection_adds_needs() {
        let p = pipeline(vec![
            job("build", &[], &[Event::Manual], None),
            job("lint", &[], &[Event::PreCommit], None),
            job("staging", &["build"], &[Event::Merge], Some("staging")),
        ]);
        let all = Graph::select(&p, &Selection::AllButDeploy).unwrap();
        assert_eq!(names(&p, &all, &all.topological_order()), ["build", "lint"]);
        let merge = Graph::select(&p, &Selection::Event(Event::Merge)).unwrap();
        assert_eq!(
            names(&p, &merge, &merge.topological_order()),
            ["build", "staging"]
        );
        assert!(matches!(
            Graph::select(&p, &Selection::Event(Event::Watch)),
            Err(Error::NothingForEvent(Event::Watch))
        ));
    }

    #[test]
    fn unknown_job_suggests_the_closest_name() {
        let p = pipeline(vec![job("build", &[], &[Event::Manual], None)]);
        let err = Graph::select(&p, &Selection::Named(vec!["biuld".into()])).unwrap_err();
        assert_eq!(err.hint().as_deref(), Some("did you mean `build`?"));
    }
}
