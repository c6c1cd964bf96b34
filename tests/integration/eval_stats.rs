//! Bootstrap CIs and paired tests, checked against a Python replay of the same resamples
//! (scripts/oracles/bootstrap_ref.py) and against analytic cases.

use std::process::Command;

use t2s::eval::nearmiss;
use t2s::eval::score::{aggregate, score_all, ScoreOptions};
use t2s::eval::stats::{
    bootstrap_mean, mcnemar_exact, paired_compare, ranking_warning, resample_indices,
};

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: rust {a} vs python {b}");
}

#[test]
fn bootstrap_and_paired_tests_match_python_replay() {
    let items = nearmiss::generate(240, 99);
    let opts = ScoreOptions {
        bootstrap_samples: 200,
        seed: 17,
        ..ScoreOptions::default()
    };
    let (scores, report) = score_all(&items, &opts);
    // System A: per-example EM; system B: per-example "valid SQL" (paired, binary).
    let a: Vec<f64> = scores.iter().map(|s| s.exact_match as u8 as f64).collect();
    let b: Vec<f64> = scores
        .iter()
        .map(|s| s.exec.valid_sql as u8 as f64)
        .collect();
    let ix = resample_indices(a.len(), 200, 17);
    let est = bootstrap_mean(&a, &ix);
    let pc = paired_compare(&a, &b, &ix);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.json");
    let preds: Vec<&str> = items.iter().map(|i| i.pred.as_str()).collect();
    let refs: Vec<&str> = items.iter().map(|i| i.gold.as_str()).collect();
    std::fs::write(
        &path,
        serde_json::json!({"indices": ix, "a": a, "b": b, "preds": preds, "refs": refs})
            .to_string(),
    )
    .unwrap();
    let out = Command::new(python())
        .arg("scripts/oracles/bootstrap_ref.py")
        .arg(&path)
        .output()
        .expect("run the Python oracle (source scripts/env.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |k: &str| r[k].as_f64().unwrap();
    let f2 = |k: &str, i: usize| r[k][i].as_f64().unwrap();

    close(est.value, f("mean"), "mean");
    close(est.ci_low, f2("mean_ci", 0), "mean ci low");
    close(est.ci_high, f2("mean_ci", 1), "mean ci high");
    assert!(est.ci_low < est.value && est.value < est.ci_high);
    close(pc.diff, f("diff"), "diff");
    close(pc.diff_ci_low, f2("diff_ci", 0), "diff ci low");
    close(pc.diff_ci_high, f2("diff_ci", 1), "diff ci high");
    close(pc.bootstrap_p, f("bootstrap_p"), "bootstrap p");
    assert_eq!(pc.only_a, r["only_a"].as_u64().unwrap());
    assert_eq!(pc.only_b, r["only_b"].as_u64().unwrap());
    close(pc.mcnemar_p, f("mcnemar_p"), "mcnemar p");
    // The report's sacrebleu CI uses the same resamples (n, samples, seed).
    close(report.sacrebleu.value, f("sacrebleu"), "sacrebleu");
    assert!((report.sacrebleu.ci_low - f2("sacrebleu_ci", 0)).abs() < 1e-6);
    assert!((report.sacrebleu.ci_high - f2("sacrebleu_ci", 1)).abs() < 1e-6);
    // And the exact-match estimate in the report is the same bootstrap.
    assert_eq!(report.exact_match, est);
}

#[test]
fn analytic_cases() {
    // All ones / all zeros: degenerate intervals.
    let ix = resample_indices(30, 100, 3);
    let ones = bootstrap_mean(&[1.0; 30], &ix);
    assert_eq!((ones.ci_low, ones.ci_high), (1.0, 1.0));
    let zeros = bootstrap_mean(&[0.0; 30], &ix);
    assert_eq!((zeros.ci_low, zeros.ci_high), (0.0, 0.0));
    // McNemar on known 2x2 tables: b=2, c=10 -> 2*(1+12+66)/4096 = 158/4096.
    assert!((mcnemar_exact(2, 10) - 158.0 / 4096.0).abs() < 1e-15);
    assert!((mcnemar_exact(10, 2) - 158.0 / 4096.0).abs() < 1e-15);
    // Large discordant counts stay finite and tiny.
    let p = mcnemar_exact(100, 300);
    assert!(p > 0.0 && p < 1e-20);
    // Identical systems: no difference, p = 1, and a ranking warning.
    let v: Vec<f64> = (0..40).map(|i| (i % 3 == 0) as u8 as f64).collect();
    let pc = paired_compare(&v, &v, &ix_for(40));
    assert_eq!((pc.diff, pc.mcnemar_p, pc.bootstrap_p), (0.0, 1.0, 1.0));
    let e = bootstrap_mean(&v, &ix_for(40));
    assert!(ranking_warning("a", &e, "b", &e, &pc).is_some());
    // A clearly better system: no warning.
    let good = vec![1.0; 200];
    let bad: Vec<f64> = (0..200).map(|i| (i % 5 == 0) as u8 as f64).collect();
    let ix = ix_for(200);
    let pc = paired_compare(&good, &bad, &ix);
    assert!(pc.mcnemar_p < 1e-10);
    let (eg, eb) = (bootstrap_mean(&good, &ix), bootstrap_mean(&bad, &ix));
    assert!(ranking_warning("good", &eg, "bad", &eb, &pc).is_none());
}

fn ix_for(n: usize) -> Vec<Vec<u32>> {
    resample_indices(n, 300, 11)
}

#[test]
fn report_is_deterministic_for_a_seed() {
    let items = nearmiss::generate(60, 5);
    let opts = ScoreOptions {
        bootstrap_samples: 100,
        seed: 3,
        ..ScoreOptions::default()
    };
    let (s1, r1) = score_all(&items, &opts);
    let r2 = aggregate(&items, &s1, &opts);
    assert_eq!(
        serde_json::to_string(&r1).unwrap(),
        serde_json::to_string(&r2).unwrap()
    );
    assert!(r1.breakdowns.contains_key("sql_complexity"));
}
