//! The training loop against transformers + PEFT + torch.optim.AdamW (scripts/oracles/train_ref.py):
//! a tiny random Gemma-3, LoRA with dropout 0, the same initial adapter (t2s's, saved in PEFT
//! layout) and the same batches: the first 20 optimizer-step losses agree within 1e-3
//! relative. The adapter t2s writes then loads in PEFT and gives t2s's logits. t2s trains on
//! `T2S_TEST_DEVICE` (the CPU by default; the oracle always runs on the CPU in fp32).

mod common;
mod peft_parity;
mod train_util;

use common::{python, read_st, tiny_model};
use t2s::train_plan::{SchedulerKind, TrainParams};

#[test]
fn first_20_step_losses_match_peft_and_the_adapter_loads_in_peft() {
    let Some(py) = python() else { return };
    let model_dir = tiny_model(&py, 1, false);
    let work = model_dir.parent().unwrap().join("train-parity");

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
    let r = peft_parity::check_against_peft(
        &py,
        &model_dir,
        &work,
        &p,
        &data,
        &["q_proj", "k_proj", "v_proj", "o_proj"],
        1e-4,
    );
    assert_eq!(r.step_losses.len(), 20);
    assert!(
        r.grad_norms.iter().any(|&n| n > 0.3),
        "clipping never engaged: {:?}",
        r.grad_norms
    );
    let st = read_st(&r.trained_adapter.join("adapter_model.safetensors"));
    assert_eq!(st.len(), 4 * 4 * 2, "q/k/v/o A and B in 4 layers");
    // Training moved the adapter (B starts at zero), so the comparisons above cover updates.
    let b = &st["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"];
    assert!(b.abs().max().double_value(&[]) > 1e-3);
}
