//! `t2s exec-node --spec FILE` (hidden): the command a Slurm job script runs. It runs exactly
//! the node of the spec and writes the result file the controller reads; see
//! `exec::slurm::job`. Exit 0 when the stage succeeded, 1 otherwise (so Slurm marks the job
//! FAILED too).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::ExecNodeArgs;

/// Set by SIGTERM (`scancel`, the time limit) or SIGINT: the stage stops; its checkpoints stay.
static CANCEL: AtomicBool = AtomicBool::new(false);

pub fn exec_node(args: &ExecNodeArgs) -> anyhow::Result<ExitCode> {
    let _ = ctrlc::set_handler(|| {
        if !CANCEL.swap(true, Ordering::SeqCst) {
            eprintln!("t2s exec-node: signal received: stopping the stage (checkpoints are kept)");
        }
    });
    Ok(if crate::exec::slurm::run_job(&args.spec, &CANCEL)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
