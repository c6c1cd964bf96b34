#!/usr/bin/env bash
# Stop the test cluster started by start.sh DIR: slurmd, slurmctld, and munged if start.sh
# started it. Idempotent.
#   usage: scripts/slurm/stop.sh DIR
set -uo pipefail
dir="${1:?usage: stop.sh DIR}"
stop() {
  local pidfile="$1"
  [ -s "$pidfile" ] || return 0
  local pid
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}
stop "$dir/slurmd.pid"
stop "$dir/slurmctld.pid"
if [ -f "$dir/munged.started" ] && [ -s /var/run/munge/munged.pid ]; then
  stop /var/run/munge/munged.pid
  rm -f "$dir/munged.started"
fi
exit 0
