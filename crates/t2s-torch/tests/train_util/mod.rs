//! Helpers of the train tests: deterministic examples, split artifacts, a tiny model written
//! by t2s itself, and driving the worker binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use t2s::data::examples::{write_stored, Stored};
use t2s::data::LoadedRow;
use t2s::train_plan::batching::mix64;
use t2s::worker::{JobSpec, WorkerEvent};
use t2s_torch::trainer::{FullModel, TrainExample, Trainable};
use t2s_torch::weights::RandomInit;
use tch::{Device, Kind};

/// Deterministic examples: a masked prompt of `2..6` tokens, then `4..4+spread` answer tokens.
pub fn examples(n: usize, vocab: u64, spread: u64, seed: u64) -> Vec<TrainExample> {
    let mut s = seed;
    let mut next = |m: u64| {
        s = mix64(s);
        s % m
    };
    (0..n)
        .map(|_| {
            let prompt = 2 + next(4) as usize;
            let len = prompt + 4 + next(spread) as usize;
            let ids: Vec<u32> = (0..len).map(|_| 3 + next(vocab - 3) as u32).collect();
            let labels = ids
                .iter()
                .enumerate()
                .map(|(i, &t)| if i < prompt { -100 } else { t as i64 })
                .collect();
            TrainExample {
                input_ids: ids,
                labels,
            }
        })
        .collect()
}

fn stored(e: &TrainExample, i: usize) -> Stored {
    let row: LoadedRow = serde_json::from_value(json!({
        "split": "train", "id": i, "domain": "d", "domain_description": "", "sql_complexity": "basic SQL",
        "sql_complexity_description": "", "sql_task_type": "analytics", "sql_task_type_description": "",
        "sql_prompt": "q", "sql_context": "c", "sql": "SELECT 1", "sql_explanation": ""
    }))
    .expect("a valid row");
    let prompt_len = e.labels.iter().take_while(|&&l| l == -100).count() as u32;
    Stored {
        row,
        ids: e.input_ids.clone(),
        prompt_len,
    }
}

/// A split artifact (`train/`, `validation/`) in the data stages' layout.
pub fn write_split(dir: &Path, train: &[TrainExample], valid: &[TrainExample]) {
    let t: Vec<Stored> = train
        .iter()
        .enumerate()
        .map(|(i, e)| stored(e, i))
        .collect();
    write_stored(&dir.join("train"), &t).unwrap();
    if !valid.is_empty() {
        let v: Vec<Stored> = valid
            .iter()
            .enumerate()
            .map(|(i, e)| stored(e, i))
            .collect();
        write_stored(&dir.join("validation"), &v).unwrap();
    }
}

/// A tiny random Gemma-3 written in HF layout by t2s's own full-model export.
pub fn tiny_model_dir(dir: &Path, vocab: i64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = json!({
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8,
        "sliding_window": 8, "sliding_window_pattern": 2, "query_pre_attn_scalar": 8,
        "max_position_embeddings": 128, "pad_token_id": 0
    });
    let cfg_file = dir.join("config.json");
    std::fs::write(&cfg_file, cfg.to_string()).unwrap();
    tch::manual_seed(5);
    let m = FullModel::new(
        &cfg_file,
        &RandomInit::new(0.2),
        Kind::Float,
        Device::Cpu,
        vec![],
    )
    .unwrap();
    m.export(dir).unwrap();
    dir.to_path_buf()
}

pub fn worker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_t2s-worker"))
}

pub fn spec(
    params: Value,
    data: &Path,
    model: Option<&Path>,
    out: &Path,
    partial: &Path,
) -> JobSpec {
    let mut s = JobSpec::new("train", params);
    s.device = "cpu".into();
    s.inputs.insert("data".into(), data.to_path_buf());
    if let Some(m) = model {
        s.inputs.insert("model".into(), m.to_path_buf());
    }
    s.out_dir = Some(out.to_path_buf());
    s.partial_dir = Some(partial.to_path_buf());
    s
}

/// What one worker process did.
pub struct Ran {
    pub events: Vec<WorkerEvent>,
    pub killed_at: Option<u64>,
    pub success: bool,
}

impl Ran {
    pub fn result(&self) -> Option<&Value> {
        self.events.iter().find_map(|e| match e {
            WorkerEvent::Result { value } => Some(value),
            _ => None,
        })
    }
    pub fn error(&self) -> Option<&str> {
        self.events.iter().find_map(|e| match e {
            WorkerEvent::Error { message } => Some(message.as_str()),
            _ => None,
        })
    }
}

/// Run the worker on `spec`; with `kill_at`, SIGKILL it as soon as it reports that step done.
pub fn run_worker(spec: &JobSpec, kill_at: Option<u64>) -> Ran {
    let f = spec.out_dir.as_ref().unwrap().with_extension("spec.json");
    std::fs::write(&f, serde_json::to_string(spec).unwrap()).unwrap();
    let mut child = Command::new(worker())
        .arg(&f)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the worker");
    let mut events = Vec::new();
    let mut killed_at = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let Ok(ev) = serde_json::from_str::<WorkerEvent>(&line) else {
            continue;
        };
        if let (WorkerEvent::Progress { done, .. }, Some(k)) = (&ev, kill_at) {
            if *done >= k && killed_at.is_none() {
                child.kill().expect("kill -9 the worker");
                killed_at = Some(*done);
            }
        }
        events.push(ev);
    }
    let status = child.wait().unwrap();
    Ran {
        events,
        killed_at,
        success: status.success(),
    }
}
