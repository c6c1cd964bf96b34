//! Plain-words verdicts from paired comparisons: what a reader should conclude.

use super::model::{PairedComparison, ReportData};

/// Significance level of the verdicts.
pub const ALPHA: f64 = 0.05;

/// One sentence per paired comparison, e.g. "lora_r=8 beats base on execution accuracy by
/// +12.5 points (95% CI +8.1 to +16.9, p = 0.0004, n = 200)".
pub fn sentence(c: &PairedComparison) -> String {
    let metric = c.metric.replace('_', " ");
    let pts = |x: f64| format!("{:+.1}", 100.0 * x);
    let ci = format!("95% CI {} to {}", pts(c.lo), pts(c.hi));
    let stats = format!("{ci}, p {}, n = {}", p_relation(c.p_value), c.n);
    let significant = c.p_value < ALPHA && (c.lo > 0.0 || c.hi < 0.0);
    if significant && c.diff > 0.0 {
        format!(
            "{} beats {} on {metric} by {} points ({stats}).",
            c.a,
            c.b,
            pts(c.diff)
        )
    } else if significant {
        format!(
            "{} is worse than {} on {metric} by {} points ({stats}).",
            c.a,
            c.b,
            pts(-c.diff).trim_start_matches('+')
        )
    } else {
        format!(
            "No significant difference between {} and {} on {metric}: {} points ({stats}); do not rank them on this evidence.",
            c.a,
            c.b,
            pts(c.diff)
        )
    }
}

/// A p-value for a table cell: four decimals, or `< 0.0001` below that.
pub fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        "< 0.0001".to_string()
    } else {
        format!("{p:.4}")
    }
}

/// A p-value in a sentence: `= 0.0044` or `< 0.0001`.
fn p_relation(p: f64) -> String {
    let v = fmt_p(p);
    if v.starts_with('<') {
        v
    } else {
        format!("= {v}")
    }
}

/// Warnings the reader must see before trusting the ranking.
pub fn warnings(data: &ReportData) -> Vec<String> {
    let mut out = Vec::new();
    for v in &data.variants {
        if v.n < 100 {
            out.push(format!(
                "{} was scored on only {} examples: confidence intervals are wide; evaluate on more of the test split before ranking variants.",
                v.name, v.n
            ));
        }
    }
    let unresolved = data
        .paired
        .iter()
        .filter(|c| c.metric == "execution_accuracy" && c.a != "base" && c.b != "base")
        .filter(|c| c.p_value >= ALPHA)
        .count();
    if unresolved > 0 {
        out.push(format!(
            "{unresolved} pair(s) of adapters are not distinguishable on execution accuracy at this sample size."
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(diff: f64, lo: f64, hi: f64, p: f64) -> PairedComparison {
        PairedComparison {
            a: "lora_r=8".into(),
            b: "base".into(),
            metric: "execution_accuracy".into(),
            diff,
            lo,
            hi,
            p_value: p,
            n: 200,
        }
    }

    #[test]
    fn significant_gain_is_a_win() {
        let s = sentence(&cmp(0.125, 0.081, 0.169, 0.0004));
        assert_eq!(
            s,
            "lora_r=8 beats base on execution accuracy by +12.5 points (95% CI +8.1 to +16.9, p = 0.0004, n = 200)."
        );
    }

    #[test]
    fn tiny_p_values_read_as_an_inequality() {
        let s = sentence(&cmp(0.098, 0.062, 0.135, 0.0));
        assert!(s.contains("p < 0.0001, n = 200"), "{s}");
        assert_eq!(fmt_p(0.00002), "< 0.0001");
        assert_eq!(fmt_p(0.1686), "0.1686");
    }

    #[test]
    fn significant_loss_is_worse() {
        let s = sentence(&cmp(-0.05, -0.09, -0.01, 0.01));
        assert!(
            s.starts_with("lora_r=8 is worse than base on execution accuracy by 5.0 points"),
            "{s}"
        );
    }

    #[test]
    fn ci_crossing_zero_is_no_difference_even_with_small_p() {
        let s = sentence(&cmp(0.02, -0.01, 0.05, 0.03));
        assert!(s.starts_with("No significant difference"), "{s}");
    }
}
