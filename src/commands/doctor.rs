//! `t2s doctor`: version, paths, and what the libtorch worker reports (libtorch version, CUDA
//! devices). Exit 1 when the worker is missing or fails.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use crate::cache::Store;
use crate::runs::Tracker;
use crate::worker::{JobSpec, WorkerEvent, WorkerLauncher};

pub fn doctor(root: &Path) -> anyhow::Result<ExitCode> {
    println!("t2s        {}", env!("CARGO_PKG_VERSION"));
    println!("root       {}", root.display());
    println!(
        "artifacts  {}",
        root.join("artifacts")
            .join(format!("v{}", crate::cache::STORE_FORMAT))
            .display()
    );
    println!("database   {}", Tracker::path_for(root).display());
    // Opening the store proves the root is writable.
    if let Err(e) = Store::open(root) {
        eprintln!("error: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let worker = match WorkerLauncher::locate() {
        Ok(w) => w,
        Err(e) => {
            println!("worker     missing");
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("worker     {}", worker.exe.display());
    let cancel = AtomicBool::new(false);
    let result = worker.run(
        &JobSpec::of(&crate::worker::Job::Doctor(Default::default())),
        |ev| {
            if let WorkerEvent::Log { level, message } = ev {
                tracing::info!("worker {level}: {message}");
            }
        },
        &cancel,
    );
    match result {
        Ok(value) => {
            print_value("", &value);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "error: the libtorch worker {} does not work: {e}",
                worker.exe.display()
            );
            eprintln!("hint: rebuild it (`cargo build --release --workspace`) and check LD_LIBRARY_PATH (`source scripts/env.sh`)");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Print the worker's report as `key  value` lines (nested objects as `a.b`).
fn print_value(prefix: &str, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                print_value(&name, v);
            }
        }
        serde_json::Value::String(s) => println!("{prefix:<10} {s}"),
        other => println!("{prefix:<10} {other}"),
    }
}
