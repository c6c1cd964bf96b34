# Sourced (from the repository root) by the bench/gpu scripts on the device machine: the
# libraries, Python and binaries that .gpu/ carries (bench/gpu/prepare.sh), $OUT, and a time
# budget. BUDGET: seconds the calling script keeps inside (the device call's limit less a
# margin); `cap N` is the smaller of N seconds and what is left, and 1 (nothing to speak of)
# once under 15 s are left, so the results already under $OUT come back.
OUT=${OUT:-/tmp/t2s-gpu-out}
mkdir -p "$OUT"
TORCH_LIB=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
# scripts/env.sh expects a venv: point it at this machine's python.
mkdir -p .gpu/venv/bin && printf '#!/bin/sh\nexec python3 "$@"\n' > .gpu/venv/bin/python && chmod +x .gpu/venv/bin/python
# Shared libraries the t2s binary needs that the GPU image lacks (fontconfig for plot text).
[ -d .gpu/lib ] && export LD_LIBRARY_PATH="$PWD/.gpu/lib:$LD_LIBRARY_PATH"
if [ -d .gpu/fonts ] && [ ! -f /etc/fonts/fonts.conf ]; then
  printf '<?xml version="1.0"?>\n<fontconfig><dir>%s</dir><cachedir>/tmp/t2s-fc</cachedir></fontconfig>\n' "$PWD/.gpu/fonts" > .gpu/fonts.conf
  export FONTCONFIG_FILE=$PWD/.gpu/fonts.conf
fi
export T2S_VENV=$PWD/.gpu/venv PYTHON=python3 T2S_WORKER=$PWD/.gpu/t2s-worker
START=$(date +%s) BUDGET=${BUDGET:-560}
cap() { local left=$((START + BUDGET - $(date +%s))); [ "$left" -lt 15 ] && left=1; echo $(( $1 < left ? $1 : left )); }
