#!/usr/bin/env bash
# Where a training node's wall time goes on the GPU: the quickstart's base and LoRA stages with
# fewer steps, then, from the tracking DB, each node's wall time against the time between its
# step metrics (the steady-state step), its evaluations and what is left (start, checkpoints,
# the end). Beside it, bench-train on the same tiny shape at fixed sizes, for the step alone.
# T2S_SDPA_CUDNN (0|1, unset: off) passes through to the worker; TAG names the
# output file (train_overhead$TAG.txt).
# Prepared by bench/gpu/prepare.sh; run on the device machine as `bash bench/gpu/train_overhead.sh`.
set -uo pipefail
cd "$(dirname "$0")/../.."
source bench/gpu/env.sh
root=/tmp/t2s-train-overhead
rm -rf $root && mkdir -p $root
( cd $root && time timeout "${PIPE_TIMEOUT:-150}" "$OLDPWD/.gpu/t2s" run "$OLDPWD/pipelines/quickstart.yaml" \
    --until train --set base.max_steps="${BASE_STEPS:-300}" --set train.max_steps="${LORA_STEPS:-100}" \
    --set base.eval_steps=100 --set train.eval_steps=50 --set train.save_steps=50 ) > "$OUT/train_overhead${TAG:-}.txt" 2>&1
tail -8 "$OUT/train_overhead${TAG:-}.txt"
python3 - "$root/experiments/t2s.db" <<'PY' | tee -a "$OUT/train_overhead${TAG:-}.txt"
import sqlite3, statistics, sys
from datetime import datetime
db = sqlite3.connect(sys.argv[1])
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
for node, started, ended in db.execute(
        "SELECT node, started, ended FROM nodes WHERE kind = 'train' AND status = 'ran' ORDER BY started"):
    steps = [t(r[0]) for r in db.execute(
        "SELECT time FROM metrics WHERE node = ? AND name = 'loss' ORDER BY step", (node,))]
    evals = [t(r[0]) for r in db.execute(
        "SELECT time FROM metrics WHERE node = ? AND name = 'eval_loss' ORDER BY step", (node,))]
    tps = [r[0] for r in db.execute(
        "SELECT value FROM metrics WHERE node = ? AND name = 'tokens_per_s'", (node,))]
    wall = t(ended) - t(started)
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    med = statistics.median(gaps) if gaps else float("nan")
    print(f"{node}: wall {wall:.1f} s, {len(steps)} steps, median step gap {med*1000:.1f} ms "
          f"(steps x median {len(steps)*med:.1f} s), first step at +{steps[0]-t(started):.1f} s, "
          f"after last step {t(ended)-steps[-1]:.1f} s, median tokens/s {statistics.median(tps):.0f}, "
          f"slowest gaps {[round(g*1000) for g in sorted(gaps)[-6:]]} ms, evals {len(evals)}")
PY
for seq in 256 512; do
  echo "{\"protocol\":1,\"job\":\"bench-train\",\"device\":\"cuda\",\"params\":{\"shape\":\"tiny\",\"batch\":8,\"seq\":$seq,\"rank\":16,\"alpha\":16,\"steps\":40,\"warmup\":5}}" > /tmp/bt.json
  echo "bench-train tiny b8 seq $seq: $(timeout 60 .gpu/t2s-worker /tmp/bt.json 2>/dev/null | tail -1)" | tee -a "$OUT/train_overhead${TAG:-}.txt"
done
