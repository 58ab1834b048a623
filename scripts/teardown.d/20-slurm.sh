#!/usr/bin/env bash
# Stops the test SLURM (slurmd, slurmctld) and its munged, by the pid files setup.d/20-slurm.sh wrote.
# Set PB_KEEP_SERVICES=1 to leave them running between test runs.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SV="$ROOT/.services/slurm"
[ "${PB_KEEP_SERVICES:-}" = "1" ] && exit 0
for pf in "$SV/slurmd.pid" "$SV/slurmctld.pid" "$SV/munge/munged.pid"; do
  if [ -f "$pf" ]; then
    pid="$(cat "$pf")"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pf"
  fi
done
exit 0
