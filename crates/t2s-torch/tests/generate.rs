//! Generation: greedy tokens identical to transformers' `generate(do_sample=False)` with
//! prompts longer than the sliding window; left-padded batches equal each prompt alone;
//! seeded sampling is reproducible; stop tokens end rows. Every decoder (dynamic shapes,
//! fixed shapes, and on CUDA the fixed-shape step replayed as a CUDA graph) must give the
//! same tokens.

mod common;

use common::*;
use t2s_torch::generate::{generate, generate_report, Decoder, GenOptions, Sampling};
use tch::Device;

fn opts(max_new: i64, stop: Vec<i64>) -> GenOptions {
    GenOptions {
        max_new_tokens: max_new,
        stop_ids: stop,
        pad_id: 0,
        sampling: Sampling::greedy(),
        decoder: Decoder::Dynamic,
    }
}

/// Seeded sampling through both warpers: temperature 1, top-k 20, top-p 0.9.
fn top_k_top_p() -> Sampling {
    Sampling {
        greedy: false,
        temperature: 1.0,
        top_k: 20,
        top_p: 0.9,
    }
}

/// The decoders a model on `device` runs: the graph one only where CUDA graphs can be captured.
fn decoders(device: Device) -> Vec<Decoder> {
    let mut d = vec![Decoder::Dynamic, Decoder::Static];
    if Decoder::Graph.resolve(device).is_ok() {
        d.push(Decoder::Graph);
    }
    d
}

/// A tiny random model (fp32) on the device the tests run on (`T2S_TEST_DEVICE`).
fn model_on_test_device(kv: i64, seed: i64) -> t2s_torch::Gemma3 {
    random_model_on(kv, seed, tch::Kind::Float, test_device())
}

fn with(decoder: Decoder, o: GenOptions) -> GenOptions {
    GenOptions { decoder, ..o }
}

#[derive(serde::Deserialize)]
struct HfGen {
    prompts: Vec<Vec<i64>>,
    alone: Vec<Vec<i64>>,
    batch: Vec<Vec<i64>>,
}

fn hf(py: &str, dir: &std::path::Path, eos: &str, name: &str) -> HfGen {
    let out = dir.join(name);
    run_py(
        py,
        "hf_generate.py",
        &[
            "--model",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--lengths",
            "20,13,30",
            "--max-new",
            "64",
            "--eos",
            eos,
        ],
    );
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn greedy_64_tokens_match_transformers_past_the_window() {
    let Some(py) = python() else { return };
    for kv in [1, 2] {
        let dir = tiny_model(&py, kv, false);
        let model = load(&dir);
        assert!(model.cfg.sliding_window < 13);
        let r = hf(&py, &dir, "", "gen-nostop.json");
        let alone: Vec<Vec<i64>> = r
            .prompts
            .iter()
            .map(|p| {
                generate(&model, std::slice::from_ref(p), &opts(64, vec![]))
                    .unwrap()
                    .remove(0)
                    .tokens
            })
            .collect();
        for decoder in decoders(model.device) {
            let report =
                generate_report(&model, &r.prompts, &with(decoder, opts(64, vec![]))).unwrap();
            assert_eq!(report.decoder, decoder, "{:?}", report.graph_fallback);
            let batch: Vec<Vec<i64>> = report.rows.into_iter().map(|g| g.tokens).collect();
            for i in 0..r.prompts.len() {
                assert_eq!(alone[i].len(), 64);
                assert_eq!(alone[i], r.alone[i], "kv={kv} prompt {i} alone vs HF");
                assert_eq!(
                    batch[i], r.batch[i],
                    "kv={kv} {decoder:?} prompt {i} batched vs HF batched"
                );
                assert_eq!(
                    batch[i], alone[i],
                    "kv={kv} {decoder:?} prompt {i}: left-padded batch vs alone"
                );
            }
        }
        if kv == 2 {
            continue; // the stop-id variant once is enough (Python runs are slow on 2 cores)
        }
        // With stop ids, rows end at <eos>/<end_of_turn> exactly where HF stops.
        let r = hf(&py, &dir, "1,106", "gen-stop.json");
        for decoder in decoders(model.device) {
            let got = generate(&model, &r.prompts, &with(decoder, opts(64, vec![1, 106]))).unwrap();
            for (i, g) in got.iter().enumerate() {
                assert_eq!(
                    g.tokens, r.batch[i],
                    "kv={kv} {decoder:?} prompt {i} with stop ids"
                );
                assert_eq!(
                    g.stopped,
                    g.tokens.last().is_some_and(|t| *t == 1 || *t == 106)
                );
            }
        }
    }
}

#[test]
fn left_padded_batch_equals_each_prompt_alone() {
    // Rust-only: window 4, prompts of 3..17 tokens, 24 new tokens.
    let model = model_on_test_device(2, 11);
    let prompts: Vec<Vec<i64>> = [17usize, 3, 9, 5]
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|j| 3 + ((j * 7 + k * 13) % 90) as i64).collect())
        .collect();
    for decoder in decoders(model.device) {
        let batch = generate(&model, &prompts, &with(decoder, opts(24, vec![]))).unwrap();
        for (p, b) in prompts.iter().zip(&batch) {
            let one = generate(&model, std::slice::from_ref(p), &opts(24, vec![])).unwrap();
            assert_eq!(one[0].tokens, b.tokens, "{decoder:?}");
        }
    }
}

#[test]
fn finished_rows_are_dropped_without_disturbing_the_others() {
    let model = model_on_test_device(1, 12);
    let prompts: Vec<Vec<i64>> = vec![(3..15).collect(), (20..26).collect(), (40..49).collect()];
    let free = generate(&model, &prompts, &opts(20, vec![])).unwrap();
    // Stop on the 3rd token row 1 emits: row 1 ends there, the others continue unchanged
    // (unless they emit that token too, where they stop as well).
    let stop = free[1].tokens[2];
    for decoder in decoders(model.device) {
        let got = generate(&model, &prompts, &with(decoder, opts(20, vec![stop]))).unwrap();
        for (f, g) in free.iter().zip(&got) {
            let cut = f
                .tokens
                .iter()
                .position(|&t| t == stop)
                .map_or(f.tokens.len(), |i| i + 1);
            assert_eq!(g.tokens, f.tokens[..cut]);
            assert_eq!(
                g.stopped,
                cut < f.tokens.len() || f.tokens.last() == Some(&stop)
            );
        }
        assert!(got[1].stopped && got[1].tokens.len() <= 3, "{decoder:?}");
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_respects_top_k() {
    let model = model_on_test_device(1, 13);
    let prompts: Vec<Vec<i64>> = vec![(3..12).collect(), (30..34).collect()];
    let o = GenOptions {
        max_new_tokens: 16,
        stop_ids: vec![],
        pad_id: 0,
        sampling: Sampling {
            greedy: false,
            temperature: 1.5,
            top_k: 1,
            top_p: 1.0,
        },
        decoder: Decoder::Dynamic,
    };
    // top_k = 1 is greedy.
    let g = generate(&model, &prompts, &opts(16, vec![])).unwrap();
    tch::manual_seed(1);
    assert_eq!(generate(&model, &prompts, &o).unwrap(), g);
    let o = GenOptions {
        sampling: top_k_top_p(),
        ..o
    };
    tch::manual_seed(7);
    let a = generate(&model, &prompts, &o).unwrap();
    tch::manual_seed(7);
    let b = generate(&model, &prompts, &o).unwrap();
    assert_eq!(a, b);
    tch::manual_seed(8);
    let c = generate(&model, &prompts, &o).unwrap();
    assert_ne!(a, c, "different seeds should sample differently");
}

#[test]
fn prompt_beyond_the_context_is_an_error() {
    let model = model_on_test_device(1, 14);
    let long: Vec<i64> = vec![5; 60];
    let err = generate(&model, &[long], &opts(10, vec![]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_position_embeddings"), "{err}");
    let err = generate(&model, &[vec![5, 500]], &opts(1, vec![]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("vocabulary"), "{err}");
}

#[test]
fn seeded_sampling_is_the_same_with_fixed_shapes() {
    // The fixed-shape decoder draws from the same generator in the same order.
    let model = model_on_test_device(1, 15);
    let prompts: Vec<Vec<i64>> = vec![(3..12).collect(), (30..34).collect(), (50..70).collect()];
    let o = GenOptions {
        sampling: top_k_top_p(),
        ..opts(16, vec![])
    };
    let mut runs = Vec::new();
    for decoder in decoders(model.device) {
        tch::manual_seed(3);
        runs.push((
            decoder,
            generate(&model, &prompts, &with(decoder, o.clone())).unwrap(),
        ));
    }
    for (decoder, rows) in &runs[1..] {
        assert_eq!(rows, &runs[0].1, "{decoder:?} vs {:?}", runs[0].0);
    }
}

#[test]
fn a_graph_decoder_without_cuda_is_a_clear_error() {
    let model = random_model(1, 16); // always on the CPU
    let err = generate(
        &model,
        &[vec![5, 6]],
        &with(Decoder::Graph, opts(4, vec![])),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("decoder `graph` needs a CUDA model"), "{err}");
    assert_eq!(
        Decoder::Auto.resolve(model.device).unwrap(),
        Decoder::Dynamic
    );
    assert!(Decoder::parse("fast")
        .unwrap_err()
        .to_string()
        .contains("expected auto"));
}
