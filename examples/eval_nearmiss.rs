//! Write generated gretel-like near-miss predictions as a `t2s evaluate` input file:
//! `cargo run --example eval_nearmiss -- N SEED > preds.jsonl` (used by bench/eval_exec.sh).

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5851);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    for it in t2s::eval::nearmiss::generate(n, seed) {
        let line = serde_json::json!({
            "id": it.id, "sql_context": it.context, "sql": it.gold, "prediction": it.pred,
            "sql_complexity": it.sql_complexity, "sql_task_type": it.sql_task_type,
            "domain": it.domain,
        });
        println!("{line}");
    }
}
