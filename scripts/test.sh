#!/usr/bin/env bash
# The full test suite: ruff, mypy --strict over every package, then pytest against real Mosquitto,
# PostgreSQL and Chromium that the fixtures start on free loopback ports. Installs what it needs first.
# Extra arguments go to pytest (e.g. scripts/test.sh -k contract).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --services --for test   # the tests' packages too (requirements/test.lock)

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [ $status -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit $status
