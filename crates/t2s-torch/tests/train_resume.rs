//! Crash-safe resume: the worker's `train` job is killed with SIGKILL at several steps and
//! rerun on the same partial area; the final adapter is byte-identical to an uninterrupted
//! run's, and so is the trainer state.

mod train_util;

use serde_json::json;
use train_util::*;

fn params() -> serde_json::Value {
    json!({
        "method": "lora", "lora_r": 4, "lora_alpha": 8.0, "lora_dropout": 0.1,
        "lr": 3e-3, "weight_decay": 0.01, "warmup_ratio": 0.1, "scheduler": "cosine",
        "batch_size": 2, "grad_accum": 2, "epochs": 3.0, "max_length": 64,
        "eval_steps": 3, "save_steps": 2, "logging_steps": 2, "load_best_model_at_end": true,
        "seed": 7, "device": "cpu"
    })
}

#[test]
fn killed_runs_resume_to_the_same_adapter_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = tiny_model_dir(&root.join("model"), 64);
    let data = root.join("split");
    write_split(&data, &examples(24, 64, 12, 1), &examples(6, 64, 12, 2));

    let a = run_worker(
        &spec(
            params(),
            &data,
            Some(&model),
            &root.join("out-a"),
            &root.join("partial-a"),
        ),
        None,
    );
    assert!(a.success, "uninterrupted run failed: {:?}", a.error());
    assert_eq!(a.result().unwrap()["metrics"]["global_step"], json!(18));

    // Kill at steps 5 and 11, then let it finish. Kills may land mid-checkpoint.
    let partial = root.join("partial-b");
    let mut resumed = Vec::new();
    for (i, kill) in [Some(5), Some(11), None].into_iter().enumerate() {
        let r = run_worker(
            &spec(
                params(),
                &data,
                Some(&model),
                &root.join(format!("out-b{i}")),
                &partial,
            ),
            kill,
        );
        if kill.is_some() {
            assert!(
                r.killed_at.is_some() && !r.success,
                "run {i} should have been killed"
            );
        } else {
            assert!(r.success, "final run failed: {:?}", r.error());
            resumed.push(r.result().unwrap()["resumed_from"].clone());
        }
    }
    let resumed_from = resumed[0]
        .as_u64()
        .expect("the last run resumed from a checkpoint");
    assert!(
        (10..=12).contains(&resumed_from),
        "resumed from step {resumed_from}"
    );

    let bytes = |d: &str, f: &str| std::fs::read(root.join(d).join(f)).unwrap();
    assert_eq!(
        bytes("out-a", "adapter_model.safetensors"),
        bytes("out-b2", "adapter_model.safetensors"),
        "resumed adapter differs from the uninterrupted one"
    );
    assert_eq!(
        bytes("out-a", "adapter_config.json"),
        bytes("out-b2", "adapter_config.json")
    );
    let text = |d: &str| String::from_utf8(bytes(d, "trainer_state.json")).unwrap();
    assert_eq!(
        text("out-a"),
        text("out-b2"),
        "trainer state differs after resume"
    );
    // Newest two checkpoints kept, no temp leftovers.
    let names: Vec<String> = std::fs::read_dir(&partial)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("checkpoint-"))
            .count(),
        2,
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with(".tmp-")), "{names:?}");
}
