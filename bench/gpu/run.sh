#!/usr/bin/env bash
# Everything measured on the lent GPU machine, in one device command (see ../shared/gpu/README.md).
# Prepared here by bench/gpu/prepare.sh (release binaries into .gpu/); run there as
#   bash bench/gpu/run.sh            (results under $OUT)
# Results: at most 8 files under $OUT (doctor, memory, train_peer, train_t2s, train.err,
# generate, parity, pipeline). In this order, each section's timeout capped by what is left of
# BUDGET (what has not run by then is skipped, and what ran comes back): doctor; the quickstart
# pipeline on CUDA with the parity tests beside it; batched greedy generation, HF `generate`
# against t2s (1,000 prompts); LoRA training throughput (Gemma-3-1B shape, random weights),
# transformers + PEFT against t2s at the peer's batch (also with the LoRA kernels' splits fixed,
# and with the LoRA products as tensor-core GEMMs) and t2s at 4× that batch (kernels, GEMMs).
# Estimated at ~7 minutes on an H200 from the sections' earlier times (not yet run in this
# order; the two GEMM runs add ~40 s): BUDGET=560 fits one device call. Options: the quickstart
# (RUN_PIPELINE=0 skips it; PIPELINE=pipelines/smoke.yaml for the toy one;
# PIPE_ARGS adds `t2s run` arguments, e.g. PIPE_ARGS="--set base.dtype=float32" trains the
# quickstart's base in fp32: does the bf16 base cost the GPU quickstart its accuracy?).
set -uo pipefail
cd "$(dirname "$0")/../.."
# Libraries, Python, .gpu binaries, $OUT and `cap` (each section's timeout capped by what is
# left of BUDGET; a section with under 15 s left is skipped).
source bench/gpu/env.sh
W=.gpu/t2s-worker
BATCH=${BATCH:-8} SEQ=${SEQ:-512} RANK=${RANK:-16} STEPS=${STEPS:-20}
has_time() { [ "$(cap 15)" -ge 15 ] || { echo "skipped $1: out of time" | tee -a "$OUT/doctor.txt"; false; }; }

# Peak GPU memory of a command, sampled with nvidia-smi every 100 ms (MiB above the idle level).
with_gpu_mem() {
  local name=$1; shift
  local base; base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; sleep 0.1; done ) > "/tmp/mem_$name.txt" &
  local poll=$!
  "$@"; local rc=$?
  kill $poll 2>/dev/null; wait $poll 2>/dev/null
  local peak; peak=$(sort -n "/tmp/mem_$name.txt" | tail -1)
  echo "{\"name\": \"$name\", \"gpu_mem_peak_mib\": $((peak - base)), \"idle_mib\": $base}" >> "$OUT/memory.jsonl"
  return $rc
}

{
  date -u; nvidia-smi; echo
  python3 -c 'import torch,transformers,peft;print("torch",torch.__version__,"cuda",torch.version.cuda,"transformers",transformers.__version__,"peft",peft.__version__,"gpu",torch.cuda.get_device_name(0))'
  echo '{"protocol":1,"job":"doctor","device":"auto"}' > /tmp/t2s-doctor.json
  "$W" /tmp/t2s-doctor.json
  mkdir -p /tmp/t2s-doctor-root && .gpu/t2s --root /tmp/t2s-doctor-root doctor
  ldd .gpu/t2s-worker | grep -E "torch|cuda" ; echo "t2s (orchestrator) torch libs: $(ldd .gpu/t2s | grep -c torch)"
} > "$OUT/doctor.txt" 2>&1
echo "doctor done"; tail -12 "$OUT/doctor.txt"

# --- Parity on CUDA and a pipeline end to end, side by side (neither is timed against a peer).
# Parity: the model crate's parity/generation/LoRA/training-loop tests with T2S_TEST_DEVICE=cuda (fp32 at the
# CPU tolerance, bf16 at its stated one), test binaries built by prepare.sh.
run_parity() {
  export T2S_REPO_ROOT=$PWD PYTHONUNBUFFERED=1
  for t in .gpu/tests/parity-* .gpu/tests/generate-* .gpu/tests/lora-* .gpu/tests/train_parity-*; do
    [ -x "$t" ] || continue
    echo "== $t" >> "$OUT/parity.txt"
    T2S_TEST_DEVICE=cuda timeout "$(cap ${PARITY_TIMEOUT:-150})" "$t" --nocapture --test-threads 1 --include-ignored >> "$OUT/parity.txt" 2>&1
    echo "rc=$?" >> "$OUT/parity.txt"
  done
}
if [ "${SKIP_PARITY:-0}" != 1 ] && has_time parity; then run_parity & parity_pid=$!; fi
if [ "${RUN_PIPELINE:-1}" = 1 ] && has_time pipeline; then
  root=/tmp/t2s-pipe; mkdir -p $root
  ( cd $root && time timeout "$(cap ${PIPE_TIMEOUT:-400})" "$OLDPWD/.gpu/t2s" run "$OLDPWD/${PIPELINE:-pipelines/quickstart.yaml}" ${PIPE_ARGS:-} ) > "$OUT/pipeline.txt" 2>&1
  # The report's headline table, when the pipeline got that far.
  find $root -name 'report.md' -newer /tmp/t2s-doctor.json -exec head -40 {} \; >> "$OUT/pipeline.txt" 2>/dev/null
  echo "pipeline:"; grep -E "ran in|failed|error|real" "$OUT/pipeline.txt" | tail -24
fi
[ -n "${parity_pid:-}" ] && wait "$parity_pid"
[ -f "$OUT/parity.txt" ] && { echo "parity:"; grep -E "^test |test result|rc=" "$OUT/parity.txt" | tail -40; }

# --- Batched greedy generation: 1,000 gretel-length prompts, 128 new tokens max ----------
if [ "${SKIP_GEN:-0}" != 1 ] && has_time generation; then
  # graph: the decode step captured as a CUDA graph; dynamic: op by op (the previous default).
  WORK=/tmp/t2s-gen DEVICE=cuda SHAPE=gemma3-1b N=${GEN_N:-1000} BATCH=${GEN_BATCH:-128} MAX_NEW=128 \
    DECODERS="${GEN_DECODERS:-graph dynamic}" \
    timeout "$(cap ${GEN_TIMEOUT:-260})" bash bench/generate.sh > "$OUT/generate.txt" 2>&1
  echo "generation:"; grep -E "ratio|Error|error" "$OUT/generate.txt" | tail -6
fi

# --- LoRA training throughput, Gemma-3-1B shape, r=$RANK on q/k/v/o -------------------------
if [ "${SKIP_TRAIN:-0}" != 1 ] && has_time train; then
with_gpu_mem peer_train timeout "$(cap ${TRAIN_TIMEOUT:-150})" python3 bench/peers/peer_lora_train.py --shape gemma3-1b --rank "$RANK" \
  --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" > "$OUT/train_peer.json" 2> "$OUT/train.err"
echo "peer train: $(cat "$OUT/train_peer.json")"; tail -3 "$OUT/train.err"
cat > /tmp/t2s-bench-train.json <<JSON
{"protocol": 1, "job": "bench-train", "device": "cuda",
 "params": {"shape": "gemma3-1b", "batch": $BATCH, "seq": $SEQ, "rank": $RANK, "alpha": 16, "steps": $STEPS, "warmup": 3}}
JSON
with_gpu_mem t2s_train timeout "$(cap ${TRAIN_TIMEOUT:-150})" "$W" /tmp/t2s-bench-train.json > "$OUT/train_t2s.jsonl" 2>> "$OUT/train.err"
echo "t2s train: $(tail -1 "$OUT/train_t2s.jsonl")"; tail -3 "$OUT/train.err"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
peer = json.load(open(f"{out}/train_peer.json"))
ev = json.loads(open(f"{out}/train_t2s.jsonl").read().strip().splitlines()[-1])
ours = ev.get("value", {})
mem = {json.loads(l)["name"]: json.loads(l) for l in open(f"{out}/memory.jsonl")}
flop = 4.2e9
for name, r in (("peer", peer), ("t2s", ours)):
    if r.get("tokens_per_s"):
        print(f"{name}: {r['tokens_per_s']:.0f} tok/s, MFU {r['tokens_per_s']*flop/790e12*100:.1f}% of 790 TF, "
              f"step {r['step_ms']:.1f} ms")
if ours.get("tokens_per_s") and peer.get("tokens_per_s"):
    print(f"ratio t2s/peer tokens/s: {ours['tokens_per_s']/peer['tokens_per_s']:.2f}x")
print("memory:", mem)
PY
# The same with the LoRA kernels' reduction splits fixed at 256 (T2S_LORA_SPLIT) instead of
# sized to fill the GPU: what the sizing gives at the peer's batch.
if has_time "train fixed splits"; then
  T2S_LORA_SPLIT=256 timeout "$(cap ${TRAIN_TIMEOUT:-150})" "$W" /tmp/t2s-bench-train.json > /tmp/train_fixed.jsonl 2>> "$OUT/train.err"
  echo "{\"fixed_splits\": $(tail -1 /tmp/train_fixed.jsonl)}" >> "$OUT/train_t2s.jsonl"
  echo "t2s train, batch $BATCH, splits fixed at 256: $(tail -1 /tmp/train_fixed.jsonl)"
fi
# The same with the LoRA projections multiplied as tensor-core GEMMs over bf16 pieces of the
# fp32 operands (T2S_LORA_MATMUL=gemm) instead of t2s's CUDA-core kernels: which to make the
# default (the kernels were ~10x off their bound in the tenth session's H200 profile).
if has_time "train gemm"; then
  T2S_LORA_MATMUL=gemm timeout "$(cap ${TRAIN_TIMEOUT:-150})" "$W" /tmp/t2s-bench-train.json > /tmp/train_gemm.jsonl 2>> "$OUT/train.err"
  echo "{\"lora_gemm\": $(tail -1 /tmp/train_gemm.jsonl)}" >> "$OUT/train_t2s.jsonl"
  echo "t2s train, batch $BATCH, LoRA products as GEMMs: $(tail -1 /tmp/train_gemm.jsonl)"
fi
# The same at larger batches (t2s only): how far a larger token batch lifts MFU, with the LoRA
# kernels and with the GEMMs.
for big in ${BIG_BATCHES:-$((BATCH * 4))}; do
  sed "s/\"batch\": $BATCH/\"batch\": $big/" /tmp/t2s-bench-train.json > /tmp/t2s-bench-train-big.json
  for mm in kernels gemm; do
    has_time "train batch $big ($mm)" || break 2
    T2S_LORA_MATMUL=$mm timeout "$(cap ${TRAIN_TIMEOUT:-150})" "$W" /tmp/t2s-bench-train-big.json > /tmp/train_big.jsonl 2>> "$OUT/train.err"
    tail -1 /tmp/train_big.jsonl >> "$OUT/train_t2s.jsonl"
    echo "t2s train, batch $big, LoRA products: $mm: $(tail -1 /tmp/train_big.jsonl)"
  done
done
fi

date -u
