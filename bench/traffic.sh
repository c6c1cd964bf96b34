#!/usr/bin/env bash
# Where a Gemma-3-1B LoRA training step's time goes, modelled from the ops it issues: profiles
# two `bench-train` steps at the 1B widths with DEPTH and DEPTH + 1 layers (libtorch's profiler
# records every op's input shapes and dtypes), and bench/traffic.py turns their difference into
# one layer's memory traffic and FLOPs, then models the 26-layer step (bytes at BANDWIDTH, GEMMs
# at MATMUL_FLOPS; each op bound by the slower). Runs on the CPU: the ops and shapes are the
# ones a GPU would be sent (the fused CUDA kernels aside: they serve bf16 on CUDA only, so this
# models the unfused program).
#
#   bench/traffic.sh                      # batch 8 x 512, bf16, r 16 (about 6 minutes, 9 GB)
#   BATCH=1 bench/traffic.sh              # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh
PYTHON=${PYTHON:-python3} BATCH=${BATCH:-8} SEQ=${SEQ:-512} DEPTH=${DEPTH:-2} DTYPE=${DTYPE:-bfloat16}
BANDWIDTH=${BANDWIDTH:-4.0e12} MATMUL_FLOPS=${MATMUL_FLOPS:-6.0e14}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p t2s-torch --bin t2s-worker
for layers in "$DEPTH" $((DEPTH + 1)); do
  cat > "$work/spec.json" <<JSON
{"protocol": 1, "job": "bench-train", "device": "cpu",
 "params": {"shape": "gemma3-1b", "layers": $layers, "batch": $BATCH, "seq": $SEQ, "rank": 16,
            "alpha": 16, "steps": 1, "warmup": 0, "dtype": "$DTYPE", "profile": "$work/l$layers.json"}}
JSON
  "$CARGO_TARGET_DIR/release/t2s-worker" "$work/spec.json" >/dev/null 2>"$work/stderr" \
    || { cat "$work/stderr" >&2; exit 1; }
done
for grouping in "" --by-part; do
  "$PYTHON" bench/traffic.py --tokens $((BATCH * SEQ)) --depth "$DEPTH" --layers 26 \
    --bandwidth "$BANDWIDTH" --matmul-flops "$MATMUL_FLOPS" $grouping \
    "$work/l$DEPTH.json" "$work/l$((DEPTH + 1)).json"
done
