//! Data: gretel-schema rows, readers, the hub source, the builtin generator, formatting,
//! tokenization, splitting and EDA. No libtorch here.

pub mod builtin;
pub mod row;

pub use row::Row;
