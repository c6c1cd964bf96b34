//! The Markdown report (figures referenced as PNG files in the same directory).

use std::fmt::Write;

use super::model::{MetricValue, Outcome, ReportData, Variant, MAIN_METRICS};
use super::plots::Figures;
use super::verdict;

/// Format a metric for a table cell: value and CI, in percent for 0–1 metrics.
pub fn cell(key: &str, m: &MetricValue) -> String {
    let (scale, unit) = if key == "sacrebleu" {
        (1.0, "")
    } else {
        (100.0, "")
    };
    match (m.lo, m.hi) {
        (Some(lo), Some(hi)) => format!(
            "{:.1}{unit} [{:.1}, {:.1}]",
            m.value * scale,
            lo * scale,
            hi * scale
        ),
        _ => format!("{:.1}{unit}", m.value * scale),
    }
}

/// Section titles, in order; the HTML uses the same.
pub const SECTIONS: [&str; 9] = [
    "Verdict",
    "Metrics",
    "Paired tests",
    "Breakdowns",
    "Failures",
    "Training",
    "Data (EDA)",
    "Notes",
    "Provenance",
];

/// The Markdown report, section by section.
pub fn render(data: &ReportData, figures: &Figures) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", data.title);
    let _ = writeln!(
        s,
        "Run {} of `{}` — {} — started {}{}\n",
        data.run.id,
        data.run.pipeline,
        data.run.status,
        data.run.started,
        data.run
            .ended
            .as_deref()
            .map(|e| format!(", ended {e}"))
            .unwrap_or_default()
    );

    let sections: [fn(&mut String, &ReportData, &Figures); 9] = [
        verdict_section,
        metrics,
        paired_tests,
        breakdowns,
        failures_section,
        training,
        eda,
        notes,
        provenance,
    ];
    for (title, section) in SECTIONS.iter().zip(sections) {
        let _ = writeln!(s, "## {title}\n");
        section(&mut s, data, figures);
    }
    if let Some(search) = &data.search {
        let _ = writeln!(s, "## Search\n");
        search_section(&mut s, search, figures);
    }
    s
}

/// A search's trials (the best in bold), and the training it spent against the full grid.
fn search_section(s: &mut String, sr: &crate::search::Outcome, figures: &Figures) {
    let mode = match sr.mode {
        crate::search::Mode::Max => "higher is better",
        crate::search::Mode::Min => "lower is better",
    };
    let strategy = match sr.strategy {
        crate::search::Strategy::Random => "Random",
        crate::search::Strategy::Tpe => "TPE",
    };
    let _ = writeln!(
        s,
        "{strategy} search of stage `{}` for `{}` ({mode}): {} trials.\n",
        sr.stage,
        sr.metric,
        sr.trials.len()
    );
    let dims: std::collections::BTreeSet<&String> =
        sr.trials.iter().flat_map(|t| t.params.keys()).collect();
    let mut header: Vec<String> = vec!["Trial".into()];
    header.extend(dims.iter().map(|d| format!("`{d}`")));
    header.extend(["Steps".into(), "Rungs".into(), text(&sr.metric)]);
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
    for (i, t) in sr.trials.iter().enumerate() {
        let best = sr.best == Some(i);
        let mut row = vec![if best {
            format!("**{} (best)**", i + 1)
        } else {
            (i + 1).to_string()
        }];
        row.extend(dims.iter().map(|d| {
            t.params
                .get(*d)
                .map(|v| match v {
                    serde_json::Value::String(x) => text(x),
                    other => text(&other.to_string()),
                })
                .unwrap_or_default()
        }));
        row.push(t.steps.map(|x| x.to_string()).unwrap_or_else(|| "-".into()));
        row.push(
            t.rungs
                .iter()
                .map(|(step, v)| format!("{v:.4} @ {step}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        row.push(match t.value {
            Some(v) if best => format!("**{v:.4}**"),
            Some(v) => format!("{v:.4}"),
            None => "stopped".into(),
        });
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    s.push('\n');
    match (sr.steps_spent, sr.grid_steps, sr.grid_trials) {
        (Some(spent), Some(grid), Some(n)) if grid > 0 => {
            let _ = writeln!(
                s,
                "Training spent: {spent} optimizer steps, {:.0}% of the {grid} a full grid of the space ({n} trials) takes.\n",
                100.0 * spent as f64 / grid as f64
            );
        }
        (Some(spent), _, _) => {
            let _ = writeln!(
                s,
                "Training spent: {spent} optimizer steps (the space has ranges, so no full grid to compare with).\n"
            );
        }
        _ => {}
    }
    if let Some(f) = figures.list.iter().find(|f| f.name == "search") {
        let _ = writeln!(s, "![{}]({}.png)\n", f.title, f.name);
    }
}

fn verdict_section(s: &mut String, data: &ReportData, _figures: &Figures) {
    let exec: Vec<_> = data
        .paired
        .iter()
        .filter(|c| c.metric == "execution_accuracy" || c.metric == "test_suite_accuracy")
        .collect();
    if exec.is_empty() {
        let _ = writeln!(
            s,
            "No paired comparison was computed (fewer than two evaluated variants).\n"
        );
    }
    for c in exec {
        let _ = writeln!(s, "- {}", verdict::sentence(c));
    }
    for w in verdict::warnings(data) {
        let _ = writeln!(s, "- **Warning:** {w}");
    }
    s.push('\n');
}

fn metrics(s: &mut String, data: &ReportData, figures: &Figures) {
    let shown: Vec<_> = MAIN_METRICS
        .iter()
        .filter(|(k, _)| data.variants.iter().any(|v| v.metrics.contains_key(*k)))
        .collect();
    let _ = write!(s, "| variant | n |");
    for (_, label) in &shown {
        let _ = write!(s, " {label} |");
    }
    let _ = write!(s, "\n|---|---:|");
    for _ in &shown {
        let _ = write!(s, "---:|");
    }
    s.push('\n');
    for v in &data.variants {
        let _ = write!(s, "| {} | {} |", v.name, v.n);
        for (k, _) in &shown {
            let c = v
                .metrics
                .get(*k)
                .map(|m| cell(k, m))
                .unwrap_or_else(|| "–".into());
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "\nPercent, with 95% bootstrap confidence intervals in brackets (sacreBLEU on its own 0–100 scale).\n");
    for f in &figures.list {
        if f.name == "metrics" {
            let _ = writeln!(s, "![{}]({}.png)\n", f.title, f.name);
        }
    }
}

fn paired_tests(s: &mut String, data: &ReportData, _figures: &Figures) {
    if data.paired.is_empty() {
        let _ = writeln!(s, "None.\n");
    } else {
        let _ = writeln!(s, "| a | b | metric | a − b (points) | 95% CI | p | n |\n|---|---|---|---:|---|---:|---:|");
        for c in &data.paired {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:+.1} | [{:+.1}, {:+.1}] | {} | {} |",
                c.a,
                c.b,
                c.metric,
                100.0 * c.diff,
                100.0 * c.lo,
                100.0 * c.hi,
                super::verdict::fmt_p(c.p_value),
                c.n
            );
        }
        s.push('\n');
    }
}

fn breakdowns(s: &mut String, data: &ReportData, figures: &Figures) {
    for dim in ["sql_complexity", "sql_task_type", "domain"] {
        let mut classes: Vec<String> = data
            .variants
            .iter()
            .flat_map(|v| {
                v.breakdowns
                    .get(dim)
                    .into_iter()
                    .flatten()
                    .map(|b| b.class.clone())
            })
            .collect();
        classes.sort();
        classes.dedup();
        if classes.is_empty() {
            continue;
        }
        let _ = writeln!(s, "### Execution accuracy by {dim}\n");
        let _ = write!(s, "| {dim} |");
        for v in &data.variants {
            let _ = write!(s, " {} |", v.name);
        }
        let _ = write!(s, "\n|---|");
        for _ in &data.variants {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        for c in &classes {
            let _ = write!(s, "| {} |", text(c));
            for v in &data.variants {
                let b = v
                    .breakdowns
                    .get(dim)
                    .and_then(|rows| rows.iter().find(|b| &b.class == c));
                match b {
                    Some(b) => {
                        let _ = write!(s, " {:.1} (n={}) |", 100.0 * b.value, b.n);
                    }
                    None => s.push_str(" – |"),
                }
            }
            s.push('\n');
        }
        s.push('\n');
    }
    if figures.list.iter().any(|f| f.name == "by_complexity") {
        let _ = writeln!(
            s,
            "![Execution accuracy by SQL complexity](by_complexity.png)\n"
        );
    }
}

fn failures_section(s: &mut String, data: &ReportData, _figures: &Figures) {
    failures(s, data);
}

fn training(s: &mut String, data: &ReportData, figures: &Figures) {
    if figures.list.iter().any(|f| f.name == "loss") {
        let _ = writeln!(s, "![Train and eval loss](loss.png)\n");
    } else {
        let _ = writeln!(s, "No training curves were recorded in this run.\n");
    }
    for c in &data.loss_curves {
        let best = c
            .eval
            .iter()
            .copied()
            .fold(None::<(i64, f64)>, |b, p| match b {
                Some(b) if b.1 <= p.1 => Some(b),
                _ => Some(p),
            });
        if let Some((step, loss)) = best {
            let _ = writeln!(s, "- {}: best eval loss {loss:.4} at step {step}", c.name);
        }
    }
    s.push('\n');
}

fn eda(s: &mut String, data: &ReportData, _figures: &Figures) {
    if data.eda_figures.is_empty() {
        let _ = writeln!(s, "No EDA figures in this run.\n");
    }
    for (f, link) in data
        .eda_figures
        .iter()
        .zip(super::eda_links(&data.eda_figures))
    {
        let _ = writeln!(
            s,
            "![{}]({link})\n",
            f.file_stem().and_then(|x| x.to_str()).unwrap_or("figure"),
        );
    }
}

fn notes(s: &mut String, data: &ReportData, _figures: &Figures) {
    if data.notes.is_empty() {
        let _ = writeln!(s, "None.\n");
    }
    for n in &data.notes {
        let _ = writeln!(s, "- {n}");
    }
    s.push('\n');
}

fn provenance(s: &mut String, data: &ReportData, _figures: &Figures) {
    let _ = writeln!(
        s,
        "- host: {}\n- t2s: {}",
        data.run.host, data.run.t2s_version
    );
    for (k, v) in &data.run.facts {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let _ = writeln!(
        s,
        "\n| node | kind | status | duration | key |\n|---|---|---|---:|---|"
    );
    for n in &data.nodes {
        let d = n
            .duration_s
            .map(|d| format!("{d:.2} s"))
            .unwrap_or_else(|| "–".into());
        let key = n.key.get(..12).unwrap_or(&n.key);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {d} | `{key}` |",
            n.id, n.kind, n.status
        );
    }
}

/// The Failures section: each variant's scored predictions by outcome, then examples of how
/// the best variant (by execution accuracy) fails.
fn failures(s: &mut String, data: &ReportData) {
    let with: Vec<&Variant> = data
        .variants
        .iter()
        .filter(|v| !v.outcomes.is_empty())
        .collect();
    if with.is_empty() {
        let _ = writeln!(s, "No per-prediction results in this run.\n");
        return;
    }
    let _ = write!(s, "| outcome |");
    for v in &with {
        let _ = write!(s, " {} |", v.name);
    }
    let _ = write!(s, "\n|---|");
    for _ in &with {
        let _ = write!(s, "---:|");
    }
    s.push('\n');
    for outcome in Outcome::ALL {
        if with.iter().all(|v| !v.outcomes.contains_key(&outcome)) {
            continue;
        }
        let _ = write!(s, "| {} |", outcome.label());
        for v in &with {
            let total: usize = v.outcomes.values().sum();
            let n = v.outcomes.get(&outcome).copied().unwrap_or(0);
            let _ = write!(s, " {n} ({:.1}%) |", 100.0 * n as f64 / total.max(1) as f64);
        }
        s.push('\n');
    }
    if with.iter().any(|v| v.suite_caught.is_some()) {
        let _ = write!(s, "| of which wrong on the test suite |");
        for v in &with {
            let right = v.outcomes.get(&Outcome::Correct).copied().unwrap_or(0);
            match v.suite_caught {
                Some(n) => {
                    let pct = 100.0 * n as f64 / right.max(1) as f64;
                    let _ = write!(s, " {n} ({pct:.1}% of correct) |");
                }
                None => {
                    let _ = write!(s, " – |");
                }
            }
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "\nScored predictions (the gold runs and is deterministic), by what SQLite made of them."
    );
    if with.iter().any(|v| v.suite_caught.is_some()) {
        let _ = write!(
            s,
            " \"Wrong on the test suite\": right on the row's own database, but not on the \
             generated instances of its schema (false positives of execution accuracy caught)."
        );
    }
    s.push_str("\n\n");
    suite_examples(s, &with);
    let accuracy = |v: &&Variant| {
        v.metrics
            .get("execution_accuracy")
            .map_or(f64::NEG_INFINITY, |m| m.value)
    };
    let Some(best) = with
        .iter()
        .copied()
        .filter(|v| !v.failures.is_empty())
        .max_by(|a, b| accuracy(a).total_cmp(&accuracy(b)))
    else {
        return;
    };
    let _ = writeln!(s, "### How {} fails: examples\n", best.name);
    let mut shown: Vec<_> = best.failures.iter().collect();
    // Grouped as the table lists the outcomes (a stable sort keeps the file order within).
    shown.sort_by_key(|f| f.outcome);
    for f in shown {
        let _ = writeln!(s, "- **{}**: {}", f.outcome.label(), text(&f.request));
        let _ = writeln!(s, "  - gold: {}", code(&f.gold));
        let _ = writeln!(s, "  - predicted: {}", code(&f.prediction));
        if let Some(e) = &f.error {
            let _ = writeln!(s, "  - error: {}", text(e));
        }
    }
    s.push('\n');
}

/// Examples of false positives the test suite caught, from the variant with the most.
fn suite_examples(s: &mut String, with: &[&Variant]) {
    let Some(v) = with
        .iter()
        .filter(|v| !v.suite_caught_examples.is_empty())
        .max_by_key(|v| v.suite_caught.unwrap_or(0))
    else {
        return;
    };
    let _ = writeln!(
        s,
        "### Right on the original database, wrong on the test suite: examples from {}\n",
        v.name
    );
    for f in &v.suite_caught_examples {
        let _ = writeln!(s, "- {}", text(&f.request));
        let _ = writeln!(s, "  - gold: {}", code(&f.gold));
        let _ = writeln!(s, "  - predicted: {}", code(&f.prediction));
        if let Some(e) = &f.error {
            let _ = writeln!(s, "  - {}", text(e));
        }
    }
    s.push('\n');
}

/// Longest example text shown, in characters.
const EXAMPLE_CHARS: usize = 300;

fn shorten(t: &str) -> String {
    let one_line = t.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(EXAMPLE_CHARS) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// Plain text for Markdown: ASCII punctuation that Markdown (or HTML) would read is escaped.
fn text(t: &str) -> String {
    let mut out = String::new();
    for c in shorten(t).chars() {
        if "\\`*_[]<>|#&!".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A code span for SQL (no backtick inside can end it early), `(empty)` for nothing.
fn code(t: &str) -> String {
    let t = shorten(t).replace('`', "'");
    if t.is_empty() {
        "(empty)".into()
    } else {
        format!("`{t}`")
    }
}
