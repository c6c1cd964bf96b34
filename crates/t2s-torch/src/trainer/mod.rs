//! The training loop of the `train` job: LoRA or full fine-tuning with HF `Trainer` semantics
//! (AdamW, warmup + decay, gradient accumulation with the loss averaged over all answer tokens
//! of the optimizer step, global-norm clipping, eval loss, best checkpoint, early stopping) and
//! crash-safe step checkpoints for resume.
//!
//! The libtorch-free parts (schedule, batching, trainer state, params) live in
//! `t2s::train_plan`; the loop drives any model through the small [`Trainable`] trait.
//! (Named `trainer` because `train.rs` holds the model layer's loss and optimizer blocks.)

pub mod checkpoint;
pub mod job;
pub mod models;
pub mod optim;
pub mod run;

use std::path::Path;

use tch::{Device, Tensor};

pub use models::{FullModel, LoraModel};
pub use run::{train, RunConfig, TrainOutcome};

/// One tokenized example: `labels` is -100 where the loss is masked (prompt, padding).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainExample {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// What the loop needs from a model being trained.
pub trait Trainable {
    /// The trainable tensors (`requires_grad`), named, in a fixed order, sharing storage with
    /// the model so in-place optimizer updates change the model.
    fn trainable(&self) -> Vec<(String, Tensor)>;
    /// Mean cross-entropy over the loss tokens (HF's shifted causal-LM loss) of one
    /// right-padded micro-batch: `ids`, `labels` are `[B, S]` int64, `ids` on the model's
    /// device, `labels` on the CPU (the labelled positions are found there, so a GPU never
    /// waits for that data-dependent step) or on the model's device.
    fn mean_loss(&self, ids: &Tensor, labels: &Tensor, train: bool) -> anyhow::Result<Tensor>;
    /// Write the final artifact (PEFT adapter, or full HF weights) into `dir`.
    fn export(&self, dir: &Path) -> anyhow::Result<()>;
    fn device(&self) -> Device;
}
