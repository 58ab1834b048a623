#!/usr/bin/env bash
# Stops the test sshd started by setup.d/30-sshd.sh (by its pid file). PB_KEEP_SERVICES=1 keeps it.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SV="$ROOT/.services/ssh"
[ "${PB_KEEP_SERVICES:-}" = "1" ] && exit 0
if [ -f "$SV/sshd.pid" ]; then
  kill "$(cat "$SV/sshd.pid")" 2>/dev/null || true
  rm -f "$SV/sshd.pid" "$SV/port"
fi
exit 0
