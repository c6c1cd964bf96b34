//! `t2s dag` output: the expanded node graph as text, Graphviz dot or Mermaid.

use std::fmt::Write;

use super::Pipeline;

/// One line per node in topological order: id, kind, flags and what it needs.
pub fn text(p: &Pipeline) -> String {
    let mut out = format!("{}: {} nodes\n", p.name, p.nodes.len());
    let width = p.nodes.iter().map(|n| n.id.len()).max().unwrap_or(0);
    let kind_width = p.nodes.iter().map(|n| n.kind.len()).max().unwrap_or(0);
    for n in &p.nodes {
        let mut line = format!("  {:width$}  {:kind_width$}", n.id, n.kind);
        if n.gpu {
            line.push_str("  [gpu]");
        }
        if !n.needs.is_empty() {
            let _ = write!(line, "  <- {}", n.needs.join(", "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz: `t2s dag --dot | dot -Tsvg > dag.svg`.
pub fn dot(p: &Pipeline) -> String {
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
        dot_quote(&p.name)
    );
    for n in &p.nodes {
        let label = format!("{}\\n{}{}", n.id, n.kind, if n.gpu { " (gpu)" } else { "" });
        let _ = writeln!(
            out,
            "  {} [label=\"{}\"];",
            dot_quote(&n.id),
            label.replace('"', "\\\"")
        );
    }
    for n in &p.nodes {
        for need in &n.needs {
            let _ = writeln!(out, "  {} -> {};", dot_quote(need), dot_quote(&n.id));
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart (renders in GitHub Markdown inside a ```mermaid block).
pub fn mermaid(p: &Pipeline) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, n) in p.nodes.iter().enumerate() {
        let label = format!(
            "{}<br/>{}{}",
            n.id,
            n.kind,
            if n.gpu { " (gpu)" } else { "" }
        );
        let _ = writeln!(out, "  n{i}[\"{}\"]", label.replace('"', "#quot;"));
    }
    for (i, n) in p.nodes.iter().enumerate() {
        for need in &n.needs {
            if let Some(j) = p.index_of(need) {
                let _ = writeln!(out, "  n{j} --> n{i}");
            }
        }
    }
    out
}
