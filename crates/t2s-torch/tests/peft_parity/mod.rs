//! LoRA training against transformers + PEFT + torch.optim.AdamW on any Gemma-3 checkpoint
//! (the tiny random one of `train_parity`, the real Gemma-3-270m of `real_gemma`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use t2s::worker::WorkerEvent;
use t2s_torch::trainer::{TrainExample, Trainable};
use tch::{Device, Kind};

/// What [`check_against_peft`] measured, for the caller's own checks.
pub struct PeftParity {
    pub trained_adapter: PathBuf,
    pub grad_norms: Vec<f64>,
    pub step_losses: Vec<f64>,
}

/// Train a LoRA adapter on `model_dir` with t2s's loop, and the same run with transformers,
/// PEFT and torch.optim.AdamW (scripts/oracles/train_ref.py) from the same initial adapter over
/// the same batches. Asserts every step's loss within 1e-3 relative, grad norms within 2e-3,
/// learning rates exactly; that PEFT loads the adapter t2s wrote with no missing or unknown key
/// (`PeftModel.from_pretrained` would leave a missing weight at its init); and that PEFT scores
/// the probe (`data[0]`) with t2s's logits within `logit_tol`.
pub fn check_against_peft(
    py: &str,
    model_dir: &Path,
    work: &Path,
    p: &t2s::train_plan::TrainParams,
    data: &[TrainExample],
    targets: &[&str],
    logit_tol: f64,
) -> PeftParity {
    use t2s::train_plan::{BatchPlan, StepPlan};
    use t2s_torch::gemma3::Inputs;
    use t2s_torch::lora::LoraConfig;
    use t2s_torch::trainer::{train, LoraModel, RunConfig};
    use tch::Tensor;

    std::fs::create_dir_all(work).unwrap();
    let dev = crate::common::test_device();
    let base = t2s_torch::Gemma3::load(model_dir, Kind::Float, dev).unwrap();
    tch::manual_seed(p.seed as i64);
    let lc = LoraConfig::new(p.lora_r as i64, p.lora_alpha, targets);
    let lm = LoraModel::new(base, lc, "parity".into()).unwrap();
    let init_dir = work.join("init-adapter");
    lm.export(&init_dir).unwrap();

    // The batches the loop will use, from the same plan functions.
    let lengths: Vec<usize> = data.iter().map(|e| e.input_ids.len()).collect();
    let plan = BatchPlan::new(
        &lengths,
        p.max_length as usize,
        p.batch_by(),
        p.group_by_length,
        p.shuffle,
        p.seed,
    )
    .unwrap();
    let steps = StepPlan::new(
        plan.batches_per_epoch() as u64,
        p.grad_accum,
        p.epochs,
        p.max_steps,
    );
    let step_batches: Vec<Vec<Vec<usize>>> = (0..steps.total_steps)
        .map(|g| {
            let (e, r) = steps.cursor(g);
            plan.epoch(e)[r].to_vec()
        })
        .collect();

    let mut events = Vec::new();
    let cfg = RunConfig {
        params: p,
        pad_id: 0,
        partial_dir: None,
        stop_after: None,
    };
    let out = train(&lm, data, &[], &cfg, &mut |e| events.push(e)).unwrap();
    assert_eq!(out.step_losses.len() as u64, steps.total_steps);
    let trained = work.join("trained-adapter");
    lm.export(&trained).unwrap();

    let probe: Vec<i64> = data[0].input_ids.iter().map(|&t| t as i64).collect();
    let probe_out = work.join("probe.safetensors");
    let warmup = t2s::train_plan::schedule::LrSchedule::warmup_steps_for(
        steps.total_steps,
        p.warmup_steps,
        p.warmup_ratio,
    );
    let spec = json!({
        "model": model_dir, "init_adapter": init_dir, "trained_adapter": trained,
        "examples": data.iter().map(|e| json!({"input_ids": e.input_ids, "labels": e.labels})).collect::<Vec<_>>(),
        "steps": step_batches, "pad_id": 0, "lr": p.lr, "betas": p.betas, "eps": p.eps,
        "weight_decay": p.weight_decay, "max_grad_norm": p.max_grad_norm, "warmup_steps": warmup,
        "total_steps": steps.total_steps, "scheduler": p.scheduler, "probe_ids": [probe.clone()],
        "probe_out": probe_out,
    });
    let spec_file = work.join("train_ref.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let r: Value = serde_json::from_str(&crate::common::run_py(
        py,
        "train_ref.py",
        &[spec_file.to_str().unwrap()],
    ))
    .unwrap();
    let want: Vec<f64> = serde_json::from_value(r["losses"].clone()).unwrap();
    eprintln!("t2s losses  {:?}\nPEFT losses {want:?}", out.step_losses);
    for (i, (a, b)) in out.step_losses.iter().zip(&want).enumerate() {
        let rel = (a - b).abs() / b.abs().max(1e-12);
        assert!(
            rel < 1e-3,
            "step {}: t2s loss {a} vs PEFT {b} (rel {rel:.2e})\n t2s {:?}\n peft {want:?}",
            i + 1,
            out.step_losses
        );
    }
    let norms: Vec<f64> = serde_json::from_value(r["grad_norms"].clone()).unwrap();
    let lrs: Vec<f64> = serde_json::from_value(r["lrs"].clone()).unwrap();
    let metric = |wanted: &str| -> Vec<f64> {
        events
            .iter()
            .filter_map(|e| match e {
                WorkerEvent::Metric { name, value, .. } if name == wanted => Some(*value),
                _ => None,
            })
            .collect()
    };
    let (mine_norms, mine_lrs) = (metric("grad_norm"), metric("learning_rate"));
    for i in 0..steps.total_steps as usize {
        assert!(
            (mine_norms[i] - norms[i]).abs() <= 2e-3 * norms[i].abs().max(1e-6),
            "grad norm step {}: {} vs {}",
            i + 1,
            mine_norms[i],
            norms[i]
        );
        assert!(
            (mine_lrs[i] - lrs[i]).abs() <= 1e-12,
            "lr step {}: {} vs {}",
            i + 1,
            mine_lrs[i],
            lrs[i]
        );
    }

    // PEFT reads the adapter t2s wrote, every key it expects present and none unknown, and
    // gives the same logits as t2s.
    let keys = &r["adapter_keys"];
    assert_eq!(
        keys["missing"],
        json!([]),
        "adapter keys PEFT expects but t2s did not write"
    );
    assert_eq!(
        keys["unexpected"],
        json!([]),
        "adapter keys PEFT does not know"
    );
    let theirs = crate::common::read_st(&probe_out)
        .remove("logits")
        .expect("probe logits");
    let ids = Tensor::from_slice(&probe).unsqueeze(0).to_device(dev);
    let s = ids.size()[1];
    let pos = Tensor::arange(s, (Kind::Int64, dev)).unsqueeze(0);
    let mine = {
        let _g = tch::no_grad_guard();
        lm.model
            .forward(&Inputs {
                ids: &ids,
                positions: &pos,
                key_valid: None,
            })
            .unwrap()
            .to_device(Device::Cpu)
    };
    assert_eq!(mine.size(), theirs.size());
    let d = crate::common::max_abs_diff(&mine, &theirs);
    eprintln!("probe logits with the trained adapter: max |t2s - PEFT| = {d:.3e}");
    assert!(
        d < logit_tol,
        "logits of the trained adapter differ from PEFT's by {d}"
    );
    PeftParity {
        trained_adapter: trained,
        grad_norms: norms,
        step_losses: out.step_losses,
    }
}
