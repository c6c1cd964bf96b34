//! (module under construction: see ARCHITECTURE.md for its owner and contract)

pub mod evaluate;
