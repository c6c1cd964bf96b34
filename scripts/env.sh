# Source this file: the environment t2s builds and runs in.
# The venv (torch 2.11.0 + the Python oracles) and the cargo target dir live outside the clone,
# so reruns and fresh clones reuse them.
T2S_CACHE="${T2S_CACHE:-$HOME/.cache/t2s}"
export T2S_CACHE
export T2S_VENV="${T2S_VENV:-$T2S_CACHE/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$T2S_CACHE/target}"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK="${LIBTORCH_BYPASS_VERSION_CHECK:-0}"
export PATH="$T2S_VENV/bin:$PATH"
export PYTHON="$T2S_VENV/bin/python"
_torch_lib="$("$PYTHON" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)"
if [ -n "$_torch_lib" ]; then
  export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
unset _torch_lib
