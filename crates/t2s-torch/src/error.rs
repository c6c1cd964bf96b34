//! Errors of the model layer. Each names the user's thing (file, tensor, field) and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{file}: {message}")]
    Checkpoint { file: PathBuf, message: String },
    #[error("tensor `{name}` is missing from {file}; is this a Gemma-3 text checkpoint (Gemma3ForCausalLM)?")]
    MissingTensor { name: String, file: PathBuf },
    #[error("tensor `{name}` in {file} has shape {found:?} but the config expects {expected:?}; the checkpoint and its config.json do not match (or an adapter was made for another base model)")]
    ShapeMismatch {
        name: String,
        file: PathBuf,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("{file}: {message}")]
    Config { file: PathBuf, message: String },
    #[error("adapter {dir}: {message}")]
    Adapter { dir: PathBuf, message: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
