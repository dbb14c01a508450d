//! The DAG as Graphviz dot or Mermaid.

use crate::config::Pipeline;
use crate::graph::Graph;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
}

pub fn render(pipeline: &Pipeline, graph: &Graph, format: Format) -> String {
    let order = graph.topological_order();
    let name = |pos: usize| pipeline.jobs[graph.jobs[pos]].name.as_str();
    let mut out = String::new();
    match format {
        Format::Dot => {
            out.push_str("digraph pipeline {\n  rankdir=LR;\n");
            for &pos in &order {
                let job = &pipeline.jobs[graph.jobs[pos]];
                let shape = if job.environment.is_some() {
                    "box3d"
                } else {
                    "box"
                };
                out.push_str(&format!("  \"{}\" [shape={shape}];\n", job.name));
            }
            for &pos in &order {
                for &need in &graph.needs[pos] {
                    out.push_str(&format!("  \"{}\" -> \"{}\";\n", name(need), name(pos)));
                }
            }
            out.push_str("}\n");
        }
        Format::Mermaid => {
            out.push_str("graph LR\n");
            // Mermaid ids cannot hold every character a job name may, so nodes get positional
            // ids and the name as their label.
            for &pos in &order {
                let job = &pipeline.jobs[graph.jobs[pos]];
                if job.environment.is_some() {
                    out.push_str(&format!("  j{pos}[[\"{}\"]]\n", job.name));
                } else {
                    out.push_str(&format!("  j{pos}[\"{}\"]\n", job.name));
                }
            }
            for &pos in &order {
                for &need in &graph.needs[pos] {
                    out.push_str(&format!("  j{need} --> j{pos}\n"));
                }
            }
        }
    }
    out
}
