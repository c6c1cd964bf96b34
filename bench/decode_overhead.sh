#!/usr/bin/env bash
# Per-step framework overhead of batched greedy decoding, the regime a 1B model decodes in on a
# GPU (host-side op dispatch, not arithmetic): Gemma-3-1B's depth and head layout (26 layers,
# 4 query heads, 1 KV head) at toy widths, on the CPU with one thread, 4 prompts, 256 new
# tokens each. HF `generate` (bench/peers/peer_generate.py) and t2s-worker per decoder, in
# alternating rounds; prints the best new tokens/s of each and the ratios to the peer.
#
#   bench/decode_overhead.sh                       # this checkout's release worker
#   WORKERS="old=/tmp/t2s-worker-old new=" bench/decode_overhead.sh   # compare builds
# (a worker older than the decoder option ignores it and is listed once, as dynamic)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh
PYTHON=${PYTHON:-python3} ROUNDS=${ROUNDS:-3} MAX_NEW=${MAX_NEW:-256} DECODERS=${DECODERS:-dynamic static}
WORK=${WORK:-$(mktemp -d)}
cargo build --release -q -p t2s-torch --bin t2s-worker
WORKERS=${WORKERS:-"t2s="}
model="$WORK/model-overhead"
[ -f "$model/config.json" ] || "$PYTHON" scripts/oracles/make_tiny_gemma.py --out "$model" --hf-init \
  --vocab 1024 --hidden 64 --intermediate 128 --layers 26 --heads 4 --kv-heads 1 \
  --head-dim 16 --window 64 --pattern 6 --max-pos 2048 >/dev/null
"$PYTHON" bench/make_prompts.py 4 "$WORK/prompts.jsonl"
results="$WORK/results.txt"; : > "$results"
for round in $(seq "$ROUNDS"); do
  "$PYTHON" bench/peers/peer_generate.py --model "$model" --prompts "$WORK/prompts.jsonl" --batch 4 \
    --max-new "$MAX_NEW" --device cpu --threads 1 2>/dev/null | tail -n 1 \
    | "$PYTHON" -c 'import json,sys; print("peer", json.load(sys.stdin)["tokens_per_s"])' >> "$results"
  for w in $WORKERS; do
    name=${w%%=*}; bin=${w#*=}; bin=${bin:-$CARGO_TARGET_DIR/release/t2s-worker}
    for d in $DECODERS; do
      rm -f "$WORK/out.jsonl"
      cat > "$WORK/spec.json" <<JSON
{"protocol": 1, "job": "generate", "device": "cpu", "inputs": {"model": "$model"},
 "params": {"prompts_file": "$WORK/prompts.jsonl", "out_file": "$WORK/out.jsonl", "max_new_tokens": $MAX_NEW,
            "batch_size": 4, "greedy": true, "threads": 1, "decoder": "$d"}}
JSON
      "$bin" "$WORK/spec.json" | tail -n 1 \
        | "$PYTHON" -c 'import json,sys; v=json.load(sys.stdin)["value"]; print(sys.argv[1] + "/" + v.get("decoder", "dynamic"), v["tokens_per_s"])' "$name" >> "$results"
    done
  done
done
"$PYTHON" - "$results" <<'PY'
import sys, collections
best = collections.OrderedDict()
for line in open(sys.argv[1]):
    k, v = line.split()
    best[k] = max(best.get(k, 0.0), float(v))
peer = best.pop("peer")
print(f"peer (transformers generate): {peer:.0f} new tokens/s (best of rounds)")
for k, v in best.items():
    print(f"{k}: {v:.0f} new tokens/s, {v / peer:.2f}x the peer")
PY
