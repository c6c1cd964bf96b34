#!/usr/bin/env bash
# Build the release binaries here and put what the GPU run needs into .gpu/ (git-ignored),
# then call the device tool with carry [".gpu"] and `bash bench/gpu/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
cargo build --release --workspace --bins
mkdir -p .gpu
cp "$CARGO_TARGET_DIR/release/t2s" "$CARGO_TARGET_DIR/release/t2s-worker" .gpu/
ldd .gpu/t2s-worker | grep -q torch_cuda || { echo "t2s-worker does not link libtorch_cuda: CUDA would not register" >&2; exit 1; }
du -sh .gpu
