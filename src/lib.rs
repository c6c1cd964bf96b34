//! t2s: reproducible, cached LLM fine-tuning experiments from a YAML pipeline.
//!
//! This crate is the orchestrator. It never links libtorch: tensor work is delegated to the
//! `t2s-worker` binary of the `t2s-torch` crate (see `worker`).

pub mod cache;
pub mod child;
pub mod cli;
pub mod commands;
pub mod data;
pub mod eval;
pub mod exec;
pub mod model_config;
pub mod panics;
pub mod pipeline;
pub mod report;
pub mod runs;
pub mod search;
pub mod stages;
pub mod train_plan;
pub mod worker;
