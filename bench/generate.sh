#!/usr/bin/env bash
# Batched greedy generation throughput: t2s-worker (`generate` job) against HF transformers
# `generate` (bench/peers/peer_generate.py), same random-weight model directory, same prompts
# (N rendered Text-to-SQL chat prompts), same batch size and max new tokens, same device.
# Prints both results and the ratio of new tokens/s.
#
#   bench/generate.sh                                     # tiny model on the CPU
#   DEVICE=cuda SHAPE=gemma3-1b N=1000 BATCH=128 bench/generate.sh
#   SHAPE=overhead THREADS=1 bench/generate.sh            # dispatch overhead per decode step
#
# THREADS=n sets the intra-op threads of both (0 = library default). DECODERS="graph dynamic"
# runs t2s once per decoder (default: auto, i.e. graph on CUDA, dynamic on the CPU).
# T2S_WORKER=path uses a prebuilt worker (no cargo build); WORK=dir keeps the model/prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
[ -f scripts/env.sh ] && source scripts/env.sh
PYTHON=${PYTHON:-python3}
SHAPE=${SHAPE:-tiny} N=${N:-64} BATCH=${BATCH:-16} MAX_NEW=${MAX_NEW:-32} DEVICE=${DEVICE:-cpu} THREADS=${THREADS:-0}
WORK=${WORK:-$(mktemp -d)}
if [ -n "${T2S_WORKER:-}" ]; then
  WORKER=$T2S_WORKER
else
  cargo build -q -p t2s-torch --bin t2s-worker
  WORKER="$CARGO_TARGET_DIR/debug/t2s-worker"
fi
model="$WORK/model-$SHAPE"
if [ ! -f "$model/config.json" ]; then
  case "$SHAPE" in
    tiny) "$PYTHON" scripts/oracles/make_tiny_gemma.py --out "$model" --hf-init \
            --vocab 4096 --hidden 128 --intermediate 512 --layers 4 --heads 4 --kv-heads 1 \
            --head-dim 32 --window 64 --pattern 6 --max-pos 2048 >/dev/null ;;
    gemma3-1b) "$PYTHON" scripts/oracles/make_tiny_gemma.py --out "$model" --hf-init --dtype bf16 \
            --vocab 262144 --hidden 1152 --intermediate 6912 --layers 26 --heads 4 --kv-heads 1 \
            --head-dim 256 --window 512 --pattern 6 --max-pos 32768 >/dev/null ;;
    # Gemma-3-1B's depth and head layout at toy widths: per-step time is framework overhead
    # (op dispatch, kernel launches), the regime a 1B model decodes in on a GPU.
    overhead) "$PYTHON" scripts/oracles/make_tiny_gemma.py --out "$model" --hf-init \
            --vocab 1024 --hidden 64 --intermediate 128 --layers 26 --heads 4 --kv-heads 1 \
            --head-dim 16 --window 64 --pattern 6 --max-pos 2048 >/dev/null ;;
    *) echo "SHAPE must be tiny, overhead or gemma3-1b" >&2; exit 2 ;;
  esac
fi
"$PYTHON" bench/make_prompts.py "$N" "$WORK/prompts.jsonl"
peer=$("$PYTHON" bench/peers/peer_generate.py --model "$model" --prompts "$WORK/prompts.jsonl" \
  --batch "$BATCH" --max-new "$MAX_NEW" --device "$DEVICE" --threads "$THREADS" 2>/dev/null | tail -n 1)
# One t2s run per decoder in DECODERS (auto, dynamic, static, graph), each against the peer.
for decoder in ${DECODERS:-auto}; do
rm -f "$WORK/out.jsonl"
cat >"$WORK/spec.json" <<JSON
{"protocol": 1, "job": "generate", "device": "$DEVICE", "inputs": {"model": "$model"},
 "params": {"prompts_file": "$WORK/prompts.jsonl", "out_file": "$WORK/out.jsonl",
            "max_new_tokens": $MAX_NEW, "batch_size": $BATCH, "greedy": true, "threads": $THREADS,
            "decoder": "$decoder"}}
JSON
ours=$("$WORKER" "$WORK/spec.json" | tail -n 1)
"$PYTHON" - "$peer" "$ours" <<'PY'
import json, sys
p = json.loads(sys.argv[1])
ev = json.loads(sys.argv[2])
if ev.get("event") != "result":
    sys.exit(f"t2s-worker failed: {ev}")
o = ev["value"]
print("peer (transformers generate):", json.dumps(p))
print("t2s-worker generate:         ", json.dumps(o))
print(f"ratio t2s ({o.get('decoder')})/peer new tokens/s: {o['tokens_per_s'] / p['tokens_per_s']:.2f}x "
      f"(t2s {o['tokens_per_s']:.0f}, peer {p['tokens_per_s']:.0f}; new tokens t2s "
      f"{o['new_tokens']}, peer {p['new_tokens']})")
PY
done
