//! Data: gretel-schema rows, readers, the hub source, the builtin generator, formatting,
//! tokenization, splitting and EDA. No libtorch here.

pub mod builtin;
pub mod eda;
pub mod examples;
pub mod fastenc;
pub mod format;
pub mod hub;
pub mod load;
pub mod plots;
pub mod preprocess;
pub mod records;
pub mod row;
pub mod split;
pub mod tokenizer;
pub mod validate;

pub use examples::{load_split, read_examples, Example};
pub use format::format_prompt;
pub use load::{read_loaded, read_rows, LoadedRow};
pub use row::Row;
