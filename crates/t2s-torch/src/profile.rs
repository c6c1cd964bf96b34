//! Where the time of a profiled region went, from libtorch's Chrome trace (Kineto): GPU time by
//! kernel, how busy the GPU was, and the CPU ops that took longest.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

/// Kernel and op names are C++ templates; a summary keeps their heads.
const NAME_CHARS: usize = 140;

#[derive(Deserialize)]
struct Trace {
    #[serde(rename = "traceEvents", default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    ph: String,
    #[serde(default)]
    cat: String,
    #[serde(default)]
    name: String,
    /// Microseconds.
    #[serde(default)]
    ts: f64,
    #[serde(default)]
    dur: f64,
}

/// Total duration and count per name, the `top` largest first, in ms per step.
fn top_by_name(events: &[&Event], steps: f64, top: usize) -> Vec<Value> {
    let mut by: HashMap<&str, (f64, u64)> = HashMap::new();
    for e in events {
        let t = by.entry(e.name.as_str()).or_default();
        t.0 += e.dur;
        t.1 += 1;
    }
    let total: f64 = by.values().map(|t| t.0).sum();
    let mut rows: Vec<(&str, (f64, u64))> = by.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0).then(a.0.cmp(b.0)));
    rows.into_iter()
        .take(top)
        .map(|(name, (us, n))| {
            json!({
                "name": name.chars().take(NAME_CHARS).collect::<String>(),
                "ms_per_step": us / 1000.0 / steps,
                "calls_per_step": n as f64 / steps,
                "share": if total > 0.0 { us / total } else { 0.0 },
            })
        })
        .collect()
}

/// Length of the union of `[ts, ts + dur)` intervals (µs): time with at least one kernel running.
fn busy_us(events: &[&Event]) -> f64 {
    let mut spans: Vec<(f64, f64)> = events.iter().map(|e| (e.ts, e.ts + e.dur)).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut busy, mut end) = (0.0, f64::NEG_INFINITY);
    for (s, e) in spans {
        if s >= end {
            busy += e - s;
            end = e;
        } else if e > end {
            busy += e - end;
            end = e;
        }
    }
    busy
}

/// Summarise the Chrome trace at `path` of `steps` steps that took `wall_ms` in all.
pub fn summarize(path: &Path, steps: u64, wall_ms: f64, top: usize) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("profile trace {}: {e}", path.display()))?;
    let trace: Trace = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("profile trace {}: {e}", path.display()))?;
    let complete = |cat: &str| -> Vec<&Event> {
        trace
            .events
            .iter()
            .filter(|e| e.ph == "X" && e.cat == cat)
            .collect()
    };
    let kernels = complete("kernel");
    let cpu_ops = complete("cpu_op");
    let steps_f = steps.max(1) as f64;
    let kernel_us = kernels.iter().fold(0.0, |sum, e| sum + e.dur);
    Ok(json!({
        "trace": path.display().to_string(),
        "steps": steps,
        "wall_ms_per_step": wall_ms / steps_f,
        "kernels_per_step": kernels.len() as f64 / steps_f,
        // Sum of kernel durations, and the time with any kernel running (less when streams overlap).
        "gpu_kernel_ms_per_step": kernel_us / 1000.0 / steps_f,
        "gpu_busy_ms_per_step": busy_us(&kernels) / 1000.0 / steps_f,
        "top_kernels": top_by_name(&kernels, steps_f, top),
        "cpu_ops_per_step": cpu_ops.len() as f64 / steps_f,
        // Inclusive times: an op's children count in it too.
        "top_cpu_ops": top_by_name(&cpu_ops, steps_f, top),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_totalled_by_name_and_overlap_counts_once_in_busy_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.json");
        let ev = |cat: &str, name: &str, ts: f64, dur: f64| json!({"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur});
        let trace = json!({"traceEvents": [
            ev("kernel", "gemm", 0.0, 600.0),
            ev("kernel", "gemm", 1000.0, 600.0),
            ev("kernel", "softmax", 500.0, 200.0), // overlaps the first gemm by 100 µs
            ev("cpu_op", "aten::mm", 0.0, 50.0),
            {"ph": "i", "cat": "kernel", "name": "marker", "ts": 0.0},
        ]});
        std::fs::write(&f, trace.to_string()).unwrap();
        let s = summarize(&f, 2, 10.0, 5).unwrap();
        assert_eq!(s["kernels_per_step"], json!(1.5));
        assert_eq!(s["gpu_kernel_ms_per_step"], json!(0.7));
        assert_eq!(s["gpu_busy_ms_per_step"], json!(0.65));
        assert_eq!(s["wall_ms_per_step"], json!(5.0));
        let top = s["top_kernels"].as_array().unwrap();
        assert_eq!(top[0]["name"], "gemm");
        assert_eq!(top[0]["calls_per_step"], json!(1.0));
        assert_eq!(top[0]["ms_per_step"], json!(0.6));
        assert_eq!(top[1]["name"], "softmax");
        assert_eq!(s["top_cpu_ops"][0]["name"], "aten::mm");
        assert!(summarize(&dir.path().join("missing.json"), 1, 1.0, 1)
            .unwrap_err()
            .to_string()
            .contains("missing.json"));
    }
}
