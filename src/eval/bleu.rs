//! Corpus BLEU, two reference-exact flavours (see `shared/reference/data_and_metrics.md`
//! §4.4 and §4.6):
//!
//! - [`hf_bleu`]: HF `evaluate` "bleu" = TensorFlow NMT `compute_bleu` over `Tokenizer13a`
//!   tokens; shortest reference length, BP `1 if ratio > 1 else exp(1 - 1/ratio)`, optional
//!   Lin & Och smoothing on every order; score in 0..=1.
//! - [`sacrebleu`]: sacrebleu `BLEU()` corpus score with its defaults (13a after `rstrip`,
//!   closest reference length with ties to the shorter, BP only when `sys_len < ref_len`,
//!   `exp` smoothing, `my_log(0) = -9999999999`); score in 0..=100.
//!
//! Both take one list of references per prediction.

use std::collections::HashMap;

use super::tokenize::{py_rstrip, tokenize_13a};

/// Default maximum n-gram order of both implementations.
pub const MAX_ORDER: usize = 4;

/// HF `evaluate` bleu output (same keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HfBleu {
    pub bleu: f64,
    pub precisions: Vec<f64>,
    pub brevity_penalty: f64,
    pub length_ratio: f64,
    pub translation_length: usize,
    pub reference_length: usize,
}

/// sacrebleu corpus score and its statistics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SacreBleu {
    pub score: f64,
    pub counts: Vec<u64>,
    pub totals: Vec<u64>,
    pub precisions: Vec<f64>,
    pub bp: f64,
    pub sys_len: usize,
    pub ref_len: usize,
}

fn ngram_counts(tokens: &[String], max_order: usize) -> HashMap<&[String], u64> {
    let mut counts: HashMap<&[String], u64> = HashMap::new();
    for n in 1..=max_order {
        if tokens.len() < n {
            break;
        }
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Max over references of each n-gram count (Python `Counter |=`).
fn merged_ref_counts(refs: &[Vec<String>], max_order: usize) -> HashMap<&[String], u64> {
    let mut merged: HashMap<&[String], u64> = HashMap::new();
    for r in refs {
        for (g, c) in ngram_counts(r, max_order) {
            let e = merged.entry(g).or_insert(0);
            *e = (*e).max(c);
        }
    }
    merged
}

/// Sufficient statistics of HF bleu for one or more segments (they add up).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HfStats {
    pub matches: Vec<u64>,
    pub possible: Vec<u64>,
    pub translation_length: usize,
    pub reference_length: usize,
}

impl HfStats {
    /// Add another segment's statistics.
    pub fn add(&mut self, o: &HfStats) {
        add_vec(&mut self.matches, &o.matches);
        add_vec(&mut self.possible, &o.possible);
        self.translation_length += o.translation_length;
        self.reference_length += o.reference_length;
    }
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// HF bleu statistics of one prediction against its references.
pub fn hf_segment(pred: &str, refs: &[&str], max_order: usize) -> HfStats {
    let refs: Vec<Vec<String>> = refs.iter().map(|r| tokenize_13a(r)).collect();
    let hyp = tokenize_13a(pred);
    let mut st = HfStats {
        matches: vec![0; max_order],
        possible: vec![0; max_order],
        translation_length: hyp.len(),
        reference_length: refs.iter().map(Vec::len).min().unwrap_or(0),
    };
    let merged = merged_ref_counts(&refs, max_order);
    for (g, c) in ngram_counts(&hyp, max_order) {
        st.matches[g.len() - 1] += c.min(merged.get(g).copied().unwrap_or(0));
    }
    for order in 1..=max_order {
        if hyp.len() >= order {
            st.possible[order - 1] += (hyp.len() - order + 1) as u64;
        }
    }
    st
}

/// HF bleu from summed statistics (`compute_bleu`'s final part).
pub fn hf_from_stats(st: &HfStats, smooth: bool) -> HfBleu {
    let max_order = st.matches.len();
    let precisions: Vec<f64> = (0..max_order)
        .map(|i| {
            let (m, p) = (st.matches[i], st.possible[i]);
            if smooth {
                (m as f64 + 1.0) / (p as f64 + 1.0)
            } else if p > 0 {
                m as f64 / p as f64
            } else {
                0.0
            }
        })
        .collect();
    let min_p = precisions.iter().cloned().fold(f64::INFINITY, f64::min);
    let geo_mean = if min_p > 0.0 {
        let p_log_sum: f64 = precisions
            .iter()
            .map(|p| (1.0 / max_order as f64) * p.ln())
            .sum();
        p_log_sum.exp()
    } else {
        0.0
    };
    let (tl, rl) = (st.translation_length, st.reference_length);
    let (ratio, bp) = if tl == 0 || rl == 0 {
        (0.0, 0.0)
    } else {
        let ratio = tl as f64 / rl as f64;
        let bp = if ratio > 1.0 {
            1.0
        } else {
            (1.0 - 1.0 / ratio).exp()
        };
        (ratio, bp)
    };
    HfBleu {
        bleu: geo_mean * bp,
        precisions,
        brevity_penalty: bp,
        length_ratio: ratio,
        translation_length: tl,
        reference_length: rl,
    }
}

/// HF `evaluate` "bleu" with `max_order` and `smooth`. `references[i]` are the references of
/// `predictions[i]` (at least one each). A corpus with zero total translation or reference
/// length scores 0 (the Python code divides by zero there).
pub fn hf_bleu(
    predictions: &[&str],
    references: &[Vec<&str>],
    max_order: usize,
    smooth: bool,
) -> HfBleu {
    let mut total = HfStats {
        matches: vec![0; max_order],
        possible: vec![0; max_order],
        ..Default::default()
    };
    for (pred, refs) in predictions.iter().zip(references) {
        total.add(&hf_segment(pred, refs, max_order));
    }
    hf_from_stats(&total, smooth)
}

/// sacrebleu `_get_closest_ref_len`: closest length, ties to the shorter one.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &r in ref_lens {
        let diff = hyp_len.abs_diff(r);
        match best {
            None => best = Some((diff, r)),
            Some((d, l)) if diff < d || (diff == d && r < l) => best = Some((diff, r)),
            _ => {}
        }
    }
    best.map(|(_, l)| l).unwrap_or(0)
}

/// sacrebleu's floored log.
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// Sufficient statistics of sacrebleu BLEU (they add up over segments).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SbStats {
    pub correct: [u64; MAX_ORDER],
    pub total: [u64; MAX_ORDER],
    pub sys_len: usize,
    pub ref_len: usize,
}

impl SbStats {
    /// Add another segment's statistics.
    pub fn add(&mut self, o: &SbStats) {
        for i in 0..MAX_ORDER {
            self.correct[i] += o.correct[i];
            self.total[i] += o.total[i];
        }
        self.sys_len += o.sys_len;
        self.ref_len += o.ref_len;
    }
}

/// sacrebleu statistics of one prediction against its references.
pub fn sb_segment(pred: &str, refs: &[&str]) -> SbStats {
    let refs: Vec<Vec<String>> = refs.iter().map(|r| tokenize_13a(py_rstrip(r))).collect();
    let hyp = tokenize_13a(py_rstrip(pred));
    let ref_lens: Vec<usize> = refs.iter().map(Vec::len).collect();
    let mut st = SbStats {
        sys_len: hyp.len(),
        ref_len: closest_ref_len(hyp.len(), &ref_lens),
        ..Default::default()
    };
    let merged = merged_ref_counts(&refs, MAX_ORDER);
    for (g, c) in ngram_counts(&hyp, MAX_ORDER) {
        st.total[g.len() - 1] += c;
        if let Some(&rc) = merged.get(g) {
            st.correct[g.len() - 1] += c.min(rc);
        }
    }
    st
}

/// sacrebleu `compute_bleu` (exp smoothing, no effective order) from summed statistics.
pub fn sb_from_stats(st: &SbStats) -> SacreBleu {
    let (correct, total) = (st.correct, st.total);
    let (sys_len, ref_len) = (st.sys_len, st.ref_len);
    let mut bp = 1.0;
    if sys_len < ref_len {
        bp = if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        };
    }
    let mut precisions = vec![0.0f64; MAX_ORDER];
    let score = if correct.iter().all(|&c| c == 0) {
        0.0
    } else {
        let mut smooth_mteval = 1.0f64;
        for n in 0..MAX_ORDER {
            if total[n] == 0 {
                break;
            }
            if correct[n] == 0 {
                smooth_mteval *= 2.0;
                precisions[n] = 100.0 / (smooth_mteval * total[n] as f64);
            } else {
                precisions[n] = 100.0 * correct[n] as f64 / total[n] as f64;
            }
        }
        let log_sum: f64 = precisions.iter().map(|&p| my_log(p)).sum();
        bp * (log_sum / MAX_ORDER as f64).exp()
    };
    SacreBleu {
        score,
        counts: correct.to_vec(),
        totals: total.to_vec(),
        precisions,
        bp,
        sys_len,
        ref_len,
    }
}

/// sacrebleu `BLEU()` (all defaults) `corpus_score(predictions, references)`.
pub fn sacrebleu(predictions: &[&str], references: &[Vec<&str>]) -> SacreBleu {
    let mut total = SbStats::default();
    for (pred, refs) in predictions.iter().zip(references) {
        total.add(&sb_segment(pred, refs));
    }
    sb_from_stats(&total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_corpus_scores_one_and_hundred() {
        let p = ["SELECT a FROM t WHERE b = 1;"];
        let r = vec![vec!["SELECT a FROM t WHERE b = 1;"]];
        assert!((hf_bleu(&p, &r, 4, false).bleu - 1.0).abs() < 1e-12);
        assert!((sacrebleu(&p, &r).score - 100.0).abs() < 1e-9);
    }

    #[test]
    fn brevity_penalty_rules_differ_at_equal_length() {
        // HF: ratio == 1 takes the exp branch (= 1 anyway); sacrebleu: BP only when shorter.
        let p = ["SELECT a FROM t"];
        let r = vec![vec!["SELECT a FROM t WHERE b = 1"]];
        let hf = hf_bleu(&p, &r, 4, false);
        assert!((hf.brevity_penalty - (1.0f64 - 8.0 / 4.0).exp()).abs() < 1e-12);
        let sb = sacrebleu(&p, &r);
        assert!((sb.bp - (1.0f64 - 8.0 / 4.0).exp()).abs() < 1e-12);
    }

    #[test]
    fn hf_uses_shortest_sacrebleu_closest_reference() {
        let p = ["a b c d e"];
        let r = vec![vec!["a b", "a b c d e f"]];
        assert_eq!(hf_bleu(&p, &r, 4, false).reference_length, 2);
        assert_eq!(sacrebleu(&p, &r).ref_len, 6);
        assert_eq!(closest_ref_len(4, &[3, 5]), 3);
    }

    #[test]
    fn empty_prediction_scores_zero() {
        let p = [""];
        let r = vec![vec!["SELECT 1"]];
        assert_eq!(hf_bleu(&p, &r, 4, false).bleu, 0.0);
        assert_eq!(sacrebleu(&p, &r).score, 0.0);
    }
}
