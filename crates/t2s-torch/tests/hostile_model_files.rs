//! Model files from elsewhere (a download, a hand edit, a disk fault) are untrusted input:
//! a malformed safetensors header, config.json, adapter_config.json or generation_config.json
//! is an error that names the file and what is wrong in it, never a panic, an abort, or
//! weights read from the wrong bytes.

mod common;

use std::path::{Path, PathBuf};

use common::random_model;
use serde_json::{json, Value};
use t2s_torch::config::Config;
use t2s_torch::lora::{self, LoraConfig};
use t2s_torch::trainer::{FullModel, Trainable};
use t2s_torch::weights::{self, Checkpoint, RandomInit};
use t2s_torch::Gemma3;
use tch::{Device, Kind, Tensor};

/// A safetensors file from its parts: the header length, the header text, the data.
fn safetensors(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Open `file` and read every tensor at its own shape: the first error, as text.
fn open_and_read_all(file: &Path) -> Result<usize, String> {
    let ck = Checkpoint::open(file).map_err(|e| e.to_string())?;
    let names: Vec<String> = ck.names().map(String::from).collect();
    for n in &names {
        let shape = ck.shape(n).unwrap().to_vec();
        let t = ck
            .get(n, &shape, Kind::Float, Device::Cpu)
            .map_err(|e| e.to_string())?;
        assert_eq!(t.size(), shape, "tensor `{n}` read at another shape");
    }
    Ok(names.len())
}

#[test]
fn malformed_safetensors_headers_are_errors_that_name_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let max = u64::MAX;
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "empty",
            {
                let p = d.join("empty.safetensors");
                std::fs::write(&p, b"").unwrap();
                p
            },
            "no header length",
        ),
        (
            "header longer than file",
            {
                let p = d.join("long.safetensors");
                std::fs::write(&p, [255u8, 255, 255, 255, 0, 0, 0, 0, b'{', b'}']).unwrap();
                p
            },
            "header length",
        ),
        (
            "header not JSON",
            safetensors(d, "text.safetensors", "hello", &[]),
            "bad header JSON",
        ),
        (
            "header a JSON array",
            safetensors(d, "array.safetensors", "[1, 2]", &[]),
            "bad header JSON",
        ),
        (
            "entry without offsets",
            safetensors(
                d,
                "nooff.safetensors",
                r#"{"w": {"dtype": "F32", "shape": [1]}}"#,
                &[0; 4],
            ),
            "tensor `w`",
        ),
        (
            "unknown dtype",
            safetensors(
                d,
                "dtype.safetensors",
                r#"{"w": {"dtype": "F9", "shape": [1], "data_offsets": [0, 4]}}"#,
                &[0; 4],
            ),
            "tensor `w`",
        ),
        (
            "negative dimension",
            safetensors(
                d,
                "neg.safetensors",
                r#"{"w": {"dtype": "U8", "shape": [-4], "data_offsets": [0, 4]}}"#,
                &[0; 4],
            ),
            "tensor `w`",
        ),
        (
            "offsets past the end",
            safetensors(
                d,
                "past.safetensors",
                r#"{"w": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}"#,
                &[0; 4],
            ),
            "tensor `w` lies outside the file",
        ),
        (
            "offsets reversed",
            safetensors(
                d,
                "rev.safetensors",
                r#"{"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}"#,
                &[0; 4],
            ),
            "tensor `w` lies outside the file",
        ),
        // Offsets that wrap around u64 once the header length is added would point back into
        // the header: its bytes must not be read as weights.
        (
            "offsets that overflow",
            safetensors(
                d,
                "wrap.safetensors",
                &format!(
                    r#"{{"w": {{"dtype": "U8", "shape": [10], "data_offsets": [{}, {max}]}}}}"#,
                    max - 10
                ),
                &[0; 4],
            ),
            "tensor `w` lies outside the file",
        ),
        (
            "shape that does not fit the bytes",
            safetensors(
                d,
                "size.safetensors",
                r#"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#,
                &[0; 8],
            ),
            "needs 12 bytes but data_offsets hold 8",
        ),
        (
            "shape whose size overflows",
            safetensors(
                d,
                "huge.safetensors",
                r#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296, 4294967296, 4294967296], "data_offsets": [0, 0]}}"#,
                &[],
            ),
            "tensor `w` shape",
        ),
        (
            "a dtype t2s does not compute in",
            safetensors(
                d,
                "fp8.safetensors",
                r#"{"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}"#,
                &[0; 4],
            ),
            "unsupported dtype F8_E4M3",
        ),
    ];
    for (what, file, expected) in cases {
        let err = open_and_read_all(&file).expect_err(what);
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            err.contains(name) && err.contains(expected),
            "{what}: `{err}` should name {name} and say `{expected}`"
        );
    }
}

#[test]
fn a_well_formed_file_with_metadata_and_an_empty_tensor_reads() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "e": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [8, 8]},
        "b": {"dtype": "U8", "shape": [2, 2], "data_offsets": [8, 12]}}"#;
    let mut data = [1.5f32.to_le_bytes(), (-2f32).to_le_bytes()].concat();
    data.extend_from_slice(&[1, 2, 3, 4]);
    let f = safetensors(dir.path(), "ok.safetensors", header, &data);
    assert_eq!(open_and_read_all(&f), Ok(3));
    let ck = Checkpoint::open(&f).unwrap();
    let a = ck.get("a", &[2], Kind::Float, Device::Cpu).unwrap();
    assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [1.5, -2.0]);
    let b = ck.get("b", &[2, 2], Kind::Float, Device::Cpu).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(&b.flatten(0, -1)).unwrap(),
        [1., 2., 3., 4.]
    );
}

/// A small deterministic generator (xorshift), so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_checkpoints_never_panic_and_never_read_at_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    tch::manual_seed(0);
    weights::save(
        &[
            (
                "model.norm.weight".into(),
                Tensor::randn([8], (Kind::Float, Device::Cpu)),
            ),
            (
                "model.embed_tokens.weight".into(),
                Tensor::randn([5, 8], (Kind::BFloat16, Device::Cpu)),
            ),
            ("ids".into(), Tensor::arange(6, (Kind::Int64, Device::Cpu))),
        ],
        &good,
    )
    .unwrap();
    let original = std::fs::read(&good).unwrap();
    assert_eq!(open_and_read_all(&good), Ok(3));
    let header_end = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let probe = dir.path().join("mutant.safetensors");
    let (mut opened, mut refused) = (0, 0);
    for case in 0..1500 {
        let mut bytes = original.clone();
        match case % 5 {
            // One byte of the header changed (digits, quotes, brackets, the length).
            0 | 1 => {
                let i = rng.below(header_end);
                bytes[i] = b"0123456789[]{}\",:-.eE \x00\xff"[rng.below(22)];
            }
            // A byte anywhere set to anything.
            2 => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            // Truncated.
            3 => bytes.truncate(rng.below(bytes.len())),
            // A run of header bytes duplicated (longer numbers, repeated entries).
            _ => {
                let i = 8 + rng.below(header_end - 8);
                let n = 1 + rng.below(6);
                let run: Vec<u8> = bytes[i..(i + n).min(header_end)].to_vec();
                bytes.splice(i..i, run);
            }
        }
        std::fs::write(&probe, &bytes).unwrap();
        let outcome = std::panic::catch_unwind(|| open_and_read_all(&probe));
        match outcome {
            Ok(Ok(_)) => opened += 1,
            Ok(Err(e)) => {
                assert!(
                    e.contains("mutant.safetensors"),
                    "case {case}: `{e}` names no file"
                );
                refused += 1;
            }
            Err(_) => panic!(
                "case {case} panicked; bytes: {:?}",
                &bytes[..header_end.min(bytes.len())]
            ),
        }
    }
    // Both sides are exercised: the mutations are neither all harmless nor all fatal.
    assert!(
        opened > 50 && refused > 500,
        "opened {opened}, refused {refused}"
    );
}

/// A tokenizer.json of a three-word vocabulary (`<eos>` among them).
fn write_tokenizer(file: &Path) {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab = [("<unk>", 0u32), ("<eos>", 1), ("a", 2)]
        .map(|(w, i)| (w.to_string(), i))
        .into_iter()
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    tokenizers::Tokenizer::new(model).save(file, false).unwrap();
}

/// A random tiny model directory (config.json, model.safetensors, tokenizer.json) whose
/// config.json then gets `change` applied.
fn model_dir_with(dir: &Path, change: impl FnOnce(&mut Value)) -> PathBuf {
    let src = dir.with_extension("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut cfg = json!({
        "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "sliding_window": 4, "sliding_window_pattern": 2, "query_pre_attn_scalar": 8,
        "max_position_embeddings": 64, "eos_token_id": 1
    });
    let cfg_file = src.join("config.json");
    std::fs::write(&cfg_file, cfg.to_string()).unwrap();
    write_tokenizer(&src.join("tokenizer.json"));
    tch::manual_seed(0);
    let m = FullModel::new(
        &cfg_file,
        &RandomInit::new(0.2),
        Kind::Float,
        Device::Cpu,
        vec![src.join("tokenizer.json")],
    )
    .unwrap();
    m.export(dir).unwrap();
    change(&mut cfg);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

#[test]
fn a_config_that_would_compute_nan_or_the_wrong_shape_is_refused_naming_the_field() {
    let root = tempfile::tempdir().unwrap();
    let ok = model_dir_with(&root.path().join("ok"), |_| {});
    Gemma3::load(&ok, Kind::Float, Device::Cpu).expect("the unchanged model loads");
    let cases: [(&str, Value); 6] = [
        ("query_pre_attn_scalar", json!(0)),
        ("rope_theta", json!(-1.0)),
        ("num_attention_heads", json!(0)),
        ("rms_norm_eps", json!(-1e-6)),
        ("final_logit_softcapping", json!(0.0)),
        ("head_dim", json!("8")),
    ];
    for (i, (field, value)) in cases.into_iter().enumerate() {
        let dir = model_dir_with(&root.path().join(format!("m{i}")), |c| {
            c[field] = value.clone()
        });
        let err = match Gemma3::load(&dir, Kind::Float, Device::Cpu) {
            Ok(_) => panic!("{field} = {value} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("config.json") && err.contains(&format!("`{field}`")),
            "{field} = {value}: {err}"
        );
    }
    let e = Config::from_file(&root.path().join("absent.json")).unwrap_err();
    assert!(e.to_string().contains("absent.json: cannot read"), "{e}");
}

#[test]
fn a_malformed_generation_config_is_an_error_not_lost_stop_ids() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir_with(&root.path().join("m"), |_| {});
    let cfg = Config::from_file(&dir.join("config.json")).unwrap();
    let tok = t2s_torch::tok::Tok::load(&dir).unwrap();
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": [1, 106]}"#,
    )
    .unwrap();
    let ids = t2s_torch::tok::stop_ids(&dir, &cfg, &tok).unwrap();
    assert!(ids.contains(&1) && ids.contains(&106), "{ids:?}");
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": [1, 106"#,
    )
    .unwrap();
    let e = t2s_torch::tok::stop_ids(&dir, &cfg, &tok)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("generation_config.json") && e.contains("not JSON"),
        "{e}"
    );
}

#[test]
fn a_bad_adapter_config_names_the_adapter_directory() {
    let root = tempfile::tempdir().unwrap();
    let mut m = random_model(2, 1);
    let cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    lora::attach(&mut m, &cfg).unwrap();
    let adapter = root.path().join("adapter");
    lora::save(&m, &cfg, &adapter, "tiny").unwrap();
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    let cases: [(&str, Value, &str); 4] = [
        ("r", json!(0), "rank r must be positive"),
        ("lora_dropout", json!(1.5), "lora_dropout must be in [0, 1)"),
        ("target_modules", json!("q_proj("), "target_modules regex"),
        ("r", json!("four"), "not a PEFT config"),
    ];
    for (field, value, expected) in cases {
        let mut c = written.clone();
        c[field] = value.clone();
        std::fs::write(adapter.join("adapter_config.json"), c.to_string()).unwrap();
        let mut fresh = random_model(2, 1);
        let e = lora::load(&mut fresh, &adapter).unwrap_err().to_string();
        assert!(
            e.contains(adapter.to_str().unwrap()) && e.contains(expected),
            "{field} = {value}: {e}"
        );
    }
}

#[test]
fn a_tokenizer_json_the_tokenizers_crate_panics_on_is_an_error_naming_it() {
    // The `tokenizer_json` fuzz target's finding (tests/fixtures/data): the worker loads a
    // model directory's tokenizer.json through the same guarded parser as t2s.
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir_with(&root.path().join("m"), |_| {});
    let fixture =
        common::repo_root().join("tests/fixtures/data/decoder_syntax_error.tokenizer.json");
    std::fs::copy(&fixture, dir.join("tokenizer.json")).unwrap();
    let e = match t2s_torch::tok::Tok::load(&dir) {
        Ok(_) => panic!("a corrupt tokenizer.json loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("tokenizer.json") && e.contains("cannot load tokenizer"),
        "{e}"
    );
}
