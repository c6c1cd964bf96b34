#!/usr/bin/env bash
# The work that changes batch shapes from call to call, with SDPA's cuDNN attention left to
# torch (on sm90 it is tried first, and one cuDNN graph is built per new problem shape) and
# switched off (T2S_SDPA_CUDNN=0, honoured by t2s-worker and by both peer scripts):
#   1. the quickstart's training nodes, shortened (bench/gpu/train_overhead.sh): the step of the
#      real loop, whose batch lengths vary, against bench-train at one fixed shape;
#   2. the 1B LoRA step (fixed shape), t2s and transformers + PEFT;
#   3. batched greedy generation on the 1B shape, 256 prompts: t2s dynamic (key length grows
#      every step) and graph, and HF generate.
# Prepared by bench/gpu/prepare.sh; run there as `bash bench/gpu/sdpa_cudnn.sh` (results under
# $OUT: train_overhead.txt, train_overhead_nocudnn.txt, sdpa.txt, and profile_1b_b*.json with
# the kernel summaries). About 6 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/t2s-gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
mkdir -p .gpu/venv/bin && printf '#!/bin/sh\nexec python3 "$@"\n' > .gpu/venv/bin/python && chmod +x .gpu/venv/bin/python
export T2S_VENV=$PWD/.gpu/venv PYTHON=python3 T2S_WORKER=$PWD/.gpu/t2s-worker
START=$(date +%s) BUDGET=${BUDGET:-540}
left() { echo $((START + BUDGET - $(date +%s))); }

for setting in default 0; do
  if [ "$setting" = 0 ]; then export T2S_SDPA_CUDNN=0 TAG=_nocudnn; else unset T2S_SDPA_CUDNN; export TAG=; fi
  [ "$(left)" -gt 60 ] || { echo "skipped the rest: out of time" | tee -a "$OUT/sdpa.txt"; break; }
  echo "== SDPA cuDNN: $setting" | tee -a "$OUT/sdpa.txt"
  PIPE_TIMEOUT=$(( $(left) < 100 ? $(left) : 100 )) bash bench/gpu/train_overhead.sh 2>&1 | grep -E "wall|bench-train" | tee -a "$OUT/sdpa.txt"
  # The 1B step, with 2 more steps under libtorch's profiler (GPU time by kernel) in the result.
  for b in 8 ${BIG_BATCH:-32}; do
    [ "$setting" = 0 ] && [ "$b" != 8 ] && continue
    echo "{\"protocol\":1,\"job\":\"bench-train\",\"device\":\"cuda\",\"params\":{\"shape\":\"gemma3-1b\",\"batch\":$b,\"seq\":512,\"rank\":16,\"alpha\":16,\"steps\":20,\"warmup\":3,\"profile\":\"/tmp/trace_b$b.json\"}}" > /tmp/bt1b.json
    timeout 120 .gpu/t2s-worker /tmp/bt1b.json 2>/dev/null | tail -1 > "$OUT/profile_1b_b$b$TAG.json"
    python3 bench/gpu/profile_summary.py "$OUT/profile_1b_b$b$TAG.json" 2>&1 | tee -a "$OUT/sdpa.txt"
  done
  echo "peer 1B b8x512: $(timeout 120 python3 bench/peers/peer_lora_train.py --shape gemma3-1b --rank 16 --batch 8 --seq 512 --steps 20 2>/dev/null | tail -1)" | tee -a "$OUT/sdpa.txt"
  WORK=/tmp/t2s-gen DEVICE=cuda SHAPE=gemma3-1b N=256 BATCH=128 MAX_NEW=128 DECODERS="dynamic graph" \
    timeout 150 bash bench/generate.sh 2>/dev/null | grep ratio | tee -a "$OUT/sdpa.txt"
done
date -u
