//! Exploratory statistics of a loaded corpus: label distributions, character lengths of
//! prompt / context / SQL, SQL keyword frequencies, and token counts of the formatted examples
//! under the pipeline's tokenizer. Figures are drawn by `data::plots`.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::fastenc::{Encoder, Memo};
use super::load::LoadedRow;
use super::preprocess::{encode_row_with, Mode};

/// SQL keywords counted in gold queries (whole words, case-insensitive, outside string literals).
pub const KEYWORDS: [&str; 34] = [
    "SELECT",
    "FROM",
    "WHERE",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "ON",
    "GROUP",
    "BY",
    "ORDER",
    "HAVING",
    "LIMIT",
    "DISTINCT",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "WITH",
    "OVER",
    "PARTITION",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "ALTER",
    "DROP",
    "IN",
    "NOT",
    "CASE",
];

/// Summary of a list of lengths.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LengthStats {
    pub count: usize,
    pub min: usize,
    pub max: usize,
    pub mean: f64,
    pub median: usize,
    pub p95: usize,
}

impl LengthStats {
    pub fn of(values: &[usize]) -> LengthStats {
        if values.is_empty() {
            return LengthStats::default();
        }
        let mut v = values.to_vec();
        v.sort_unstable();
        let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
        LengthStats {
            count: v.len(),
            min: v[0],
            max: v[v.len() - 1],
            mean: v.iter().sum::<usize>() as f64 / v.len() as f64,
            median: q(0.5),
            p95: q(0.95),
        }
    }
}

/// The numbers written to `eda_stats.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub rows: usize,
    pub splits: BTreeMap<String, usize>,
    pub sql_complexity: BTreeMap<String, usize>,
    pub sql_task_type: BTreeMap<String, usize>,
    pub domain: BTreeMap<String, usize>,
    /// prompt / context / sql → character-length summary.
    pub chars: BTreeMap<String, LengthStats>,
    /// keyword → occurrences over all gold SQL.
    pub keywords: BTreeMap<String, usize>,
    /// Tokens per chat-formatted example, when a tokenizer was given.
    pub tokens: Option<LengthStats>,
}

/// Per-row values the figures need.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub prompt_chars: Vec<usize>,
    pub context_chars: Vec<usize>,
    pub sql_chars: Vec<usize>,
    pub tokens: Vec<usize>,
}

/// Remove '...' string literals (with '' escapes) so their words are not counted.
fn strip_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_str = false;
    for c in sql.chars() {
        if c == '\'' {
            in_str = !in_str;
            out.push(' ');
        } else if !in_str {
            out.push(c);
        }
    }
    out
}

/// Keyword occurrences in one SQL string.
pub fn keyword_counts(sql: &str) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for w in strip_literals(sql).split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if w.is_empty() {
            continue;
        }
        let up = w.to_ascii_uppercase();
        if let Some(k) = KEYWORDS.iter().find(|k| **k == up) {
            *m.entry(*k).or_default() += 1;
        }
    }
    m
}

/// Compute statistics (and the per-row series for figures).
pub fn compute(rows: &[LoadedRow], tk: Option<&Tokenizer>) -> anyhow::Result<(Stats, Series)> {
    let mut s = Stats {
        rows: rows.len(),
        ..Default::default()
    };
    let mut ser = Series::default();
    for lr in rows {
        let r = &lr.row;
        *s.splits.entry(lr.split.clone()).or_default() += 1;
        *s.sql_complexity
            .entry(r.sql_complexity.clone())
            .or_default() += 1;
        *s.sql_task_type.entry(r.sql_task_type.clone()).or_default() += 1;
        *s.domain.entry(r.domain.clone()).or_default() += 1;
        ser.prompt_chars.push(r.sql_prompt.chars().count());
        ser.context_chars.push(r.sql_context.chars().count());
        ser.sql_chars.push(r.sql.chars().count());
        for (k, n) in keyword_counts(&r.sql) {
            *s.keywords.entry(k.to_string()).or_default() += n;
        }
    }
    s.chars
        .insert("prompt".into(), LengthStats::of(&ser.prompt_chars));
    s.chars
        .insert("context".into(), LengthStats::of(&ser.context_chars));
    s.chars
        .insert("sql".into(), LengthStats::of(&ser.sql_chars));
    if let Some(tk) = tk {
        let enc = Encoder::new(tk);
        ser.tokens = rows
            .par_iter()
            .map_init(Memo::new, |memo, lr| {
                let r = &lr.row;
                encode_row_with(
                    &enc,
                    memo,
                    Mode::Chat,
                    &r.sql_prompt,
                    &r.sql_context,
                    &r.sql,
                )
                .map(|(ids, _)| ids.len())
            })
            .collect::<anyhow::Result<Vec<usize>>>()?;
        s.tokens = Some(LengthStats::of(&ser.tokens));
    }
    Ok((s, ser))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_skip_literals_and_match_whole_words() {
        let m = keyword_counts(
            "SELECT name FROM t WHERE x = 'select from' AND selection IN (SELECT 1)",
        );
        assert_eq!(m.get("SELECT"), Some(&2));
        assert_eq!(m.get("FROM"), Some(&1));
        assert_eq!(m.get("IN"), Some(&1));
    }

    #[test]
    fn length_stats() {
        let s = LengthStats::of(&[5, 1, 3]);
        assert_eq!((s.min, s.max, s.median, s.count), (1, 5, 3, 3));
        assert!((s.mean - 3.0).abs() < 1e-12);
    }
}
