//! Reading and writing HF safetensors checkpoints one tensor at a time.
//!
//! `Tensor::read_safetensors` reads a whole file into memory; for a 1B checkpoint that would be
//! a second copy of the weights next to the model. Here the header is parsed once and each
//! tensor's bytes are read on demand, converted to the wanted kind and device, and dropped, so
//! peak memory is the model plus one tensor. Sharded checkpoints
//! (`model.safetensors.index.json`) map each name to its shard.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorInfo;
use safetensors::Dtype;
use tch::{Device, Kind, Tensor};

use crate::error::ModelError;

/// Where one tensor lives inside a safetensors file.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    dtype: Dtype,
    shape: Vec<i64>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// The tensor index of a checkpoint (one file or several shards).
#[derive(Debug, Default)]
pub struct Checkpoint {
    entries: BTreeMap<String, Entry>,
    /// What the user pointed at, for messages.
    pub origin: PathBuf,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The largest header the safetensors format allows (its crate's limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// Where the bytes of one header entry lie in the file, checked against the format's rules:
/// inside the data section, and exactly as many as its dtype and shape need (with no
/// arithmetic that could wrap).
fn locate(info: &TensorInfo, data_start: u64, file_len: u64) -> Result<(u64, u64), String> {
    let (s, e) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
    let start = data_start.checked_add(s);
    let end = data_start.checked_add(e);
    let (start, end) = match (start, end) {
        (Some(start), Some(end)) if s <= e && end <= file_len => (start, end),
        _ => {
            return Err(format!(
                "lies outside the file (data_offsets [{s}, {e}], {} data bytes)",
                file_len.saturating_sub(data_start)
            ))
        }
    };
    let bits = info
        .shape
        .iter()
        .try_fold(info.dtype.bitsize() as u128, |acc, &d| {
            acc.checked_mul(d as u128)
        })
        .ok_or_else(|| format!("shape {:?} is too large", info.shape))?;
    if bits % 8 != 0 || bits / 8 != (e - s) as u128 {
        return Err(format!(
            "shape {:?} of {} needs {} bytes but data_offsets hold {}",
            info.shape,
            info.dtype,
            bits.div_ceil(8),
            e - s
        ));
    }
    Ok((start, end))
}

fn read_header(file: &Path) -> Result<BTreeMap<String, Entry>, ModelError> {
    let bad = |why: String| ModelError::Checkpoint {
        file: file.to_path_buf(),
        message: why,
    };
    let mut f = File::open(file).map_err(|e| bad(format!("cannot open: {e}")))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| bad(format!("not a safetensors file (no header length): {e}")))?;
    let n = u64::from_le_bytes(len);
    let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if n > MAX_HEADER_BYTES || 8 + n > file_len {
        return Err(bad(format!(
            "not a safetensors file (header length {n} for a {file_len}-byte file)"
        )));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf)
        .map_err(|e| bad(format!("truncated header: {e}")))?;
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&buf).map_err(|e| bad(format!("bad header JSON: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, v) in raw {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo = serde_json::from_value(v)
            .map_err(|e| bad(format!("bad header entry for tensor `{name}`: {e}")))?;
        let (start, end) =
            locate(&info, 8 + n, file_len).map_err(|why| bad(format!("tensor `{name}` {why}")))?;
        let shape = info
            .shape
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad(format!("tensor `{name}` has a dimension beyond i64")))?;
        out.insert(
            name,
            Entry {
                file: file.to_path_buf(),
                dtype: info.dtype,
                shape,
                start,
                end,
            },
        );
    }
    Ok(out)
}

impl Checkpoint {
    /// Open one `.safetensors` file, or a model directory holding `model.safetensors` or a
    /// sharded `model.safetensors.index.json`.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        if path.is_file() {
            return Ok(Self {
                entries: read_header(path)?,
                origin: path.to_path_buf(),
            });
        }
        let single = path.join("model.safetensors");
        let index = path.join("model.safetensors.index.json");
        if single.is_file() {
            return Ok(Self {
                entries: read_header(&single)?,
                origin: single,
            });
        }
        if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| ModelError::Checkpoint {
                file: index.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let idx: ShardIndex =
                serde_json::from_str(&text).map_err(|e| ModelError::Checkpoint {
                    file: index.clone(),
                    message: format!("bad shard index: {e}"),
                })?;
            let mut shards: BTreeMap<String, BTreeMap<String, Entry>> = BTreeMap::new();
            let mut entries = BTreeMap::new();
            for (name, shard) in idx.weight_map {
                if !shards.contains_key(&shard) {
                    let h = read_header(&path.join(&shard))?;
                    shards.insert(shard.clone(), h);
                }
                let e = shards[&shard]
                    .get(&name)
                    .ok_or_else(|| ModelError::Checkpoint {
                        file: path.join(&shard),
                        message: format!(
                            "the shard index maps tensor `{name}` to this shard, but it is not in it"
                        ),
                    })?;
                entries.insert(name, e.clone());
            }
            return Ok(Self {
                entries,
                origin: index,
            });
        }
        Err(ModelError::Checkpoint {
            file: path.to_path_buf(),
            message: "no model.safetensors or model.safetensors.index.json here".into(),
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    pub fn shape(&self, name: &str) -> Option<&[i64]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The kind tensor `name` is stored in (`None`: no such tensor, or a dtype t2s lacks).
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.entries.get(name).and_then(|e| kind_of(e.dtype))
    }

    /// Read tensor `name`, check its shape, convert to `kind` on `device`.
    pub fn get(
        &self,
        name: &str,
        shape: &[i64],
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                file: self.origin.clone(),
            })?;
        if e.shape != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                file: e.file.clone(),
                expected: shape.to_vec(),
                found: e.shape.clone(),
            });
        }
        let src_kind = kind_of(e.dtype).ok_or_else(|| ModelError::Checkpoint {
            file: e.file.clone(),
            message: format!("tensor `{name}` has unsupported dtype {}", e.dtype),
        })?;
        let mut buf = vec![0u8; (e.end - e.start) as usize];
        let io = |err: std::io::Error| ModelError::Checkpoint {
            file: e.file.clone(),
            message: format!("reading tensor `{name}`: {err}"),
        };
        let mut f = File::open(&e.file).map_err(io)?;
        f.seek(SeekFrom::Start(e.start)).map_err(io)?;
        f.read_exact(&mut buf).map_err(io)?;
        // The header check made the byte range exactly what the dtype and shape need.
        let t = Tensor::f_from_data_size(&buf, &e.shape, src_kind)?;
        drop(buf);
        Ok(t.f_to_device(device)?.f_to_kind(kind)?)
    }
}

/// Write named tensors to one safetensors file (made contiguous, on the CPU).
pub fn save(tensors: &[(String, Tensor)], path: &Path) -> Result<(), ModelError> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.f_to_device(Device::Cpu)?.f_contiguous()?)))
        .collect::<Result<_, tch::TchError>>()?;
    Tensor::write_safetensors(&cpu, path).map_err(|e| ModelError::Checkpoint {
        file: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    })
}

/// Something the model can take its weights from, by HF tensor name.
pub trait Source {
    fn get(
        &self,
        name: &str,
        shape: &[i64],
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError>;
    fn contains(&self, name: &str) -> bool;
    fn origin(&self) -> PathBuf;
}

impl Source for Checkpoint {
    fn get(
        &self,
        name: &str,
        shape: &[i64],
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError> {
        Checkpoint::get(self, name, shape, kind, device)
    }
    fn contains(&self, name: &str) -> bool {
        Checkpoint::contains(self, name)
    }
    fn origin(&self) -> PathBuf {
        self.origin.clone()
    }
}

/// Random weights as HF's `_init_weights`: N(0, std) for matrices, zeros for the Gemma norms
/// (stored as offsets from 1). Draws from libtorch's global CPU generator (seed it first) and
/// moves the values to the device, so a seed gives the same weights on every device; with
/// `device_rng` (benchmarks, where drawing a 1B model on the host would only cost time) it
/// draws on the device.
#[derive(Debug, Clone, Copy)]
pub struct RandomInit {
    pub std: f64,
    pub device_rng: bool,
}

impl RandomInit {
    /// Host-drawn: the same weights for a seed on every device.
    pub fn new(std: f64) -> Self {
        Self {
            std,
            device_rng: false,
        }
    }
}

impl Source for RandomInit {
    fn get(
        &self,
        name: &str,
        shape: &[i64],
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError> {
        let t = if shape.len() == 1 {
            Tensor::f_zeros(shape, (kind, device))?
        } else {
            let at = if self.device_rng { device } else { Device::Cpu };
            Tensor::f_randn(shape, (Kind::Float, at))?
                .f_mul_scalar(self.std)?
                .f_to_device_(device, kind, false, false)?
        };
        let _ = name;
        Ok(t)
    }
    fn contains(&self, name: &str) -> bool {
        name != "lm_head.weight"
    }
    fn origin(&self) -> PathBuf {
        PathBuf::from("<random init>")
    }
}
