//! The model directory's `tokenizer.json` (HF `tokenizers`), and the stop ids of a model.

use std::path::Path;

use crate::config::{id_list, Config};
use crate::error::{ModelError, Result};

pub struct Tok {
    inner: tokenizers::Tokenizer,
}

impl Tok {
    pub fn load(model_dir: &Path) -> Result<Self> {
        let f = model_dir.join("tokenizer.json");
        if !f.is_file() {
            return Err(ModelError::Config {
                file: f,
                message: "missing; the model directory needs the HF tokenizer.json".into(),
            });
        }
        let bytes = std::fs::read(&f).map_err(|e| ModelError::Config {
            file: f.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let inner =
            t2s::data::tokenizer::from_json_bytes(&bytes).map_err(|why| ModelError::Config {
                file: f.clone(),
                message: format!("cannot load tokenizer: {why}"),
            })?;
        Ok(Self { inner })
    }

    /// [`Tok::load`], checked against the model it will feed: a tokenizer of another model
    /// (ids past the embedding, other bos/eos/pad ids) is an error naming both files.
    pub fn load_for(model_dir: &Path, cfg: &Config) -> Result<Self> {
        let tok = Self::load(model_dir)?;
        let ids = [
            ("bos_token_id", id_list(&cfg.bos_token_id)),
            ("eos_token_id", id_list(&cfg.eos_token_id)),
            ("pad_token_id", id_list(&cfg.pad_token_id)),
        ];
        if let Some(why) =
            t2s::data::tokenizer::mismatch_with_model(&tok.inner, cfg.vocab_size, &ids)
        {
            return Err(ModelError::Config {
                file: model_dir.join("tokenizer.json"),
                message: format!(
                    "does not match {}: {why}",
                    model_dir.join("config.json").display()
                ),
            });
        }
        Ok(tok)
    }

    /// Token ids of an already rendered prompt: no special tokens are added (the chat template
    /// carries its own `<bos>`).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Input(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Text of generated ids, special tokens skipped.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner
            .decode(&ids, true)
            .map_err(|e| ModelError::Input(format!("tokenizer: {e}")))
    }

    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(|i| i as i64)
    }
}

/// Stop ids: `eos_token_id` of generation_config.json and config.json, plus the tokenizer's
/// `<eos>` and `<end_of_turn>` (chat fine-tunes end their answer with `<end_of_turn>`). A
/// generation_config.json that is there but unreadable is an error: generating without its
/// stop ids would run every answer to the length limit.
pub fn stop_ids(model_dir: &Path, cfg: &Config, tok: &Tok) -> Result<Vec<i64>> {
    let mut ids = id_list(&cfg.eos_token_id);
    let gen_file = model_dir.join("generation_config.json");
    if gen_file.is_file() {
        let bad = |message: String| ModelError::Config {
            file: gen_file.clone(),
            message,
        };
        let text =
            std::fs::read_to_string(&gen_file).map_err(|e| bad(format!("cannot read: {e}")))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        ids.extend(id_list(&v.get("eos_token_id").cloned()));
    }
    ids.extend(
        ["<eos>", "<end_of_turn>"]
            .iter()
            .filter_map(|t| tok.token_id(t)),
    );
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
