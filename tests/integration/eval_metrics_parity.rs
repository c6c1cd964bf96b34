//! Metric parity against the Python references (sacrebleu, rouge_score, and HF `evaluate`
//! bleu's nmt_bleu port in scripts/oracles/metrics_ref.py) on generated SQL near-misses.
//! Requires `$PYTHON` (scripts/env.sh) with sacrebleu and rouge-score installed.

use std::io::Write;
use std::process::Command;

use t2s::eval::bleu::{hf_bleu, sacrebleu};
use t2s::eval::nearmiss;
use t2s::eval::rouge::{corpus_rouge, rouge_f};

const TOL: f64 = 1e-6;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Generated near-misses plus hand-picked tokenizer and edge cases.
fn pairs() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = nearmiss::generate(320, 20240521)
        .into_iter()
        .map(|it| (it.pred, it.gold))
        .collect();
    let extra = [
        ("", "SELECT 1;"),
        (
            "SELECT name FROM t WHERE a &amp; b",
            "SELECT name FROM t WHERE a & b",
        ),
        (
            "SELECT x FROM t WHERE d > '2020-01-01'",
            "SELECT x FROM t WHERE d >= '2020-01-01'",
        ),
        (
            "select  AVG(price) \n FROM products;",
            "SELECT AVG(price) FROM products;",
        ),
        (
            "SELECT 1,000 , 3.14, -5, 7-2 FROM t",
            "SELECT 1,000, 3.14, -5, 7 - 2 FROM t",
        ),
        (
            "SELECT café, naïve FROM résumé",
            "SELECT cafe, naive FROM resume",
        ),
        ("SELECT a FROM t -\nWHERE b", "SELECT a FROM t WHERE b"),
        (
            "SELECT a FROM t <skipped> WHERE b",
            "SELECT a FROM t WHERE b",
        ),
        (
            "SELECT {a}, [b], `c`, ~d, a|b, a^b FROM t",
            "SELECT a, b, c FROM t",
        ),
        (";", "SELECT COUNT(*) FROM t;"),
        ("SELECT a.b.c,d.e FROM t.u", "SELECT a.b.c, d.e FROM t.u"),
        (
            "SELECT * FROM t WHERE name = 'O''Brien';",
            "SELECT * FROM t WHERE name = 'O''Brien';",
        ),
        ("SELECT\tname\u{a0}FROM t\u{1c}", "SELECT name FROM t"),
        ("   ", "SELECT 2"),
        (
            "SELECT a&b, x||y, a<>b, a!=b FROM t",
            "SELECT a & b, x || y FROM t WHERE a<>b",
        ),
        (
            "SELECT * FROM t WHERE n LIKE '%ab%' AND c='50%'",
            "SELECT * FROM t WHERE n LIKE '%ab%'",
        ),
        (
            "SELECT @v, #tmp, $1, a\\b, \"Q\" FROM t",
            "SELECT @v, #tmp, $1 FROM t",
        ),
        (
            "SELECT 1.5e-3, -2.0, 3., .5, 10-4 FROM t;",
            "SELECT 1.5e-3, -2.0, 3.0, 0.5 FROM t;",
        ),
        (
            "SELECT x FROM t WHERE d BETWEEN '2020-01-01' AND '2020-12-31'",
            "SELECT x FROM t WHERE d >= '2020-01-01'",
        ),
    ];
    v.extend(extra.iter().map(|(p, r)| (p.to_string(), r.to_string())));
    v
}

#[test]
fn metrics_match_python_references() {
    let pairs = pairs();
    assert!(pairs.len() >= 200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for (p, r) in &pairs {
        writeln!(f, "{}", serde_json::json!({"pred": p, "ref": r})).unwrap();
    }
    drop(f);
    // The last slices hold only hand-picked pairs: zero higher-order matches (exp smoothing,
    // HF zero precision) and a lone empty prediction.
    let slices = [
        "::", ":100:", "100::", "::3", "5:40:7", "320::", "329:330:", "320:322:",
    ];
    let out = Command::new(python())
        .arg("scripts/oracles/metrics_ref.py")
        .arg(&path)
        .args(slices)
        .output()
        .expect("run the Python oracle (source scripts/env.sh)");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for (sl, r) in slices.iter().zip(refs.as_array().unwrap()) {
        let parts: Vec<Option<usize>> = sl.split(':').map(|x| x.parse().ok()).collect();
        let (a, b, step) = (
            parts[0].unwrap_or(0),
            parts[1].unwrap_or(pairs.len()),
            parts[2].unwrap_or(1),
        );
        let part: Vec<&(String, String)> = pairs[a..b].iter().step_by(step).collect();
        let preds: Vec<&str> = part.iter().map(|p| p.0.as_str()).collect();
        let golds: Vec<&str> = part.iter().map(|p| p.1.as_str()).collect();
        let refl: Vec<Vec<&str>> = golds.iter().map(|g| vec![*g]).collect();
        assert_eq!(r["n"].as_u64().unwrap() as usize, part.len());

        let hf = hf_bleu(&preds, &refl, 4, false).bleu;
        let want = r["hf_bleu"].as_f64().unwrap();
        assert!(
            (hf - want).abs() < TOL,
            "slice {sl}: hf bleu {hf} vs {want}"
        );
        let hfs = hf_bleu(&preds, &refl, 4, true).bleu;
        let want = r["hf_bleu_smooth"].as_f64().unwrap();
        assert!(
            (hfs - want).abs() < TOL,
            "slice {sl}: hf smooth bleu {hfs} vs {want}"
        );
        let sb = sacrebleu(&preds, &refl).score;
        let want = r["sacrebleu"].as_f64().unwrap();
        assert!(
            (sb - want).abs() < TOL,
            "slice {sl}: sacrebleu {sb} vs {want}"
        );

        for (i, row) in r["rouge"].as_array().unwrap().iter().enumerate() {
            let f = rouge_f(golds[i], preds[i]);
            let w: Vec<f64> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            for (got, want, name) in [
                (f.rouge1, w[0], "rouge1"),
                (f.rouge2, w[1], "rouge2"),
                (f.rouge_l, w[2], "rougeL"),
            ] {
                assert!(
                    (got - want).abs() < TOL,
                    "slice {sl} example {i} {name}: {got} vs {want}\n pred={:?}\n gold={:?}",
                    preds[i],
                    golds[i]
                );
            }
            checked += 1;
        }
        let m = corpus_rouge(&preds, &golds);
        let w = &r["rouge_mean"];
        assert!((m.rouge1 - w[0].as_f64().unwrap()).abs() < TOL);
        assert!((m.rouge2 - w[1].as_f64().unwrap()).abs() < TOL);
        assert!((m.rouge_l - w[2].as_f64().unwrap()).abs() < TOL);
    }
    assert!(checked >= 200);
}

#[test]
fn near_misses_are_varied() {
    // The parity set must exercise more than exact copies: most predictions differ from gold.
    let pairs = pairs();
    let differing = pairs.iter().filter(|(p, r)| p != r).count();
    assert!(
        differing * 2 > pairs.len(),
        "{differing} of {}",
        pairs.len()
    );
    assert!(pairs.iter().any(|(p, _)| p.is_empty()));
}
