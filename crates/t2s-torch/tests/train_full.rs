//! Full fine-tuning of a tiny model created from scratch (`init: random`, the offline
//! quickstart's first step): the loss falls on learnable raw text, the HF-layout output loads
//! in t2s and in transformers with the same logits, and a LoRA run trains on top of it.

mod common;
mod train_util;

use serde_json::json;
use t2s::data::Row;
use t2s_torch::gemma3::Inputs;
use t2s_torch::trainer::TrainExample;
use tch::{Device, Kind, Tensor};
use train_util::*;

fn row(text: &str) -> Row {
    serde_json::from_value(json!({
        "id": 1, "domain": "d", "domain_description": "", "sql_complexity": "basic SQL",
        "sql_complexity_description": "", "sql_task_type": "analytics", "sql_task_type_description": "",
        "sql_prompt": text, "sql_context": text, "sql": "SELECT 1;", "sql_explanation": ""
    }))
    .unwrap()
}

/// Raw-text examples with a learnable pattern: a cycle of 5 tokens from a random start.
fn cyclic(n: usize) -> Vec<TrainExample> {
    (0..n)
        .map(|i| {
            let ids: Vec<u32> = std::iter::once(2)
                .chain((0..15).map(|k| 10 + ((i + k) % 5) as u32))
                .collect();
            let labels = ids.iter().map(|&t| t as i64).collect();
            TrainExample {
                input_ids: ids,
                labels,
            }
        })
        .collect()
}

fn losses(r: &Ran) -> Vec<f64> {
    r.events
        .iter()
        .filter_map(|e| match e {
            t2s::worker::WorkerEvent::Metric {
                name,
                step: Some(_),
                value,
            } if name == "loss" => Some(*value),
            _ => None,
        })
        .collect()
}

#[test]
fn random_init_full_training_then_lora_on_top() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let tokdir = root.join("tokenizer");
    std::fs::create_dir_all(&tokdir).unwrap();
    let rows: Vec<Row> = [
        "SELECT name FROM users WHERE age > 3",
        "CREATE TABLE t (a INT, b TEXT)",
    ]
    .iter()
    .map(|t| row(t))
    .collect();
    let tk = t2s::data::tokenizer::train_bpe(&rows, 300, 1).unwrap();
    tk.save(tokdir.join("tokenizer.json"), false).unwrap();
    let vocab = tk.get_vocab_size(true);

    let split = root.join("split");
    write_split(&split, &cyclic(24), &cyclic(4));
    let out = root.join("base");
    let params = json!({
        "method": "full", "init": "random",
        "model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                         "query_pre_attn_scalar": 16, "sliding_window": 8},
        "lr": 1e-2, "weight_decay": 0.1, "warmup_steps": 2, "batch_size": 4, "epochs": 6.0,
        "save_steps": 10, "logging_steps": 6, "seed": 3, "device": "cpu"
    });
    let mut s = spec(params, &split, None, &out, &root.join("partial-base"));
    s.inputs.insert("tokenizer".into(), tokdir.clone());
    let r = run_worker(&s, None);
    assert!(r.success, "{:?}", r.error());
    let l = losses(&r);
    assert_eq!(l.len(), 36);
    assert!(
        l[35] < 0.5 * l[0],
        "the loss should fall on a cyclic pattern: {l:?}"
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "trainer_state.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["vocab_size"], json!(vocab));
    assert_eq!(cfg["hidden_size"], json!(32));

    // The export is a regular HF checkpoint: t2s loads it. The RMSNorm weights trained too
    // (they start at 0, Gemma's `1 + w` init), as in HF full fine-tuning.
    let m = t2s_torch::Gemma3::load(&out, Kind::Float, Device::Cpu).unwrap();
    let st: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(out.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    assert!(st.contains_key("model.embed_tokens.weight") && st.contains_key("model.norm.weight"));
    for norm in [
        "model.norm.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.q_norm.weight",
    ] {
        assert!(
            st[norm].abs().max().double_value(&[]) > 0.0,
            "{norm} did not train"
        );
    }
    let ids = Tensor::from_slice(&[2i64, 10, 11, 12, 13, 14, 10, 11]).unsqueeze(0);
    let pos = Tensor::arange(8, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let mine = {
        let _g = tch::no_grad_guard();
        m.forward(&Inputs {
            ids: &ids,
            positions: &pos,
            key_valid: None,
        })
        .unwrap()
    };
    // It learned the cycle: after 12 comes 13, after 14 comes 10.
    assert_eq!(mine.get(0).get(3).argmax(0, false).int64_value(&[]), 13);
    assert_eq!(mine.get(0).get(5).argmax(0, false).int64_value(&[]), 10);

    // transformers reads it and agrees.
    if let Some(py) = common::python() {
        let o = common::run_py(
            &py,
            "train_ref.py",
            &[
                "logits",
                out.to_str().unwrap(),
                "[[2,10,11,12,13,14,10,11]]",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&o).unwrap();
        let theirs: Vec<f64> = serde_json::from_value(v["logits"].clone()).unwrap();
        let theirs = Tensor::from_slice(&theirs).reshape(mine.size());
        let d = common::max_abs_diff(&mine, &theirs);
        assert!(d < 1e-4, "transformers' logits differ by {d}");
    }

    // LoRA on top of the trained base (the model comes in as an upstream artifact).
    let lout = root.join("lora");
    let lp = json!({"lora_r": 4, "lora_alpha": 8.0, "lr": 5e-3, "batch_size": 4, "max_steps": 4, "device": "cpu"});
    let r = run_worker(
        &spec(lp, &split, Some(&out), &lout, &root.join("partial-lora")),
        None,
    );
    assert!(r.success, "{:?}", r.error());
    assert!(
        lout.join("adapter_model.safetensors").is_file()
            && lout.join("adapter_config.json").is_file()
    );
}
