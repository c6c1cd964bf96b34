//! `bench-train`: LoRA training steps on random weights (or a checkpoint's, `model: DIR`), the same work as
//! `shared/bench/peer_lora_train.py` (LoRA r/alpha on q/k/v/o with dropout 0.05, AdamW lr 2e-5
//! wd 0.01, random ids in [3, vocab), loss on all tokens), timed after warm-up. With
//! `profile: <trace.json>`, 2 more steps run under libtorch's profiler: the Chrome trace is
//! written there and the result summarises GPU time by kernel and the longest CPU ops.
//! `fused: false` turns the fused CUDA kernels (`crate::fused`) off, for a with/without run;
//! `fused_lora: false` only the LoRA projections; `lora_matmul: gemm` (or `kernels`, the
//! default unless `T2S_LORA_MATMUL` says otherwise) picks how those multiply.

use serde_json::{json, Value};
use t2s::worker::jobs::BenchJob;
use t2s::worker::protocol::JobSpec;
use tch::{Device, Kind, Tensor};

use super::Events;
use crate::config::Config;
use crate::device::{device_name, parse_device, parse_kind};
use crate::gemma3::{Gemma3, Inputs};
use crate::lora::{self, LoraConfig};
use crate::train::{chunked_ce, default_chunk, shift_labels, AdamW};
use crate::weights::RandomInit;

/// The peer's shapes, as HF config.json text.
pub fn shape_config(shape: &str) -> anyhow::Result<Config> {
    let v = match shape {
        "gemma3-1b" => json!({"vocab_size": 262144, "hidden_size": 1152, "intermediate_size": 6912,
            "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 256, "sliding_window": 512, "query_pre_attn_scalar": 256,
            "max_position_embeddings": 32768}),
        "tiny" => json!({"vocab_size": 4096, "hidden_size": 128, "intermediate_size": 512,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 32, "sliding_window": 64, "query_pre_attn_scalar": 32,
            "max_position_embeddings": 2048}),
        o => anyhow::bail!("job `bench-train`: unknown shape `{o}` (tiny or gemma3-1b)"),
    };
    Ok(serde_json::from_value(v)?)
}

fn sync(dev: Device) {
    if let Device::Cuda(i) = dev {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The fixed batch every step trains on.
struct Batch {
    ids: Tensor,
    positions: Tensor,
    targets: Tensor,
    chunk: i64,
}

/// One LoRA training step; `lap(phase)` is called after forward (0), loss and LM head (1),
/// backward (2) and optimizer (3). Returns the detached loss.
fn train_step(
    model: &Gemma3,
    opt: &mut AdamW,
    b: &Batch,
    lap: &mut dyn FnMut(usize),
) -> anyhow::Result<Tensor> {
    let inp = Inputs {
        ids: &b.ids,
        positions: &b.positions,
        key_valid: None,
    };
    let h = model.forward_hidden(&inp, None, true)?;
    lap(0);
    let loss = chunked_ce(model, &h, &b.targets, b.chunk)?;
    lap(1);
    opt.backward(&loss)?;
    lap(2);
    opt.step()?;
    opt.zero_grad();
    lap(3);
    Ok(loss.f_detach()?)
}

/// Time forward, loss, backward and optimizer separately (device synchronised after each).
fn phase_profile(model: &Gemma3, opt: &mut AdamW, b: &Batch, dev: Device) -> anyhow::Result<Value> {
    const STEPS: u32 = 3;
    let mut ms = [0.0f64; 4];
    for _ in 0..STEPS {
        sync(dev);
        let mut t = std::time::Instant::now();
        let _ = train_step(model, opt, b, &mut |phase| {
            sync(dev);
            ms[phase] += t.elapsed().as_secs_f64() * 1000.0 / STEPS as f64;
            t = std::time::Instant::now();
        })?;
    }
    Ok(json!({"forward": ms[0], "loss_and_head": ms[1], "backward": ms[2], "optimizer": ms[3]}))
}

/// Run `steps` steps under libtorch's profiler, save the trace at `path`, and summarise it.
fn profiled_steps(
    model: &Gemma3,
    opt: &mut AdamW,
    b: &Batch,
    dev: Device,
    path: &std::path::Path,
) -> anyhow::Result<Value> {
    const STEPS: u64 = 2;
    sync(dev);
    crate::shim::profile_start(dev.is_cuda())?;
    let t = std::time::Instant::now();
    let ran = (0..STEPS).try_for_each(|_| train_step(model, opt, b, &mut |_| ()).map(drop));
    sync(dev);
    let wall_ms = t.elapsed().as_secs_f64() * 1000.0;
    // Stop even when a step failed, so the profiler is not left running.
    let stopped = crate::shim::profile_stop(path);
    ran?;
    stopped?;
    crate::profile::summarize(path, STEPS, wall_ms, 25)
}

/// The fused kernels' state for this run, in words.
fn fused_state(kind: Kind, dev: Device) -> String {
    if kind == Kind::BFloat16 && dev.is_cuda() {
        match (crate::fused::status(dev), crate::fused::lora_status(dev)) {
            (Err(e), _) => e,
            (Ok(()), Ok(())) => "on".to_string(),
            (Ok(()), Err(e)) => format!("on, but not the LoRA projections: {e}"),
        }
    } else {
        "not used (bf16 on CUDA only)".to_string()
    }
}

/// The kernel switches a bench job asks for.
fn set_kernels(b: &BenchJob) -> anyhow::Result<()> {
    // `fused: false` measures libtorch's unfused ops (the fused kernels serve bf16 on CUDA).
    crate::fused::set_enabled(b.fused);
    // `fused_lora: false` keeps the other kernels and measures the LoRA side path unfused.
    crate::fused::set_lora_enabled(b.fused_lora);
    match b.lora_matmul.as_deref() {
        None => {}
        Some("kernels") => crate::fused::set_lora_matmul(crate::fused::LoraMatmul::Kernels),
        Some("gemm") => crate::fused::set_lora_matmul(crate::fused::LoraMatmul::Gemm),
        Some(other) => anyhow::bail!("lora_matmul: `{other}` is not `kernels` or `gemm`"),
    }
    Ok(())
}

pub fn run(spec: &JobSpec, b: &BenchJob, ev: &Events) -> anyhow::Result<Value> {
    // `model: DIR` trains a real checkpoint's weights (e.g. the real Gemma-3-270m) instead of
    // a shape with random ones.
    let model_dir = b.model.clone();
    let shape = match &model_dir {
        Some(_) => "model",
        None => b.shape.as_str(),
    };
    let mut cfg = match &model_dir {
        Some(d) => Config::from_file(&d.join("config.json"))?,
        None => shape_config(shape)?,
    };
    // `layers` overrides the shape's depth: e.g. the tiny shape at the 1B model's 26 layers
    // has its per-layer op count, so its step time is mostly per-op host overhead.
    if model_dir.is_none() && b.layers > 0 {
        cfg.num_hidden_layers = b.layers as i64;
    }
    let (batch, seq, rank, alpha) = (b.batch as i64, b.seq as i64, b.rank as i64, b.alpha);
    let (steps, warmup) = (b.steps.max(1), b.warmup);
    let dev = parse_device(&spec.device)?;
    let kind = parse_kind(b.dtype.as_str(), dev)?;
    set_kernels(b)?;
    let fused = fused_state(kind, dev);
    tch::manual_seed(0);
    let mut model = match &model_dir {
        Some(d) => Gemma3::load(d, kind, dev)?,
        None => Gemma3::from_source(
            cfg.clone(),
            std::path::Path::new("<bench shape>"),
            &RandomInit {
                std: 0.02,
                device_rng: true,
            },
            kind,
            dev,
        )?,
    };
    let mut lc = LoraConfig::new(rank, alpha, &["q_proj", "k_proj", "v_proj", "o_proj"]);
    lc.lora_dropout = 0.05;
    lora::attach(&mut model, &lc)?;
    let mut opt = AdamW::new(lora::params(&model), 2e-5, 0.01)?;
    // Targets stay on the host, as the train job's labels do (see `chunked_ce`).
    let host_ids =
        Tensor::f_randint_low(3, cfg.vocab_size, [batch, seq], (Kind::Int64, Device::Cpu))?;
    let targets = shift_labels(&host_ids)?;
    let ids = host_ids.f_to_device(dev)?;
    let positions = Tensor::f_arange(seq, (Kind::Int64, dev))?
        .f_unsqueeze(0)?
        .f_expand([batch, seq], false)?;
    let chunk = match b.chunk {
        0 => default_chunk(cfg.vocab_size),
        n => n as i64,
    };
    let data = Batch {
        ids,
        positions,
        targets,
        chunk,
    };
    let step = |opt: &mut AdamW| train_step(&model, opt, &data, &mut |_| ());
    for _ in 0..warmup {
        let _ = step(&mut opt)?;
    }
    sync(dev);
    let t0 = std::time::Instant::now();
    let mut last = None;
    for i in 0..steps {
        last = Some(step(&mut opt)?);
        if (i + 1) % 5 == 0 || i + 1 == steps {
            ev.progress(i + 1, Some(steps), "");
        }
    }
    sync(dev);
    let dt = t0.elapsed().as_secs_f64();
    let phases = phase_profile(&model, &mut opt, &data, dev)?;
    let profile = match &b.profile {
        Some(path) => Some(profiled_steps(&model, &mut opt, &data, dev, path)?),
        None => None,
    };
    let final_loss = match last {
        Some(l) => l.f_double_value(&[])?,
        None => f64::NAN,
    };
    Ok(json!({
        "system": "t2s",
        "shape": shape,
        "device": device_name(dev),
        "dtype": format!("{kind:?}"),
        "fused_kernels": fused,
        "lora_matmul": crate::fused::lora_matmul().name(),
        "layers": cfg.num_hidden_layers,
        "batch": batch, "seq": seq, "rank": rank, "steps": steps,
        "step_ms": 1000.0 * dt / steps as f64,
        "tokens_per_s": (batch * seq) as f64 * steps as f64 / dt,
        // CUDA: device memory in use at the end (caching allocator reserve + context), an
        // upper bound of the peak; the peer reports torch.cuda.max_memory_allocated.
        "peak_mem_mb": if dev.is_cuda() {
            crate::device::cuda_mem_used().map(|(u, _)| u as f64 / 1048576.0)
        } else {
            None
        },
        "peak_rss_mb": super::peak_rss_mb(),
        "final_loss": final_loss,
        // Mean ms per phase over 3 more steps, synchronising after each phase (so the sum
        // exceeds step_ms by the overlap the sync removes): where a step's time goes.
        "phase_ms": phases,
        "profile": profile,
        "threads": tch::get_num_threads(),
    }))
}
