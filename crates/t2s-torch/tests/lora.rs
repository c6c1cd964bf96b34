//! LoRA: exactness of the zero-initialised adapter, merge/unmerge, gradient flow, the chunked
//! loss, AdamW against torch, and adapter interchange with PEFT in both directions.

mod common;

use common::*;
use t2s_torch::gemma3::Inputs;
use t2s_torch::lora::{self, LoraConfig};
use t2s_torch::train::{chunked_ce, full_ce, shift_labels, AdamW, IGNORE};
use t2s_torch::ModelError;
use tch::{Device, Kind, Tensor};

const ALL: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

fn logits(m: &t2s_torch::Gemma3, ids: &Tensor, pos: &Tensor) -> Tensor {
    let _g = tch::no_grad_guard();
    m.forward(&Inputs {
        ids,
        positions: pos,
        key_valid: None,
    })
    .unwrap()
}

#[test]
fn zero_b_gives_exactly_the_base_output() {
    let mut m = random_model(2, 0);
    let (ids, pos) = random_batch(97, 2, 10);
    let base = logits(&m, &ids, &pos);
    let n = lora::attach(&mut m, &LoraConfig::new(4, 8.0, ALL)).unwrap();
    assert_eq!(n, 3 * 7);
    let with = logits(&m, &ids, &pos);
    assert_eq!(max_abs_diff(&base, &with), 0.0);
    // A is U(±1/√in): in = 32 for q/k/v/gate/up.
    let a = &m.layers[0].self_attn.q_proj.lora.as_ref().unwrap().a;
    let bound = 1.0 / 32f64.sqrt();
    assert!(a.abs().max().double_value(&[]) <= bound);
    assert!(a.abs().max().double_value(&[]) > 0.5 * bound);
}

#[test]
fn merged_equals_unmerged_and_unmerge_restores() {
    let mut m = random_model(1, 1);
    let (ids, pos) = random_batch(97, 2, 9);
    let base = logits(&m, &ids, &pos);
    lora::attach(&mut m, &LoraConfig::new(4, 8.0, ALL)).unwrap();
    randomize_b(&mut m, 0.3);
    let unmerged = logits(&m, &ids, &pos);
    assert!(
        max_abs_diff(&base, &unmerged) > 1e-2,
        "adapter must change the output"
    );
    lora::merge(&mut m).unwrap();
    let merged = logits(&m, &ids, &pos);
    // fp32: merging reorders the sums; observed ~1e-6.
    assert!(
        max_abs_diff(&merged, &unmerged) < 1e-4,
        "{}",
        max_abs_diff(&merged, &unmerged)
    );
    lora::unmerge(&mut m).unwrap();
    let again = logits(&m, &ids, &pos);
    assert!(max_abs_diff(&again, &unmerged) < 1e-4);
    for l in m.linears_mut() {
        l.lora = None;
    }
    assert!(max_abs_diff(&logits(&m, &ids, &pos), &base) < 1e-4);
}

/// A seed gives the same random weights and the same fresh adapters on the test device as on
/// the CPU: both are drawn on the host (on a CUDA test device this compares two devices).
#[test]
fn a_seed_gives_the_same_weights_and_adapters_on_every_device() {
    let dev = test_device();
    let mut here = random_model_on(1, 5, Kind::Float, dev);
    let mut cpu = random_model_on(1, 5, Kind::Float, Device::Cpu);
    let lc = LoraConfig::new(4, 8.0, ALL);
    tch::manual_seed(9);
    lora::attach(&mut here, &lc).unwrap();
    tch::manual_seed(9);
    lora::attach(&mut cpu, &lc).unwrap();
    for (a, b) in here.linears().zip(cpu.linears()) {
        assert_eq!(a.weight.device(), dev);
        assert!(
            a.weight.to_device(Device::Cpu).equal(&b.weight),
            "{}",
            a.name
        );
        let (la, lb) = (a.lora.as_ref().unwrap(), b.lora.as_ref().unwrap());
        assert!(
            la.a.to_device(Device::Cpu).equal(&lb.a),
            "{} lora_A",
            a.name
        );
    }
}

#[test]
fn rslora_scale_is_alpha_over_sqrt_r() {
    let mut c = LoraConfig::new(16, 32.0, ALL);
    assert_eq!(c.scale(), 2.0);
    c.use_rslora = true;
    assert_eq!(c.scale(), 8.0);
}

#[test]
fn only_a_and_b_receive_gradients() {
    let mut m = random_model(1, 2);
    lora::attach(
        &mut m,
        &LoraConfig::new(4, 8.0, &["q_proj", "v_proj", "down_proj"]),
    )
    .unwrap();
    randomize_b(&mut m, 0.1);
    let (ids, pos) = random_batch(97, 2, 8);
    let h = m
        .forward_hidden(
            &Inputs {
                ids: &ids,
                positions: &pos,
                key_valid: None,
            },
            None,
            true,
        )
        .unwrap();
    full_ce(&m, &h, &shift_labels(&ids).unwrap())
        .unwrap()
        .backward();
    for l in m.linears() {
        assert!(
            !l.weight.requires_grad(),
            "{} base weight is trainable",
            l.name
        );
        assert!(
            !l.weight.grad().defined(),
            "{} base weight got a gradient",
            l.name
        );
        match &l.lora {
            Some(a) => {
                assert!(a.a.grad().defined() && a.b.grad().defined(), "{}", l.name);
                assert!(
                    a.a.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0,
                    "{}",
                    l.name
                );
                assert!(
                    a.b.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0,
                    "{}",
                    l.name
                );
            }
            None => assert!(!["q_proj", "v_proj", "down_proj"]
                .iter()
                .any(|t| l.name.ends_with(t))),
        }
    }
    assert!(!m.lm_head_weight().requires_grad());
}

/// The adapters' gradients of `loss` (zeroed first), copied out.
fn grads_of(params: &[(String, Tensor)], loss: Tensor) -> Vec<Tensor> {
    for (_, p) in params {
        p.shallow_clone().zero_grad();
    }
    loss.backward();
    params.iter().map(|(_, p)| p.grad().copy()).collect()
}

/// `m` with rank-4 adapters on every linear (B randomised), a random 3 × 11 batch, and its
/// shifted targets.
fn loss_fixture(mut m: t2s_torch::Gemma3) -> (t2s_torch::Gemma3, Tensor, Tensor, Tensor) {
    lora::attach(&mut m, &LoraConfig::new(4, 8.0, ALL)).unwrap();
    randomize_b(&mut m, 0.1);
    let (ids, pos) = random_batch(97, 3, 11);
    let t = shift_labels(&ids).unwrap();
    (m, ids, pos, t)
}

/// Final hidden states of an unpadded batch in training mode (LoRA dropout on).
fn train_hidden(m: &t2s_torch::Gemma3, ids: &Tensor, pos: &Tensor) -> Tensor {
    let inp = Inputs {
        ids,
        positions: pos,
        key_valid: None,
    };
    m.forward_hidden(&inp, None, true).unwrap()
}

#[test]
fn chunked_loss_matches_full_cross_entropy_and_its_gradients() {
    let (m, ids, pos, t) = loss_fixture(random_model(2, 3));
    // Ignore a prompt part of each row.
    let _ = t.narrow(1, 0, 4).fill_(IGNORE);
    let params = lora::params(&m);
    let grads = |loss: Tensor| grads_of(&params, loss);
    let fwd = || train_hidden(&m, &ids, &pos);
    let full = full_ce(&m, &fwd(), &t).unwrap();
    let full_v = full.double_value(&[]);
    let g_full = grads(full);
    for chunk in [1, 5, 1000] {
        let ch = chunked_ce(&m, &fwd(), &t, chunk).unwrap();
        assert!(
            (ch.double_value(&[]) - full_v).abs() < 1e-5,
            "chunk {chunk}: loss"
        );
        let g = grads(ch);
        for ((a, b), (n, _)) in g.iter().zip(&g_full).zip(&params) {
            assert!(max_abs_diff(a, b) < 1e-5, "chunk {chunk}: grad of {n}");
        }
    }
}

#[test]
fn chunked_loss_gives_a_trainable_tied_head_the_full_cross_entropy_gradient() {
    // Full fine-tuning: the tied embedding trains, reached by the lookup and by the LM head.
    let m = random_model(1, 9);
    let w = m.lm_head_weight().shallow_clone().set_requires_grad(true);
    let (ids, pos) = random_batch(97, 3, 11);
    let t = shift_labels(&ids).unwrap();
    let _ = t.narrow(1, 0, 3).fill_(IGNORE);
    let params = vec![("embed".to_string(), w.shallow_clone())];
    let g_full = grads_of(
        &params,
        full_ce(&m, &train_hidden(&m, &ids, &pos), &t).unwrap(),
    );
    for chunk in [1, 7, 64] {
        let loss = chunked_ce(&m, &train_hidden(&m, &ids, &pos), &t, chunk).unwrap();
        let g = grads_of(&params, loss);
        let d = max_abs_diff(&g[0], &g_full[0]);
        assert!(d < 1e-6, "chunk {chunk}: max |Δgrad| of the tied head {d}");
    }
    // Teeth: the head's own share of that gradient is far from zero (without it, only the
    // lookup's rows would get one).
    let _g = tch::no_grad_guard();
    let looked_up =
        Tensor::zeros([97], (Kind::Float, Device::Cpu)).index_fill_(0, &ids.flatten(0, -1), 1.0);
    let unused_rows = looked_up.eq(0.0).nonzero().squeeze_dim(1);
    let head_only = g_full[0].index_select(0, &unused_rows);
    assert!(head_only.abs().max().double_value(&[]) > 1e-4);
}

#[test]
fn chunked_loss_in_bf16_matches_full_cross_entropy() {
    // bf16 weights: the chunked loss reads the same bf16 logits in fp32 (log_softmax), and its
    // gradient (softmax written in bf16) agrees with autograd's to bf16 rounding.
    let (m, ids, pos, t) = loss_fixture(random_model_kind(1, 4, Kind::BFloat16));
    let params = lora::params(&m);
    let grads = |loss: Tensor| grads_of(&params, loss);
    let fwd = || train_hidden(&m, &ids, &pos);
    let full = full_ce(&m, &fwd(), &t).unwrap();
    let full_v = full.double_value(&[]);
    let g_full = grads(full);
    let ch = chunked_ce(&m, &fwd(), &t, 7).unwrap();
    let ch_v = ch.double_value(&[]);
    assert!(
        (ch_v - full_v).abs() < 1e-4 * full_v.abs(),
        "loss {ch_v} vs {full_v}"
    );
    for ((a, b), (n, _)) in grads(ch).iter().zip(&g_full).zip(&params) {
        let scale = b.abs().max().double_value(&[]);
        assert!(scale > 0.0, "{n}: no gradient");
        assert!(
            max_abs_diff(a, b) <= 0.03 * scale,
            "{n}: max |Δgrad| {} vs max |grad| {scale}",
            max_abs_diff(a, b)
        );
    }
}

#[test]
#[allow(clippy::needless_range_loop)]
fn adamw_matches_torch_optim_adamw() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(5);
    let shapes: [&[i64]; 2] = [&[4, 3], &[5]];
    let steps = 4;
    let mut inp = Vec::new();
    let mut params = Vec::new();
    let mut grads = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let p = Tensor::randn(*s, (Kind::Float, Device::Cpu));
        inp.push((format!("p{i}"), p.copy()));
        params.push((format!("p{i}"), p.set_requires_grad(true)));
        let gs: Vec<Tensor> = (0..steps)
            .map(|_| Tensor::randn(*s, (Kind::Float, Device::Cpu)))
            .collect();
        for (k, g) in gs.iter().enumerate() {
            inp.push((format!("g{i}_{k}"), g.copy()));
        }
        grads.push(gs);
    }
    let fi = dir.path().join("in.safetensors");
    let fo = dir.path().join("out.safetensors");
    Tensor::write_safetensors(&inp, &fi).unwrap();
    run_py(
        &py,
        "adamw_oracle.py",
        &[
            "--inp",
            fi.to_str().unwrap(),
            "--out",
            fo.to_str().unwrap(),
            "--lr",
            "0.01",
            "--wd",
            "0.1",
            "--steps",
            &steps.to_string(),
        ],
    );
    let want = read_st(&fo);
    let mut opt = AdamW::new(
        params
            .iter()
            .map(|(n, p)| (n.clone(), p.shallow_clone()))
            .collect(),
        0.01,
        0.1,
    )
    .unwrap();
    for k in 0..steps {
        for (i, (_, p)) in params.iter().enumerate() {
            let mut g = p.grad();
            if g.defined() {
                g.copy_(&grads[i][k]);
            } else {
                // First step: create the .grad through a backward pass of <p, g>.
                (p * &grads[i][k]).sum(Kind::Float).backward();
            }
        }
        opt.step().unwrap();
    }
    for (i, (n, p)) in params.iter().enumerate() {
        let d = max_abs_diff(p, &want[&format!("p{i}")]);
        assert!(d < 1e-6, "{n}: {d}");
    }
    let state = opt.state().unwrap();
    for (name, t) in &state {
        if name != "step" {
            assert!(max_abs_diff(t, &want[name]) < 1e-6, "{name}");
        }
    }
    // State round trip.
    let mut opt2 = AdamW::new(
        params
            .iter()
            .map(|(n, p)| (n.clone(), p.shallow_clone()))
            .collect(),
        0.01,
        0.1,
    )
    .unwrap();
    opt2.load_state(&state).unwrap();
    assert_eq!(opt2.step, steps as i64);
}

#[test]
fn peft_adapter_loads_in_t2s_with_the_same_logits() {
    let Some(py) = python() else { return };
    let dir = tiny_model(&py, 2, false);
    let ad = dir.join("peft-adapter");
    peft_adapter(&py, &dir, &ad, &["--rslora"]);
    let refs_file = dir.join("ref-peft.safetensors");
    run_py(
        &py,
        "hf_logits.py",
        &[
            "--model",
            dir.to_str().unwrap(),
            "--adapter",
            ad.to_str().unwrap(),
            "--out",
            refs_file.to_str().unwrap(),
        ],
    );
    let refs = read_st(&refs_file);
    let mut m = load(&dir);
    let cfg = lora::load(&mut m, &ad).unwrap();
    assert!(cfg.use_rslora && cfg.r == 4);
    for (case, padded) in [("full", false), ("left", true)] {
        let d = max_diff_masked(
            &case_logits(&m, &refs, case, padded),
            &refs[&format!("{case}_logits")],
            &refs[&format!("{case}_mask")],
        );
        eprintln!("PEFT adapter in t2s, {case}: {d:.3e}");
        assert!(d <= 1e-4, "{case}: {d}");
    }
    // Merged for generation: same logits within the fp32 merge tolerance.
    lora::merge(&mut m).unwrap();
    let d = max_diff_masked(
        &case_logits(&m, &refs, "full", false),
        &refs["full_logits"],
        &refs["full_mask"],
    );
    assert!(d <= 1e-4, "merged: {d}");
}

#[test]
fn t2s_adapter_loads_in_peft_with_the_same_logits() {
    let Some(py) = python() else { return };
    let dir = tiny_model(&py, 1, false);
    let mut m = load(&dir);
    let mut c = LoraConfig::new(
        8,
        16.0,
        &["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
    );
    c.lora_dropout = 0.05;
    lora::attach(&mut m, &c).unwrap();
    randomize_b(&mut m, 0.2);
    let ad = dir.join("t2s-adapter");
    lora::save(&m, &c, &ad, dir.to_str().unwrap()).unwrap();
    assert_eq!(lora::read_config(&ad).unwrap(), c);
    let refs_file = dir.join("ref-t2s-adapter.safetensors");
    run_py(
        &py,
        "hf_logits.py",
        &[
            "--model",
            dir.to_str().unwrap(),
            "--adapter",
            ad.to_str().unwrap(),
            "--out",
            refs_file.to_str().unwrap(),
        ],
    );
    let refs = read_st(&refs_file);
    for (case, padded) in [("full", false), ("right", true)] {
        let d = max_diff_masked(
            &case_logits(&m, &refs, case, padded),
            &refs[&format!("{case}_logits")],
            &refs[&format!("{case}_mask")],
        );
        eprintln!("t2s adapter in PEFT, {case}: {d:.3e}");
        assert!(d <= 1e-4, "{case}: {d}");
    }
}

#[test]
fn adapter_for_another_base_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // Made on a model with 2 KV heads: k_proj/v_proj B shapes differ from a 1-KV-head base.
    let mut m2 = random_model(2, 7);
    let c = LoraConfig::new(4, 8.0, &["k_proj"]);
    lora::attach(&mut m2, &c).unwrap();
    let ad = dir.path().join("kv2");
    lora::save(&m2, &c, &ad, "kv2").unwrap();
    let mut m1 = random_model(1, 7);
    let err = lora::load(&mut m1, &ad).unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"),
        "{msg}"
    );
    assert!(msg.contains("another base model"), "{msg}");

    // A tensor naming a layer the base lacks.
    let t = Tensor::zeros([4, 32], (Kind::Float, Device::Cpu));
    let ad2 = dir.path().join("deeper");
    lora::save(&m2, &c, &ad2, "kv2").unwrap();
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(ad2.join("adapter_model.safetensors")).unwrap();
    tensors.push((
        "base_model.model.model.layers.9.self_attn.k_proj.lora_A.weight".into(),
        t,
    ));
    Tensor::write_safetensors(&tensors, ad2.join("adapter_model.safetensors")).unwrap();
    let mut m2b = random_model(2, 7);
    let msg = lora::load(&mut m2b, &ad2).unwrap_err().to_string();
    assert!(
        msg.contains("layers.9") && msg.contains("another base model"),
        "{msg}"
    );

    // Missing files.
    let msg = lora::load(&mut m2b, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("adapter_config.json"), "{msg}");
}

#[test]
fn adamw_skips_parameters_without_gradient_like_torch() {
    tch::manual_seed(9);
    let init = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let g = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let a = init.copy().set_requires_grad(true);
    let b = init.copy().set_requires_grad(true);
    let frozen = Tensor::ones([5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    // Flat path (every parameter has a gradient) vs per-parameter path (one lacks it).
    let mut flat = AdamW::new(vec![("a".into(), a.shallow_clone())], 0.05, 0.1).unwrap();
    let mut each = AdamW::new(
        vec![
            ("b".into(), b.shallow_clone()),
            ("f".into(), frozen.shallow_clone()),
        ],
        0.05,
        0.1,
    )
    .unwrap();
    for _ in 0..3 {
        for (p, o) in [(&a, &mut flat), (&b, &mut each)] {
            o.zero_grad();
            (p * &g).sum(Kind::Float).backward();
            o.step().unwrap();
        }
    }
    assert!(max_abs_diff(&a, &b) < 1e-7);
    assert!(max_abs_diff(&a, &init) > 1e-3);
    assert_eq!(
        max_abs_diff(&frozen, &Tensor::ones([5], (Kind::Float, Device::Cpu))),
        0.0
    );
    let st = each.state().unwrap();
    let f_m = &st.iter().find(|(n, _)| n == "f.exp_avg").unwrap().1;
    assert_eq!(f_m.abs().sum(Kind::Float).double_value(&[]), 0.0);
}
