//! Helper binary for bench/preprocess.sh and for looking at the data by hand.
//!
//! ```text
//! preprocess_bench gen <rows> <out.jsonl> [seed]        built-in rows as gretel JSONL
//! preprocess_bench tokenizer <rows.jsonl> <out.json> [vocab]   train the BPE tokenizer
//! preprocess_bench preprocess <rows.jsonl> <tokenizer.json> <out_dir> [max_length]
//!                                                       timed: read + tokenize + write
//! preprocess_bench eda <rows.jsonl> <tokenizer.json> <out_dir>
//! ```

use std::path::Path;
use std::time::Instant;

use t2s::data::examples::write_stored;
use t2s::data::load::{load, LoadParams};
use t2s::data::preprocess::{preprocess, Mode, Params, Truncation};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        "gen" => {
            let n: usize = arg(2).parse()?;
            let seed: u64 = arg(4).parse().unwrap_or(42);
            let rows = t2s::data::builtin::generate(seed, n);
            let mut out = std::io::BufWriter::new(std::fs::File::create(arg(3))?);
            for r in rows {
                serde_json::to_writer(&mut out, &r)?;
                std::io::Write::write_all(&mut out, b"\n")?;
            }
        }
        "tokenizer" => {
            let rows = t2s::data::load::load(&LoadParams::new(arg(2)))?.rows;
            let rows: Vec<_> = rows.into_iter().map(|r| r.row).collect();
            let vocab: usize = arg(4).parse().unwrap_or(2048);
            let tk = t2s::data::tokenizer::train_bpe(&rows, vocab, 2)?;
            tk.save(arg(3), false).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        "preprocess" => {
            let t0 = Instant::now();
            let tk = t2s::data::tokenizer::load(Path::new(arg(3)))?;
            let mut lp = LoadParams::new(arg(2));
            lp.max_bad_fraction = 1.0;
            let rows = load(&lp)?.rows;
            let t_load = t0.elapsed().as_secs_f64();
            let p = Params {
                mode: Mode::Chat,
                max_length: arg(5).parse().unwrap_or(4096),
                truncation: Truncation::Drop,
            };
            let (ex, rep) = preprocess(&tk, rows, &p)?;
            write_stored(Path::new(arg(4)), &ex)?;
            let total = t0.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"system": "t2s preprocess", "rows": rep.kept, "tokens": rep.tokens,
                    "load_s": t_load, "total_s": total, "rows_per_s": rep.kept as f64 / total,
                    "threads": rayon::current_num_threads()})
            );
        }
        "eda" => {
            let rows = load(&LoadParams::new(arg(2)))?.rows;
            let tk = t2s::data::tokenizer::load(Path::new(arg(3)))?;
            let (stats, series) = t2s::data::eda::compute(&rows, Some(&tk))?;
            let files = t2s::data::plots::render(Path::new(arg(4)), &stats, &series)?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            for f in files {
                println!("{}", f.display());
            }
        }
        _ => anyhow::bail!("usage: see the module comment of examples/preprocess_bench.rs"),
    }
    Ok(())
}
