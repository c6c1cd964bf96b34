//! The worker's jobs and their params: one enum, each job's params one struct, shared by `t2s`
//! (which builds them) and `t2s-worker` (which reads them), so the two binaries cannot disagree
//! on a name or a default (issue 32). On the wire a job is the spec's `job` name and `params`
//! object, as before: scripts that write job specs by hand keep working.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::train_plan::{Dtype, TrainParams};

/// One job and its params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", content = "params", rename_all = "kebab-case")]
pub enum Job {
    /// The worker's versions, devices and switches.
    Doctor(DoctorJob),
    /// Generations for a file of prompts, resumable (the `evaluate` stage, `t2s infer --input`).
    Generate(GenerateJob),
    /// One request through the chat template (`t2s infer --prompt`).
    Infer(InferJob),
    /// Timed LoRA training steps on a shape or a model (benchmarks).
    BenchTrain(BenchJob),
    /// An adapter merged into its base, written as a plain HF model (`t2s export`).
    Export(ExportJob),
    /// The `train` stage: its resolved params.
    Train(Box<TrainParams>),
}

impl Job {
    /// The job's name on the wire (`bench-train`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Job::Doctor(_) => "doctor",
            Job::Generate(_) => "generate",
            Job::Infer(_) => "infer",
            Job::BenchTrain(_) => "bench-train",
            Job::Export(_) => "export",
            Job::Train(_) => "train",
        }
    }

    /// The job named `job` with `params` (null: none), or what is wrong with them: an unknown
    /// job, an unknown param, a missing or mistyped one (named with its path).
    pub fn parse(job: &str, params: &Value) -> Result<Job, String> {
        let params = match params {
            Value::Null => Value::Object(Map::new()),
            p => p.clone(),
        };
        let wire = serde_json::json!({"job": job, "params": params});
        let parsed: Job = serde_path_to_error::deserialize(&wire).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if inner.starts_with("unknown variant") {
                format!(
                    "unknown job `{job}` (this worker knows doctor, generate, infer, bench-train, export, train)"
                )
            } else {
                let at = match path.strip_prefix("params.") {
                    Some(at) => at.to_string(),
                    // Inside a flattened struct serde keeps no path: find the param.
                    None => culprit(job, &params).unwrap_or(path),
                };
                let inner = crate::stages::params::plain_serde_message(&inner);
                format!("job `{job}`: param `{at}`: {inner}")
            }
        })?;
        // Flattened structs cannot deny unknown fields themselves: a param the job does not
        // read is a typo somewhere, said as such.
        if let (Value::Object(given), Ok(Value::Object(known))) = (
            &params,
            serde_json::to_value(&parsed).map(|v| v["params"].clone()),
        ) {
            if let Some(unknown) = given.keys().find(|k| !known.contains_key(*k)) {
                return Err(format!("job `{job}`: unknown param `{unknown}`"));
            }
        }
        Ok(parsed)
    }

    /// The params object as the wire carries it.
    pub fn params(&self) -> Value {
        serde_json::to_value(self)
            .map(|v| v["params"].clone())
            .unwrap_or(Value::Null)
    }

    /// libtorch intra-op threads the job asks for (0: libtorch's choice).
    pub fn threads(&self) -> u64 {
        match self {
            Job::Generate(g) => g.generation.threads,
            Job::Infer(i) => i.generation.threads,
            Job::BenchTrain(b) => b.threads,
            Job::Doctor(_) | Job::Export(_) | Job::Train(_) => 0,
        }
    }
}

/// The param whose removal makes `params` read (or read as missing): the one that is wrong.
fn culprit(job: &str, params: &Value) -> Option<String> {
    let given = params.as_object()?;
    given.keys().find_map(|k| {
        let mut less = given.clone();
        less.remove(k);
        let wire = serde_json::json!({"job": job, "params": less});
        match serde_json::from_value::<Job>(wire) {
            Ok(_) => Some(k.clone()),
            Err(e) if e.to_string().contains(&format!("missing field `{k}`")) => Some(k.clone()),
            Err(_) => None,
        }
    })
}

/// `doctor` takes no params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorJob {}

/// How a generation job loads the model and decodes: shared by `generate` and `infer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Generation {
    /// Weights: auto (bf16 on CUDA, fp32 on the CPU), float32, bfloat16.
    pub dtype: Dtype,
    /// Fold an adapter into the weights before generating (false: keep it separate, in fp32).
    pub merge_adapter: bool,
    pub max_new_tokens: u64,
    /// Greedy decoding; false samples with `temperature`, `top_k`, `top_p`.
    pub greedy: bool,
    pub temperature: f64,
    /// 0: no top-k cut.
    pub top_k: u64,
    pub top_p: f64,
    /// Seed of libtorch's generator (sampling).
    pub seed: u64,
    /// How decode steps run: auto, dynamic, static or graph.
    pub decoder: String,
    /// libtorch intra-op threads (0: libtorch's choice).
    pub threads: u64,
}

impl Default for Generation {
    fn default() -> Self {
        Self {
            dtype: Dtype::Auto,
            merge_adapter: true,
            max_new_tokens: 256,
            greedy: true,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            decoder: "auto".into(),
            threads: 0,
        }
    }
}

/// `generate`: JSON lines `{"id", "text"}` in `prompts_file` → `{"id", "text", "new_tokens"}`
/// appended to `out_file` (ids already there are skipped: a rerun resumes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateJob {
    pub prompts_file: PathBuf,
    pub out_file: PathBuf,
    /// Prompts per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    #[serde(flatten)]
    pub generation: Generation,
}

fn default_batch_size() -> u64 {
    DEFAULT_BATCH_SIZE
}

/// Prompts per generation batch unless told otherwise (`generate`, `t2s infer --input`, the
/// evaluate stage).
pub const DEFAULT_BATCH_SIZE: u64 = 16;

/// `infer`: one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferJob {
    pub prompt: String,
    /// The schema (CREATE TABLE ... statements).
    #[serde(default)]
    pub context: String,
    /// Return the reply without extracting SQL from it.
    #[serde(default)]
    pub raw: bool,
    #[serde(flatten)]
    pub generation: Generation,
}

/// The dtype of exported weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportDtype {
    /// Each tensor as the base stores it.
    #[default]
    Auto,
    #[serde(alias = "fp32")]
    Float32,
    #[serde(alias = "bf16")]
    Bfloat16,
    #[serde(alias = "fp16")]
    Float16,
}

/// `export`: inputs `model` and `adapter`, written into the spec's `out_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportJob {
    #[serde(default)]
    pub dtype: ExportDtype,
    /// A larger model is written in numbered shards (transformers' default `max_shard_size`,
    /// 5 GB).
    #[serde(default = "default_max_shard_bytes")]
    pub max_shard_bytes: u64,
}

pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

fn default_max_shard_bytes() -> u64 {
    DEFAULT_MAX_SHARD_BYTES
}

/// `bench-train`: timed LoRA (q/k/v/o) training steps on random tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BenchJob {
    /// A model directory whose weights to train (e.g. the real Gemma-3-270m); else `shape`.
    pub model: Option<PathBuf>,
    /// A built-in shape with random weights (`tiny`, ...).
    pub shape: String,
    /// Override the shape's depth (0: the shape's).
    pub layers: u64,
    pub batch: u64,
    pub seq: u64,
    pub rank: u64,
    pub alpha: f64,
    pub steps: u64,
    /// Untimed steps first.
    pub warmup: u64,
    pub dtype: Dtype,
    /// false: libtorch's unfused ops (the fused kernels serve bf16 on CUDA).
    pub fused: bool,
    /// false: the other kernels fused, the LoRA side path not.
    pub fused_lora: bool,
    /// `kernels` or `gemm` (unset: the default).
    pub lora_matmul: Option<String>,
    /// Rows per chunk of the chunked LM head (0: the default for the vocabulary).
    pub chunk: u64,
    /// Write a profiler trace of two more steps here.
    pub profile: Option<PathBuf>,
    /// libtorch intra-op threads (0: libtorch's choice).
    pub threads: u64,
}

impl Default for BenchJob {
    fn default() -> Self {
        Self {
            model: None,
            shape: "tiny".into(),
            layers: 0,
            batch: 8,
            seq: 256,
            rank: 16,
            alpha: 16.0,
            steps: 20,
            warmup: 3,
            dtype: Dtype::Auto,
            fused: true,
            fused_lora: true,
            lora_matmul: None,
            chunk: 0,
            profile: None,
            threads: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_travel_as_a_name_and_params() {
        let job = Job::Generate(GenerateJob {
            prompts_file: "p.jsonl".into(),
            out_file: "o.jsonl".into(),
            batch_size: 4,
            generation: Generation {
                max_new_tokens: 12,
                ..Generation::default()
            },
        });
        let back = Job::parse(job.name(), &job.params()).unwrap();
        assert_eq!(back, job);
        assert_eq!(job.params()["max_new_tokens"], json!(12));
        assert_eq!(job.params()["dtype"], json!("auto"));
    }

    #[test]
    fn hand_written_specs_get_defaults_and_named_errors() {
        let g = Job::parse(
            "generate",
            &json!({"prompts_file": "p", "out_file": "o", "greedy": true, "threads": 1}),
        )
        .unwrap();
        let Job::Generate(g) = g else { panic!() };
        assert_eq!((g.batch_size, g.generation.max_new_tokens), (16, 256));
        assert_eq!(g.generation.threads, 1);
        assert_eq!(
            Job::parse("doctor", &Value::Null).unwrap(),
            Job::Doctor(DoctorJob {})
        );
        let e = Job::parse(
            "generate",
            &json!({"prompts_file": "p", "out_file": "o", "gredy": true}),
        )
        .unwrap_err();
        assert_eq!(e, "job `generate`: unknown param `gredy`");
        let e = Job::parse(
            "generate",
            &json!({"prompts_file": "p", "out_file": "o", "merge_adapter": "no"}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "job `generate`: param `merge_adapter`: expected true or false, found the string \"no\""
        );
        let e = Job::parse("bench-train", &json!({"batch": -2})).unwrap_err();
        assert!(e.starts_with("job `bench-train`: param `batch`: "), "{e}");
        let e = Job::parse("nope", &json!({})).unwrap_err();
        assert!(e.starts_with("unknown job `nope`"), "{e}");
        let e = Job::parse("export", &json!({"dtype": "bf16"})).unwrap();
        assert_eq!(
            e,
            Job::Export(ExportJob {
                dtype: ExportDtype::Bfloat16,
                max_shard_bytes: DEFAULT_MAX_SHARD_BYTES
            })
        );
    }
}
