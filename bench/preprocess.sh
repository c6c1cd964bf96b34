#!/usr/bin/env bash
# Preprocess benchmark: t2s (rayon + tokenizers, Rust) vs the seed's Python way
# (bench/peers/peer_preprocess.py: datasets.map(batched, num_proc=2) + HF tokenizers),
# same generated rows, same tokenizer.json, one run of this script. Prints both JSON lines
# and the speed ratio (peer seconds / t2s seconds, each including reading the JSONL).
#
#   bench/preprocess.sh                 # 100,000 rows, release build, a trained 2k BPE
#   TOKENIZER=real bench/preprocess.sh  # the real Gemma-3 tokenizer (scripts/fetch_gemma.py)
#   TOKENIZER=path/to/tokenizer.json bench/preprocess.sh
#   N=20000 PROFILE=dev bench/preprocess.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
N="${N:-100000}"
PROFILE="${PROFILE:-release}"
TOKENIZER="${TOKENIZER:-trained}"
cargo build -q --profile "$PROFILE" --example preprocess_bench
dir="$PROFILE"; [ "$PROFILE" = dev ] && dir=debug
B="$CARGO_TARGET_DIR/$dir/examples/preprocess_bench"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
export HF_DATASETS_CACHE="$W/hf-datasets" HF_HUB_OFFLINE=1

"$B" gen "$N" "$W/rows.jsonl" 42
case "$TOKENIZER" in
  trained)
    head -n 20000 "$W/rows.jsonl" > "$W/tok_rows.jsonl"
    "$B" tokenizer "$W/tok_rows.jsonl" "$W/tokenizer.json" 2048
    TOK="$W/tokenizer.json" ;;
  real) TOK="$("$PYTHON" scripts/fetch_gemma.py tokenizer | tail -n 1)/tokenizer.json" ;;
  *) TOK="$TOKENIZER" ;;
esac

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), profile $PROFILE, $N rows, tokenizer $TOKENIZER, load$(uptime | sed 's/.*load average//')"
peer="$("$PYTHON" bench/peers/peer_preprocess.py "$W/rows.jsonl" "$TOK" --num-proc 2 2>/dev/null | tail -n 1)"
ours="$("$B" preprocess "$W/rows.jsonl" "$TOK" "$W/out" 100000)"
echo "peer: $peer"
echo "t2s:  $ours"
"$PYTHON" - "$peer" "$ours" <<'PY'
import json, sys
p, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
peer_s = p["load_s"] + p["map_s"]
ours_s = t["total_s"]
assert p["rows"] == t["rows"], (p["rows"], t["rows"])
print(f"peer {peer_s:.2f} s ({p['tokens']} tokens), t2s {ours_s:.2f} s ({t['tokens']} tokens)")
print(f"ratio: t2s is {peer_s / ours_s:.2f}x faster")
PY
