#!/usr/bin/env bash
# Start a real single-machine Slurm cluster (controller + one node) for the tests of the Slurm
# executor: munge, slurmctld and slurmd as root, without systemd or cgroups, everything under
# DIR. Prints the path of its slurm.conf (export it as SLURM_CONF). Stop it with stop.sh DIR.
#   usage: scripts/slurm/start.sh DIR
# Needs the Debian packages slurm-wlm and munge (T2S_FOR_TESTS=1 scripts/setup.sh installs them) and root.
set -euo pipefail
dir="${1:?usage: start.sh DIR}"
export PATH="$PATH:/usr/sbin:/sbin"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
for tool in slurmctld slurmd munged sbatch scontrol; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "start.sh: $tool is missing: install slurm-wlm and munge (T2S_FOR_TESTS=1 bash scripts/setup.sh does)" >&2
    exit 1
  fi
done
if [ "$(id -u)" != 0 ]; then
  echo "start.sh: the test cluster runs its daemons as root; run as root" >&2
  exit 1
fi

# Munge: one key per machine, shared by every daemon and client.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
for d in /etc/munge /var/run/munge /var/log/munge /var/lib/munge; do
  mkdir -p "$d"
  chown munge:munge "$d" 2>/dev/null || true
done
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  munged --force 2>/dev/null
  echo started > "$dir/munged.started"
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
mkdir -p "$dir/state" "$dir/spool"
cat > "$dir/slurm.conf" <<CONF
ClusterName=t2stest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=5
NodeName=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

if scontrol ping 2>/dev/null | grep -q "is UP"; then
  echo "start.sh: a Slurm controller already answers on this machine (ports 6817/6818); stop it first" >&2
  exit 1
fi
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "start.sh: the node did not become idle; logs: $dir/slurmctld.log $dir/slurmd.log" >&2
sinfo >&2 || true
exit 1
