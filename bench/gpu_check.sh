#!/usr/bin/env bash
# One prepared command for the lent GPU machine (see shared/gpu/README.md): doctor, the parity
# tests on CUDA (fp32 at the CPU tolerance, bf16 at its stated one), LoRA training throughput on
# the gemma3-1b shape against transformers+PEFT, and batched generation against HF generate.
#
# Prepare here (release builds against the venv's torch 2.11.0):
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu
#   cargo build --release -p t2s-torch --bin t2s-worker && cp $CARGO_TARGET_DIR/release/t2s-worker .gpu/
#   cargo test --release -p t2s-torch --no-run --message-format=json \
#     | jq -r 'select(.executable != null and .target.kind == ["test"]) | .executable' \
#     | xargs -I{} cp {} .gpu/          # parity-*, generate-*, lora-*, worker-*
#   ldd .gpu/t2s-worker | grep torch_cuda   # must be listed
# Run there (carry [".gpu"]), e.g. timeout_s 540:
#   bash bench/gpu_check.sh
# Results land in $OUT (log + JSON lines).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/t2s-gpu-out}
mkdir -p "$OUT"
TORCH_LIB=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$TORCH_LIB:${LD_LIBRARY_PATH:-}
export PYTHON=python3 T2S_REPO_ROOT=$PWD T2S_WORKER=$PWD/.gpu/t2s-worker PYTHONUNBUFFERED=1
log() { echo "== $*" | tee -a "$OUT/log.txt"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)'
} 2>&1 | tee -a "$OUT/log.txt"
echo '{"protocol":1,"job":"doctor","device":"auto","params":{}}' > /tmp/doctor.json
log doctor; .gpu/t2s-worker /tmp/doctor.json | tee -a "$OUT/log.txt"

log "parity on CUDA"
for t in .gpu/parity-* .gpu/generate-* .gpu/lora-*; do
  [ -x "$t" ] || continue
  T2S_TEST_DEVICE=cuda timeout 240 "$t" --nocapture --test-threads 1 2>&1 | grep -E "max|bf16|test |result|panicked" | tee -a "$OUT/log.txt"
done

log "LoRA step gemma3-1b"
DEVICE=cuda SHAPE=gemma3-1b BATCH=${BATCH:-8} SEQ=${SEQ:-512} RANK=16 ALPHA=16 STEPS=10 WARMUP=3 REPEATS=1 \
  timeout 240 bash bench/lora_step.sh 2>&1 | tee -a "$OUT/log.txt"

log "generation gemma3-1b"
DEVICE=cuda SHAPE=gemma3-1b N=${GEN_N:-1000} BATCH=${GEN_BATCH:-128} MAX_NEW=128 WORK=/tmp/t2s-gen \
  timeout 300 bash bench/generate.sh 2>&1 | tee -a "$OUT/log.txt"
