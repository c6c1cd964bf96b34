//! Padding batches to a multiple of N tokens (`pad_to_multiple_of`, 64 by default on CUDA, to
//! bound the number of batch shapes) must not change training: real tokens never attend to
//! right padding, and padding carries no loss.

mod common;
mod train_util;

use t2s::train_plan::{SchedulerKind, TrainParams};
use t2s_torch::lora::{self, LoraConfig};
use t2s_torch::trainer::{train, LoraModel, RunConfig, TrainOutcome};
use tch::{Device, Kind, Tensor};
use train_util::*;

fn run(pad_to_multiple_of: u64) -> (TrainOutcome, Vec<(String, Tensor)>) {
    let dir = tempfile::tempdir().unwrap();
    let base = t2s_torch::Gemma3::load(
        &tiny_model_dir(&dir.path().join("m"), 97),
        Kind::Float,
        Device::Cpu,
    )
    .unwrap();
    tch::manual_seed(4);
    let cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    let mut model = LoraModel::new(base, cfg, "tiny".into()).unwrap();
    // Non-zero B, so the adapters change the loss from the first step.
    common::randomize_b(&mut model.model, 0.1);
    let p = TrainParams {
        lora_dropout: 0.0,
        lr: 1e-2,
        scheduler: SchedulerKind::Constant,
        batch_size: 3,
        max_steps: 6,
        eval_steps: 3,
        save_steps: 0,
        logging_steps: 1,
        max_length: 40,
        pad_to_multiple_of,
        ..Default::default()
    };
    let cfg = RunConfig {
        params: &p,
        pad_id: 0,
        partial_dir: None,
        stop_after: None,
    };
    // Lengths 6..=17: every batch is shorter than the multiple below.
    let (tr, va) = (examples(18, 97, 8, 1), examples(6, 97, 8, 2));
    let out = train(&model, &tr, &va, &cfg, &mut |_| {}).unwrap();
    (out, lora::params(&model.model))
}

#[test]
fn padding_to_a_multiple_leaves_losses_and_adapters_unchanged() {
    let (plain, plain_w) = run(1);
    let (padded, padded_w) = run(32);
    assert_eq!(plain.step_losses.len(), 6);
    for (a, b) in plain.step_losses.iter().zip(&padded.step_losses) {
        assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
    let evals = |o: &TrainOutcome| -> Vec<f64> {
        o.state
            .log_history
            .iter()
            .filter_map(|l| l.eval_loss)
            .collect()
    };
    let (ea, eb) = (evals(&plain), evals(&padded));
    assert_eq!(ea.len(), 2);
    for (a, b) in ea.iter().zip(&eb) {
        assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "eval {a} vs {b}");
    }
    assert_eq!(plain.train_tokens, padded.train_tokens, "real tokens only");
    for ((name, a), (_, b)) in plain_w.iter().zip(&padded_w) {
        let d = (a - b).abs().max().double_value(&[]);
        assert!(d < 1e-5, "{name}: max |Δ| {d}");
    }
}
