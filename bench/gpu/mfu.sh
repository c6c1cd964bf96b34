#!/usr/bin/env bash
# The next lent GPU's run for issue 8's open item (40% MFU), most telling first; each piece's
# timeout is capped by what is left of BUDGET seconds (default 540), so what ran comes back.
# Order: doctor (the fused kernels' verdicts), the fused kernels' tests, the 1B step at batch
# 32 (on, nolora, off), the peer and t2s at batch 8, the parity tests, then 1b, 2 and 3:
#   0. correctness on CUDA: the fused kernels (self-check, model widths, a bf16 LoRA model with
#      and without them), bf16/fp32 parity with transformers, the training loop against
#      transformers + PEFT;
#   1. the 1B LoRA step (bench-train, fixed shape) at batch 8 and 32 with the fused kernels and
#      without (`fused: false`), at batch 32 also without the fused LoRA projections alone
#      (`fused_lora: false`), the fused runs profiled (GPU time by kernel), and the peer
#      (transformers + PEFT) at batch 8 in the same call for the ratio;
#      then the same step at batch 32 under each attention backend (T2S_SDPA);
#   2. the real training loop (varying batch lengths) with SDPA's cuDNN attention on
#      (T2S_SDPA_CUDNN=1) and off (0, t2s's default), against bench-train at one shape;
#   3. batched greedy generation, 256 prompts, cuDNN attention on and off, t2s against HF.
# Prepared by bench/gpu/prepare.sh; run there as `bash bench/gpu/mfu.sh` (all of it: 409 s on an
# H200, 2026-11-27). Results under $OUT, at most 4 files (the device tool returns 8): mfu.txt (the
# summary), raw.tgz (train_1b_*.json, peer_b8.json, train_overhead*.txt, repacked after each
# section) and the batch-32 CUDA traces of the step with the fused kernels on and off, gzipped
# where under 16 MiB (bench/traffic.py --gpu reads them; its summary is in mfu.txt already).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUDGET=${BUDGET:-540}
source bench/gpu/env.sh
RAW=/tmp/mfu-raw
mkdir -p "$RAW"
say() { echo "$*" | tee -a "$OUT/mfu.txt"; }
pack() { tar -czf "$OUT/raw.tgz" -C "$RAW" . 2>/dev/null; }
# Run the rest of the line with SDPA's cuDNN attention on (cudnn: torch's default, the peers')
# or off (nocudnn: t2s's default), for t2s and the peers alike.
with_sdpa() {
  local setting=$1; shift
  if [ "$setting" = nocudnn ]; then T2S_SDPA_CUDNN=0 "$@"; else T2S_SDPA_CUDNN=1 "$@"; fi
}
say "$(date -u) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"

# 0. Correctness on CUDA: the test binaries matching a pattern.
cuda_tests() {
  for t in $1; do
    [ -x "$t" ] || continue
    say "== $(basename "$t") on CUDA"
    T2S_REPO_ROOT=$PWD T2S_TEST_DEVICE=cuda timeout "$(cap 90)" "$t" --test-threads 1 --include-ignored --skip emulated 2>&1 \
      | awk '/^test |test result|Δ/ {print} /panicked/ {print; n = 3; next} n > 0 {print; n--}' \
      | tail -40 | tee -a "$OUT/mfu.txt"
  done
}

# 1. The 1B step for each "setting batch" argument: fused kernels on (profiled) or off, or
#    (`nolora`) the other kernels on and the LoRA projections unfused (what those kernels give),
#    or (`gemm`) on with the LoRA products as tensor-core GEMMs (T2S_LORA_MATMUL=gemm),
#    or (`fixed`) on with the LoRA kernels' splits fixed at 256 (T2S_LORA_SPLIT; what sizing
#    them to fill the GPU gives).
one_b() {
  local run
  for run in "$@"; do
    set -- $run
    say "== t2s 1B step, batch $2, fused kernels $1"
    fused=true; [ "$1" = off ] && fused=false
    lora=true; [ "$1" = nolora ] && lora=false
    split=""; [ "$1" = fixed ] && split=256
    matmul=kernels; [ "$1" = gemm ] && matmul=gemm
    # Profiled: the fused runs, and the unfused one at the big batch (the traffic model's check).
    profile=""
    if [ "$1" = on ] || [ "$1" = gemm ] || { [ "$1" = off ] && [ "$2" != 8 ]; }; then
      profile=",\"profile\":\"/tmp/trace_$1_b$2.json\""
    fi
    echo "{\"protocol\":1,\"job\":\"bench-train\",\"device\":\"cuda\",\"params\":{\"shape\":\"gemma3-1b\",\"batch\":$2,\"seq\":512,\"rank\":16,\"alpha\":16,\"steps\":20,\"warmup\":3,\"fused\":$fused,\"fused_lora\":$lora$profile}}" > /tmp/bt1b.json
    T2S_LORA_MATMUL=$matmul T2S_LORA_SPLIT=$split timeout "$(cap 90)" .gpu/t2s-worker /tmp/bt1b.json 2>/dev/null | tail -1 > "$RAW/train_1b_$1_b$2.json"
    python3 bench/gpu/profile_summary.py "$RAW/train_1b_$1_b$2.json" 2>&1 | tee -a "$OUT/mfu.txt"
    if [ -n "$profile" ] && [ -s "/tmp/trace_$1_b$2.json" ]; then
      timeout "$(cap 60)" python3 bench/traffic.py --gpu --tokens $(($2 * 512)) "/tmp/trace_$1_b$2.json" 2>&1 \
        | tee -a "$OUT/mfu.txt"
      if [ "$2" != 8 ]; then
        gzip -c "/tmp/trace_$1_b$2.json" > "/tmp/trace_$1_b$2.json.gz"
        [ "$(stat -c %s "/tmp/trace_$1_b$2.json.gz")" -lt 16000000 ] && cp "/tmp/trace_$1_b$2.json.gz" "$OUT/"
      fi
    fi
    pack
  done
}

peer_b8() {
  say "== peer (transformers + PEFT) 1B step, batch 8"
  timeout "$(cap 120)" python3 bench/peers/peer_lora_train.py --shape gemma3-1b --rank 16 \
    --batch 8 --seq 512 --steps 20 2>/dev/null | tail -1 > "$RAW/peer_b8.json"
  tee -a "$OUT/mfu.txt" < "$RAW/peer_b8.json"
}

# Most telling first (what is cut off by BUDGET matters least): whether the fused kernels
# compile and check out on this GPU, then the MFU at batch 32 with them, without the LoRA
# projections fused and without any, then the peer's batch for the ratio.
say "== doctor"
echo '{"protocol":1,"job":"doctor","device":"auto"}' > /tmp/t2s-doctor.json
timeout "$(cap 60)" .gpu/t2s-worker /tmp/t2s-doctor.json 2>&1 | tail -1 | tee -a "$OUT/mfu.txt"
cuda_tests ".gpu/tests/fused-*"
one_b "on ${BIG_BATCH:-32}" "gemm ${BIG_BATCH:-32}" "nolora ${BIG_BATCH:-32}" "off ${BIG_BATCH:-32}"
peer_b8
one_b "on 8" "gemm 8" "fixed 8" "off 8" "fixed ${BIG_BATCH:-32}"
python3 - "$RAW" <<'PY' | tee -a "$OUT/mfu.txt"
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
def tps(name):
    try:
        t = json.loads((out / name).read_text().strip().splitlines()[-1])
        return (t.get("value") or t).get("tokens_per_s")
    except Exception:
        return None
peer = tps("peer_b8.json")
for f in ("on_b8", "gemm_b8", "fixed_b8", "off_b8", "on_b32", "gemm_b32", "fixed_b32", "nolora_b32", "off_b32"):
    v = tps(f"train_1b_{f}.json")
    if v:
        ratio = f", {v / peer:.2f}x the peer at b8" if peer else ""
        print(f"t2s {f}: {v:.0f} tok/s, MFU {v * 4.2e9 / 790e12 * 100:.1f}%{ratio}")
PY

cuda_tests ".gpu/tests/train_parity-* .gpu/tests/parity-*"


# 1b. Which attention backend serves the 1B step best (T2S_SDPA restricts libtorch's choice;
#     fa3 is FlashAttention-3, off by default, where the wheel has it), batch 32, fused.
for backends in flash cudnn efficient fa3,flash; do
  say "== t2s 1B step, batch ${BIG_BATCH:-32}, T2S_SDPA=$backends"
  echo "{\"protocol\":1,\"job\":\"bench-train\",\"device\":\"cuda\",\"params\":{\"shape\":\"gemma3-1b\",\"batch\":${BIG_BATCH:-32},\"seq\":512,\"rank\":16,\"alpha\":16,\"steps\":10,\"warmup\":2}}" > /tmp/bt1b.json
  T2S_SDPA=$backends timeout "$(cap 60)" .gpu/t2s-worker /tmp/bt1b.json 2>/dev/null | tail -1 > "$RAW/train_1b_sdpa_${backends/,/_}.json"
  python3 bench/gpu/profile_summary.py "$RAW/train_1b_sdpa_${backends/,/_}.json" 2>&1 | head -1 | tee -a "$OUT/mfu.txt"
done
pack

# 2. The real training loop (varying batch lengths) against one fixed shape.
for s in cudnn nocudnn; do
  say "== real loop, SDPA cuDNN $s"
  tag=""; [ "$s" = nocudnn ] && tag=_nocudnn
  OUT=$RAW PIPE_TIMEOUT=$(cap 90) TAG=$tag BASE_STEPS=150 LORA_STEPS=60 with_sdpa $s bash bench/gpu/train_overhead.sh 2>&1 \
    | grep -E "wall|bench-train" | tee -a "$OUT/mfu.txt"
done
pack

# 3. Generation: t2s dynamic and graph against HF generate, both sides under the same setting.
for s in cudnn nocudnn; do
  say "== generation, 256 prompts, SDPA cuDNN $s"
  WORK=/tmp/t2s-gen DEVICE=cuda SHAPE=gemma3-1b N=256 BATCH=128 MAX_NEW=128 DECODERS="dynamic graph" \
    with_sdpa $s timeout "$(cap 150)" bash bench/generate.sh 2>&1 | grep -E "ratio|rror" | tee -a "$OUT/mfu.txt"
done
date -u | tee -a "$OUT/mfu.txt"
