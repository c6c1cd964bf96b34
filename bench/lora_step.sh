#!/usr/bin/env bash
# LoRA training step throughput: t2s-worker (`bench-train`) against the peer, HF transformers +
# PEFT (bench/peers/peer_lora_train.py, a copy of shared/bench/peer_lora_train.py), on the same
# shape, batch, sequence length, rank and device, in one run. Prints both JSON results and the
# ratio (t2s tokens/s ÷ peer tokens/s). Each system runs REPEATS times, interleaved, best kept
# (the machine may be shared).
#
#   bench/lora_step.sh                                   # tiny shape on the CPU
#   DEVICE=cuda SHAPE=gemma3-1b BATCH=16 SEQ=512 bench/lora_step.sh
#   MODEL=real BATCH=4 SEQ=192 RANK=8 STEPS=5 bench/lora_step.sh   # the real Gemma-3-270m
#
# MODEL=DIR trains that checkpoint's weights in both (MODEL=real: the real Gemma-3-270m that
# scripts/fetch_gemma.py fetches); both report their peak resident memory (peak_rss_mb).
#
# PROFILE=release builds the worker with --release (default: the dev profile, whose
# dependencies, tch included, are optimised; the tensor work runs in libtorch either way).
# THREADS=n sets the intra-op threads of both (0 = library default).
# LAYERS=n overrides the shape's layer count in both (0 = the shape's): LAYERS=26 on the tiny
# shape gives the 1B model's op count with little arithmetic, i.e. per-op overhead.
# T2S_WORKER=path uses a prebuilt worker and builds nothing. The cargo target dir is
# $CARGO_TARGET_DIR (scripts/env.sh's default when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh
SHAPE=${SHAPE:-tiny} LAYERS=${LAYERS:-0} BATCH=${BATCH:-8} SEQ=${SEQ:-256} RANK=${RANK:-16} ALPHA=${ALPHA:-16}
STEPS=${STEPS:-20} WARMUP=${WARMUP:-3} DEVICE=${DEVICE:-cpu} THREADS=${THREADS:-0} REPEATS=${REPEATS:-2}
PROFILE=${PROFILE:-dev} MODEL=${MODEL:-}
[ "$MODEL" = real ] && MODEL=$("$PYTHON" scripts/fetch_gemma.py model)
if [ -n "${T2S_WORKER:-}" ]; then
  WORKER=$T2S_WORKER  # prebuilt (e.g. carried to the GPU machine)
elif [ "$PROFILE" = release ]; then
  cargo build -q --release -p t2s-torch --bin t2s-worker
  WORKER="$CARGO_TARGET_DIR/release/t2s-worker"
else
  cargo build -q -p t2s-torch --bin t2s-worker
  WORKER="$CARGO_TARGET_DIR/debug/t2s-worker"
fi
layers_json=""
if [ "$LAYERS" -gt 0 ]; then layers_json=", \"layers\": $LAYERS"; fi
model_args=()
if [ -n "$MODEL" ]; then layers_json="$layers_json, \"model\": \"$MODEL\""; model_args=(--model "$MODEL"); fi
spec=$(mktemp --suffix .json)
trap 'rm -f "$spec"' EXIT
cat >"$spec" <<JSON
{"protocol": 1, "job": "bench-train", "device": "$DEVICE",
 "params": {"shape": "$SHAPE", "batch": $BATCH, "seq": $SEQ, "rank": $RANK, "alpha": $ALPHA,
            "steps": $STEPS, "warmup": $WARMUP, "threads": $THREADS$layers_json}}
JSON
peer_dev=$DEVICE
[ "$peer_dev" = auto ] && peer_dev=$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
peers=() ours=()
for _ in $(seq "$REPEATS"); do
  peers+=("$("$PYTHON" bench/peers/peer_lora_train.py --shape "$SHAPE" --device "$peer_dev" \
      --batch "$BATCH" --seq "$SEQ" --rank "$RANK" --alpha "$ALPHA" --steps "$STEPS" \
      --warmup "$WARMUP" --threads "$THREADS" --layers "$LAYERS" "${model_args[@]}" 2>/dev/null | tail -n 1)")
  ours+=("$("$WORKER" "$spec" | tail -n 1)")
done
"$PYTHON" - "${#peers[@]}" "${peers[@]}" "${ours[@]}" <<'PY'
import json, sys
n = int(sys.argv[1])
peers = [json.loads(x) for x in sys.argv[2:2 + n]]
ours = []
for x in sys.argv[2 + n:]:
    ev = json.loads(x)
    if ev.get("event") != "result":
        sys.exit(f"t2s-worker failed: {ev}")
    ours.append(ev["value"])
p = max(peers, key=lambda r: r["tokens_per_s"])
o = max(ours, key=lambda r: r["tokens_per_s"])
print("peer (transformers+peft):", json.dumps(p))
print("t2s-worker:              ", json.dumps(o))
print(f"ratio t2s/peer tokens/s: {o['tokens_per_s'] / p['tokens_per_s']:.2f}x "
      f"(t2s {o['tokens_per_s']:.0f} tok/s, {o['step_ms']:.1f} ms/step; "
      f"peer {p['tokens_per_s']:.0f} tok/s, {p['step_ms']:.1f} ms/step; "
      f"peak RSS t2s {o.get('peak_rss_mb') or 0:.0f} MiB, peer {p.get('peak_rss_mb') or 0:.0f} MiB; "
      f"runs: peer {[round(r['tokens_per_s']) for r in peers]}, t2s {[round(r['tokens_per_s']) for r in ours]})")
PY
