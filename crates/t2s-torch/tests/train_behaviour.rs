//! Loop behaviour with HF `Trainer` semantics, on a one-parameter model whose train and eval
//! losses are known functions of its weight: best checkpoint, early stopping (forced rising eval
//! loss), NaN loss (clear error, last good checkpoint kept) and bad inputs.

mod train_util;

use std::path::Path;

use t2s::train_plan::{SchedulerKind, TrainParams};
use t2s::worker::WorkerEvent;
use t2s_torch::trainer::checkpoint;
use t2s_torch::trainer::{train, RunConfig, TrainExample, Trainable};
use tch::{Device, Kind, Tensor};
use train_util::*;

/// Train loss (w - target)², eval loss (w - eval_center)²; NaN once w exceeds `nan_above`.
struct Quad {
    w: Tensor,
    target: f64,
    eval_center: f64,
    nan_above: Option<f64>,
}

impl Quad {
    fn new(target: f64, eval_center: f64, nan_above: Option<f64>) -> Self {
        Self {
            w: Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true),
            target,
            eval_center,
            nan_above,
        }
    }
    fn value(&self) -> f64 {
        self.w.double_value(&[0])
    }
}

impl Trainable for Quad {
    fn trainable(&self) -> Vec<(String, Tensor)> {
        vec![("w.weight".into(), self.w.shallow_clone())]
    }
    fn mean_loss(&self, _ids: &Tensor, _labels: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        let c = if train { self.target } else { self.eval_center };
        let l = (&self.w - c).square().sum(Kind::Float);
        Ok(match self.nan_above {
            Some(t) if self.value() > t => l * f64::NAN,
            _ => l,
        })
    }
    fn export(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("w.txt"), self.value().to_string())?;
        Ok(())
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
}

fn data(n: usize) -> Vec<TrainExample> {
    (0..n)
        .map(|i| TrainExample {
            input_ids: vec![2, 5 + i as u32, 7, 9],
            labels: vec![-100, 5 + i as i64, 7, 9],
        })
        .collect()
}

fn params(patience: u64, load_best: bool) -> TrainParams {
    TrainParams {
        lr: 1.0,
        scheduler: SchedulerKind::Constant,
        max_grad_norm: 0.0,
        batch_size: 2,
        max_steps: 12,
        eval_steps: 1,
        save_steps: 0,
        logging_steps: 1,
        early_stopping_patience: patience,
        load_best_model_at_end: load_best,
        ..Default::default()
    }
}

fn run(
    m: &Quad,
    p: &TrainParams,
    partial: Option<&Path>,
) -> anyhow::Result<t2s_torch::trainer::TrainOutcome> {
    let cfg = RunConfig {
        params: p,
        pad_id: 0,
        partial_dir: partial,
        stop_after: None,
    };
    train(m, &data(8), &data(4), &cfg, &mut |_| {})
}

fn evals(o: &t2s_torch::trainer::TrainOutcome) -> Vec<(u64, f64)> {
    o.state
        .log_history
        .iter()
        .filter_map(|l| Some((l.step, l.eval_loss?)))
        .collect()
}

#[test]
fn rising_eval_loss_stops_after_patience_and_restores_the_best_weights() {
    // w walks from 0 towards 10: the eval loss w² rises from the first evaluation on.
    let m = Quad::new(10.0, 0.0, None);
    let mut w_at = Vec::new();
    let p = params(2, true);
    let cfg = RunConfig {
        params: &p,
        pad_id: 0,
        partial_dir: None,
        stop_after: None,
    };
    let o = train(&m, &data(8), &data(4), &cfg, &mut |e| {
        if let WorkerEvent::Metric { name, .. } = &e {
            if name == "eval_loss" {
                w_at.push(m.value());
            }
        }
    })
    .unwrap();
    let ev = evals(&o);
    assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(ev[0].1 < ev[1].1 && ev[1].1 < ev[2].1, "{ev:?}");
    assert_eq!(
        o.state.global_step, 3,
        "patience 2 stops two evaluations after the best"
    );
    assert_eq!(o.state.best_global_step, Some(1));
    assert_eq!(o.state.best_metric, Some(ev[0].1));
    assert!(o.state.should_training_stop && o.loaded_best);
    assert_eq!(
        m.value(),
        w_at[0],
        "the best (step 1) weights are the final ones"
    );
}

#[test]
fn best_in_the_middle_and_no_best_restore_without_load_best() {
    // Eval centre 2.2: the eval loss falls, then rises once w passes it.
    let m = Quad::new(10.0, 2.2, None);
    let o = run(&m, &params(1, false), None).unwrap();
    let ev = evals(&o);
    let best = ev.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(o.state.best_global_step, Some(best.0));
    assert!(best.0 > 1, "the eval loss should improve first: {ev:?}");
    assert_eq!(
        o.state.global_step,
        best.0 + 1,
        "patience 1: stop at the first non-improvement"
    );
    assert!(!o.loaded_best);
    // The final weights are the last step's (eval loss (w - 2.2)² there), not the best's.
    let last = ev.last().unwrap().1.sqrt();
    assert!(((m.value() - 2.2).abs() - last).abs() < 1e-5);
    assert!(last > best.1.sqrt());
    // Without patience, training runs to max_steps.
    let m = Quad::new(10.0, 2.2, None);
    let o = run(&m, &params(0, true), None).unwrap();
    assert_eq!(o.state.global_step, 12);
    assert!(o.loaded_best);
}

#[test]
fn nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let partial = tmp.path().join("partial");
    let m = Quad::new(10.0, 0.0, Some(2.5));
    let mut p = params(0, false);
    p.save_steps = 1;
    p.eval_steps = 0;
    let e = run(&m, &p, Some(&partial)).unwrap_err().to_string();
    assert!(e.contains("loss became NaN at step"), "{e}");
    assert!(e.contains("lower lr"), "{e}");
    assert!(e.contains("last good checkpoint"), "{e}");
    let kept = checkpoint::list(&partial);
    let (step, _) = kept.last().expect("a checkpoint survives");
    assert!(e.contains(&format!("(step {step})")), "{e}");
    // The kept checkpoint is complete and finite, and a rerun would resume from it.
    // Checkpoints record the params but `stop_at_step` (a stopped training shares them).
    let mut params_json = serde_json::to_value(&p).unwrap();
    params_json.as_object_mut().unwrap().remove("stop_at_step");
    let ck = checkpoint::latest(&partial, &params_json, u64::MAX, &mut |w| panic!("{w}")).unwrap();
    let w = ck.trainable[0].1.double_value(&[0]);
    assert!(w.is_finite() && w <= 2.5 + 1.5, "checkpoint weight {w}");
}

#[test]
fn empty_and_too_long_training_data_are_clear_errors() {
    let m = Quad::new(1.0, 0.0, None);
    let p = params(0, false);
    let cfg = RunConfig {
        params: &p,
        pad_id: 0,
        partial_dir: None,
        stop_after: None,
    };
    let e = train(&m, &[], &[], &cfg, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("the train split is empty"), "{e}");
    let p = TrainParams {
        max_length: 3,
        ..params(0, false)
    };
    let cfg = RunConfig { params: &p, ..cfg };
    let e = train(&m, &data(4), &data(2), &cfg, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("all 4 training examples are longer than max_length 3"),
        "{e}"
    );
    assert!(e.contains("raise `max_length`"), "{e}");
    // Evaluation asked for without a validation split.
    let p = params(0, false);
    let cfg = RunConfig { params: &p, ..cfg };
    let e = train(&m, &data(4), &[], &cfg, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("validation split is empty"), "{e}");
}

#[test]
fn the_worker_reports_an_empty_train_split_without_panicking_or_writing_output() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = tiny_model_dir(&root.join("model"), 32);
    let split = root.join("split");
    write_split(&split, &[], &[]);
    let out = root.join("out");
    let params = serde_json::json!({"lora_r": 2, "device": "cpu"});
    let r = run_worker(
        &spec(params, &split, Some(&model), &out, &root.join("partial")),
        None,
    );
    assert!(!r.success);
    let msg = r.error().expect("an error event");
    assert!(msg.contains("the train split is empty"), "{msg}");
    assert!(!msg.contains("panic"), "{msg}");
    assert!(!out.join("adapter_model.safetensors").exists());
}
