//! Tokenizers: training a small byte-level BPE on the corpus (Gemma's special tokens as single
//! tokens at ids 0–5), loading an HF `tokenizer.json`, and its fingerprint.

use std::path::Path;

use anyhow::Context;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, Tokenizer, TokenizerBuilder, TokenizerImpl,
};

use super::format::{format_prompt, BOS, END_OF_TURN, EOS, PAD, START_OF_TURN, UNK};
use super::Row;

/// Special tokens of a trained tokenizer, in id order: `<pad>`=0, `<eos>`=1, `<bos>`=2,
/// `<unk>`=3 (Gemma's ids), then `<start_of_turn>`=4, `<end_of_turn>`=5.
pub const SPECIAL_TOKENS: [&str; 6] = [PAD, EOS, BOS, UNK, START_OF_TURN, END_OF_TURN];

/// Texts a tokenizer is trained on for one row: the user message, the turn roles and the
/// response, without special tokens.
pub fn training_texts(r: &Row) -> [String; 3] {
    [
        format_prompt(&r.sql_prompt, &r.sql_context),
        "user\n\nmodel\n".to_string(),
        format!("SQL: {}\n{}\n{}", r.sql, r.sql_context, r.sql),
    ]
}

/// Train a byte-level BPE with `vocab_size` entries (special tokens included).
pub fn train_bpe(rows: &[Row], vocab_size: usize, min_frequency: u64) -> anyhow::Result<Tokenizer> {
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let mut tk: TokenizerImpl<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerBuilder::new()
        .with_model(BPE::default().into())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
        .with_post_processor(None)
        .with_decoder(Some(ByteLevelDecoder::default().into()))
        .build()
        .map_err(|e| anyhow::anyhow!("building the tokenizer: {e}"))?;
    tk.train(&mut trainer, rows.iter().flat_map(training_texts))
        .map_err(|e| anyhow::anyhow!("training the BPE tokenizer: {e}"))?;
    tk.add_special_tokens(&specials);
    let tk: Tokenizer = tk.into();
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        anyhow::ensure!(
            tk.token_to_id(t) == Some(i as u32),
            "trained tokenizer: {t} got id {:?}, expected {i}",
            tk.token_to_id(t)
        );
    }
    Ok(tk)
}

/// Load a `tokenizer.json`.
pub fn load(path: &Path) -> anyhow::Result<Tokenizer> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes, path)
}

/// A `tokenizer.json`'s bytes as a tokenizer; `path` is named in the error.
pub fn parse(bytes: &[u8], path: &Path) -> anyhow::Result<Tokenizer> {
    from_json_bytes(bytes)
        .map_err(|why| anyhow::anyhow!("{}: not a loadable tokenizer.json ({why})", path.display()))
}

/// A `tokenizer.json`'s bytes as a tokenizer, or why not. The `tokenizers` crate panics on
/// some malformed files (0.22: a syntax error inside the `decoder` value, a bad `precompiled`
/// normalizer): that is a corrupt file too, not a crash.
pub fn from_json_bytes(bytes: &[u8]) -> Result<Tokenizer, String> {
    match crate::panics::catch(|| Tokenizer::from_bytes(bytes)) {
        Ok(Ok(tk)) => Ok(tk),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("the tokenizers library failed on it: {panic}")),
    }
}

/// blake3 of a tokenizer file's bytes, hex.
pub fn fingerprint(path: &Path) -> anyhow::Result<String> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(blake3::hash(&b).to_hex().to_string())
}

/// Ids of the special tokens the pipeline needs; errors name the missing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecialIds {
    pub pad: u32,
    pub eos: u32,
    pub bos: u32,
    pub start_of_turn: u32,
    pub end_of_turn: u32,
}

impl SpecialIds {
    pub fn of(tk: &Tokenizer) -> anyhow::Result<SpecialIds> {
        let id = |t: &str| {
            tk.token_to_id(t).with_context(|| {
                format!("the tokenizer has no {t} token; use a Gemma tokenizer or the `tokenizer` stage's trained one")
            })
        };
        Ok(SpecialIds {
            pad: id(PAD)?,
            eos: id(EOS)?,
            bos: id(BOS)?,
            start_of_turn: id(START_OF_TURN)?,
            end_of_turn: id(END_OF_TURN)?,
        })
    }
}

/// Why a tokenizer cannot feed a model whose embedding has `vocab_size` rows and whose
/// config.json names `config_ids` (`("eos_token_id", ids)`, ...), or `None` if it can: every
/// id of the tokenizer's vocabulary (added tokens past it, like Gemma's `<image_soft_token>`,
/// are not produced by text) must have a row, and the config's bos/eos/pad ids must be the
/// tokenizer's `<bos>`/`<eos>`/`<pad>`. A tokenizer of another model fails one or the other; a
/// smaller vocabulary than the embedding is fine (checkpoints pad their embeddings).
pub fn mismatch_with_model(
    tk: &Tokenizer,
    vocab_size: i64,
    config_ids: &[(&str, Vec<i64>)],
) -> Option<String> {
    let n = tk.get_vocab_size(false) as i64;
    if n > vocab_size {
        return Some(format!(
            "it has {n} token ids but the model's config.json vocab_size is {vocab_size}: \
             this tokenizer belongs to another model (ids past {} have no embedding row)",
            vocab_size - 1
        ));
    }
    for (field, ids) in config_ids {
        let token = match *field {
            "bos_token_id" => BOS,
            "eos_token_id" => EOS,
            "pad_token_id" => PAD,
            _ => continue,
        };
        let Some(id) = tk.token_to_id(token) else {
            continue;
        };
        // eos may be a list (Gemma's generation configs add <end_of_turn>): one must match.
        if !ids.is_empty() && !ids.contains(&(id as i64)) {
            return Some(format!(
                "{token} is id {id} in it but config.json {field} is {ids:?}: this tokenizer \
                 belongs to another model"
            ));
        }
    }
    None
}

#[cfg(test)]
mod model_fit_tests {
    use super::*;

    fn tiny(vocab: usize) -> Tokenizer {
        train_bpe(&crate::data::builtin::generate(1, 50), vocab, 1).unwrap()
    }

    #[test]
    fn a_tokenizer_larger_than_the_embedding_or_with_other_special_ids_is_named() {
        let tk = tiny(300);
        let ids = |b: i64, e: i64, p: i64| {
            vec![
                ("bos_token_id", vec![b]),
                ("eos_token_id", vec![e, 106]),
                ("pad_token_id", vec![p]),
            ]
        };
        assert_eq!(mismatch_with_model(&tk, 300, &ids(2, 1, 0)), None);
        assert_eq!(mismatch_with_model(&tk, 262_144, &ids(2, 1, 0)), None);
        let e = mismatch_with_model(&tk, 128, &ids(2, 1, 0)).unwrap();
        assert!(
            e.contains("vocab_size is 128") && e.contains("another model"),
            "{e}"
        );
        let e = mismatch_with_model(&tk, 300, &ids(2, 7, 0)).unwrap();
        assert!(
            e.contains("<eos> is id 1") && e.contains("eos_token_id"),
            "{e}"
        );
        // A config without the ids checks the size alone.
        assert_eq!(mismatch_with_model(&tk, 300, &[]), None);
    }
}
