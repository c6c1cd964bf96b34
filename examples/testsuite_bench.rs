//! Cost of test-suite execution accuracy against plain execution accuracy on the same
//! predictions, in the same run (bench/testsuite.sh):
//! `cargo run --release --example testsuite_bench -- N INSTANCES SEED [MAX_NEIGHBOURS]`.
//! Golds are the built-in generator's rows, predictions seeded near-misses of them
//! (`eval::nearmiss::mutate`). Prints one JSON object with both timings and their ratio.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use t2s::data::builtin;
use t2s::eval::exec::{execution_match, execution_match_many, ExecItem};
use t2s::eval::nearmiss;
use t2s::eval::sandbox::Limits;
use t2s::eval::testsuite::{build_many, verdict, SuiteConfig, SuiteItem};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = a.first().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let instances: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    let seed: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let rows = builtin::generate(seed, n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let preds: Vec<String> = rows
        .iter()
        .map(|r| nearmiss::mutate(&mut rng, &r.sql))
        .collect();
    let items: Vec<ExecItem> = rows
        .iter()
        .zip(&preds)
        .map(|(r, p)| ExecItem {
            context: &r.sql_context,
            gold: &r.sql,
            pred: p,
        })
        .collect();
    let limits = Limits::default();
    let mut cfg = SuiteConfig {
        instances,
        seed,
        ..SuiteConfig::default()
    };
    if let Some(m) = a.get(3).and_then(|s| s.parse().ok()) {
        cfg.max_neighbours = m;
    }

    // Plain execution accuracy, timed before and after the suite (the machine is shared).
    let t = Instant::now();
    let plain = execution_match_many(&items, &limits);
    let plain_s1 = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let pairs: Vec<SuiteItem> = items
        .iter()
        .map(|it| SuiteItem {
            context: it.context,
            gold: it.gold,
        })
        .collect();
    let suites = build_many(&pairs, &cfg, &limits);
    let build_s = t.elapsed().as_secs_f64();
    let verdicts: Vec<_> = items
        .par_iter()
        .zip(&suites)
        .map(|(it, s)| {
            let ex = execution_match(it.context, it.gold, it.pred, &limits);
            let v = verdict(
                s,
                it.context,
                it.pred,
                ex.scored() && ex.correct,
                &limits,
                &cfg,
            );
            (ex, v)
        })
        .collect();
    let suite_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let _ = execution_match_many(&items, &limits);
    let plain_s2 = t.elapsed().as_secs_f64();
    let plain_s = (plain_s1 + plain_s2) / 2.0;

    let scored = plain.iter().filter(|r| r.scored()).count().max(1) as f64;
    let ex = plain.iter().filter(|r| r.scored() && r.correct).count() as f64;
    let ts = verdicts.iter().filter(|(_, v)| v.correct).count() as f64;
    let caught = verdicts
        .iter()
        .filter(|(e, v)| v.caught(e.scored() && e.correct))
        .count();
    let sum = |f: &dyn Fn(&t2s::eval::testsuite::SuiteStats) -> usize| -> usize {
        suites.iter().map(|s| f(&s.stats)).sum()
    };
    println!(
        "{}",
        serde_json::json!({
            "predictions": n, "instances": instances, "threads": rayon::current_num_threads(),
            "plain_exec_s": plain_s, "plain_exec_s_runs": [plain_s1, plain_s2],
            "test_suite_s": suite_s, "suite_build_s": build_s, "ratio": suite_s / plain_s,
            "execution_accuracy": ex / scored, "test_suite_accuracy": ts / scored,
            "false_positives_caught": caught,
            "instances_built": sum(&|s| s.instances), "candidates": sum(&|s| s.candidates),
            "neighbours": sum(&|s| s.neighbours), "distinguished": sum(&|s| s.distinguished),
            "truncated": sum(&|s| s.truncated as usize),
        })
    );
    Ok(())
}
