//! The table of built-in stage kinds. Adding a kind = one line here.

use super::StageKind;

/// All built-in stage kinds.
pub fn all() -> Vec<&'static dyn StageKind> {
    vec![
        // one entry per kind, e.g. &super::command::CommandStage,
        &super::command::CommandStage,
        &super::load::LoadStage,
        &super::eda::EdaStage,
        &super::tokenizer::TokenizerStage,
        &super::preprocess::PreprocessStage,
        &super::split::SplitStage,
        &super::evaluate::EvaluateStage,
        &super::model::ModelStage,
        &super::train::TrainStage,
        &super::report::ReportStage,
    ]
}

/// Look a kind up by its `kind:` name.
pub fn lookup(kind: &str) -> Option<&'static dyn StageKind> {
    all().into_iter().find(|k| k.kind() == kind)
}

/// Names of all kinds, for error hints.
pub fn kind_names() -> Vec<&'static str> {
    all().into_iter().map(|k| k.kind()).collect()
}
