//! Gemma-3 text config: the schema and its checks live in `t2s::model_config` (the crate
//! without libtorch, so `t2s run` applies the same rules to a pipeline's `model_config`);
//! this module re-exports them and turns their errors into `ModelError`s.

pub use t2s::model_config::{id_list, Config, ConfigError, Problem, Resolved, Rope};

use crate::error::ModelError;

impl From<ConfigError> for ModelError {
    fn from(e: ConfigError) -> Self {
        ModelError::Config {
            file: e.file,
            message: e.problem.to_string(),
        }
    }
}
