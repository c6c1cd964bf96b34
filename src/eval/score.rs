//! Scoring a set of predictions: per-example scores, corpus metrics with bootstrap CIs,
//! execution buckets and breakdowns. Used by `t2s evaluate --predictions` and the `evaluate`
//! stage, so both report exactly the same numbers.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use super::bleu::{
    hf_from_stats, hf_segment, sb_from_stats, sb_segment, HfStats, SbStats, MAX_ORDER,
};
use super::exact::exact_match;
use super::exec::{execution_match, Bucket, ExecResult};
use super::outcome::Outcome;
use super::rouge::{rouge_f, RougeF};
use super::sandbox::Limits;
use super::stats::{bootstrap_mean, bootstrap_with, mean, resample_indices, Estimate};
use super::testsuite::{self, Suite, SuiteConfig, SuiteItem, SuiteVerdict};

/// One example to score.
#[derive(Debug, Clone, Default)]
pub struct ScoreItem {
    pub id: String,
    pub context: String,
    pub gold: String,
    pub pred: String,
    /// Gretel labels for breakdowns (empty when unknown).
    pub sql_complexity: String,
    pub sql_task_type: String,
    pub domain: String,
}

/// Per-example scores.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleScore {
    pub exact_match: bool,
    pub rouge1: f64,
    pub rouge2: f64,
    #[serde(rename = "rougeL")]
    pub rouge_l: f64,
    /// HF bleu of this example alone (informative; corpus BLEU is not a mean of these).
    pub bleu: f64,
    pub exec: ExecResult,
    /// Test-suite verdict (absent when the suite is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_suite: Option<SuiteVerdict>,
    #[serde(skip)]
    hf: HfStats,
    #[serde(skip)]
    sb: SbStats,
}

/// Scoring options.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub limits: Limits,
    pub bootstrap_samples: usize,
    pub seed: u64,
    /// Test-suite execution accuracy (`instances: 0` turns it off).
    pub suite: SuiteConfig,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            bootstrap_samples: super::stats::DEFAULT_RESAMPLES,
            seed: 0,
            suite: SuiteConfig::default(),
        }
    }
}

/// Test-suite accuracy beside execution accuracy, and how the suites came to be.
#[derive(Debug, Clone, Serialize)]
pub struct TestSuiteReport {
    /// Over the same examples as `execution_accuracy`.
    pub accuracy: Estimate,
    /// Execution-correct on the original database, wrong on the suite.
    pub false_positives_caught: usize,
    /// Instances asked for per example, and the seed they were generated from.
    pub instances: usize,
    pub seed: u64,
    /// Sums over the scored examples' suites (`eval::testsuite::SuiteStats`).
    pub instances_built: usize,
    pub candidates: usize,
    pub gold_errors: usize,
    pub gold_order_dependent: usize,
    pub neighbours: usize,
    pub neighbours_distinguished: usize,
    /// Suites whose instruction budget ended candidate generation early.
    pub truncated: usize,
}

/// Counts of the execution buckets, with accuracy inside the scored ones.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Buckets {
    pub nondeterministic: usize,
    pub gold_fails: usize,
    pub gold_empty: usize,
    pub gold_empty_correct: usize,
    pub gold_nonempty: usize,
    pub gold_nonempty_correct: usize,
}

/// Metrics of one group of a breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMetrics {
    pub n: usize,
    pub exact_match: f64,
    pub valid_sql: f64,
    #[serde(rename = "rougeL")]
    pub rouge_l: f64,
    /// Over the group's scored examples (`n_exec` of them); null when none.
    pub execution_accuracy: Option<f64>,
    /// Test-suite accuracy over the same examples (absent when the suite is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_suite_accuracy: Option<f64>,
    pub n_exec: usize,
}

/// Everything `evaluate` reports for one system.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub n: usize,
    /// HF `evaluate` bleu, 0..1.
    pub bleu: Estimate,
    /// sacrebleu corpus BLEU, 0..100.
    pub sacrebleu: Estimate,
    pub rouge1: Estimate,
    pub rouge2: Estimate,
    #[serde(rename = "rougeL")]
    pub rouge_l: Estimate,
    pub exact_match: Estimate,
    pub valid_sql: Estimate,
    /// Over the gold-empty and gold-nonempty buckets.
    pub execution_accuracy: Estimate,
    /// Over the gold-nonempty bucket only.
    pub execution_accuracy_nonempty: Estimate,
    /// BIRD-style set comparison, same examples as `execution_accuracy`.
    pub execution_accuracy_set: Estimate,
    /// Test-suite execution accuracy (absent when the suite is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_suite: Option<TestSuiteReport>,
    pub buckets: Buckets,
    /// The scored examples by outcome (right, wrong rows, syntax error...; `eval::outcome`).
    pub outcomes: BTreeMap<Outcome, usize>,
    pub breakdowns: BTreeMap<String, BTreeMap<String, GroupMetrics>>,
    pub bootstrap_samples: usize,
    pub seed: u64,
}

impl Report {
    /// The scores with their 95% CIs, by metric name: the first value of each `scalars` triple.
    const SCORES: [&'static str; 9] = [
        "execution_accuracy",
        "exact_match",
        "valid_sql",
        "bleu",
        "sacrebleu",
        "rouge1",
        "rouge2",
        "rougeL",
        "test_suite_accuracy",
    ];
    /// Execution-accuracy false positives the test suites caught.
    const FALSE_POSITIVES: &'static str = "false_positives_caught";

    /// The report as scalar metrics: each score with its CI (`_ci_low`, `_ci_high`); with test
    /// suites, their accuracy and the false positives they caught.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let suite = self.test_suite.as_ref();
        let estimates = [
            Some(&self.execution_accuracy),
            Some(&self.exact_match),
            Some(&self.valid_sql),
            Some(&self.bleu),
            Some(&self.sacrebleu),
            Some(&self.rouge1),
            Some(&self.rouge2),
            Some(&self.rouge_l),
            suite.map(|t| &t.accuracy),
        ];
        let mut out = Vec::new();
        for (k, e) in Self::SCORES.iter().zip(estimates) {
            if let Some(e) = e {
                out.extend([
                    (k.to_string(), e.value),
                    (format!("{k}_ci_low"), e.ci_low),
                    (format!("{k}_ci_high"), e.ci_high),
                ]);
            }
        }
        out.extend(suite.map(|t| {
            (
                Self::FALSE_POSITIVES.into(),
                t.false_positives_caught as f64,
            )
        }));
        out
    }

    /// Every name `scalars` can give.
    pub fn scalar_names() -> Vec<String> {
        let mut out: Vec<String> = Self::SCORES
            .iter()
            .flat_map(|k| [k.to_string(), format!("{k}_ci_low"), format!("{k}_ci_high")])
            .collect();
        out.push(Self::FALSE_POSITIVES.into());
        out
    }
}

/// Score one example (text metrics, execution and, given its suite, the test suite).
pub fn score_one(item: &ScoreItem, suite: Option<&Suite>, opts: &ScoreOptions) -> ExampleScore {
    let limits = &opts.limits;
    let RougeF {
        rouge1,
        rouge2,
        rouge_l,
    } = rouge_f(&item.gold, &item.pred);
    let hf = hf_segment(&item.pred, &[item.gold.as_str()], MAX_ORDER);
    let sb = sb_segment(&item.pred, &[item.gold.as_str()]);
    let exec = execution_match(&item.context, &item.gold, &item.pred, limits);
    let test_suite = suite.map(|s| {
        testsuite::verdict(
            s,
            &item.context,
            &item.pred,
            exec.scored() && exec.correct,
            limits,
            &opts.suite,
        )
    });
    ExampleScore {
        exact_match: exact_match(&item.pred, &item.gold),
        rouge1,
        rouge2,
        rouge_l,
        bleu: hf_from_stats(&hf, false).bleu,
        exec,
        test_suite,
        hf,
        sb,
    }
}

fn b(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

/// Score all examples in parallel and aggregate (building their suites when the test suite
/// is on).
pub fn score_all(items: &[ScoreItem], opts: &ScoreOptions) -> (Vec<ExampleScore>, Report) {
    let suites = build_suites(items, opts);
    score_all_with(items, suites.as_deref(), opts)
}

/// The test suites of `items` (`None` when the suite is off), to share between systems
/// scored on the same examples.
pub fn build_suites(items: &[ScoreItem], opts: &ScoreOptions) -> Option<Vec<Suite>> {
    if opts.suite.instances == 0 {
        return None;
    }
    let pairs: Vec<SuiteItem<'_>> = items
        .iter()
        .map(|it| SuiteItem {
            context: &it.context,
            gold: &it.gold,
        })
        .collect();
    Some(testsuite::build_many(&pairs, &opts.suite, &opts.limits))
}

/// [`score_all`] with suites built beforehand (`suites[i]` belongs to `items[i]`).
pub fn score_all_with(
    items: &[ScoreItem],
    suites: Option<&[Suite]>,
    opts: &ScoreOptions,
) -> (Vec<ExampleScore>, Report) {
    let scores: Vec<ExampleScore> = items
        .par_iter()
        .enumerate()
        .map(|(i, it)| score_one(it, suites.and_then(|s| s.get(i)), opts))
        .collect();
    let report = aggregate(items, &scores, opts);
    (scores, report)
}

/// Per-example execution correctness over the scored examples, keyed by id: what paired tests
/// between systems use.
pub fn exec_vector(items: &[ScoreItem], scores: &[ExampleScore]) -> BTreeMap<String, f64> {
    items
        .iter()
        .zip(scores)
        .filter(|(_, s)| s.exec.scored())
        .map(|(it, s)| (it.id.clone(), b(s.exec.correct)))
        .collect()
}

/// Per-example test-suite correctness over the same examples as [`exec_vector`] (`None` when
/// the suite is off).
pub fn suite_vector(items: &[ScoreItem], scores: &[ExampleScore]) -> Option<BTreeMap<String, f64>> {
    scores.first()?.test_suite.as_ref()?;
    Some(
        items
            .iter()
            .zip(scores)
            .filter(|(_, s)| s.exec.scored())
            .map(|(it, s)| (it.id.clone(), b(suite_correct(s))))
            .collect(),
    )
}

fn suite_correct(s: &ExampleScore) -> bool {
    s.test_suite.as_ref().is_some_and(|t| t.correct)
}

fn suite_report(scores: &[ExampleScore], opts: &ScoreOptions) -> Option<TestSuiteReport> {
    scores.first()?.test_suite.as_ref()?;
    let scored: Vec<&ExampleScore> = scores.iter().filter(|s| s.exec.scored()).collect();
    let v: Vec<f64> = scored.iter().map(|s| b(suite_correct(s))).collect();
    let ix = resample_indices(v.len(), opts.bootstrap_samples, opts.seed);
    let mut r = TestSuiteReport {
        accuracy: bootstrap_mean(&v, &ix),
        false_positives_caught: 0,
        instances: opts.suite.instances,
        seed: opts.suite.seed,
        instances_built: 0,
        candidates: 0,
        gold_errors: 0,
        gold_order_dependent: 0,
        neighbours: 0,
        neighbours_distinguished: 0,
        truncated: 0,
    };
    for s in &scored {
        let Some(t) = &s.test_suite else { continue };
        r.false_positives_caught += t.caught(s.exec.correct) as usize;
        r.instances_built += t.stats.instances;
        r.candidates += t.stats.candidates;
        r.gold_errors += t.stats.gold_errors;
        r.gold_order_dependent += t.stats.gold_order_dependent;
        r.neighbours += t.stats.neighbours;
        r.neighbours_distinguished += t.stats.distinguished;
        r.truncated += t.stats.truncated as usize;
    }
    Some(r)
}

/// Corpus metrics, CIs, buckets and breakdowns from per-example scores.
pub fn aggregate(items: &[ScoreItem], scores: &[ExampleScore], opts: &ScoreOptions) -> Report {
    let n = scores.len();
    let ix = resample_indices(n, opts.bootstrap_samples, opts.seed);
    let per = |f: &dyn Fn(&ExampleScore) -> f64| -> Vec<f64> { scores.iter().map(f).collect() };

    let hf_point = {
        let mut t = HfStats::default();
        scores.iter().for_each(|s| t.add(&s.hf));
        hf_from_stats(&t, false).bleu
    };
    let bleu = bootstrap_with(n, &ix, hf_point, |idx| {
        let mut t = HfStats::default();
        idx.iter().for_each(|&i| t.add(&scores[i as usize].hf));
        hf_from_stats(&t, false).bleu
    });
    let sb_point = {
        let mut t = SbStats::default();
        scores.iter().for_each(|s| t.add(&s.sb));
        sb_from_stats(&t).score
    };
    let sacrebleu = bootstrap_with(n, &ix, sb_point, |idx| {
        let mut t = SbStats::default();
        idx.iter().for_each(|&i| t.add(&scores[i as usize].sb));
        sb_from_stats(&t).score
    });

    // Execution accuracy over subsets, each with its own resamples (same seed).
    let subset_est = |keep: &dyn Fn(&ExampleScore) -> bool, val: &dyn Fn(&ExampleScore) -> f64| {
        let v: Vec<f64> = scores.iter().filter(|s| keep(s)).map(val).collect();
        let ix = resample_indices(v.len(), opts.bootstrap_samples, opts.seed);
        bootstrap_mean(&v, &ix)
    };
    let execution_accuracy = subset_est(&|s| s.exec.scored(), &|s| b(s.exec.correct));
    let execution_accuracy_nonempty =
        subset_est(&|s| s.exec.bucket == Bucket::GoldNonempty, &|s| {
            b(s.exec.correct)
        });
    let execution_accuracy_set = subset_est(&|s| s.exec.scored(), &|s| b(s.exec.set_match));

    let buckets = buckets_of(scores);
    let outcomes = outcomes_of(scores);
    let breakdowns = breakdowns_of(items, scores);
    Report {
        n,
        bleu,
        sacrebleu,
        rouge1: bootstrap_mean(&per(&|s| s.rouge1), &ix),
        rouge2: bootstrap_mean(&per(&|s| s.rouge2), &ix),
        rouge_l: bootstrap_mean(&per(&|s| s.rouge_l), &ix),
        exact_match: bootstrap_mean(&per(&|s| b(s.exact_match)), &ix),
        valid_sql: bootstrap_mean(&per(&|s| b(s.exec.valid_sql)), &ix),
        execution_accuracy,
        execution_accuracy_nonempty,
        execution_accuracy_set,
        test_suite: suite_report(scores, opts),
        buckets,
        outcomes,
        breakdowns,
        bootstrap_samples: opts.bootstrap_samples,
        seed: opts.seed,
    }
}

/// How many examples fall in each execution bucket, and how many of them are correct.
fn buckets_of(scores: &[ExampleScore]) -> Buckets {
    let mut buckets = Buckets::default();
    for s in scores {
        match s.exec.bucket {
            Bucket::Nondeterministic => buckets.nondeterministic += 1,
            Bucket::GoldFails => buckets.gold_fails += 1,
            Bucket::GoldEmpty => {
                buckets.gold_empty += 1;
                buckets.gold_empty_correct += s.exec.correct as usize;
            }
            Bucket::GoldNonempty => {
                buckets.gold_nonempty += 1;
                buckets.gold_nonempty_correct += s.exec.correct as usize;
            }
        }
    }
    buckets
}

/// How scored predictions fail (or pass), counted.
fn outcomes_of(scores: &[ExampleScore]) -> BTreeMap<Outcome, usize> {
    let mut outcomes = BTreeMap::new();
    for s in scores.iter().filter(|s| s.exec.scored()) {
        let o = Outcome::classify(
            s.exec.correct,
            s.exec.valid_sql,
            s.exec.pred_error.as_deref(),
        );
        *outcomes.entry(o).or_insert(0) += 1;
    }
    outcomes
}

/// Metrics per class of sql_complexity, sql_task_type and domain.
fn breakdowns_of(
    items: &[ScoreItem],
    scores: &[ExampleScore],
) -> BTreeMap<String, BTreeMap<String, GroupMetrics>> {
    let mut breakdowns = BTreeMap::new();
    type Getter = fn(&ScoreItem) -> &str;
    let fields: [(&str, Getter); 3] = [
        ("sql_complexity", |i| &i.sql_complexity),
        ("sql_task_type", |i| &i.sql_task_type),
        ("domain", |i| &i.domain),
    ];
    for (name, get) in fields {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, it) in items.iter().enumerate() {
            let k = get(it);
            if !k.is_empty() {
                groups.entry(k.to_string()).or_default().push(i);
            }
        }
        if groups.is_empty() {
            continue;
        }
        let table = groups
            .into_iter()
            .map(|(k, idx)| {
                let pick = |f: &dyn Fn(&ExampleScore) -> f64| -> f64 {
                    mean(&idx.iter().map(|&i| f(&scores[i])).collect::<Vec<_>>())
                };
                let scored: Vec<&ExampleScore> = idx
                    .iter()
                    .map(|&i| &scores[i])
                    .filter(|s| s.exec.scored())
                    .collect();
                let ex: Vec<f64> = scored.iter().map(|s| b(s.exec.correct)).collect();
                let ts: Vec<f64> = scored.iter().map(|s| b(suite_correct(s))).collect();
                let suite_on = scores.first().is_some_and(|s| s.test_suite.is_some());
                let g = GroupMetrics {
                    n: idx.len(),
                    exact_match: pick(&|s| b(s.exact_match)),
                    valid_sql: pick(&|s| b(s.exec.valid_sql)),
                    rouge_l: pick(&|s| s.rouge_l),
                    execution_accuracy: (!ex.is_empty()).then(|| mean(&ex)),
                    test_suite_accuracy: (suite_on && !ts.is_empty()).then(|| mean(&ts)),
                    n_exec: ex.len(),
                };
                (k, g)
            })
            .collect();
        breakdowns.insert(name.to_string(), table);
    }
    breakdowns
}
