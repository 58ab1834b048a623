#!/usr/bin/env bash
# R (Rscript) and GNU Octave (octave-cli) for the `pb parrun script.R / script.m` tests
# (tests/test_parrun_lang.py). Installs Debian's packages when missing; exports PB_RSCRIPT and
# PB_OCTAVE so tests need not guess. Without them those tests skip, unless CI=true (then they fail).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .services/r-octave
LOG=.services/r-octave/apt.log
log() { echo "[r-octave] $*"; }

apt_install() {  # install Debian packages that are missing; apt-get update only when needed
  export DEBIAN_FRONTEND=noninteractive
  local opts=(-y -q -o DPkg::Lock::Timeout=600 --no-install-recommends)
  if ! apt-get install "${opts[@]}" "$@" >"$LOG" 2>&1; then
    apt-get update -q -o DPkg::Lock::Timeout=600 >>"$LOG" 2>&1 || true
    apt-get install "${opts[@]}" "$@" >>"$LOG" 2>&1 || { tail -20 "$LOG"; return 1; }
  fi
}
need=()
command -v Rscript >/dev/null 2>&1 || need+=(r-base-core)
command -v octave-cli >/dev/null 2>&1 || need+=(octave)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${need[*]} and cannot apt-get install them (not root or no apt-get)" >&2
    exit 1
  fi
  log "installing ${need[*]}"
  apt_install "${need[@]}"
fi
R="$(command -v Rscript)"
O="$(command -v octave-cli)"
{
  echo "export PB_RSCRIPT=\"$R\""
  echo "export PB_OCTAVE=\"$O\""
} >>.services/env.sh
log "Rscript: $("$R" --version 2>&1 | head -1)"
log "octave-cli: $("$O" --version 2>/dev/null | head -1)"
