//! The `split` stage: a preprocess artifact → `train/`, `validation/`, `test/` (each in the
//! examples layout; read with `data::load_split`) + `split_report.json`. Seeded, optionally
//! stratified, no id or prompt in two subsets, the data's own test split used when present.
//! With another `split` artifact among its needs (a pretraining corpus split next to the task's
//! split), rows whose request or query occurs in that split's validation or test set are
//! dropped first, so pretraining never sees the evaluation's answers.

use serde_json::{json, Map, Value};

use super::common::{bool_param, copy_into, input_with, str_param, u64_param};
use super::{ParamSpec, ParamType, StageContext, StageError, StageKind, StageOutcome};
use crate::data::examples::{read_stored, write_stored, INDEX_FILE};
use crate::data::split::{decontaminate, field, split, Size, SplitParams};

pub struct SplitStage;

static PARAMS: [ParamSpec; 6] = [
    ParamSpec::optional("seed", ParamType::Count, || json!(42), "shuffling seed"),
    ParamSpec::optional(
        "stratify",
        ParamType::Str,
        || json!(""),
        "row field to stratify by (sql_complexity, sql_task_type, domain); empty: none",
    ),
    ParamSpec::optional(
        "train_size",
        ParamType::Any,
        || Value::Null,
        "rows (integer) or fraction of the pool (float); null: all that is left",
    ),
    ParamSpec::optional(
        "validation_size",
        ParamType::Any,
        || json!(0.1),
        "rows (integer) or fraction of the pool (float)",
    ),
    ParamSpec::optional(
        "test_size",
        ParamType::Any,
        || Value::Null,
        "rows or fraction; null: the data's own test split, else 10% of the pool",
    ),
    ParamSpec::optional(
        "use_source_test",
        ParamType::Bool,
        || json!(true),
        "use the dataset's own test split (gretel's) as the test pool when present",
    ),
];

fn params(p: &Map<String, Value>) -> Result<SplitParams, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let mut size = |k: &str| {
        Size::from_json(p.get(k)).unwrap_or_else(|e| {
            errs.push((k.to_string(), e));
            Size::Rest
        })
    };
    let (train, validation, test) = (
        size("train_size"),
        size("validation_size"),
        size("test_size"),
    );
    let strat = str_param(p, "stratify", "");
    let dummy = crate::data::Row {
        id: 0,
        domain: String::new(),
        domain_description: String::new(),
        sql_complexity: String::new(),
        sql_complexity_description: String::new(),
        sql_task_type: String::new(),
        sql_task_type_description: String::new(),
        sql_prompt: String::new(),
        sql_context: String::new(),
        sql: String::new(),
        sql_explanation: String::new(),
    };
    if !strat.is_empty() && field(&dummy, strat).is_none() {
        errs.push(("stratify".into(), format!("`{strat}` is not a field to stratify by; use sql_complexity, sql_task_type or domain")));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(SplitParams {
        seed: u64_param(p, "seed", 42),
        stratify: (!strat.is_empty()).then(|| strat.to_string()),
        train,
        validation,
        test,
        use_source_test: bool_param(p, "use_source_test", true),
    })
}

impl StageKind for SplitStage {
    fn kind(&self) -> &'static str {
        "split"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }
    fn check_params(&self, p: &Map<String, Value>) -> Vec<(String, String)> {
        params(p).err().unwrap_or_default()
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let sp = params(ctx.params).map_err(|e| {
            StageError::Failed(
                e.into_iter()
                    .map(|(k, m)| format!("{k}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let dir = input_with(ctx, INDEX_FILE, "the `preprocess` artifact")?;
        let items = read_stored(&dir)?;
        let mut held_out = Vec::new();
        for input in ctx.inputs.iter().filter(|i| i.kind == "split") {
            for subset in ["validation", "test"] {
                let d = input.dir.join(subset);
                if d.join(INDEX_FILE).is_file() {
                    held_out.extend(read_stored(&d)?);
                }
            }
        }
        let (items, dropped) = decontaminate(items, &held_out);
        let (subsets, mut report) = split(items, &sp);
        report.decontaminated = dropped;
        for (name, items) in &subsets {
            write_stored(&ctx.out_dir.join(name), items)?;
        }
        for f in ["tokenizer.json", "meta.json"] {
            if dir.join(f).is_file() {
                copy_into(&dir.join(f), ctx.out_dir, f)?;
            }
        }
        std::fs::write(
            ctx.out_dir.join("split_report.json"),
            serde_json::to_vec_pretty(&report).map_err(anyhow::Error::from)?,
        )
        .map_err(anyhow::Error::from)?;
        let mut o = StageOutcome::default();
        for (k, v) in &report.sizes {
            o.metrics.insert(format!("{k}_rows"), *v as f64);
        }
        if !held_out.is_empty() {
            o.metrics
                .insert("decontaminated_rows".into(), dropped as f64);
        }
        Ok(o)
    }
}
