//! The optimizer-step loop: batches from the plan, accumulation with HF's token-count
//! normalisation, clipping, AdamW, schedule, logging, evaluation, best weights, early
//! stopping and checkpoints; resumes from the newest checkpoint of the partial area.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use t2s::train_plan::{
    derive_seed, pad_right, BatchPlan, EarlyStoppingState, LogEntry, LrSchedule, StepPlan,
    TrainParams, TrainerState,
};
use t2s::worker::protocol::WorkerEvent;
use tch::Tensor;

use super::checkpoint::{self, Meta};
use super::optim::Optimizer;
use super::{TrainExample, Trainable};

const TAG_DROPOUT: u64 = 2;

/// Where a run reads and writes, besides the model and data.
pub struct RunConfig<'a> {
    pub params: &'a TrainParams,
    pub pad_id: i64,
    /// Checkpoint area (resume); `None` trains without checkpoints.
    pub partial_dir: Option<&'a Path>,
    /// Stop after this many optimizer steps of *this* process (tests simulate a crash).
    pub stop_after: Option<u64>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub state: TrainerState,
    /// The step the run continued from (a checkpoint), if any.
    pub resumed_from: Option<u64>,
    /// HF's `train_loss`: the mean of all step losses.
    pub train_loss: f64,
    pub train_tokens: u64,
    /// The loss of every optimizer step this process ran, in order.
    pub step_losses: Vec<f64>,
    /// Examples dropped for exceeding `max_length`.
    pub dropped_too_long: usize,
    /// The final weights are those of the best evaluation.
    pub loaded_best: bool,
}

/// A micro-batch as tensors plus its loss-token count.
struct Micro {
    /// On the model's device.
    ids: Tensor,
    /// On the CPU (see `Trainable::mean_loss`).
    labels: Tensor,
    loss_tokens: usize,
    real_tokens: usize,
}

/// One micro-batch (ids on `dev`, labels on the host), right-padded to a length rounded up as
/// `p.pad_multiple` says (within `p.pad_limit`).
fn micro(
    examples: &[TrainExample],
    idx: &[usize],
    pad_id: i64,
    p: &TrainParams,
    dev: tch::Device,
) -> anyhow::Result<Micro> {
    let pairs: Vec<(&[u32], &[i64])> = idx
        .iter()
        .map(|&i| {
            (
                examples[i].input_ids.as_slice(),
                examples[i].labels.as_slice(),
            )
        })
        .collect();
    let batch = pad_right(
        &pairs,
        pad_id.max(0) as u32,
        p.pad_multiple(dev.is_cuda()),
        p.pad_limit(pairs.len()),
    );
    let shape = [batch.rows as i64, batch.cols as i64];
    Ok(Micro {
        // Uploaded from pinned memory: the host does not wait for the device.
        ids: crate::device::upload(
            &Tensor::f_from_slice(&batch.input_ids)?.f_reshape(shape)?,
            dev,
        )?,
        labels: Tensor::f_from_slice(&batch.labels)?.f_reshape(shape)?,
        loss_tokens: batch.loss_tokens,
        real_tokens: batch.real_tokens,
    })
}

/// Turn libtorch's out-of-memory failures into advice.
fn explain(e: anyhow::Error, p: &TrainParams) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("out of memory") {
        let knob = if p.token_budget > 0 {
            format!("token_budget (now {})", p.token_budget)
        } else {
            format!("batch_size (now {}) or set a token_budget", p.batch_size)
        };
        anyhow::anyhow!(
            "the device ran out of memory while training; lower {knob} or max_length (now {}), raising grad_accum to keep the effective batch ({text})",
            p.max_length
        )
    } else {
        e
    }
}

/// Token-weighted mean loss over `examples` (no gradient, no dropout).
pub fn eval_loss(
    model: &dyn Trainable,
    examples: &[TrainExample],
    p: &TrainParams,
    pad_id: i64,
) -> anyhow::Result<f64> {
    let lengths: Vec<usize> = examples.iter().map(|e| e.input_ids.len()).collect();
    let plan = BatchPlan::new(
        &lengths,
        p.max_length as usize,
        p.batch_by(),
        true,
        false,
        0,
    )
    .map_err(|e| anyhow::anyhow!("validation split: {e}"))?;
    let _g = tch::no_grad_guard();
    // Summed on the device and read once: no wait for the device per batch.
    let (mut sum, mut n): (Option<Tensor>, usize) = (None, 0);
    for idx in plan.epoch(0) {
        let m = micro(examples, &idx, pad_id, p, model.device())?;
        if m.loss_tokens == 0 {
            continue;
        }
        let l = model
            .mean_loss(&m.ids, &m.labels, false)?
            .f_to_kind(tch::Kind::Double)?
            .f_mul_scalar(m.loss_tokens as f64)?;
        sum = Some(match sum {
            None => l,
            Some(s) => s.f_add(&l)?,
        });
        n += m.loss_tokens;
    }
    match sum {
        Some(s) if n > 0 => Ok(s.f_double_value(&[])? / n as f64),
        _ => bail!("the validation split has no answer tokens to score; check its labels"),
    }
}

/// Train `model` on `train` (evaluating on `valid`), emitting metric and progress events.
pub fn train(
    model: &dyn Trainable,
    train: &[TrainExample],
    valid: &[TrainExample],
    cfg: &RunConfig,
    emit: &mut dyn FnMut(WorkerEvent),
) -> anyhow::Result<TrainOutcome> {
    let p = cfg.params;
    if let Some((name, msg)) = p.problems().first() {
        bail!("train param `{name}` {msg}");
    }
    let lengths: Vec<usize> = train.iter().map(|e| e.input_ids.len()).collect();
    let plan = BatchPlan::new(
        &lengths,
        p.max_length as usize,
        p.batch_by(),
        p.group_by_length,
        p.shuffle,
        p.seed,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if p.eval_steps > 0 && valid.is_empty() {
        bail!("eval_steps is {} but the validation split is empty; give the split stage a validation fraction or set eval_steps: 0", p.eval_steps);
    }
    let steps = StepPlan::new(
        plan.batches_per_epoch() as u64,
        p.grad_accum,
        p.epochs,
        p.max_steps,
    );
    let params = model.trainable();
    if params.is_empty() {
        bail!("the model has no trainable tensors (check method and target_modules)");
    }
    let mut run = Loop {
        model,
        cfg,
        sched: schedule(p, &steps),
        opt: Optimizer::new(&params, (p.betas[0], p.betas[1]), p.eps, p.weight_decay)?,
        params_json: checkpoint_params(p)?,
        state: fresh_state(p, &steps),
        params,
        counters: Counters::default(),
        best_mem: None,
        step_losses: Vec::new(),
    };
    // A training stopped part way (a halving rung) ends at `stop_at_step` of the full schedule.
    let end = match p.stop_at_step {
        0 => steps.total_steps,
        s => s.min(steps.total_steps),
    };
    let resumed_from = match cfg.partial_dir {
        Some(partial) => run.resume(partial, end, emit)?,
        None => None,
    };
    let mut epoch_cache: Option<(u64, Vec<Vec<usize>>)> = None;
    let mut ran = 0u64;
    for g in run.state.global_step..end {
        if run.state.should_training_stop || cfg.stop_after.is_some_and(|n| ran >= n) {
            break;
        }
        let t0 = Instant::now();
        let (epoch, range) = steps.cursor(g);
        if epoch_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            epoch_cache = Some((epoch, plan.epoch(epoch)));
        }
        let batches = &epoch_cache.as_ref().map(|(_, b)| b).expect("set above")[range];
        let done = run.optimizer_step(train, batches, g, steps.grad_accum)?;
        ran += 1;
        run.state.global_step = g + 1;
        run.state.epoch = steps.epoch_after(g);
        run.record(&done, t0, steps.total_steps, emit);
        let step = run.state.global_step;
        if p.eval_steps > 0 && step.is_multiple_of(p.eval_steps) {
            run.evaluate(valid, emit)?;
        }
        let last = step == end || run.state.should_training_stop;
        if let Some(partial) = cfg.partial_dir {
            if p.save_steps > 0 && (step.is_multiple_of(p.save_steps) || last) {
                run.checkpoint(partial, train.len())?;
            }
        }
    }
    if cfg.stop_after.is_some_and(|n| ran >= n)
        && run.state.global_step < end
        && !run.state.should_training_stop
    {
        bail!(
            "stopped after {ran} steps as asked (step {})",
            run.state.global_step
        );
    }
    run.finish(resumed_from, plan.dropped_too_long)
}

/// The params a checkpoint records, and a resume must match: all but `stop_at_step`, so a
/// training stopped part way and the same training run further share their checkpoints.
fn checkpoint_params(p: &TrainParams) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(p)?;
    if let Some(m) = v.as_object_mut() {
        m.remove("stop_at_step");
    }
    Ok(v)
}

/// The learning-rate schedule of a run of `steps`.
fn schedule(p: &TrainParams, steps: &StepPlan) -> LrSchedule {
    LrSchedule {
        kind: p.scheduler,
        base_lr: p.lr,
        warmup_steps: LrSchedule::warmup_steps_for(
            steps.total_steps,
            p.warmup_steps,
            p.warmup_ratio,
        ),
        total_steps: steps.total_steps,
    }
}

/// The trainer state before the first step.
fn fresh_state(p: &TrainParams, steps: &StepPlan) -> TrainerState {
    TrainerState {
        max_steps: steps.total_steps,
        num_train_epochs: steps.total_steps.div_ceil(steps.updates_per_epoch),
        train_batch_size: p.batch_size as usize,
        logging_steps: p.logging_steps,
        eval_steps: p.eval_steps,
        save_steps: p.save_steps,
        early_stopping: EarlyStoppingState {
            early_stopping_patience: p.early_stopping_patience,
            early_stopping_threshold: p.early_stopping_threshold,
            early_stopping_patience_counter: 0,
        },
        ..Default::default()
    }
}

/// Running sums a checkpoint keeps, so a resumed run logs and reports as a straight one.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    /// Loss sum and step count since the last log entry.
    window_sum: f64,
    window_steps: u64,
    total_loss: f64,
    tokens: u64,
}

/// One optimizer step's results.
struct StepDone {
    loss: f64,
    tokens: u64,
    grad_norm: f64,
    lr: f64,
}

/// What the steps of one run share.
struct Loop<'a> {
    model: &'a dyn Trainable,
    cfg: &'a RunConfig<'a>,
    sched: LrSchedule,
    opt: Optimizer,
    params: Vec<(String, Tensor)>,
    /// The params as checkpoints record them (a checkpoint of other params is not resumed).
    params_json: serde_json::Value,
    state: TrainerState,
    counters: Counters,
    /// The weights of the best evaluation so far.
    best_mem: Option<Vec<(String, Tensor)>>,
    step_losses: Vec<f64>,
}

impl Loop<'_> {
    /// Continue from the newest usable checkpoint in `partial` at or before step `end`: the
    /// step it holds.
    fn resume(
        &mut self,
        partial: &Path,
        end: u64,
        emit: &mut dyn FnMut(WorkerEvent),
    ) -> anyhow::Result<Option<u64>> {
        checkpoint::clean_tmp(partial);
        let mut warn = |m: String| {
            emit(WorkerEvent::Log {
                level: "warn".into(),
                message: m,
            })
        };
        let Some(ck) = checkpoint::latest(partial, &self.params_json, end, &mut warn) else {
            return Ok(None);
        };
        let at = format!("checkpoint {}", ck.dir.display());
        checkpoint::restore(&self.params, &ck.trainable, &at)?;
        self.opt.load_state(&ck.optimizer).context(at)?;
        self.state = ck.meta.state;
        self.counters = Counters {
            window_sum: ck.meta.loss_window_sum,
            window_steps: ck.meta.loss_window_steps,
            total_loss: ck.meta.total_loss_sum,
            tokens: ck.meta.train_tokens,
        };
        if let Some(b) = self.state.best_global_step {
            self.best_mem = Some(checkpoint::load_best(partial, b)?);
        }
        emit(WorkerEvent::Log {
            level: "info".into(),
            message: format!(
                "resuming from {} (step {})",
                ck.dir.display(),
                self.state.global_step
            ),
        });
        Ok(Some(self.state.global_step))
    }

    /// Optimizer update number `g` over its micro-batches `batches` (`ga` a step).
    fn optimizer_step(
        &mut self,
        train: &[TrainExample],
        batches: &[Vec<usize>],
        g: u64,
        ga: u64,
    ) -> anyhow::Result<StepDone> {
        let (p, model) = (self.cfg.params, self.model);
        let micros = batches
            .iter()
            .map(|idx| micro(train, idx, self.cfg.pad_id, p, model.device()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // HF with num_items_in_batch: every micro-batch's summed loss over the tokens of the
        // whole optimizer step.
        let n_items: usize = micros.iter().map(|m| m.loss_tokens).sum();
        // The step's loss and gradient norm stay on the device until the update is queued:
        // one wait for the device per step, after all its work is issued.
        let mut loss_sum: Option<Tensor> = None;
        let mut tokens = 0u64;
        for (j, m) in micros.iter().enumerate() {
            tokens += m.real_tokens as u64;
            if m.loss_tokens == 0 {
                continue;
            }
            tch::manual_seed(derive_seed(p.seed, TAG_DROPOUT, g * ga + j as u64) as i64);
            let opt = &mut self.opt;
            let mut run_micro = || -> anyhow::Result<Tensor> {
                let l = model.mean_loss(&m.ids, &m.labels, true)?;
                let scaled = l.f_mul_scalar(m.loss_tokens as f64 / n_items as f64)?;
                opt.backward(&scaled)?;
                Ok(scaled.f_detach()?)
            };
            let l = run_micro().map_err(|e| explain(e, p))?;
            loss_sum = Some(match loss_sum {
                None => l,
                Some(sum) => sum.f_add(&l)?,
            });
        }
        let grad_norm = self.opt.clip_grad_norm(p.max_grad_norm)?;
        let lr = self.sched.lr(g);
        self.opt.step(lr)?;
        self.opt.zero_grad();
        let loss = match loss_sum {
            Some(t) => t.f_double_value(&[])?,
            None => 0.0,
        };
        if !loss.is_finite() {
            let kept = self
                .cfg
                .partial_dir
                .and_then(|d| {
                    checkpoint::list(d).last().map(|(s, _)| {
                        format!(
                            "; the last good checkpoint (step {s}) is kept in {}",
                            d.display()
                        )
                    })
                })
                .unwrap_or_default();
            bail!(
                "the training loss became {loss} at step {} (lr {lr:.3e}); lower lr (now {}) or raise warmup, check the data for empty answers{kept}",
                g + 1,
                p.lr
            );
        }
        Ok(StepDone {
            loss,
            tokens,
            grad_norm: grad_norm.f_double_value(&[])?,
            lr,
        })
    }

    /// A finished step's metrics, progress and log entry.
    fn record(
        &mut self,
        done: &StepDone,
        t0: Instant,
        total_steps: u64,
        emit: &mut dyn FnMut(WorkerEvent),
    ) {
        let step = self.state.global_step;
        self.step_losses.push(done.loss);
        let c = &mut self.counters;
        c.total_loss += done.loss;
        c.window_sum += done.loss;
        c.window_steps += 1;
        c.tokens += done.tokens;
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let tps = done.tokens as f64 / secs;
        for (name, v) in [
            ("loss", done.loss),
            ("learning_rate", done.lr),
            ("grad_norm", done.grad_norm),
            ("tokens_per_s", tps),
        ] {
            emit(WorkerEvent::Metric {
                name: name.into(),
                step: Some(step as i64),
                value: v,
            });
        }
        emit(WorkerEvent::Progress {
            done: step,
            total: Some(total_steps),
            message: format!("loss {:.4} lr {:.2e} {tps:.0} tok/s", done.loss, done.lr),
        });
        if step.is_multiple_of(self.cfg.params.logging_steps) {
            self.state.log_history.push(LogEntry {
                step,
                epoch: self.state.epoch,
                loss: Some(c.window_sum / c.window_steps as f64),
                learning_rate: Some(done.lr),
                grad_norm: Some(done.grad_norm),
                ..Default::default()
            });
            (c.window_sum, c.window_steps) = (0.0, 0);
        }
    }

    /// Eval loss now; a new best keeps its weights (in memory and in the partial area).
    fn evaluate(
        &mut self,
        valid: &[TrainExample],
        emit: &mut dyn FnMut(WorkerEvent),
    ) -> anyhow::Result<()> {
        let (p, step) = (self.cfg.params, self.state.global_step);
        let el = eval_loss(self.model, valid, p, self.cfg.pad_id).map_err(|e| explain(e, p))?;
        emit(WorkerEvent::Metric {
            name: "eval_loss".into(),
            step: Some(step as i64),
            value: el,
        });
        if self.state.record_eval(el).new_best {
            let copy = self
                .params
                .iter()
                .map(|(n, t)| Ok((n.clone(), t.f_detach_copy()?)))
                .collect::<Result<Vec<_>, tch::TchError>>()?;
            if let Some(partial) = self.cfg.partial_dir {
                checkpoint::save_best(partial, step, &copy)?;
            }
            self.best_mem = Some(copy);
        }
        Ok(())
    }

    /// A resumable checkpoint of now.
    fn checkpoint(&self, partial: &Path, train_examples: usize) -> anyhow::Result<()> {
        let c = self.counters;
        let meta = Meta {
            format: checkpoint::FORMAT,
            params: self.params_json.clone(),
            train_examples,
            state: self.state.clone(),
            loss_window_sum: c.window_sum,
            loss_window_steps: c.window_steps,
            total_loss_sum: c.total_loss,
            train_tokens: c.tokens,
        };
        checkpoint::save(partial, &self.params, &self.opt.state()?, &meta)?;
        Ok(())
    }

    /// The best weights when asked for, the final log entry, the outcome.
    fn finish(
        mut self,
        resumed_from: Option<u64>,
        dropped_too_long: usize,
    ) -> anyhow::Result<TrainOutcome> {
        let mut loaded_best = false;
        if self.cfg.params.load_best_model_at_end {
            if let Some(best) = &self.best_mem {
                checkpoint::restore(&self.params, best, "the best weights")?;
                loaded_best = true;
            }
        }
        let state = &mut self.state;
        let train_loss = if state.global_step > 0 {
            self.counters.total_loss / state.global_step as f64
        } else {
            f64::NAN
        };
        state.log_history.push(LogEntry {
            step: state.global_step,
            epoch: state.epoch,
            train_loss: Some(train_loss),
            ..Default::default()
        });
        Ok(TrainOutcome {
            state: self.state,
            resumed_from,
            train_loss,
            train_tokens: self.counters.tokens,
            step_losses: self.step_losses,
            dropped_too_long,
            loaded_best,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_becomes_advice_naming_the_knobs() {
        let p = TrainParams {
            token_budget: 4096,
            ..Default::default()
        };
        let e = explain(
            anyhow::anyhow!("libtorch: CUDA out of memory. Tried to allocate 2.00 GiB"),
            &p,
        );
        let m = e.to_string();
        assert!(
            m.contains("ran out of memory") && m.contains("token_budget (now 4096)"),
            "{m}"
        );
        assert!(m.contains("grad_accum"), "{m}");
        let p = TrainParams::default();
        let m = explain(anyhow::anyhow!("CUDA out of memory"), &p).to_string();
        assert!(m.contains("batch_size (now 8)"), "{m}");
        let m = explain(anyhow::anyhow!("shape mismatch"), &p).to_string();
        assert_eq!(m, "shape mismatch");
    }
}
