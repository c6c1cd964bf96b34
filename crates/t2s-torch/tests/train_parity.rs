//! The training loop against transformers + PEFT + torch.optim.AdamW (scripts/oracles/train_ref.py):
//! a tiny random Gemma-3, LoRA with dropout 0, the same initial adapter (t2s's, saved in PEFT
//! layout) and the same batches: the first 20 optimizer-step losses agree within 1e-3
//! relative. The adapter t2s writes then loads in PEFT and gives t2s's logits. t2s trains on
//! `T2S_TEST_DEVICE` (the CPU by default; the oracle always runs on the CPU in fp32).

mod common;
mod train_util;

use common::{max_abs_diff, python, read_st, run_py, test_device, tiny_model};
use serde_json::json;
use t2s::train_plan::{BatchPlan, SchedulerKind, StepPlan, TrainParams};
use t2s_torch::gemma3::Inputs;
use t2s_torch::lora::LoraConfig;
use t2s_torch::trainer::{train, LoraModel, RunConfig, Trainable};
use tch::{Device, Kind, Tensor};

#[test]
fn first_20_step_losses_match_peft_and_the_adapter_loads_in_peft() {
    let Some(py) = python() else { return };
    let model_dir = tiny_model(&py, 1, false);
    let work = model_dir.parent().unwrap().join("train-parity");
    std::fs::create_dir_all(&work).unwrap();

    let p = TrainParams {
        lora_r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        lr: 5e-3,
        weight_decay: 0.01,
        max_grad_norm: 0.3,
        warmup_ratio: 0.1,
        scheduler: SchedulerKind::Cosine,
        batch_size: 2,
        grad_accum: 2,
        epochs: 2.0,
        max_length: 64,
        save_steps: 0,
        logging_steps: 5,
        seed: 11,
        ..Default::default()
    };
    let data = train_util::examples(40, 500, 16, 3);
    let dev = test_device();
    let base = t2s_torch::Gemma3::load(&model_dir, Kind::Float, dev).unwrap();
    tch::manual_seed(p.seed as i64);
    let lc = LoraConfig::new(4, 8.0, &["q_proj", "k_proj", "v_proj", "o_proj"]);
    let lm = LoraModel::new(base, lc, "tiny".into()).unwrap();
    let init_dir = work.join("init-adapter");
    lm.export(&init_dir).unwrap();

    // The batches the loop will use, from the same plan functions.
    let lengths: Vec<usize> = data.iter().map(|e| e.input_ids.len()).collect();
    let plan = BatchPlan::new(
        &lengths,
        64,
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
    assert_eq!(steps.total_steps, 20);
    let step_batches: Vec<Vec<Vec<usize>>> = (0..steps.total_steps)
        .map(|g| {
            let (e, r) = steps.cursor(g);
            plan.epoch(e)[r].to_vec()
        })
        .collect();

    let mut events = Vec::new();
    let cfg = RunConfig {
        params: &p,
        pad_id: 0,
        partial_dir: None,
        stop_after: None,
    };
    let out = train(&lm, &data, &[], &cfg, &mut |e| events.push(e)).unwrap();
    assert_eq!(out.step_losses.len(), 20);
    let trained = work.join("trained-adapter");
    lm.export(&trained).unwrap();

    let probe: Vec<i64> = data[0].input_ids.iter().map(|&t| t as i64).collect();
    let spec = json!({
        "model": model_dir, "init_adapter": init_dir, "trained_adapter": trained,
        "examples": data.iter().map(|e| json!({"input_ids": e.input_ids, "labels": e.labels})).collect::<Vec<_>>(),
        "steps": step_batches, "pad_id": 0, "lr": p.lr, "betas": p.betas, "eps": p.eps,
        "weight_decay": p.weight_decay, "max_grad_norm": p.max_grad_norm, "warmup_steps": 2,
        "total_steps": 20, "scheduler": "cosine", "probe_ids": [probe.clone()],
    });
    let spec_file = work.join("train_ref.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&run_py(&py, "train_ref.py", &[spec_file.to_str().unwrap()])).unwrap();
    let want: Vec<f64> = serde_json::from_value(r["losses"].clone()).unwrap();
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
    let mine_norms: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            t2s::worker::WorkerEvent::Metric { name, value, .. } if name == "grad_norm" => {
                Some(*value)
            }
            _ => None,
        })
        .collect();
    let mine_lrs: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            t2s::worker::WorkerEvent::Metric { name, value, .. } if name == "learning_rate" => {
                Some(*value)
            }
            _ => None,
        })
        .collect();
    for i in 0..20 {
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
    assert!(
        norms.iter().any(|&n| n > 0.3),
        "clipping never engaged: {norms:?}"
    );

    // PEFT reads the adapter t2s wrote and gives the same logits as t2s.
    let peft: Vec<f64> = serde_json::from_value(r["probe_logits"].clone()).unwrap();
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
    let theirs = Tensor::from_slice(&peft).reshape(mine.size());
    let d = max_abs_diff(&mine, &theirs);
    assert!(
        d < 1e-4,
        "logits of the trained adapter differ from PEFT's by {d}"
    );
    let st = read_st(&trained.join("adapter_model.safetensors"));
    assert_eq!(st.len(), 4 * 4 * 2, "q/k/v/o A and B in 4 layers");
    // Training moved the adapter (B starts at zero), so the comparisons above cover updates.
    let b = &st["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"];
    assert!(b.abs().max().double_value(&[]) > 1e-3);
}
