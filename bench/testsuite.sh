#!/usr/bin/env bash
# Cost of test-suite execution accuracy (eval::testsuite): N predictions (default 1,000; golds
# from the built-in generator, seeded near-miss predictions) scored with INSTANCES generated
# instances each (default 8), against plain execution accuracy on the same predictions in the
# same run. Prints the JSON of both and the ratio (acceptance: <= 10x on 2 cores).
# Usage: bench/testsuite.sh [N] [INSTANCES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
N="${1:-1000}"; INSTANCES="${2:-8}"; SEED="${3:-0}"
cargo build -q --release --example testsuite_bench
OUT=$("$CARGO_TARGET_DIR/release/examples/testsuite_bench" "$N" "$INSTANCES" "$SEED")
echo "$OUT"
"$PYTHON" - "$OUT" <<'PYEOF'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['predictions']} predictions x {r['instances']} instances, {r['threads']} threads: "
      f"plain execution accuracy {r['plain_exec_s']:.2f} s, test suite {r['test_suite_s']:.2f} s, "
      f"ratio {r['ratio']:.1f}x; EX {r['execution_accuracy']:.4f}, TS {r['test_suite_accuracy']:.4f}, "
      f"{r['false_positives_caught']} false positives caught")
PYEOF
