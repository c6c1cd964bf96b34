//! Evaluation of predicted SQL: text metrics as pure functions (BLEU in HF `evaluate` and
//! sacrebleu flavours, ROUGE, normalized exact match), a SQLite sandbox for untrusted SQL,
//! execution accuracy, bootstrap CIs and paired tests, SQL extraction from generated text, and
//! the scorer that ties them together. No libtorch, no pipeline concerns here.

pub mod bleu;
pub mod compare;
pub mod exact;
pub mod exec;
pub mod extract;
pub mod input;
pub mod nearmiss;
pub mod outcome;
pub mod render;
pub mod rouge;
pub mod sandbox;
pub mod score;
pub mod scoring;
pub mod sqllex;
pub mod stats;
pub mod testsuite;
pub mod tokenize;
pub mod value;
