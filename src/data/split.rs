//! Seeded train/validation/test splitting without leakage: rows sharing an id or a prompt form
//! one group and always land in the same subset. Optional stratification by a row field keeps
//! each class's share within one row of its share of the pool. When the data has its own test
//! split (gretel), that split is the test pool.

use std::collections::{BTreeMap, HashMap};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::examples::Stored;
use super::Row;

/// A requested subset size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// Everything left in the pool.
    Rest,
    /// A fraction of the pool (0..=1).
    Fraction(f64),
    /// A number of rows.
    Count(usize),
}

impl Size {
    /// From a param value: null → rest, float ≤ 1 → fraction, integer → count.
    pub fn from_json(v: Option<&serde_json::Value>) -> Result<Size, String> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(Size::Rest),
            Some(serde_json::Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    Ok(Size::Count(u as usize))
                } else {
                    match n.as_f64() {
                        Some(f) if (0.0..=1.0).contains(&f) => Ok(Size::Fraction(f)),
                        _ => Err(format!(
                            "{n} is neither a row count nor a fraction in [0, 1]"
                        )),
                    }
                }
            }
            Some(serde_json::Value::String(s)) if s == "rest" => Ok(Size::Rest),
            Some(other) => Err(format!(
                "{other} is not a size: use a count, a fraction or null"
            )),
        }
    }
    /// As a param value: the inverse of `from_json`.
    fn to_json(self) -> serde_json::Value {
        match self {
            Size::Rest => serde_json::Value::Null,
            Size::Fraction(f) => serde_json::json!(f),
            Size::Count(c) => serde_json::json!(c),
        }
    }
    fn rows(self, pool: usize) -> usize {
        match self {
            Size::Rest => pool,
            Size::Fraction(f) => (f * pool as f64).round() as usize,
            Size::Count(c) => c,
        }
        .min(pool)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Option::<serde_json::Value>::deserialize(d)?;
        Size::from_json(v.as_ref()).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// The `split` stage's params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SplitParams {
    /// Shuffling seed.
    pub seed: u64,
    /// Row field to stratify by (sql_complexity, sql_task_type, domain); empty: none.
    #[serde(deserialize_with = "empty_as_none", serialize_with = "none_as_empty")]
    #[schemars(with = "String")]
    pub stratify: Option<String>,
    /// Rows (integer) or fraction of the pool (float); null: all that is left.
    #[serde(rename = "train_size")]
    #[schemars(with = "serde_json::Value")]
    pub train: Size,
    /// Rows (integer) or fraction of the pool (float).
    #[serde(rename = "validation_size")]
    #[schemars(with = "serde_json::Value")]
    pub validation: Size,
    /// Rows or fraction; null: the data's own test split, else 10% of the pool. With a source
    /// test split, sizes are taken from it.
    #[serde(rename = "test_size")]
    #[schemars(with = "serde_json::Value")]
    pub test: Size,
    /// Use the dataset's own test split (gretel's) as the test pool when present.
    pub use_source_test: bool,
}

impl Default for SplitParams {
    fn default() -> Self {
        Self {
            seed: 42,
            stratify: None,
            train: Size::Rest,
            validation: Size::Fraction(0.1),
            test: Size::Rest,
            use_source_test: true,
        }
    }
}

impl crate::stages::params::Params for SplitParams {
    fn problems(&self) -> Vec<(String, String)> {
        match &self.stratify {
            Some(f) if !STRATIFY_FIELDS.contains(&f.as_str()) => vec![(
                "stratify".into(),
                format!("`{f}` is not a field to stratify by; use sql_complexity, sql_task_type or domain"),
            )],
            _ => Vec::new(),
        }
    }
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()))
}

fn none_as_empty<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().unwrap_or("").serialize(s)
}

pub const SUBSETS: [&str; 3] = ["train", "validation", "test"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SplitReport {
    pub sizes: BTreeMap<String, usize>,
    pub unused: usize,
    pub source_test_used: bool,
    pub stratify: Option<String>,
    /// subset → class → rows (when stratified).
    pub classes: BTreeMap<String, BTreeMap<String, usize>>,
    /// Rows dropped before splitting because their request or query is in a held-out set
    /// ([`decontaminate`]).
    #[serde(default)]
    pub decontaminated: usize,
}

/// The value of a row field by name (for stratification).
/// The row fields a split can be stratified by (those `field` reads).
pub const STRATIFY_FIELDS: [&str; 6] = [
    "domain",
    "sql_complexity",
    "sql_task_type",
    "domain_description",
    "sql_complexity_description",
    "sql_task_type_description",
];

pub fn field(row: &Row, name: &str) -> Option<String> {
    Some(match name {
        "domain" => row.domain.clone(),
        "sql_complexity" => row.sql_complexity.clone(),
        "sql_task_type" => row.sql_task_type.clone(),
        "domain_description" => row.domain_description.clone(),
        "sql_complexity_description" => row.sql_complexity_description.clone(),
        "sql_task_type_description" => row.sql_task_type_description.clone(),
        _ => return None,
    })
}

/// Union-find over example indices: same id or same prompt → same group.
fn groups(items: &[&Stored]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..items.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    let mut by_prompt: HashMap<&str, usize> = HashMap::new();
    for (i, s) in items.iter().enumerate() {
        let r = &s.row.row;
        for first in [
            by_id.get(&r.id).copied(),
            by_prompt.get(r.sql_prompt.trim()).copied(),
        ]
        .into_iter()
        .flatten()
        {
            let (a, b) = (find(&mut parent, first), find(&mut parent, i));
            parent[b] = a;
        }
        by_id.entry(r.id).or_insert(i);
        by_prompt.entry(r.sql_prompt.trim()).or_insert(i);
    }
    let mut g: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..items.len() {
        let root = find(&mut parent, i);
        g.entry(root).or_default().push(i);
    }
    g.into_values().collect()
}

/// Share a pool's groups among parts with target sizes, per stratum: within each class, part
/// k gets `round(cum_k · n_c) − round(cum_{k−1} · n_c)` rows, so each part's class count is
/// within one row of its proportional share. Returns the part of each group.
fn allocate(
    groups: &[Vec<usize>],
    class_of: &dyn Fn(usize) -> String,
    targets: &[usize],
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let pool: usize = groups.iter().map(Vec::len).sum();
    let mut strata: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (gi, g) in groups.iter().enumerate() {
        strata.entry(class_of(g[0])).or_default().push(gi);
    }
    let mut part_of = vec![targets.len() - 1; groups.len()];
    let total: usize = targets.iter().sum();
    for gis in strata.values_mut() {
        gis.shuffle(rng);
        let n_c: usize = gis.iter().map(|&g| groups[g].len()).sum();
        let mut cum = 0usize;
        let mut prev = 0usize;
        let mut quota = Vec::with_capacity(targets.len());
        for (k, t) in targets.iter().enumerate() {
            cum += t;
            let upto = if k + 1 == targets.len() && total == pool {
                n_c
            } else {
                ((cum as f64 / pool.max(1) as f64) * n_c as f64).round() as usize
            };
            quota.push(upto.saturating_sub(prev));
            prev = upto;
        }
        let mut filled = vec![0usize; targets.len()];
        for &g in gis.iter() {
            let size = groups[g].len();
            let k = (0..targets.len())
                .find(|&k| filled[k] + size <= quota[k])
                .unwrap_or(targets.len() - 1);
            filled[k] += size;
            part_of[g] = k;
        }
    }
    part_of
}

/// Split stored examples into train/validation/test (in input order within each subset).
pub fn split(items: Vec<Stored>, p: &SplitParams) -> (BTreeMap<String, Vec<Stored>>, SplitReport) {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let refs: Vec<&Stored> = items.iter().collect();
    let gs = groups(&refs);
    let stratify = p.stratify.clone();
    let class_of = |i: usize| -> String {
        match &stratify {
            Some(f) => field(&items[i].row.row, f).unwrap_or_default(),
            None => String::new(),
        }
    };
    let has_test = p.use_source_test && items.iter().any(|s| s.row.split == "test");
    let (test_pool, main_pool): (Vec<Vec<usize>>, Vec<Vec<usize>>) = if has_test {
        gs.into_iter()
            .partition(|g| g.iter().any(|&i| items[i].row.split == "test"))
    } else {
        (Vec::new(), gs)
    };
    // subset index per example: 0 train, 1 validation, 2 test, 3 unused.
    let mut assign = vec![3usize; items.len()];
    let size = |g: &[Vec<usize>]| g.iter().map(Vec::len).sum::<usize>();
    if has_test {
        let n = size(&test_pool);
        let t = p.test.rows(n);
        let parts = allocate(&test_pool, &class_of, &[t, n - t], &mut rng);
        for (g, k) in test_pool.iter().zip(parts) {
            for &i in g {
                // Train-split rows that share an id or prompt with a test row are left out.
                let is_test = items[i].row.split == "test";
                assign[i] = if k == 0 && is_test { 2 } else { 3 };
            }
        }
        let n = size(&main_pool);
        let v = p.validation.rows(n);
        let tr = p.train.rows(n - v);
        let parts = allocate(&main_pool, &class_of, &[v, tr, n - v - tr], &mut rng);
        for (g, k) in main_pool.iter().zip(parts) {
            for &i in g {
                assign[i] = [1, 0, 3][k];
            }
        }
    } else {
        let n = size(&main_pool);
        let test = if p.test == Size::Rest {
            Size::Fraction(0.1)
        } else {
            p.test
        };
        let t = test.rows(n);
        let v = p.validation.rows(n - t);
        let tr = p.train.rows(n - t - v);
        let parts = allocate(&main_pool, &class_of, &[t, v, tr, n - t - v - tr], &mut rng);
        for (g, k) in main_pool.iter().zip(parts) {
            for &i in g {
                assign[i] = [2, 1, 0, 3][k];
            }
        }
    }
    let mut out: BTreeMap<String, Vec<Stored>> = SUBSETS
        .iter()
        .map(|s| (s.to_string(), Vec::new()))
        .collect();
    let mut rep = SplitReport {
        source_test_used: has_test,
        stratify: p.stratify.clone(),
        ..Default::default()
    };
    for (s, k) in items.into_iter().zip(assign) {
        if k == 3 {
            rep.unused += 1;
            continue;
        }
        let name = SUBSETS[k];
        if let Some(f) = &p.stratify {
            let c = field(&s.row.row, f).unwrap_or_default();
            *rep.classes
                .entry(name.to_string())
                .or_default()
                .entry(c)
                .or_default() += 1;
        }
        out.get_mut(name).expect("subset").push(s);
    }
    for (k, v) in &out {
        rep.sizes.insert(k.clone(), v.len());
    }
    (out, rep)
}

/// Drop the examples whose request or query also appears (trimmed, exactly) among `held_out`,
/// typically the validation and test rows of the task a corpus is meant to pretrain for: what
/// a model sees in pretraining must not contain the answers it is evaluated on. Returns the
/// kept examples in input order and how many were dropped.
pub fn decontaminate(items: Vec<Stored>, held_out: &[Stored]) -> (Vec<Stored>, usize) {
    use std::collections::HashSet;
    let prompts: HashSet<&str> = held_out
        .iter()
        .map(|s| s.row.row.sql_prompt.trim())
        .collect();
    let queries: HashSet<&str> = held_out.iter().map(|s| s.row.row.sql.trim()).collect();
    let before = items.len();
    let kept: Vec<Stored> = items
        .into_iter()
        .filter(|s| {
            !prompts.contains(s.row.row.sql_prompt.trim())
                && !queries.contains(s.row.row.sql.trim())
        })
        .collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

#[cfg(test)]
mod decontaminate_tests {
    use super::*;
    use crate::data::LoadedRow;

    fn stored(id: i64, prompt: &str, sql: &str) -> Stored {
        let mut row = crate::data::builtin::generate_row(1, id as u64);
        row.id = id;
        row.sql_prompt = prompt.into();
        row.sql = sql.into();
        Stored {
            row: LoadedRow {
                split: "train".into(),
                row,
            },
            ids: vec![2, 1],
            prompt_len: 0,
        }
    }

    #[test]
    fn rows_sharing_a_request_or_a_query_with_held_out_rows_are_dropped() {
        let held = vec![stored(
            100,
            "How many ships?",
            "SELECT COUNT(*) FROM ships;",
        )];
        let corpus = vec![
            stored(1, "How many ships? ", "SELECT 1;"),
            stored(2, "Other request", " SELECT COUNT(*) FROM ships;"),
            stored(3, "How many boats?", "SELECT COUNT(*) FROM boats;"),
            stored(4, "how many ships?", "SELECT 2;"),
        ];
        let (kept, dropped) = decontaminate(corpus, &held);
        assert_eq!(dropped, 2);
        let ids: Vec<i64> = kept.iter().map(|s| s.row.row.id).collect();
        // Matching is exact after trimming: a case change is another request.
        assert_eq!(ids, [3, 4]);
    }
}
