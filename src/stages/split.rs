//! The `split` stage: a preprocess artifact → `train/`, `validation/`, `test/` (each in the
//! examples layout; read with `data::load_split`) + `split_report.json`. Seeded, optionally
//! stratified, no id or prompt in two subsets, the data's own test split used when present.
//! With another `split` artifact among its needs (a pretraining corpus split next to the task's
//! split), rows whose request or query occurs in that split's validation or test set are
//! dropped first, so pretraining never sees the evaluation's answers.

use super::common::{copy_into, input_with};
use super::params::{ParamSet, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::data::examples::{read_stored, write_stored, INDEX_FILE};
use crate::data::split::{decontaminate, split, SplitParams};

pub struct SplitStage;

static PARAMS: Typed<SplitParams> = Typed::new();

impl StageKind for SplitStage {
    fn kind(&self) -> &'static str {
        "split"
    }
    fn about(&self) -> &'static str {
        "A preprocess artifact → seeded `train/`, `validation/`, `test/` with no id or prompt in two subsets; the data's own test split is used when present; rows in another split's evaluation sets among the needs are dropped first."
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let sp = PARAMS.read(ctx.params)?;
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
        super::common::write_json(&ctx.out_dir.join("split_report.json"), &report)?;
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
