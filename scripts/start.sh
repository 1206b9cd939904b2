#!/usr/bin/env bash
# Start the whole system on embedded defaults: embedded MQTT broker, SQLite storage, backend and console on
# 127.0.0.1, and a simulated community publishing live. Installs what it needs first. Ctrl-C stops it.
# Extra arguments go to `shouwang run` (see `shouwang run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --for run   # what the system runs (requirements/server.lock)
exec .venv/bin/shouwang run "$@"
