#!/usr/bin/env bash
# Set up and run the offline quickstart pipeline; the report lands in experiments/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
source scripts/env.sh
pipeline=pipelines/quickstart.yaml
[ -f "$pipeline" ] || pipeline=pipelines/examples/commands.yaml
"$CARGO_TARGET_DIR/release/t2s" run "$pipeline" "$@"
