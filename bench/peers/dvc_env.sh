# Sourced by the benchmarks against DVC (bench/dvc_noop.sh, bench/remote.sh), from the
# repository root: the environment, a release `t2s` ($t2s), DVC 3.x in the project venv ($dvc,
# installed when missing), the venv's Python ($py) and a scratch dir ($work, removed on exit,
# read-only artifacts included).
source scripts/env.sh
cargo build --release -q -p t2s --bin t2s
t2s="$CARGO_TARGET_DIR/release/t2s"
if ! "$T2S_VENV/bin/python" -c 'import dvc' 2>/dev/null; then
  echo "bench: installing DVC 3.x into $T2S_VENV"
  "$T2S_VENV/bin/pip" install -q 'dvc>=3,<4'
fi
dvc="$T2S_VENV/bin/dvc"
py="$T2S_VENV/bin/python"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
