//! Acceptance 5: preprocess parity with the Python reference (scripts/oracles/preprocess_ref.py,
//! HF `tokenizers`, the same tokenizer.json) for every row of a generated corpus; plus the
//! trained tokenizer's special tokens and the examples file round trip.

use crate::common;

use crate::data_common;

use std::path::Path;
use std::process::Command;

use data_common::{python, write_jsonl};
use t2s::data::builtin;
use t2s::data::examples::{read_examples, write_stored};
use t2s::data::load::LoadedRow;
use t2s::data::preprocess::{preprocess, Mode, Params, Truncation};
use t2s::data::tokenizer::{train_bpe, SPECIAL_TOKENS};
use tokenizers::Tokenizer;

fn oracle(
    rows: &Path,
    tok: &Path,
    mode: &str,
    max_length: usize,
) -> Vec<(i64, Vec<u32>, Vec<i64>)> {
    let script = common::repo_dir().join("scripts/oracles/preprocess_ref.py");
    let out = Command::new(python())
        .arg(script)
        .arg(rows)
        .arg(tok)
        .args(["--mode", mode, "--max-length", &max_length.to_string()])
        .output()
        .expect("run the python oracle");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_i64().unwrap(),
                serde_json::from_value(v["input_ids"].clone()).unwrap(),
                serde_json::from_value(v["labels"].clone()).unwrap(),
            )
        })
        .collect()
}

/// Preprocesses `rows` (also written at `rows_path`) with `tk` (saved at `tok_path`) in each
/// mode and asserts every example equals the Python reference's; returns the chat examples.
fn assert_parity_in_every_mode(
    tk: &Tokenizer,
    tok_path: &Path,
    rows: &[LoadedRow],
    rows_path: &Path,
) -> Vec<t2s::data::examples::Stored> {
    let mut chat = Vec::new();
    for (mode, name) in [
        (Mode::Chat, "chat"),
        (Mode::Raw, "raw"),
        (Mode::Commented, "commented"),
    ] {
        let p = Params {
            mode,
            max_length: 100_000,
            truncation: Truncation::Drop,
        };
        let (ex, rep) = preprocess(tk, rows.to_vec(), &p).unwrap();
        assert_eq!(rep.kept, rows.len());
        let want = oracle(rows_path, tok_path, name, 0);
        assert_eq!(want.len(), ex.len());
        for (s, (id, ids, labels)) in ex.iter().zip(&want) {
            assert_eq!(s.row.row.id, *id);
            assert_eq!(&s.ids, ids, "{name}: ids differ for row {id}");
            assert_eq!(&s.labels(), labels, "{name}: labels differ for row {id}");
            // One BOS, first; the response ends with EOS.
            assert_eq!(s.ids[0], 2);
            assert_eq!(
                s.ids.iter().filter(|&&t| t == 2).count(),
                1,
                "row {id}: BOS count"
            );
            assert_eq!(*s.ids.last().unwrap(), 1);
        }
        if mode == Mode::Chat {
            chat = ex;
        }
    }
    chat
}

#[test]
fn preprocess_matches_python_reference_for_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = builtin::generate(99, 1500);
    let tk = train_bpe(&rows, 1024, 2).unwrap();
    let tok_path = tmp.path().join("tokenizer.json");
    tk.save(&tok_path, false).unwrap();
    let rows_path = tmp.path().join("rows.jsonl");
    write_jsonl(&rows_path, &rows);
    let loaded: Vec<LoadedRow> = rows
        .iter()
        .map(|r| LoadedRow {
            split: "train".into(),
            row: r.clone(),
        })
        .collect();

    let ex = assert_parity_in_every_mode(&tk, &tok_path, &loaded, &rows_path);
    // The prompt part ends with "<start_of_turn>model\n"; the labels start after it.
    let s = &ex[0];
    let pl = s.prompt_len as usize;
    assert!(s.ids[..pl].contains(&4) && s.ids[..pl].contains(&5));
    assert!(s.labels()[..pl].iter().all(|&l| l == -100));
    assert!(s.labels()[pl..].iter().all(|&l| l >= 0));

    // The drop policy keeps exactly the rows the reference keeps.
    let mut lens: Vec<usize> = oracle(&rows_path, &tok_path, "chat", 0)
        .iter()
        .map(|x| x.1.len())
        .collect();
    lens.sort_unstable();
    let cut = lens[lens.len() / 2];
    let p = Params {
        mode: Mode::Chat,
        max_length: cut,
        truncation: Truncation::Drop,
    };
    let (ex, rep) = preprocess(&tk, loaded.clone(), &p).unwrap();
    let want = oracle(&rows_path, &tok_path, "chat", cut);
    assert_eq!(ex.len(), want.len());
    assert_eq!(rep.dropped, rows.len() - want.len());
    assert!(rep.dropped > 0);
    assert!(ex
        .iter()
        .zip(&want)
        .all(|(s, w)| s.row.row.id == w.0 && s.ids == w.1));

    // Truncation policies respect max_length and count what they did.
    for t in [Truncation::TruncateRight, Truncation::TruncateContext] {
        let p = Params {
            mode: Mode::Chat,
            max_length: cut,
            truncation: t,
        };
        let (ex, rep) = preprocess(&tk, loaded.clone(), &p).unwrap();
        assert!(ex.iter().all(|s| s.ids.len() <= cut));
        assert!(rep.truncated > 0, "{t:?}");
        assert_eq!(rep.kept + rep.dropped, rows.len());
    }

    // Stored examples read back identically.
    let p = Params {
        mode: Mode::Chat,
        max_length: 100_000,
        truncation: Truncation::Drop,
    };
    let (ex, _) = preprocess(&tk, loaded, &p).unwrap();
    let dir = tmp.path().join("ex");
    write_stored(&dir, &ex).unwrap();
    let back = read_examples(&dir).unwrap();
    assert_eq!(back.len(), ex.len());
    for (b, s) in back.iter().zip(&ex) {
        assert_eq!(b.row, s.row.row);
        assert_eq!(b.input_ids, s.ids);
        assert_eq!(b.labels, s.labels());
    }
}

#[test]
fn trained_tokenizer_has_gemma_specials_as_single_tokens() {
    let rows = builtin::generate(5, 400);
    let tk = train_bpe(&rows, 800, 2).unwrap();
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tk.token_to_id(t), Some(i as u32));
    }
    let enc = tk
        .encode("<bos><start_of_turn>user\nhi<end_of_turn>\n<eos>", false)
        .unwrap();
    let ids = enc.get_ids();
    assert_eq!(ids[0], 2);
    assert_eq!(ids[1], 4);
    assert!(ids.contains(&5));
    assert_eq!(*ids.last().unwrap(), 1);
    assert!(tk.get_vocab_size(true) <= 800);
    // Byte-level: any text round-trips.
    let text = "SELECT name FROM t WHERE x = 'Ünïcødé ✓';";
    let e = tk.encode(text, false).unwrap();
    assert_eq!(tk.decode(e.get_ids(), false).unwrap(), text);
}

#[test]
fn fast_encoder_equals_tokenizer_encode() {
    use t2s::data::fastenc::{Encoder, Memo};
    let rows = builtin::generate(12, 600);
    let tk = train_bpe(&rows, 900, 2).unwrap();
    let enc = Encoder::new(&tk);
    assert!(
        enc.is_fast(),
        "a trained byte-level BPE takes the fast path"
    );
    let mut memo = Memo::new();
    let mut texts: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            [
                t2s::data::format::chat_prompt(&r.sql_prompt, &r.sql_context),
                t2s::data::format::response(&r.sql),
                t2s::data::format::raw_text(&r.sql_context, &r.sql),
            ]
        })
        .collect();
    for t in [
        "",
        " ",
        "  x",
        "a  \n\n  b\t\tc   ",
        "it's they're we've I'm you'll he'd 'S 'x'",
        "<bos><bos>x<eos> <start_of_turn>  <end_of_turn>\n",
        "<bo<bos>s>",
        "42.5e10 -- ;;; (x)",
        "naïve café ✓ <eos>",
        "\r\n\r\n end",
        "trailing space ",
    ] {
        texts.push(t.to_string());
    }
    for t in &texts {
        let want = tk.encode(t.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(enc.encode(t, &mut memo).unwrap(), want, "{t:?}");
    }
}

#[test]
fn a_tokenizer_json_the_tokenizers_crate_panics_on_is_an_error_naming_the_file() {
    // Found by the `tokenizer_json` fuzz target: a control character inside the `decoder`
    // value makes tokenizers 0.22 panic (`expect("Helper")`) instead of returning an error.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data/decoder_syntax_error.tokenizer.json");
    let e = format!("{:#}", t2s::data::tokenizer::load(&fixture).unwrap_err());
    assert!(
        e.contains("decoder_syntax_error.tokenizer.json: not a loadable tokenizer.json")
            && e.contains("control character"),
        "{e}"
    );
    let missing = format!(
        "{:#}",
        t2s::data::tokenizer::load(Path::new("no/such/tokenizer.json")).unwrap_err()
    );
    assert!(missing.contains("no/such/tokenizer.json"), "{missing}");
}

#[test]
fn a_tokenizer_whose_added_tokens_share_an_id_takes_the_generic_path() {
    // Found by the `tokenizer_json` fuzz target: `<bos>` and `<unk>` share id 3 in the vocab,
    // so the serialized added-token list (which the fast path read) left `<bos>` out while
    // `encode` still split it: the fast path then spelled `<bos>` out letter by letter.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data/duplicate_added_id.tokenizer.json");
    let tk = t2s::data::tokenizer::load(&fixture).unwrap();
    let enc = t2s::data::fastenc::Encoder::new(&tk);
    assert!(!enc.is_fast());
    let row = builtin::generate_row(7, 3);
    let text = t2s::data::format::chat_prompt(&row.sql_prompt, &row.sql_context);
    let want = tk.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    assert_eq!(want[0], 3, "tokenizers splits <bos> out");
    let mut memo = t2s::data::fastenc::Memo::new();
    assert_eq!(enc.encode(&text, &mut memo).unwrap(), want);
}

// The real Gemma-3 tokenizer (issue 28): 262,145 ids, SentencePiece-style BPE with byte
// fallback, taken by the fast path of `data::fastenc`.

/// The directory holding the verified Gemma-3 tokenizer.json (scripts/fetch_gemma.py: the npm
/// package, sha256 checked, cached under ~/.cache/t2s/assets).
fn gemma_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(python())
            .arg(common::repo_dir().join("scripts/fetch_gemma.py"))
            .arg("tokenizer")
            .output()
            .expect("run scripts/fetch_gemma.py");
        assert!(
            out.status.success(),
            "fetch_gemma.py tokenizer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let dir = std::path::PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        assert!(dir.join("tokenizer.json").is_file(), "{}", dir.display());
        dir
    })
}

fn gemma() -> &'static Tokenizer {
    static TK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TK.get_or_init(|| t2s::data::tokenizer::load(&gemma_dir().join("tokenizer.json")).unwrap())
}

#[test]
fn gemma_fast_encoder_equals_tokenizer_encode() {
    use rand::{Rng, SeedableRng};
    use t2s::data::fastenc::{Encoder, Memo};
    let tk = gemma();
    assert_eq!(tk.get_vocab_size(true), 262_145);
    let enc = Encoder::new(tk);
    assert!(enc.is_fast(), "Gemma-3's tokenizer takes the fast path");
    // Hostile pieces: runs of spaces, tabs and newlines (added tokens in Gemma), the one
    // vocabulary token with an inner "▁" (`>▁</`), literal "▁", added tokens glued to words,
    // chars only byte fallback spells, emoji sequences, control chars.
    const FRAGS: &[&str] = &[
        " ",
        "  ",
        "   ",
        "\t",
        "\t\t",
        "\n",
        "\n\n",
        "\r\n",
        "\r",
        "> </",
        ">",
        "</",
        "<",
        "> <",
        "a>",
        "</td>",
        "<td>",
        "<bos>",
        "<eos>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<unused0>",
        "<table>",
        "<bo",
        "s>",
        "▁",
        "▁▁",
        "▁x",
        "x▁",
        "SELECT",
        "name",
        "FROM",
        "'a b'",
        "x = 1;",
        "CREATE TABLE t (id INT, v TEXT);",
        "--",
        "é",
        "naïve café",
        "日本語",
        "한국어",
        "🙂",
        "👩‍👩‍👧",
        "🇫🇷",
        "\u{0}",
        "\u{7f}",
        "\u{a0}",
        "\u{3000}",
        "\u{200b}",
        "\u{fffd}",
        "ℕ",
        "x²",
        "0x1F",
        "12.5e-3",
        "a.b",
        "it's",
        "Ⅻ",
        "\u{10ffff}",
    ];
    let mut texts: Vec<String> = FRAGS.iter().map(|s| s.to_string()).collect();
    texts.push(String::new());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(28);
    for _ in 0..3000 {
        let n = rng.random_range(1..12);
        texts.push(
            (0..n)
                .map(|_| FRAGS[rng.random_range(0..FRAGS.len())])
                .collect(),
        );
    }
    for r in builtin::generate(28, 300) {
        texts.push(t2s::data::format::chat_prompt(
            &r.sql_prompt,
            &r.sql_context,
        ));
        texts.push(t2s::data::format::response(&r.sql));
    }
    let mut memo = Memo::new();
    for t in &texts {
        let want = tk.encode(t.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(enc.encode(t, &mut memo).unwrap(), want, "{t:?}");
    }
    // The memo warm: the same ids again.
    for t in texts.iter().rev().take(500) {
        let want = tk.encode(t.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(enc.encode(t, &mut memo).unwrap(), want, "warm: {t:?}");
    }
}

#[test]
fn gemma_preprocess_matches_python_reference_on_every_builtin_row() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = builtin::generate(2026, 2000);
    let domains: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.domain.as_str()).collect();
    assert_eq!(domains.len(), 34, "every built-in domain: {domains:?}");
    let rows_path = tmp.path().join("rows.jsonl");
    write_jsonl(&rows_path, &rows);
    let loaded: Vec<LoadedRow> = rows
        .iter()
        .map(|r| LoadedRow {
            split: "train".into(),
            row: r.clone(),
        })
        .collect();
    let tok_path = gemma_dir().join("tokenizer.json");
    let ex = assert_parity_in_every_mode(gemma(), &tok_path, &loaded, &rows_path);
    // Gemma's own turn markers, one token each.
    let s = &ex[0];
    let pl = s.prompt_len as usize;
    assert_eq!(s.ids[1], gemma().token_to_id("<start_of_turn>").unwrap());
    assert!(s.ids[..pl].contains(&gemma().token_to_id("<end_of_turn>").unwrap()));
}

#[test]
fn an_eda_stage_counts_gemma_tokens_of_a_tokenizer_from_the_real_file() {
    // A pipeline whose `tokenizer` stage takes the real tokenizer.json by `from:` (an absolute
    // path) and whose `eda` stage counts the chat-formatted examples' tokens with it.
    let root = tempfile::tempdir().unwrap();
    let tok_path = gemma_dir().join("tokenizer.json");
    let yaml = root.path().join("gemma_eda.yaml");
    std::fs::write(
        &yaml,
        format!(
            "name: gemma_eda\nstages:\n  load:\n    kind: load\n    params: {{source: \"builtin:300\", seed: 3}}\n  tokenizer:\n    kind: tokenizer\n    params: {{from: {:?}}}\n  eda:\n    kind: eda\n    needs: [load, tokenizer]\n",
            tok_path.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_t2s"))
        .arg("run")
        .arg(&yaml)
        .env("T2S_ROOT", root.path())
        .env_remove("RUST_LOG")
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "t2s run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = root.path().join("artifacts/v1/objects");
    let node_dir = |node: &str| {
        std::fs::read_dir(&objects)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|d| t2s::cache::Manifest::read(d).unwrap().node == node)
            .unwrap_or_else(|| panic!("no object for node {node}"))
    };
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(node_dir("tokenizer").join("tokenizer_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["vocab_size"], 262_145);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node_dir("eda").join("eda_stats.json")).unwrap())
            .unwrap();
    // The same rows, counted with `tokenizers` itself.
    let mut lp = t2s::data::load::LoadParams::new("builtin:300");
    lp.seed = 3;
    let rows = t2s::data::load::load(&lp).unwrap().rows;
    let counts: Vec<usize> = rows
        .iter()
        .map(|lr| {
            let r = &lr.row;
            let p = t2s::data::format::chat_prompt(&r.sql_prompt, &r.sql_context);
            let a = t2s::data::format::response(&r.sql);
            gemma().encode(p.as_str(), false).unwrap().len()
                + gemma().encode(a.as_str(), false).unwrap().len()
        })
        .collect();
    let t = &stats["tokens"];
    assert_eq!(t["max"], *counts.iter().max().unwrap());
    assert_eq!(t["min"], *counts.iter().min().unwrap());
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    assert!((t["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{t}");
    assert!(node_dir("eda").join("figures/tokens.png").is_file());
}
