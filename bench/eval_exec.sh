#!/usr/bin/env bash
# Execution-accuracy scoring throughput (rows/s) on N generated gretel-like near-miss rows
# (default 5,851 = the gretel test split), t2s (rayon, all cores and 1 thread) vs a Python
# sqlite3 peer (test-suite result_eq, one process). Prints both, the ratios, and how often the
# two verdicts agree. Usage: bench/eval_exec.sh [N] [SEED] [PROFILE: release|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
N="${1:-5851}"; SEED="${2:-0}"; PROFILE="${3:-release}"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
if [ "$PROFILE" = release ]; then FLAG=--release; DIR=release; else FLAG=; DIR=debug; fi
cargo build -q $FLAG --example eval_bench_exec
RUST=$("$CARGO_TARGET_DIR/$DIR/examples/eval_bench_exec" "$N" "$SEED" "$TMP/rust.txt" "$TMP/rows.jsonl")
PY=$("$PYTHON" scripts/oracles/exec_ref.py "$TMP/rows.jsonl" "$TMP/py.txt")
echo "t2s:    $RUST"
echo "python: $PY"
"$PYTHON" - "$RUST" "$PY" "$TMP/rust.txt" "$TMP/py.txt" <<'PYEOF'
import json, sys
r, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
a, b = open(sys.argv[3]).read().split(), open(sys.argv[4]).read().split()
agree = sum(x == y for x, y in zip(a, b)) / len(a)
print(f"rows/s: t2s {r['rows_per_s_parallel']:.0f} ({r['threads']} threads), "
      f"t2s 1 thread {r['rows_per_s_1thread']:.0f}, python {p['rows_per_s']:.0f}")
print(f"ratio vs python: {r['rows_per_s_parallel'] / p['rows_per_s']:.2f}x parallel, "
      f"{r['rows_per_s_1thread'] / p['rows_per_s']:.2f}x one thread; verdict agreement {agree:.4f}")
PYEOF
