#!/usr/bin/env bash
# Fully cached ("no-op") rerun of the 11-node example pipeline, t2s vs `dvc repro` (DVC 3.x),
# both on the same pipeline shape and the same scripts, measured in this one script run.
#
#   bench/dvc_noop.sh [REPS]      (default 10 repetitions; prints medians and the ratio)
#
# Builds t2s in release mode, installs DVC 3.x into the project venv if it is missing, sets up
# two temp projects (t2s: pipelines/examples as is; DVC: a git repo with an equivalent dvc.yaml
# of 11 stages running the same commands), runs each pipeline once for real, then times the
# no-op reruns.
set -euo pipefail
reps="${1:-10}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
source bench/peers/dvc_env.sh   # $t2s, $dvc, $py, $work

# --- t2s project ---------------------------------------------------------------------------
mkdir -p "$work/t2s"
cp -r pipelines/examples "$work/t2s/pipe"
(cd "$work/t2s" && "$t2s" run pipe/commands.yaml --quiet >/dev/null)

# --- DVC project: same scripts, same DAG (load -> eda; load -> preprocess -> split ->
#     train x3 -> evaluate x3 -> report), outputs in out/<stage>/ ------------------------------
mkdir -p "$work/dvc"
cp -r pipelines/examples/scripts pipelines/examples/data "$work/dvc/"
"$py" bench/peers/examples_dvc_yaml.py "$work/dvc/dvc.yaml"
(
  cd "$work/dvc"
  git init -q . && git config user.email bench@t2s && git config user.name bench
  "$dvc" init -q && "$dvc" config core.analytics false && "$dvc" config core.autostage false
  git add -A && git commit -qm init
  "$dvc" repro -q >/dev/null
)

# --- measure ---------------------------------------------------------------------------------
"$py" - "$reps" "$t2s" "$dvc" "$work" <<'PY'
import os, statistics, subprocess, sys, time
reps, t2s, dvc, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

def measure(cmd, cwd, check):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0 or check not in out.stdout + out.stderr:
            sys.exit(f"bench: {cmd} did not no-op:\n{out.stdout}\n{out.stderr}")
    return statistics.median(times), min(times)

t2s_med, t2s_min = measure([t2s, "run", "pipe/commands.yaml", "--quiet"], f"{work}/t2s", "11 cached")
dvc_med, dvc_min = measure([dvc, "repro"], f"{work}/dvc", "up to date")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {os.cpu_count()} CPUs ({cpu}), load average {os.getloadavg()[0]:.1f} during the run")
print(f"t2s run (11 nodes cached):  median {t2s_med*1000:8.1f} ms  (min {t2s_min*1000:.1f} ms, {reps} reps)")
print(f"dvc repro (11 stages no-op): median {dvc_med*1000:8.1f} ms  (min {dvc_min*1000:.1f} ms, {reps} reps)")
print(f"ratio: t2s is {dvc_med / t2s_med:.1f}x faster than dvc repro on a fully cached rerun")
PY
"$dvc" version 2>/dev/null | head -1 || true
