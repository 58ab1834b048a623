#!/usr/bin/env bash
# Headless Chromium for the report browser tests (tests/report/). Installs Debian's package when missing;
# exports PB_CHROMIUM so tests need not guess the binary name.
set -euo pipefail
cd "$(dirname "$0")/../.."
find_chromium() {
  for b in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
  done
  return 1
}
if ! bin="$(find_chromium)"; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    echo "chromium missing and cannot apt-get install it (not root or no apt-get)" >&2
    exit 1
  fi
  bin="$(find_chromium)"
fi
mkdir -p .services
echo "export PB_CHROMIUM=\"$bin\"" >> .services/env.sh
echo "chromium: $bin ($("$bin" --version 2>/dev/null || echo '?'))"
