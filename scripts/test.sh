#!/usr/bin/env bash
# The test command: installs what the tests need (pip and Debian packages), starts the real services
# the integration tests use (SLURM, sshd, ...), and runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "Running pip as the 'root' user" || true
# Each setup.d script installs and starts one kind of service; it exports what tests need to
# .services/env.sh. Under CI=true a service that fails to start fails the run.
mkdir -p .services
: > .services/env.sh
for s in scripts/setup.d/*.sh; do
  [ -e "$s" ] || continue
  echo "== setup: $s"
  if ! bash "$s"; then
    echo "setup failed: $s"
    if [ "${CI:-}" = "true" ]; then exit 1; fi
  fi
done
# shellcheck disable=SC1091
. .services/env.sh
set +e
"$PY" -m pytest -q -p no:cacheprovider --durations=25 "$@"
rc=$?
for s in scripts/teardown.d/*.sh; do [ -e "$s" ] && bash "$s"; done
exit $rc
