//! Data: gretel-schema rows, readers, the hub source, the builtin generator, formatting,
//! tokenization, splitting and EDA. No libtorch here.

pub mod builtin;
pub mod hub;
pub mod load;
pub mod records;
pub mod row;
pub mod validate;

pub use load::{read_loaded, read_rows, LoadedRow};
pub use row::Row;
