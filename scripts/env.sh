# Source this file: the environment t2s builds and runs in.
# The venv (torch 2.11.0 + the Python oracles) and the cargo target dir live outside the clone,
# so reruns and fresh clones reuse them.
T2S_CACHE="${T2S_CACHE:-$HOME/.cache/t2s}"
export T2S_CACHE
export T2S_VENV="${T2S_VENV:-$T2S_CACHE/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$T2S_CACHE/target}"
# A test binary built in another checkout embeds that checkout's path (CARGO_MANIFEST_DIR,
# insta's snapshot directory), and cargo's fingerprints of workspace members do not include
# the path, so a build here would reuse it. When the checkout using this target dir changes,
# drop the workspace's own artifacts (dependencies stay built).
_t2s_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if command -v cargo >/dev/null 2>&1 && [ -d "$CARGO_TARGET_DIR" ] \
  && [ "$(cat "$CARGO_TARGET_DIR/.t2s-checkout" 2>/dev/null)" != "$_t2s_here" ]; then
  for _p in t2s t2s-torch; do
    cargo clean -q --manifest-path "$_t2s_here/Cargo.toml" -p "$_p" 2>/dev/null || true
    cargo clean -q --release --manifest-path "$_t2s_here/Cargo.toml" -p "$_p" 2>/dev/null || true
  done
fi
mkdir -p "$CARGO_TARGET_DIR" && echo "$_t2s_here" > "$CARGO_TARGET_DIR/.t2s-checkout"
unset _t2s_here _p
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK="${LIBTORCH_BYPASS_VERSION_CHECK:-0}"
export PATH="$T2S_VENV/bin:$PATH"
export PYTHON="$T2S_VENV/bin/python"
_torch_lib="$("$PYTHON" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)"
if [ -n "$_torch_lib" ]; then
  export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
unset _torch_lib
