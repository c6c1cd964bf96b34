//! The only t2s code that links libtorch.
