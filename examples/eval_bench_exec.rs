//! Execution-accuracy scoring throughput on generated near-miss rows (bench/eval_exec.sh):
//! `cargo run --release --example eval_bench_exec -- N SEED VERDICTS_OUT PREDS_OUT`.
//! Writes the generated rows as JSONL (for the Python peer) and one 0/1/- verdict per line.

use std::io::Write;
use std::time::Instant;

use t2s::eval::exec::{execution_match_many, ExecItem};
use t2s::eval::nearmiss;
use t2s::eval::sandbox::Limits;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = a.first().and_then(|s| s.parse().ok()).unwrap_or(5851);
    let seed: u64 = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let items = nearmiss::generate(n, seed);
    if let Some(p) = a.get(3) {
        let mut w = std::io::BufWriter::new(std::fs::File::create(p)?);
        for it in &items {
            let line = serde_json::json!({"id": it.id, "sql_context": it.context, "sql": it.gold, "prediction": it.pred});
            writeln!(w, "{line}")?;
        }
    }
    let ex: Vec<ExecItem> = items
        .iter()
        .map(|it| ExecItem {
            context: &it.context,
            gold: &it.gold,
            pred: &it.pred,
        })
        .collect();
    let limits = Limits::default();
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let res = execution_match_many(&ex, &limits);
    let par = t.elapsed().as_secs_f64();
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let t = Instant::now();
    let res1 = single.install(|| execution_match_many(&ex, &limits));
    let one = t.elapsed().as_secs_f64();
    assert!(res
        .iter()
        .zip(&res1)
        .all(|(a, b)| a.correct == b.correct && a.bucket == b.bucket));
    if let Some(p) = a.get(2) {
        let mut w = std::io::BufWriter::new(std::fs::File::create(p)?);
        for r in &res {
            writeln!(
                w,
                "{}",
                if !r.scored() {
                    "-"
                } else if r.correct {
                    "1"
                } else {
                    "0"
                }
            )?;
        }
    }
    let scored = res.iter().filter(|r| r.scored()).count();
    let correct = res.iter().filter(|r| r.correct).count();
    println!(
        "{}",
        serde_json::json!({"rows": n, "threads": threads, "seconds_parallel": par,
            "rows_per_s_parallel": n as f64 / par, "seconds_1thread": one,
            "rows_per_s_1thread": n as f64 / one, "scored": scored,
            "execution_accuracy": correct as f64 / scored.max(1) as f64})
    );
    Ok(())
}
