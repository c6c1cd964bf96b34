//! The integration tests of the `t2s` crate: one test binary (as ripgrep's), one module per
//! area, with the shared helpers in `common`, `data_common` and the hub stand-in server.
//! Tests that change process-wide state (environment variables, the working directory) rerun
//! themselves alone in a child process: `common::rerun_alone`.

mod common;
mod data_common;
#[path = "../fixtures/hub_server.rs"]
mod hub_server;

mod cli_completions;
mod cli_dag;
mod cli_doctor;
mod cli_errors;
mod cli_export_signals;
mod cli_kinds;
mod cli_runs;
mod command_children;
mod data_eda;
mod data_generator;
mod data_load;
mod data_preprocess;
mod data_split;
mod data_stages;
mod eval_command;
mod eval_exec;
mod eval_hostile;
mod eval_metrics_parity;
mod eval_stage;
mod eval_stats;
mod eval_testsuite;
mod hostile_inputs;
mod hub_pipeline;
mod hub_rank_sweep;
mod hub_standin;
mod pipeline_command;
mod pipeline_example;
mod pipeline_expand;
mod pipeline_smoke;
mod pipeline_validation;
mod report_render;
mod run_cache;
mod run_concurrent;
mod run_kill;
mod run_remote;
mod run_select;
mod run_slots;
mod run_stderr_full;
mod search_halving;
mod search_run;
mod slurm_executor;
mod stage_golden;
mod store_gc;
mod worker_parent;
