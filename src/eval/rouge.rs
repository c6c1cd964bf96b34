//! ROUGE-1, ROUGE-2 and ROUGE-L F1 with rouge_score semantics (default tokenizer, no stemmer;
//! `shared/reference/data_and_metrics.md` §4.5). Corpus values are the plain mean of the
//! per-example F-measures (what `use_aggregator=False` + mean gives; deterministic, unlike HF's
//! bootstrap "mid").

use std::collections::HashMap;

use super::tokenize::tokenize_rouge;

/// Precision, recall and F-measure of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

/// F1 of ROUGE-1/2/L for one prediction.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RougeF {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
}

fn fmeasure(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], u64> {
    let mut m = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// rouge_score `_score_ngrams` on token lists.
pub fn rouge_n(target: &[String], prediction: &[String], n: usize) -> RougeScore {
    let t = ngrams(target, n);
    let p = ngrams(prediction, n);
    let overlap: u64 = t
        .iter()
        .map(|(g, c)| (*c).min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let t_count: u64 = t.values().sum();
    let p_count: u64 = p.values().sum();
    let precision = overlap as f64 / p_count.max(1) as f64;
    let recall = overlap as f64 / t_count.max(1) as f64;
    RougeScore {
        precision,
        recall,
        fmeasure: fmeasure(precision, recall),
    }
}

/// Length of the longest common subsequence of two token lists.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// rouge_score `_score_lcs` on token lists.
pub fn rouge_l(target: &[String], prediction: &[String]) -> RougeScore {
    if target.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let lcs = lcs_len(target, prediction) as f64;
    let precision = lcs / prediction.len() as f64;
    let recall = lcs / target.len() as f64;
    RougeScore {
        precision,
        recall,
        fmeasure: fmeasure(precision, recall),
    }
}

/// ROUGE-1/2/L F1 of one prediction against one reference (`scorer.score(target, prediction)`).
pub fn rouge_f(reference: &str, prediction: &str) -> RougeF {
    let t = tokenize_rouge(reference);
    let p = tokenize_rouge(prediction);
    RougeF {
        rouge1: rouge_n(&t, &p, 1).fmeasure,
        rouge2: rouge_n(&t, &p, 2).fmeasure,
        rouge_l: rouge_l(&t, &p).fmeasure,
    }
}

/// Mean of per-example F1 (summed in input order, so the result is deterministic).
pub fn corpus_rouge(predictions: &[&str], references: &[&str]) -> RougeF {
    let n = predictions.len().min(references.len());
    if n == 0 {
        return RougeF::default();
    }
    let mut sum = RougeF::default();
    for (p, r) in predictions.iter().zip(references) {
        let f = rouge_f(r, p);
        sum.rouge1 += f.rouge1;
        sum.rouge2 += f.rouge2;
        sum.rouge_l += f.rouge_l;
    }
    RougeF {
        rouge1: sum.rouge1 / n as f64,
        rouge2: sum.rouge2 / n as f64,
        rouge_l: sum.rouge_l / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // target 4 tokens, prediction 3 tokens, 3 unigrams shared, 1 bigram shared.
        let f = rouge_f("select a from t", "select from t");
        assert!((f.rouge1 - 2.0 * 1.0 * 0.75 / 1.75).abs() < 1e-12);
        let p2 = 1.0 / 2.0;
        let r2 = 1.0 / 3.0;
        assert!((f.rouge2 - 2.0 * p2 * r2 / (p2 + r2)).abs() < 1e-12);
        assert!((f.rouge_l - 2.0 * 1.0 * 0.75 / 1.75).abs() < 1e-12);
    }

    #[test]
    fn empty_prediction_is_zero() {
        assert_eq!(rouge_f("select 1", ""), RougeF::default());
        assert_eq!(rouge_f("select 1", ";;"), RougeF::default());
    }
}
