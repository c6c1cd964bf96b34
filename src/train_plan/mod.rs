//! Training logic that needs no libtorch: typed `train` params, LR schedules and step counting
//! (HF `Trainer` arithmetic), batching with length bucketing, and the trainer state with
//! best-checkpoint tracking and early stopping. The worker's tensor loop
//! (`t2s_torch::train`) drives these; keeping them here lets them be unit-tested cheaply.

pub mod batching;
pub mod params;
pub mod schedule;
pub mod state;

pub use batching::{derive_seed, pad_right, BatchBy, BatchError, BatchPlan, PaddedBatch};
pub use params::{Dtype, Init, Method, TrainParams};
pub use schedule::{LrSchedule, SchedulerKind, StepPlan};
pub use state::{EarlyStoppingState, EvalOutcome, LogEntry, TrainerState};
