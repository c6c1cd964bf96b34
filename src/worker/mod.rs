//! The boundary to the libtorch worker (`t2s-worker`, crate `t2s-torch`).
//!
//! `t2s` never links libtorch. Tensor work runs in a child process: a JSON job spec goes in
//! (a file path on the command line), JSON-lines events come out on stdout, and the exit status
//! says whether the job succeeded. A crash, kill or CUDA OOM of the worker fails that one job.

pub mod generate;
pub mod jobs;
pub mod launcher;
pub mod protocol;

pub use jobs::Job;
pub use launcher::{WorkerError, WorkerLauncher};
pub use protocol::{JobSpec, WorkerEvent};
