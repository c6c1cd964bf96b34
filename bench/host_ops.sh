#!/usr/bin/env bash
# What the host issues per LoRA training step: libtorch's profiler counts every dispatcher call
# of two `bench-train` steps (deterministic, unlike times on a shared VM). Default shape: the
# tiny one at the 1B model's depth (26 layers: 208 LoRA tensors), batch 1 x 64, r 16 on
# q/k/v/o, dropout 0.05, one thread, bf16 weights (the GPU dtype, so dtype casts show as on a
# GPU). Prints, per worker, all dispatcher calls, the kernel-launching ones (views, reshapes and
# composite wrappers excluded) and the most frequent of those.
#
#   bench/host_ops.sh                                    # this checkout's release worker
#   WORKERS="before=/tmp/t2s-worker-old after=" bench/host_ops.sh   # compare builds
#   LAYERS=4 BATCH=8 SEQ=256 DTYPE=float32 bench/host_ops.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh
PYTHON=${PYTHON:-python3} LAYERS=${LAYERS:-26} BATCH=${BATCH:-1} SEQ=${SEQ:-64} DTYPE=${DTYPE:-bfloat16}
WORKERS=${WORKERS:-"t2s="}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case " $WORKERS " in *"="" "*) cargo build --release -q -p t2s-torch --bin t2s-worker ;; esac
for w in $WORKERS; do
  name=${w%%=*}; bin=${w#*=}; bin=${bin:-$CARGO_TARGET_DIR/release/t2s-worker}
  cat > "$work/spec.json" <<JSON
{"protocol": 1, "job": "bench-train", "device": "cpu",
 "params": {"shape": "tiny", "layers": $LAYERS, "batch": $BATCH, "seq": $SEQ, "rank": 16, "alpha": 16,
            "steps": 2, "warmup": 1, "threads": 1, "dtype": "$DTYPE", "profile": "$work/$name.json"}}
JSON
  "$bin" "$work/spec.json" >/dev/null
  "$PYTHON" - "$name" "$work/$name.json" <<'PY'
import collections, json, sys
name, path = sys.argv[1], sys.argv[2]
STEPS = 2  # bench-train profiles two steps
# Calls that launch no kernel of their own: views, metadata, and composite wrappers whose
# kernels are counted under the ops they call.
NO_KERNEL = {
    "view", "as_strided", "reshape", "narrow", "slice", "t", "transpose", "expand", "unsqueeze",
    "squeeze", "detach", "detach_", "alias", "resolve_conj", "resolve_neg", "empty",
    "empty_strided", "empty_like", "result_type", "_unsafe_view", "unbind", "select", "permute",
    "_reshape_alias", "to", "lift_fresh", "split_with_sizes", "split", "linear", "matmul",
    "dropout", "rms_norm", "type_as", "_to_copy", "contiguous", "zeros", "clone",
    "scaled_dot_product_attention",
}
events = [e for e in json.load(open(path))["traceEvents"]
          if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
calls = collections.Counter(e["name"] for e in events)
kernels = {k: v for k, v in calls.items()
           if k.startswith("aten::") and k[len("aten::"):] not in NO_KERNEL}
top = sorted(kernels.items(), key=lambda kv: -kv[1])[:10]
print(f"{name}: {len(events) / STEPS:.0f} dispatcher calls/step, "
      f"{sum(kernels.values()) / STEPS:.0f} kernel-launching/step; top: "
      + ", ".join(f"{k[6:]} {v / STEPS:.0f}" for k, v in top))
PY
done
