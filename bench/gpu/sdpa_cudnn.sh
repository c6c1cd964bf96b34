#!/usr/bin/env bash
# The work that changes batch shapes from call to call, with SDPA's cuDNN attention left to
# torch (on sm90 it is tried first, and one cuDNN graph is built per new problem shape) and
# switched off (T2S_SDPA_CUDNN=0, honoured by t2s-worker and by both peer scripts), most
# telling first (after 0., a correctness check of the training loop on CUDA):
#   1. the quickstart's training nodes, shortened (bench/gpu/train_overhead.sh): the step of the
#      real loop, whose batch lengths vary, against bench-train at one fixed shape;
#   2. the 1B LoRA step (fixed shape) with 2 more steps under libtorch's profiler (GPU time by
#      kernel: where the MFU goes), batch 8 and 32;
#   3. batched greedy generation on the 1B shape, 256 prompts: t2s dynamic (key length grows
#      every step) and graph, and HF generate;
#   4. the peer's 1B LoRA step without cuDNN attention.
# Prepared by bench/gpu/prepare.sh; run there as `bash bench/gpu/sdpa_cudnn.sh`. Results under
# $OUT: sdpa.txt (the summary), train_overhead*.txt, profile_1b_*.json. Each piece's timeout is
# capped by what is left of BUDGET seconds (default 540); about 6 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUDGET=${BUDGET:-540}
source bench/gpu/env.sh
say() { echo "$*" | tee -a "$OUT/sdpa.txt"; }
# Run the rest of the line with T2S_SDPA_CUDNN unset (default) or 0 (nocudnn).
with_sdpa() {
  local setting=$1; shift
  if [ "$setting" = nocudnn ]; then T2S_SDPA_CUDNN=0 "$@"; else env -u T2S_SDPA_CUDNN "$@"; fi
}

# 0. The training loop against transformers + PEFT on CUDA (the step changed after the last GPU
#    run: flat AdamW, host-side label selection, reads deferred to the end of the step).
for t in .gpu/tests/train_parity-*; do
  [ -x "$t" ] || continue
  say "== training-loop parity on CUDA ($t)"
  T2S_REPO_ROOT=$PWD T2S_TEST_DEVICE=cuda timeout "$(cap 90)" "$t" --test-threads 1 2>&1 | tail -3 | tee -a "$OUT/sdpa.txt"
done

# 1. The real training loop (varying batch lengths) against one fixed shape.
for s in default nocudnn; do
  say "== real loop, SDPA cuDNN $s"
  tag=""; [ "$s" = nocudnn ] && tag=_nocudnn
  PIPE_TIMEOUT=$(cap 90) TAG=$tag BASE_STEPS=150 LORA_STEPS=60 with_sdpa $s bash bench/gpu/train_overhead.sh 2>&1 \
    | grep -E "wall|bench-train" | tee -a "$OUT/sdpa.txt"
done

# 2. The 1B step, profiled.
for run in "default 8" "default ${BIG_BATCH:-32}" "nocudnn 8"; do
  set -- $run
  say "== t2s 1B step, batch $2, SDPA cuDNN $1"
  echo "{\"protocol\":1,\"job\":\"bench-train\",\"device\":\"cuda\",\"params\":{\"shape\":\"gemma3-1b\",\"batch\":$2,\"seq\":512,\"rank\":16,\"alpha\":16,\"steps\":20,\"warmup\":3,\"profile\":\"/tmp/trace_$1_b$2.json\"}}" > /tmp/bt1b.json
  with_sdpa "$1" timeout "$(cap 90)" .gpu/t2s-worker /tmp/bt1b.json 2>/dev/null | tail -1 > "$OUT/profile_1b_$1_b$2.json"
  python3 bench/gpu/profile_summary.py "$OUT/profile_1b_$1_b$2.json" 2>&1 | tee -a "$OUT/sdpa.txt"
done

# 3. Generation: t2s dynamic and graph against HF generate, both sides under the same setting.
for s in default nocudnn; do
  say "== generation, 256 prompts, SDPA cuDNN $s"
  WORK=/tmp/t2s-gen DEVICE=cuda SHAPE=gemma3-1b N=256 BATCH=128 MAX_NEW=128 DECODERS="dynamic graph" \
    with_sdpa $s timeout "$(cap 150)" bash bench/generate.sh 2>&1 | grep -E "ratio|rror" | tee -a "$OUT/sdpa.txt"
done

# 4. The peer's step without cuDNN attention (with it: bench/gpu/run.sh, 21,388 tok/s on the H200).
say "== peer 1B step, batch 8, SDPA cuDNN nocudnn"
with_sdpa nocudnn timeout "$(cap 120)" python3 bench/peers/peer_lora_train.py --shape gemma3-1b --rank 16 \
  --batch 8 --seq 512 --steps 20 2>/dev/null | tail -1 | tee -a "$OUT/sdpa.txt"
date -u | tee -a "$OUT/sdpa.txt"
