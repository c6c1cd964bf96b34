#!/usr/bin/env bash
# A second machine getting a pipeline's results from a remote cache directory: t2s against DVC
# 3.x (`dvc pull` + `dvc status`) on the same DAG and scripts, and against `cp -r` of the
# remote's objects (copying without checking: the floor), all measured in this one script run.
#
#   bench/remote.sh [REPS] [BLOB_MIB]     (defaults 5 and 512; prints medians and ratios)
#
# Two cases, each on a local directory remote (a share or NFS mount adds the same network time
# to all three):
#   small: the 11-node example pipeline (pipelines/examples): per-object overhead.
#   large: one node writing a BLOB_MIB MiB file: copy and hash throughput.
# Each repetition starts from an empty project (t2s: a new root; DVC: a fresh `git clone` of a
# repo whose dvc.lock is committed, so its local cache is empty too); the setup is not timed.
# t2s: `t2s run FILE --remote R` (fetches every node, checks each file's blake3, installs it).
# DVC: `dvc pull` then `dvc status` (the same end state: outputs in place, known up to date).
set -euo pipefail
reps="${1:-5}"
blob_mib="${2:-512}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
source bench/peers/dvc_env.sh   # $t2s, $dvc, $py, $work

# --- the pipelines: t2s files and the equivalent dvc.yaml (JSON is YAML) -----------------------
mkdir -p "$work/small" "$work/large"
cp -r pipelines/examples "$work/small/pipe"
cat > "$work/large/blob.yaml" <<YAML
name: blob
stages:
  blob:
    kind: command
    params:
      cmd: python3 -c "import os; open(os.environ['T2S_OUT'] + '/blob.bin', 'wb').write(os.urandom($blob_mib << 20))"
      outs: [blob.bin]
YAML
mkdir -p "$work/dvc-small" "$work/dvc-large"
cp -r pipelines/examples/scripts pipelines/examples/data "$work/dvc-small/"
"$py" bench/peers/examples_dvc_yaml.py "$work/dvc-small/dvc.yaml"
"$py" - "$work/dvc-large/dvc.yaml" "$blob_mib" <<'PY'
import json, sys
blob = {"cmd": "mkdir -p out/blob && python3 -c \"import os; open('out/blob/blob.bin', 'wb')"
               f".write(os.urandom({sys.argv[2]} << 20))\"", "outs": ["out/blob"]}
json.dump({"stages": {"blob": blob}}, open(sys.argv[1], "w"), indent=2)  # JSON is YAML
PY

# --- the first machine: compute and push ------------------------------------------------------
mkdir -p "$work/remote-t2s-small" "$work/remote-t2s-large"
(cd "$work/small" && "$t2s" run pipe/commands.yaml --quiet --remote ../remote-t2s-small --push >/dev/null)
(cd "$work/large" && "$t2s" run blob.yaml --quiet --remote ../remote-t2s-large --push >/dev/null)
for c in small large; do
  mkdir -p "$work/remote-dvc-$c"
  (
    cd "$work/dvc-$c"
    git init -q . && git config user.email bench@t2s && git config user.name bench
    "$dvc" init -q && "$dvc" config core.analytics false && "$dvc" config core.autostage false
    "$dvc" remote add -q -d store "$work/remote-dvc-$c"
    "$dvc" repro -q >/dev/null && "$dvc" push -q
    git add -A && git commit -qm "pipeline and lock"
  )
done

# --- measure ------------------------------------------------------------------------------------
"$py" - "$reps" "$t2s" "$dvc" "$work" "$blob_mib" <<'PY'
import os, shutil, statistics, subprocess, sys, time
reps, t2s, dvc, work, blob_mib = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def timed(cmd, cwd, check):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, shell=isinstance(cmd, str))
    dt = time.perf_counter() - t0
    if out.returncode != 0 or check not in out.stdout + out.stderr:
        sys.exit(f"bench: {cmd} in {cwd} did not do what was expected ({check!r}):\n{out.stdout}\n{out.stderr}")
    return dt

def fresh(path):
    if os.path.exists(path):
        subprocess.run(["chmod", "-R", "u+w", path], check=True)
        shutil.rmtree(path)

cases = {
    "small": ("pipe/commands.yaml", "small/pipe", "11 cached", 11),
    "large": ("blob.yaml", None, "1 cached", 1),
}
results = {}
for case, (file, pipe_dir, t2s_check, nodes) in cases.items():
    t2s_times, dvc_times, cp_times = [], [], []
    for _ in range(reps):
        root = f"{work}/b-t2s-{case}"
        fresh(root)
        os.makedirs(root)
        if pipe_dir:
            shutil.copytree(f"{work}/{pipe_dir}", f"{root}/pipe")
        else:
            shutil.copy(f"{work}/large/blob.yaml", root)
        t2s_times.append(timed([t2s, "run", file, "--quiet", "--remote", f"../remote-t2s-{case}"], root, t2s_check))
        clone = f"{work}/b-dvc-{case}"
        fresh(clone)
        subprocess.run(["git", "clone", "-q", f"{work}/dvc-{case}", clone], check=True)
        t = timed([dvc, "pull", "-q"], clone, "")
        t += timed([dvc, "status"], clone, "up to date")
        dvc_times.append(t)
        dst = f"{work}/b-cp-{case}"
        fresh(dst)
        cp_times.append(timed(["cp", "-r", f"{work}/remote-t2s-{case}/v1/objects", dst], work, ""))
    results[case] = [statistics.median(x) for x in (t2s_times, dvc_times, cp_times)]

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {os.cpu_count()} CPUs ({cpu}), load average {os.getloadavg()[0]:.1f}; "
      f"medians of {reps} fresh projects; page cache warm for all three")
for case, (t, d, c) in results.items():
    what = "11 nodes, small files" if case == "small" else f"1 node, one {blob_mib} MiB file"
    print(f"{case} ({what}): t2s run --remote {t*1000:8.1f} ms | dvc pull + dvc status {d*1000:8.1f} ms"
          f" | cp -r {c*1000:8.1f} ms")
    print(f"  ratio: t2s is {d / t:.1f}x faster than DVC; {t / c:.2f}x the time of cp -r")
PY
"$dvc" version 2>/dev/null | head -1 || true
