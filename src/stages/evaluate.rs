//! The `evaluate` stage: generate SQL for the test split with the base model and each adapter
//! (the worker's `generate` job, LoRA merged, batched, resumable per batch), extract the SQL,
//! score it (`eval::score`) and compare the systems pairwise (`eval::compare`).
//!
//! Inputs, found by what they hold: a `split` artifact (`test/rows.jsonl`; a preprocess-style
//! artifact with `rows.jsonl` at its root is accepted too), a model directory (`config.json`)
//! and zero or more adapters (`adapter_config.json`, e.g. fanned-out `train` nodes).
//! Outputs: `predictions.jsonl` (one line per system and example: gold row, raw generation,
//! extracted prediction, per-example scores) and `metrics.json` (`systems`: each system's
//! report with CIs, buckets and breakdowns, test-suite accuracy (`eval::testsuite`; the
//! suites depend on the rows only and are built once for all systems) plus generation
//! throughput; `comparisons` and `comparisons_test_suite`: paired tests with ranking
//! warnings). Generations live in the partial area until committed, so an interrupted run
//! continues where its last finished batch ended.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::params::{ParamSet, Params, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::data::Row;
use crate::eval::compare::PairedSystems;
use crate::eval::extract::extract_sql;
use crate::eval::score::{build_suites, score_all_with, Report, ScoreItem};
use crate::eval::scoring::Scoring;
use crate::worker::generate::{generations_file, read_generations, Batch, Generations};
use crate::worker::jobs::Generation;
use crate::worker::{WorkerError, WorkerEvent};

pub struct EvaluateStage;

/// Prompt format the model was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// The Gemma chat template with the seed's prompt.
    Chat,
    /// `<bos>{context}\n`.
    Raw,
}

/// The `evaluate` stage's params.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluateParams {
    /// Test examples to evaluate, drawn with `seed` (0: the whole test split).
    pub subset: u64,
    /// Prompts per generation batch (at least 1).
    pub batch_size: u64,
    /// Generation length limit (at least 1).
    pub max_new_tokens: u64,
    /// Seed of the subset draw, generation and bootstrap.
    pub seed: u64,
    /// Also evaluate the base model when adapters are given (the reference of paired tests).
    pub include_base: bool,
    /// Prompt format the model was trained on: chat (Gemma template, seed prompt) or raw
    /// (`<bos>{context}\n`).
    pub format: PromptFormat,
    /// Worker device: auto, cpu, cuda, cuda:N.
    pub device: String,
    /// Generation weights: auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16.
    pub dtype: crate::train_plan::Dtype,
    /// Fold each LoRA adapter into the base weights before generating (false: keep it
    /// separate, in fp32).
    pub merge_adapter: bool,
    #[serde(flatten)]
    pub scoring: Scoring,
}

impl Default for EvaluateParams {
    fn default() -> Self {
        Self {
            subset: 0,
            batch_size: crate::worker::jobs::DEFAULT_BATCH_SIZE,
            max_new_tokens: Generation::default().max_new_tokens,
            seed: 0,
            include_base: true,
            format: PromptFormat::Chat,
            device: "auto".into(),
            dtype: crate::train_plan::Dtype::Auto,
            merge_adapter: true,
            scoring: Scoring::default(),
        }
    }
}

impl Params for EvaluateParams {
    fn problems(&self) -> Vec<(String, String)> {
        [
            ("batch_size", self.batch_size),
            ("max_new_tokens", self.max_new_tokens),
        ]
        .into_iter()
        .filter(|(_, v)| *v < 1)
        .map(|(k, _)| (k.to_string(), "must be at least 1".to_string()))
        .chain(self.scoring.problems())
        .collect()
    }
}

static PARAMS: Typed<EvaluateParams> = Typed::new();

/// The base model's directory among the needs.
fn model_dir(ctx: &StageContext<'_>) -> Result<PathBuf, StageError> {
    ctx.inputs
        .iter()
        .find_map(|i| find_dir_with(&i.dir, "config.json"))
        .ok_or_else(|| {
            failed(format!(
                "stage `{}` needs a model directory (with config.json) among its needs",
                ctx.stage_name
            ))
        })
}

/// The systems to evaluate: the base (when asked, or when there is no adapter), then every
/// adapter among the needs.
fn systems_of(ctx: &StageContext<'_>, include_base: bool) -> Vec<System> {
    let adapters: Vec<System> = ctx
        .inputs
        .iter()
        .filter_map(|i| {
            find_dir_with(&i.dir, "adapter_config.json").map(|d| System {
                name: i.node.clone(),
                adapter: Some(d),
            })
        })
        .collect();
    let mut systems = Vec::new();
    if adapters.is_empty() || include_base {
        systems.push(System {
            name: "base".into(),
            adapter: None,
        });
    }
    systems.extend(adapters);
    systems
}

/// Generation speed: a measurement, for the tracking DB.
const GEN_SPEED: &str = "gen_tokens_per_s";

/// What `metrics.json` says of a system's generation: facts of the generated text (rows, new
/// tokens, from the generations themselves) and of how it was configured (device, decoder).
/// What measures one attempt — speed, time, and how many rows it generated or found done by
/// an interrupted attempt — goes to the tracking DB (`gen_tokens_per_s`) and the node's
/// `resumed` status, never into the artifact, whose digest feeds the report's key: an
/// evaluation that resumed must be the same bytes as one that ran straight through.
fn generation_facts(gens: &Generations, worker_result: &Value) -> Value {
    json!({
        "rows": gens.len(),
        "new_tokens": gens.values().map(|(_, n)| n).sum::<u64>(),
        "device": worker_result.get("device"),
        "decoder": worker_result.get("decoder"),
    })
}

/// One system to evaluate: a name and an optional adapter directory.
struct System {
    name: String,
    adapter: Option<PathBuf>,
}

fn find_dir_with(dir: &Path, file: &str) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("model"), dir.join("adapter")]
        .into_iter()
        .find(|d| d.join(file).is_file())
}

fn failed(msg: impl Into<String>) -> StageError {
    StageError::Failed(msg.into())
}

/// Read the test rows: from a split artifact, else from an examples artifact.
fn test_rows(ctx: &StageContext<'_>) -> Result<Vec<Row>, StageError> {
    for inp in ctx.inputs {
        if inp
            .dir
            .join("test")
            .join(crate::data::examples::ROWS_FILE)
            .is_file()
        {
            let ex = crate::data::load_split(&inp.dir, "test")?;
            return Ok(ex.into_iter().map(|e| e.row).collect());
        }
    }
    for inp in ctx.inputs {
        if inp.dir.join(crate::data::examples::ROWS_FILE).is_file() {
            let ex = crate::data::read_examples(&inp.dir)?;
            return Ok(ex.into_iter().map(|e| e.row).collect());
        }
    }
    Err(failed(format!(
        "stage `{}` needs a `split` artifact (with test/rows.jsonl) among its needs",
        ctx.stage_name
    )))
}

/// A seeded draw of `n` rows (all when `n` is 0 or larger than the split), in split order.
fn draw(rows: Vec<Row>, n: usize, seed: u64) -> Vec<Row> {
    if n == 0 || n >= rows.len() {
        return rows;
    }
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut keep: Vec<usize> = idx.into_iter().take(n).collect();
    keep.sort_unstable();
    let mut rows: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
    keep.into_iter().filter_map(|i| rows[i].take()).collect()
}

/// A system's generation work directory in the partial area (its name made a file name).
fn work_dir(ctx: &StageContext<'_>, system: &str) -> PathBuf {
    let name: String = system
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    ctx.partial_dir.join(name)
}

/// Run (or resume) the worker's `generate` job for one system.
fn generate(
    ctx: &StageContext<'_>,
    p: &EvaluateParams,
    sys: &System,
    model: &Path,
    rows: &[Row],
) -> Result<(Generations, Value), StageError> {
    let batch = Batch {
        dir: &work_dir(ctx, &sys.name),
        model,
        adapter: sys.adapter.as_deref(),
        device: &p.device,
        batch_size: p.batch_size,
        generation: Generation {
            dtype: p.dtype,
            merge_adapter: p.merge_adapter,
            max_new_tokens: p.max_new_tokens,
            greedy: true,
            seed: p.seed,
            ..Generation::default()
        },
    };
    let spec = batch.job(rows.iter().map(|r| {
        let text = if p.format == PromptFormat::Raw {
            format!("{}{}\n", crate::data::format::BOS, r.sql_context)
        } else {
            crate::data::format::chat_prompt(&r.sql_prompt, &r.sql_context)
        };
        (r.id.to_string(), text)
    }))?;
    let total = rows.len() as u64;
    let result = ctx
        .worker
        .run(
            &spec,
            |ev| match ev {
                WorkerEvent::Progress { done, message, .. } => {
                    ctx.metrics
                        .progress(*done, Some(total), &format!("{}: {message}", sys.name))
                }
                WorkerEvent::Log { level, message } => {
                    super::common::log_worker_message(ctx.node_id, level, message)
                }
                _ => {}
            },
            ctx.cancel,
        )
        .map_err(|e| match e {
            WorkerError::Interrupted { .. } => StageError::Interrupted,
            other => failed(format!("generation for {}: {other}", sys.name)),
        })?;
    let gens = read_generations(&batch.out_file())?;
    if let Some(missing) = rows.iter().find(|r| !gens.contains_key(&r.id.to_string())) {
        return Err(failed(format!(
            "generation for {}: the worker wrote no output for example id {}; rerun to resume",
            sys.name, missing.id
        )));
    }
    Ok((gens, result))
}

impl StageKind for EvaluateStage {
    fn kind(&self) -> &'static str {
        "evaluate"
    }
    fn about(&self) -> &'static str {
        "Generates SQL for the test split with the base model and every adapter among the needs, then scores it: execution accuracy in a SQLite sandbox, test-suite accuracy, exact match, BLEU, ROUGE, 95% bootstrap CIs, paired tests."
    }
    /// 2: test-suite execution accuracy beside execution accuracy (`test_suite` in each
    /// system's report and in per-example scores, `comparisons_test_suite`, new params).
    /// 3: no generation speed or time in `metrics.json` (they made a recomputed evaluation
    /// differ from the first, and with it the report's key).
    /// 4: nor the rows an attempt generated or skipped (a resumed evaluation differed from an
    /// uninterrupted one under the same key; found by `bench/kill_campaign.sh`); the test
    /// suite's budget counts SQLite instructions, not milliseconds (`test_suite_max_instructions`
    /// replaces `test_suite_timeout_ms`: a verdict depended on the machine's load).
    fn metrics(&self) -> Option<Vec<String>> {
        Some(
            Report::scalar_names()
                .into_iter()
                .chain([GEN_SPEED.into()])
                .collect(),
        )
    }
    fn version(&self) -> u32 {
        4
    }
    /// Regression: with `device: auto` a CPU and a GPU machine generated different text
    /// under one key (the device was only a param, `auto`, in both).
    fn key_facts(
        &self,
        p: &Map<String, Value>,
        _pipeline_dir: &Path,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(BTreeMap::from([super::common::device_kind_fact(p)]))
    }
    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }
    fn uses_gpu(&self, p: &Map<String, Value>) -> bool {
        // Regression: `auto` claimed a GPU slot on hosts without one, so evaluate nodes
        // queued for a slot that train nodes (which asked) never held.
        super::common::uses_gpu_device(p)
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let p = PARAMS.read(ctx.params)?;
        let seed = p.seed;
        let rows = draw(test_rows(ctx)?, p.subset as usize, seed);
        if rows.is_empty() {
            return Err(failed("the test split is empty: nothing to evaluate"));
        }
        let model = model_dir(ctx)?;
        let systems = systems_of(ctx, p.include_base);
        let opts = p.scoring.options(p.seed);
        let resumed = systems
            .iter()
            .any(|s| generations_file(&work_dir(ctx, &s.name)).is_file());
        let mut pred_out = std::io::BufWriter::new(std::fs::File::create(
            ctx.out_dir.join("predictions.jsonl"),
        )?);
        let mut reports = Map::new();
        let mut paired = PairedSystems::default();
        // The suites depend on the rows only (context and gold): built once, for every system.
        let mut suites = None;
        let mut outcome = StageOutcome {
            resumed,
            ..Default::default()
        };
        let single = systems.len() == 1;
        for sys in &systems {
            let (gens, gen_result) = generate(ctx, &p, sys, &model, &rows)?;
            let items: Vec<ScoreItem> = rows
                .iter()
                .map(|r| ScoreItem {
                    id: r.id.to_string(),
                    context: r.sql_context.clone(),
                    gold: r.sql.clone(),
                    pred: extract_sql(&gens[&r.id.to_string()].0),
                    sql_complexity: r.sql_complexity.clone(),
                    sql_task_type: r.sql_task_type.clone(),
                    domain: r.domain.clone(),
                })
                .collect();
            ctx.metrics.progress(
                0,
                Some(items.len() as u64),
                &format!("{}: scoring", sys.name),
            );
            if suites.is_none() && opts.suite.instances > 0 {
                ctx.metrics
                    .progress(0, Some(items.len() as u64), "building test suites");
                suites = build_suites(&items, &opts);
            }
            let (scores, report) = score_all_with(&items, suites.as_deref(), &opts);
            for ((r, it), s) in rows.iter().zip(&items).zip(&scores) {
                let (text, new_tokens) = &gens[&it.id];
                let line = json!({"system": sys.name, "row": r, "generation": text,
                    "new_tokens": new_tokens, "prediction": it.pred, "scores": s});
                writeln!(pred_out, "{line}")?;
            }
            let mut rv = serde_json::to_value(&report)?;
            rv["generation"] = generation_facts(&gens, &gen_result);
            reports.insert(sys.name.clone(), rv);
            let prefix = if single {
                String::new()
            } else {
                format!("{}/", sys.name)
            };
            let speed = gen_result.get("tokens_per_s").and_then(Value::as_f64);
            for (k, v) in report
                .scalars()
                .into_iter()
                .chain(speed.map(|v| (GEN_SPEED.into(), v)))
            {
                ctx.metrics.metric(&format!("{prefix}{k}"), None, v);
                outcome.metrics.insert(format!("{prefix}{k}"), v);
            }
            paired.add(&sys.name, &items, &scores);
        }
        pred_out.flush()?;
        let compared = paired.compare(opts.bootstrap_samples, seed);
        for w in compared.all().filter_map(|c| c.warning.as_ref()) {
            tracing::warn!(target: "t2s::evaluate", "{w}");
        }
        let mut metrics = compared.fields()?;
        metrics.extend([
            ("n".into(), json!(rows.len())),
            ("systems".into(), Value::Object(reports)),
            (
                "rows_drawn".into(),
                json!({"subset": p.subset, "seed": seed}),
            ),
        ]);
        super::common::write_json(&ctx.out_dir.join("metrics.json"), &metrics)?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_params_are_flattened_and_unknown_params_still_refused() {
        let read = |v: Value| PARAMS.read(v.as_object().unwrap());
        let p = read(json!({"test_suite_instances": 3, "seed": 5})).unwrap();
        assert_eq!((p.scoring.test_suite_instances, p.seed), (3, 5));
        assert_eq!(p.scoring.bootstrap_samples, 1000);
        let e = read(json!({"test_suite_instancez": 3})).unwrap_err();
        assert!(format!("{e:?}").contains("test_suite_instancez"), "{e:?}");
        let e = read(json!({"bootstrap_samples": 0})).unwrap_err();
        assert!(format!("{e:?}").contains("bootstrap_samples"), "{e:?}");
    }

    #[test]
    fn the_artifact_keeps_no_measurement_of_the_attempt() {
        let result = json!({"rows": 4, "generated_rows": 1, "skipped_rows": 3, "new_tokens": 9,
            "tokens_per_s": 812.5, "seconds": 0.04, "device": "cpu", "decoder": "cached"});
        let gens: Generations = (0..4)
            .map(|i| (i.to_string(), (String::new(), 9)))
            .collect();
        assert_eq!(
            generation_facts(&gens, &result),
            json!({"rows": 4, "new_tokens": 36, "device": "cpu", "decoder": "cached"})
        );
    }

    #[test]
    fn the_device_kind_is_part_of_the_key() {
        let facts = |device: &str| {
            let p = json!({ "device": device }).as_object().unwrap().clone();
            EvaluateStage.key_facts(&p, Path::new(".")).unwrap()
        };
        assert_eq!(facts("cpu")["device_kind"], "cpu");
        assert_eq!(facts("cuda:1")["device_kind"], "cuda");
        let here = if super::super::common::gpu_present() {
            "cuda"
        } else {
            "cpu"
        };
        assert_eq!(facts("auto")["device_kind"], here);
    }
}
