//! Acceptance 5: preprocess parity with the Python reference (scripts/oracles/preprocess_ref.py,
//! HF `tokenizers`, the same tokenizer.json) for every row of a generated corpus; plus the
//! trained tokenizer's special tokens and the examples file round trip.

mod common;

mod data_common;

use std::path::Path;
use std::process::Command;

use data_common::{python, write_jsonl};
use t2s::data::builtin;
use t2s::data::examples::{read_examples, write_stored};
use t2s::data::load::LoadedRow;
use t2s::data::preprocess::{preprocess, Mode, Params, Truncation};
use t2s::data::tokenizer::{train_bpe, SPECIAL_TOKENS};

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
        let (ex, rep) = preprocess(&tk, loaded.clone(), &p).unwrap();
        assert_eq!(rep.kept, rows.len());
        let want = oracle(&rows_path, &tok_path, name, 0);
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
            // The prompt part ends with "<start_of_turn>model\n"; the labels start after it.
            let s = &ex[0];
            let pl = s.prompt_len as usize;
            assert!(s.ids[..pl].contains(&4) && s.ids[..pl].contains(&5));
            assert!(s.labels()[..pl].iter().all(|&l| l == -100));
            assert!(s.labels()[pl..].iter().all(|&l| l >= 0));
        }
    }

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
