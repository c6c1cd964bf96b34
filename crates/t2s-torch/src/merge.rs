//! A PEFT LoRA adapter folded into its base checkpoint's weights: what PEFT's
//! `merge_and_unload()` followed by `save_pretrained` gives, read and written one checkpoint
//! tensor at a time (no model is built, so any checkpoint whose module names the adapter's
//! match will do).
//!
//! Each adapted module's weight becomes `W + scale · B A`, summed in fp32 and rounded once into
//! the output dtype (PEFT: `weight.data += delta`, which libtorch sums in fp32 for a bf16
//! weight). Every other tensor is copied. The output dtype is the checkpoint's own per tensor,
//! unless one is asked for: then floating tensors are converted, after the merge, so the
//! adapter's delta is rounded once.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::linear::lora_delta;
use crate::lora;
use crate::weights::Checkpoint;

/// The merge of a PEFT adapter into a base checkpoint, made one tensor at a time
/// ([`Merge::tensor`]), so a writer holds one shard, never the whole model.
pub struct Merge<'a> {
    base: &'a Checkpoint,
    /// Adapted weight name → the adapter's A [r, in] and B [out, r] (fp32).
    adapters: BTreeMap<String, (Tensor, Tensor)>,
    kind: Option<Kind>,
    pub rank: i64,
    pub scale: f64,
}

impl<'a> Merge<'a> {
    /// Check the PEFT adapter in `adapter_dir` against `base` and read its matrices; `kind`:
    /// the floating tensors' output kind (`None`: each keeps its own).
    pub fn new(base: &'a Checkpoint, adapter_dir: &Path, kind: Option<Kind>) -> Result<Self> {
        let cfg = lora::read_config(adapter_dir)?;
        cfg.validate()?;
        let adapter = Checkpoint::open(&lora::adapter_file(adapter_dir)?)?;
        let bad = |message: String| ModelError::Adapter {
            dir: adapter_dir.to_path_buf(),
            message,
        };

        // module → (A name, B name), both required.
        let mut pairs: BTreeMap<&str, [Option<&str>; 2]> = BTreeMap::new();
        for name in adapter.names() {
            let (module, matrix) = lora::module_of(name).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` is not a LoRA matrix (base_model.model.<module>.lora_A|lora_B.weight)"
                ))
            })?;
            let slot = usize::from(matrix == "lora_B");
            pairs.entry(module).or_default()[slot] = Some(name);
        }
        if pairs.is_empty() {
            return Err(bad("the adapter holds no LoRA tensor".into()));
        }

        let mut adapters = BTreeMap::new();
        for (module, [a_name, b_name]) in &pairs {
            let (Some(a_name), Some(b_name)) = (a_name, b_name) else {
                return Err(bad(format!(
                    "module `{module}` has only one of lora_A and lora_B"
                )));
            };
            let weight = format!("{module}.weight");
            let Some(&[out, inp]) = base.shape(&weight) else {
                return Err(bad(format!(
                    "module `{module}` has no 2-D weight `{weight}` in {}: the adapter was made for another base model",
                    base.origin.display()
                )));
            };
            let a = adapter.get(a_name, &[cfg.r, inp], Kind::Float, Device::Cpu)?;
            let b = adapter.get(b_name, &[out, cfg.r], Kind::Float, Device::Cpu)?;
            adapters.insert(weight, (a, b));
        }
        for name in base.names() {
            if base.kind(name).is_none() {
                return Err(ModelError::Checkpoint {
                    file: base.origin.clone(),
                    message: format!("tensor `{name}` has a dtype t2s cannot read"),
                });
            }
        }
        Ok(Self {
            base,
            adapters,
            kind,
            rank: cfg.r,
            scale: cfg.scale(),
        })
    }

    /// The modules whose weight takes the adapter.
    pub fn modules(&self) -> Vec<&str> {
        self.adapters
            .keys()
            .map(|w| w.strip_suffix(".weight").unwrap_or(w))
            .collect()
    }

    /// Every tensor name of the output (the base's).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.base.names()
    }

    /// The kind tensor `name` is written in.
    pub fn out_kind(&self, name: &str) -> Kind {
        let own = self.base.kind(name).unwrap_or(Kind::Float);
        match self.kind {
            Some(k)
                if matches!(
                    own,
                    Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
                ) =>
            {
                k
            }
            _ => own,
        }
    }

    /// How many bytes tensor `name` takes in the output.
    pub fn out_bytes(&self, name: &str) -> u64 {
        let numel: i64 = self.base.shape(name).unwrap_or_default().iter().product();
        numel.max(0) as u64 * self.out_kind(name).elt_size_in_bytes() as u64
    }

    /// Output tensor `name` on the CPU: the adapted weights `W + scale · B A`, summed in fp32
    /// and rounded once into the output kind; every other tensor as it is (converted).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let shape = self.base.shape(name).unwrap_or_default().to_vec();
        let kind = self.out_kind(name);
        Ok(match self.adapters.get(name) {
            Some((a, b)) => self
                .base
                .get(name, &shape, Kind::Float, Device::Cpu)?
                .f_add(&lora_delta(a, b, self.scale)?)?
                .f_to_kind(kind)?,
            None => self.base.get(name, &shape, kind, Device::Cpu)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights;

    const W: &str = "model.layers.0.self_attn.q_proj.weight";
    const NORM: &str = "model.norm.weight";
    const A: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    const B: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

    /// A base checkpoint with one [6, 5] weight in `kind` and an fp32 norm, and a rank-2
    /// adapter (alpha 4: scale 2) on it holding `tensors`.
    fn fixture(kind: Kind, tensors: &[(&str, Tensor)]) -> (tempfile::TempDir, Checkpoint) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.safetensors");
        let w = Tensor::arange(30, (Kind::Float, Device::Cpu)).view([6, 5]) / 7.0;
        weights::save(
            &[
                (W.into(), w.to_kind(kind)),
                (NORM.into(), Tensor::ones([5], (Kind::Float, Device::Cpu))),
            ],
            &base,
        )
        .unwrap();
        let adapter = dir.path().join("adapter");
        std::fs::create_dir_all(&adapter).unwrap();
        std::fs::write(
            adapter.join("adapter_config.json"),
            r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}"#,
        )
        .unwrap();
        let named: Vec<(String, Tensor)> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.shallow_clone()))
            .collect();
        weights::save(&named, &adapter.join("adapter_model.safetensors")).unwrap();
        let ck = Checkpoint::open(&base).unwrap();
        (dir, ck)
    }

    fn ab() -> (Tensor, Tensor) {
        let a = Tensor::arange(10, (Kind::Float, Device::Cpu)).view([2, 5]) / 3.0;
        let b = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([6, 2]) / 11.0 - 0.5;
        (a, b)
    }

    #[test]
    fn the_adapted_weight_takes_scale_b_a_and_the_rest_is_copied() {
        let (a, b) = ab();
        for kind in [Kind::Float, Kind::BFloat16] {
            let (dir, base) = fixture(kind, &[(A, a.shallow_clone()), (B, b.shallow_clone())]);
            let m = Merge::new(&base, &dir.path().join("adapter"), None).unwrap();
            assert_eq!(m.modules(), ["model.layers.0.self_attn.q_proj"]);
            assert_eq!((m.rank, m.scale), (2, 2.0));
            let w = base.get(W, &[6, 5], Kind::Float, Device::Cpu).unwrap();
            // Summed in fp32, rounded once into the weight's own kind.
            let want = (w + b.matmul(&a) * 2.0).to_kind(kind);
            assert_eq!(m.tensor(W).unwrap().kind(), kind);
            assert!(m.tensor(W).unwrap().equal(&want), "{kind:?}");
            assert!(m
                .tensor(NORM)
                .unwrap()
                .equal(&Tensor::ones([5], (Kind::Float, Device::Cpu))));
            let elt = if kind == Kind::Float { 4 } else { 2 };
            assert_eq!((m.out_bytes(W), m.out_bytes(NORM)), (30 * elt, 20));
            // Asked for bf16: the floating tensors are converted after the merge.
            let m = Merge::new(&base, &dir.path().join("adapter"), Some(Kind::BFloat16)).unwrap();
            assert!(m.tensor(W).unwrap().equal(&want.to_kind(Kind::BFloat16)));
            assert_eq!(m.tensor(NORM).unwrap().kind(), Kind::BFloat16);
            assert_eq!(m.out_bytes(NORM), 10);
        }
    }

    #[test]
    fn an_adapter_that_does_not_fit_is_refused_by_name() {
        let (a, b) = ab();
        let stray = "base_model.model.model.layers.0.self_attn.q_proj.magnitude";
        let other = "base_model.model.model.layers.9.mlp.up_proj.lora_A.weight";
        let other_b = "base_model.model.model.layers.9.mlp.up_proj.lora_B.weight";
        for (tensors, says) in [
            (
                vec![(A, a.shallow_clone())],
                "has only one of lora_A and lora_B",
            ),
            (
                vec![
                    (A, a.shallow_clone()),
                    (B, b.shallow_clone()),
                    (stray, a.shallow_clone()),
                ],
                "is not a LoRA matrix",
            ),
            (
                vec![(other, a.shallow_clone()), (other_b, b.shallow_clone())],
                "made for another base model",
            ),
            (vec![(A, a.shallow_clone()), (B, b.view([2, 6]))], "shape"),
        ] {
            let (dir, base) = fixture(Kind::Float, &tensors);
            let err = match Merge::new(&base, &dir.path().join("adapter"), None) {
                Ok(_) => panic!("merged although {says}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(says), "{says}: {err}");
        }
    }
}
