//! The only t2s code that links libtorch: the Gemma-3 text model, LoRA with PEFT semantics,
//! batched generation with a KV cache, training building blocks, and the worker jobs.

pub mod adamw;
pub mod attention;
pub mod cache;
pub mod config;
pub mod cuda_graph;
pub mod device;
pub mod error;
pub mod events;
pub mod fused;
pub mod gemma3;
pub mod generate;
pub mod jobs;
pub mod kernel_cache;
pub mod linear;
pub mod lora;
pub mod merge;
pub mod profile;
pub mod shim;
pub mod tok;
pub mod train;
pub mod trainer;
pub mod weights;

pub use error::{ModelError, Result};
pub use gemma3::Gemma3;
