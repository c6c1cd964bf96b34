#!/usr/bin/env bash
# Training throughput on the CPU: the t2s `train` job (the real loop: batching, LoRA forward and
# backward with the chunked loss, clipping, AdamW, schedule) against the Hugging Face
# transformers + PEFT peer (bench/peers/peer_lora_train.py), same tiny Gemma-3 shape, same
# LoRA (r 16, alpha 16, dropout 0.05, q/k/v/o), batch 8 x 256 tokens, loss on all tokens,
# AdamW lr 2e-5 wd 0.01, the same thread count. Prints both JSON lines and the ratio.
#
#   bench/train_tokens.sh            # builds the release worker
#   T2S_WORKER=path bench/train_tokens.sh   # use a given worker binary
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
THREADS="${THREADS:-$(nproc)}"
BATCH="${BATCH:-8}" SEQ="${SEQ:-256}" RANK="${RANK:-16}" STEPS="${STEPS:-20}" WARMUP="${WARMUP:-3}"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" TOKENIZERS_PARALLELISM=false

WORKER="${T2S_WORKER:-}"
if [ -z "$WORKER" ]; then
  cargo build --release -p t2s-torch --bin t2s-worker >&2
  WORKER="$CARGO_TARGET_DIR/release/t2s-worker"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The peer's tiny shape as an HF model directory, and a split of random full-length sequences
# (prompt length 0: every token is a label, as the peer's labels=ids).
"$PYTHON" - "$work" "$BATCH" "$SEQ" "$((STEPS + WARMUP))" <<'PY'
import json, os, struct, sys
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig
work, batch, seq, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
cfg = Gemma3TextConfig(vocab_size=4096, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=1, head_dim=32, sliding_window=64,
                       query_pre_attn_scalar=32, max_position_embeddings=2048)
Gemma3ForCausalLM(cfg).save_pretrained(os.path.join(work, "model"), safe_serialization=True)
d = os.path.join(work, "split", "train")
os.makedirs(d)
g = torch.Generator().manual_seed(1)
row = {"split": "train", "id": 0, "domain": "d", "domain_description": "", "sql_complexity": "basic SQL",
       "sql_complexity_description": "", "sql_task_type": "analytics", "sql_task_type_description": "",
       "sql_prompt": "q", "sql_context": "c", "sql": "SELECT 1", "sql_explanation": ""}
with open(f"{d}/rows.jsonl", "w") as r, open(f"{d}/tokens.bin", "wb") as t, open(f"{d}/index.bin", "wb") as ix:
    for i in range(batch * steps):
        ids = torch.randint(3, cfg.vocab_size, (seq,), generator=g).tolist()
        r.write(json.dumps(row) + "\n")
        t.write(struct.pack(f"<{seq}I", *ids))
        ix.write(struct.pack("<QII", i * seq, seq, 0))
PY

cat > "$work/spec.json" <<JSON
{"protocol": 1, "job": "train", "device": "cpu",
 "inputs": {"data": "$work/split", "model": "$work/model"},
 "out_dir": "$work/out", "partial_dir": "$work/partial",
 "params": {"method": "lora", "lora_r": $RANK, "lora_alpha": $RANK, "lora_dropout": 0.05,
            "lr": 2e-5, "weight_decay": 0.01, "batch_size": $BATCH, "max_length": $SEQ,
            "max_steps": $((STEPS + WARMUP)), "save_steps": 0, "logging_steps": 1,
            "max_grad_norm": 0.0, "device": "cpu"}}
JSON

t2s_line="$("$WORKER" "$work/spec.json" | "$PYTHON" -c '
import json, sys
warm, tokens = int(sys.argv[1]), int(sys.argv[2])
tps = [e["value"] for e in map(json.loads, sys.stdin)
       if e.get("event") == "metric" and e.get("name") == "tokens_per_s" and e["step"] > warm]
secs = sum(tokens / v for v in tps)
print(json.dumps({"system": "t2s", "shape": "tiny", "device": "cpu", "steps": len(tps),
                  "step_ms": 1000 * secs / len(tps), "tokens_per_s": tokens * len(tps) / secs}))
' "$WARMUP" "$((BATCH * SEQ))")"
peer_line="$("$PYTHON" bench/peers/peer_lora_train.py --shape tiny --device cpu --batch "$BATCH" \
  --seq "$SEQ" --rank "$RANK" --alpha "$RANK" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS")"
echo "$t2s_line"
echo "$peer_line"
"$PYTHON" - "$t2s_line" "$peer_line" "$THREADS" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r = a["tokens_per_s"] / b["tokens_per_s"]
print(f"ratio t2s/peer tokens_per_s = {r:.2f} ({a['tokens_per_s']:.0f} vs {b['tokens_per_s']:.0f}; threads {sys.argv[3]})")
PY
