//! `t2s evaluate --predictions FILE.jsonl`: score predictions from any system with the same
//! metrics as the `evaluate` stage, outside a pipeline. Several `--predictions` files are
//! compared pairwise on execution accuracy (paired by example id; the first is the reference).
//! Bad lines (not UTF-8, not JSON, a field missing) are listed with their line and reason
//! under `rejected`, not scored; the rest are scored, and the exit status is 1 (like ripgrep,
//! which prints its matches and still exits 2 after an error).

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use crate::eval::compare::PairedSystems;
use crate::eval::input::{read_predictions, Predictions, Rejected};
use crate::eval::render::{render_comparison, render_report};
use crate::eval::sandbox::Limits;
use crate::eval::score::score_all;
use crate::eval::scoring::Scoring;

/// Score SQL predictions: BLEU, ROUGE, exact match, SQL validity and execution accuracy.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// JSONL file, one object per line: `sql_context`, gold `sql` (or `gold`), predicted
    /// `prediction` (or `predicted_sql`, `pred`); optional `id`, `sql_complexity`,
    /// `sql_task_type`, `domain` for paired tests and breakdowns. Repeat to compare systems.
    /// Bad lines are listed (line and reason) and not scored; the rest are, and the exit
    /// status is then 1.
    #[arg(long = "predictions", value_name = "FILE", required = true)]
    pub predictions: Vec<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write per-example scores (JSONL, input order) of the first file here.
    #[arg(long, value_name = "FILE")]
    pub per_example: Option<PathBuf>,
    /// Seed of the bootstrap resamples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// SQLite VM instruction budget of one SQL statement.
    #[arg(long, default_value_t = Limits::default().max_instructions)]
    pub max_instructions: u64,
    #[command(flatten)]
    pub scoring: Scoring,
}

fn system_name(path: &std::path::Path, i: usize) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("system{}", i + 1))
}

/// Run the command; returns the process exit code.
pub fn run(args: &EvaluateArgs) -> anyhow::Result<i32> {
    let out = evaluate_files(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out.json)?);
    } else {
        print!("{}", out.text);
    }
    if out.rejected > 0 {
        eprintln!(
            "t2s: {} line(s) rejected and not scored (listed under `rejected`)",
            out.rejected
        );
        return Ok(1);
    }
    Ok(0)
}

/// What the command prints, in both forms.
#[derive(Debug, Clone)]
pub struct EvaluateOutput {
    /// `--json` output: the report object (one file) or `{systems, comparisons}`.
    pub json: serde_json::Value,
    /// The readable tables.
    pub text: String,
    /// Lines rejected in all files together.
    pub rejected: usize,
}

/// At most this many rejected lines are shown per file in the text output (all are in JSON).
const REJECTED_SHOWN: usize = 20;

fn render_rejected(path: &std::path::Path, rejected: &[Rejected]) -> String {
    if rejected.is_empty() {
        return String::new();
    }
    let mut out = format!("  {} line(s) rejected (not scored):\n", rejected.len());
    for r in rejected.iter().take(REJECTED_SHOWN) {
        out.push_str(&format!(
            "    {}:{}: {}\n",
            path.display(),
            r.line,
            r.reason
        ));
    }
    if rejected.len() > REJECTED_SHOWN {
        out.push_str(&format!(
            "    ... and {} more\n",
            rejected.len() - REJECTED_SHOWN
        ));
    }
    out
}

/// Score the files named by `args` (and write `--per-example`), without printing.
pub fn evaluate_files(args: &EvaluateArgs) -> anyhow::Result<EvaluateOutput> {
    let mut opts = args.scoring.options(args.seed);
    opts.limits.max_instructions = args.max_instructions;
    let mut reports = Vec::new();
    let mut paired = PairedSystems::default();
    let mut names: Vec<String> = Vec::new();
    for (i, path) in args.predictions.iter().enumerate() {
        let Predictions { items, rejected } = read_predictions(path)?;
        let (scores, report) = score_all(&items, &opts);
        if i == 0 {
            if let Some(out) = &args.per_example {
                write_per_example(out, &items, &scores)?;
            }
        }
        let mut name = system_name(path, i);
        if names.contains(&name) {
            name = format!("{name}#{}", i + 1);
        }
        names.push(name.clone());
        paired.add(&name, &items, &scores);
        reports.push((name, report, render_rejected(path, &rejected), rejected));
    }
    let compared = paired.compare(opts.bootstrap_samples, args.seed);

    let mut values = Vec::new();
    for (_, r, _, rejected) in &reports {
        let mut v = serde_json::to_value(r)?;
        v["rejected"] = serde_json::to_value(rejected)?;
        values.push(v);
    }
    let json = if reports.len() == 1 {
        values.remove(0)
    } else {
        let systems: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|(n, ..)| n.clone())
            .zip(values)
            .collect();
        let mut j = compared.fields()?;
        j.insert("systems".into(), serde_json::Value::Object(systems));
        serde_json::Value::Object(j)
    };
    let mut text = String::new();
    for (name, r, shown, _) in &reports {
        text.push_str(&render_report(name, r));
        text.push_str(shown);
        text.push('\n');
    }
    for (title, metric, list) in [
        ("execution accuracy", "EX", &compared.exec[..]),
        (
            "test-suite accuracy",
            "TS",
            compared.suite.as_deref().unwrap_or_default(),
        ),
    ] {
        if list.is_empty() {
            continue;
        }
        text.push_str(&format!("paired comparisons ({title}):\n"));
        for c in list {
            text.push_str(&render_comparison(&c.a, &c.b, metric, &c.test));
            text.push('\n');
            if let Some(w) = &c.warning {
                text.push_str(&format!("  warning: {w}\n"));
            }
        }
    }
    let rejected = reports.iter().map(|(.., r)| r.len()).sum();
    Ok(EvaluateOutput {
        json,
        text,
        rejected,
    })
}

fn write_per_example(
    out: &std::path::Path,
    items: &[crate::eval::score::ScoreItem],
    scores: &[crate::eval::score::ExampleScore],
) -> anyhow::Result<()> {
    use std::io::Write;
    let f = std::fs::File::create(out)
        .with_context(|| format!("cannot create per-example file {}", out.display()))?;
    let mut w = std::io::BufWriter::new(f);
    for (it, s) in items.iter().zip(scores) {
        let line = json!({"id": it.id, "gold": it.gold, "prediction": it.pred, "scores": s});
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    Ok(())
}
