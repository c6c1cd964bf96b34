//! Test-suite execution accuracy: the acceptance set (`tests/fixtures/testsuite_pairs.jsonl`,
//! written and checked by `testsuite_pairs.py`), determinism, and golds that error or depend
//! on the order rows are stored in.

use t2s::eval::exec::execution_match;
use t2s::eval::nearmiss;
use t2s::eval::sandbox::Limits;
use t2s::eval::score::{score_all, ScoreItem, ScoreOptions};
use t2s::eval::testsuite::{verdict, Suite, SuiteConfig, SuiteVerdict};

struct Pair {
    expect: String,
    why: String,
    context: String,
    gold: String,
    pred: String,
}

fn pairs() -> Vec<Pair> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/testsuite_pairs.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            Pair {
                expect: s("expect"),
                why: s("why"),
                context: s("sql_context"),
                gold: s("gold"),
                pred: s("prediction"),
            }
        })
        .collect()
}

fn judge(p: &Pair, cfg: &SuiteConfig) -> (Suite, SuiteVerdict) {
    let limits = Limits::default();
    let ex = execution_match(&p.context, &p.gold, &p.pred, &limits);
    assert!(
        ex.scored() && ex.correct,
        "every pair is execution-correct on its own rows ({}): {ex:?}",
        p.why
    );
    let suite = Suite::build(&p.context, &p.gold, cfg, &limits);
    let v = verdict(&suite, &p.context, &p.pred, true, &limits, cfg);
    (suite, v)
}

/// Acceptance 1: wrong predictions that pass on the original rows are caught (at least 90%),
/// equivalent rewrites all pass.
#[test]
fn the_suite_catches_false_positives_and_keeps_rewrites() {
    let all = pairs();
    assert!(all.len() >= 40, "{} pairs", all.len());
    let cfg = SuiteConfig::default();
    let (mut wrong, mut caught, mut missed, mut rejected) = (0, 0, Vec::new(), Vec::new());
    for p in &all {
        let (suite, v) = judge(p, &cfg);
        assert!(
            suite.stats.instances > 0,
            "{}: no instance built: {:?}",
            p.why,
            suite.stats
        );
        match p.expect.as_str() {
            "wrong" => {
                wrong += 1;
                if v.correct {
                    missed.push(p.why.clone());
                } else {
                    caught += 1;
                }
            }
            "equivalent" => {
                if !v.correct {
                    rejected.push(format!("{}: {v:?}", p.why));
                }
            }
            other => panic!("unknown expectation {other}"),
        }
    }
    eprintln!(
        "caught {caught} of {wrong} wrong predictions; {} of {} rewrites kept; missed: {missed:?}",
        all.len() - wrong - rejected.len(),
        all.len() - wrong
    );
    assert!(wrong >= 20 && all.len() - wrong >= 20);
    assert!(
        caught * 10 >= wrong * 9,
        "caught {caught} of {wrong}; missed: {missed:?}"
    );
    assert!(
        rejected.is_empty(),
        "equivalent rewrites marked wrong: {rejected:#?}"
    );
}

/// Acceptance 2: the same seed gives the same instances and scores; another seed other
/// instances.
#[test]
fn the_same_seed_gives_the_same_suites_and_scores() {
    let cfg = SuiteConfig::default();
    let other = SuiteConfig {
        seed: 7,
        ..SuiteConfig::default()
    };
    let mut differ = 0;
    for p in pairs().iter().take(12) {
        let (a, va) = judge(p, &cfg);
        let (b, vb) = judge(p, &cfg);
        let (c, _) = judge(p, &other);
        let inst = |s: &Suite| s.instances().cloned().collect::<Vec<_>>();
        assert_eq!(inst(&a), inst(&b), "{}", p.why);
        assert_eq!(a.stats, b.stats);
        assert_eq!(
            serde_json::to_value(&va).unwrap(),
            serde_json::to_value(&vb).unwrap()
        );
        differ += (inst(&a) != inst(&c)) as usize;
    }
    assert!(differ >= 10, "{differ}");
    let items = nearmiss::generate(60, 3);
    let opts = ScoreOptions {
        bootstrap_samples: 50,
        ..ScoreOptions::default()
    };
    let (s1, r1) = score_all(&items, &opts);
    let (s2, r2) = score_all(&items, &opts);
    assert_eq!(
        serde_json::to_value(&s1).unwrap(),
        serde_json::to_value(&s2).unwrap()
    );
    assert_eq!(
        serde_json::to_value(&r1).unwrap(),
        serde_json::to_value(&r2).unwrap()
    );
    let ts = r1.test_suite.expect("the suite is on by default");
    assert!(ts.accuracy.value <= r1.execution_accuracy.value);
    assert!(ts.instances_built > 0 && ts.neighbours_distinguished <= ts.neighbours);
}

const CTX: &str = "CREATE TABLE forests (forest_id INT, name VARCHAR(50), region VARCHAR(50), \
     area INT); INSERT INTO forests (forest_id, name, region, area) VALUES (1, 'Green Valley', \
     'North', 1200), (2, 'Pine Ridge', 'North', 800), (3, 'Oak Hollow', 'South', 3000);";

/// A gold whose result depends on storage order has those instances dropped and counted; a
/// gold over a row limit on bigger instances has them dropped and counted. No panic, and the
/// prediction is judged on what is left.
#[test]
fn order_dependent_and_failing_golds_are_counted() {
    let cfg = SuiteConfig::default();
    let gold = "SELECT name FROM forests LIMIT 1;";
    let suite = Suite::build(CTX, gold, &cfg, &Limits::default());
    assert!(suite.stats.gold_order_dependent > 0, "{:?}", suite.stats);
    let limits = Limits {
        max_rows: 30,
        ..Limits::default()
    };
    let cross = "SELECT a.name, b.name, c.name FROM forests a, forests b, forests c;";
    let suite = Suite::build(CTX, cross, &cfg, &limits);
    assert!(suite.stats.gold_errors > 0, "{:?}", suite.stats);
    let v = verdict(&suite, CTX, cross, true, &limits, &cfg);
    assert!(v.correct, "{v:?}");
    // A gold that names a clock gets no suite: test-suite accuracy is execution accuracy there.
    let now = Suite::build(CTX, "SELECT date('now');", &cfg, &Limits::default());
    assert_eq!(now.stats.instances, 0);
}

/// The budget bounds building and checking: a spent budget cuts the suite short and fails the
/// prediction's check rather than running on. It counts SQLite instructions, not time, so a
/// suite cut short is cut at the same place on every machine and under any load.
#[test]
fn the_budget_bounds_building_and_checking_the_same_way_every_time() {
    let with_budget = |max_instructions: u64| SuiteConfig {
        max_instructions,
        ..SuiteConfig::default()
    };
    let gold = "SELECT name FROM forests WHERE area > 1000;";
    let suite = Suite::build(CTX, gold, &with_budget(0), &Limits::default());
    assert!(
        suite.stats.truncated || suite.stats.instances == 0,
        "{:?}",
        suite.stats
    );
    let full = Suite::build(CTX, gold, &SuiteConfig::default(), &Limits::default());
    assert!(full.stats.instances > 1, "{:?}", full.stats);
    // A budget that ends partway: the same cut, twice.
    let part = with_budget(1_000);
    let (a, b) = (
        Suite::build(CTX, gold, &part, &Limits::default()),
        Suite::build(CTX, gold, &part, &Limits::default()),
    );
    assert!(a.stats.truncated, "{:?}", a.stats);
    assert!(a.stats.instances < full.stats.instances, "{:?}", a.stats);
    assert_eq!(a.stats, b.stats);
    assert_eq!(
        a.instances().cloned().collect::<Vec<_>>(),
        b.instances().cloned().collect::<Vec<_>>()
    );
    let rewrite = "SELECT name FROM forests WHERE 1000 < area;";
    let v = verdict(
        &full,
        CTX,
        rewrite,
        true,
        &Limits::default(),
        &with_budget(0),
    );
    assert!(
        !v.correct && v.error.as_deref().unwrap_or("").contains("budget"),
        "{v:?}"
    );
}

/// Writes are compared by table state on every instance, and each instance is left as it was
/// (the gold's write is rolled back before the next statement).
#[test]
fn writes_are_compared_by_table_state_on_each_instance() {
    let cfg = SuiteConfig::default();
    let limits = Limits::default();
    let gold = "UPDATE forests SET area = area + 10 WHERE region = 'South';";
    let suite = Suite::build(CTX, gold, &cfg, &limits);
    assert!(suite.stats.instances > 0);
    let ok = verdict(
        &suite,
        CTX,
        "UPDATE forests SET area = 10 + area WHERE 'South' = region;",
        true,
        &limits,
        &cfg,
    );
    assert!(ok.correct, "{ok:?}");
    let by_id = verdict(
        &suite,
        CTX,
        "UPDATE forests SET area = area + 10 WHERE forest_id = 3;",
        true,
        &limits,
        &cfg,
    );
    assert!(
        !by_id.correct && by_id.failed_instance.is_some(),
        "{by_id:?}"
    );
    let item = ScoreItem {
        id: "1".into(),
        context: CTX.into(),
        gold: gold.into(),
        pred: "UPDATE forests SET area = area + 10 WHERE forest_id = 3;".into(),
        ..Default::default()
    };
    let (scores, report) = score_all(&[item], &ScoreOptions::default());
    assert!(scores[0].exec.correct);
    assert_eq!(report.test_suite.unwrap().false_positives_caught, 1);
}
