//! Human-readable rendering of evaluation reports and system comparisons (plain text tables).

use std::fmt::Write;

use super::score::Report;
use super::stats::{Estimate, PairedComparison};

fn row(out: &mut String, name: &str, e: &Estimate, digits: usize) {
    let _ = writeln!(
        out,
        "  {name:<34} {:>9.digits$}   [{:.digits$}, {:.digits$}]   n={}",
        e.value, e.ci_low, e.ci_high, e.n
    );
}

/// The metrics table, buckets and breakdowns of one report.
pub fn render_report(title: &str, r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{title}: {} examples (95% percentile-bootstrap CIs, {} resamples, seed {})",
        r.n, r.bootstrap_samples, r.seed
    );
    let _ = writeln!(out, "  {:<34} {:>9}   95% CI", "metric", "value");
    row(&mut out, "execution_accuracy", &r.execution_accuracy, 4);
    row(
        &mut out,
        "execution_accuracy (gold non-empty)",
        &r.execution_accuracy_nonempty,
        4,
    );
    row(
        &mut out,
        "execution_accuracy_set (BIRD)",
        &r.execution_accuracy_set,
        4,
    );
    if let Some(ts) = &r.test_suite {
        row(&mut out, "test_suite_accuracy", &ts.accuracy, 4);
    }
    row(&mut out, "exact_match (normalized)", &r.exact_match, 4);
    row(&mut out, "valid_sql", &r.valid_sql, 4);
    row(&mut out, "bleu (HF evaluate, 0-1)", &r.bleu, 4);
    row(&mut out, "sacrebleu (0-100)", &r.sacrebleu, 2);
    row(&mut out, "rouge1", &r.rouge1, 4);
    row(&mut out, "rouge2", &r.rouge2, 4);
    row(&mut out, "rougeL", &r.rouge_l, 4);
    let b = &r.buckets;
    let _ = writeln!(
        out,
        "  execution buckets: gold non-empty {} ({} correct), gold empty {} ({} correct), \
         gold fails {} (not scored), non-deterministic {} (not scored)",
        b.gold_nonempty,
        b.gold_nonempty_correct,
        b.gold_empty,
        b.gold_empty_correct,
        b.gold_fails,
        b.nondeterministic
    );
    if let Some(ts) = &r.test_suite {
        let _ =
            writeln!(
            out,
            "  test suite ({} instances per example, seed {}): {} false positive(s) of execution \
             accuracy caught; {} instances built from {} candidates ({} dropped: gold fails, {} \
             dropped: gold depends on row order); {} of {} near-miss neighbours of the gold told \
             apart{}",
            ts.instances,
            ts.seed,
            ts.false_positives_caught,
            ts.instances_built,
            ts.candidates,
            ts.gold_errors,
            ts.gold_order_dependent,
            ts.neighbours_distinguished,
            ts.neighbours,
            if ts.truncated > 0 {
                format!("; {} suite(s) cut short by the instruction budget", ts.truncated)
            } else {
                String::new()
            }
        );
    }
    if !r.outcomes.is_empty() {
        let parts: Vec<String> = r
            .outcomes
            .iter()
            .map(|(o, n)| format!("{} {n}", o.label().to_lowercase()))
            .collect();
        let _ = writeln!(out, "  outcomes (scored): {}", parts.join(", "));
    }
    for (field, groups) in &r.breakdowns {
        let _ = writeln!(out, "  by {field}:");
        let _ = writeln!(
            out,
            "    {:<28} {:>6} {:>7} {:>7} {:>7} {:>9}{}",
            "group",
            "n",
            "EM",
            "valid",
            "rougeL",
            "EX (n)",
            if r.test_suite.is_some() {
                "      TS"
            } else {
                ""
            }
        );
        for (g, m) in groups {
            let ex = match m.execution_accuracy {
                Some(x) => format!("{x:.3} ({})", m.n_exec),
                None => "-".to_string(),
            };
            let ts = match (m.test_suite_accuracy, &r.test_suite) {
                (Some(x), _) => format!(" {x:>7.3}"),
                (None, Some(_)) => format!(" {:>7}", "-"),
                (None, None) => String::new(),
            };
            let name: String = g.chars().take(28).collect();
            let _ = writeln!(
                out,
                "    {name:<28} {:>6} {:>7.3} {:>7.3} {:>7.3} {:>9}{}",
                m.n, m.exact_match, m.valid_sql, m.rouge_l, ex, ts
            );
        }
    }
    out
}

/// One line per paired comparison of execution accuracy (`metric`: `EX` or `TS`).
pub fn render_comparison(a: &str, b: &str, metric: &str, p: &PairedComparison) -> String {
    format!(
        "  {a} vs {b}: {metric} difference {:+.4} [{:+.4}, {:+.4}] over {} shared examples; \
         only {a} right {}, only {b} right {}; McNemar exact p={:.4}, paired bootstrap p={:.4}",
        p.diff, p.diff_ci_low, p.diff_ci_high, p.n, p.only_a, p.only_b, p.mcnemar_p, p.bootstrap_p
    )
}
