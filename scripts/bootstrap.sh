#!/usr/bin/env bash
# Prepare this checkout: the virtual environment with the pinned packages, and (with --services) the
# system packages the tests run for real: Mosquitto, PostgreSQL and Chromium.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_services=0
[ "${1:-}" = "--services" ] && want_services=1

say() { printf '\033[1mshouwang:\033[0m %s\n' "$*" >&2; }

# ---- Python 3.11+
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$(command -v "$cand")"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  say "Python 3.11 or newer is needed: apt-get install python3 python3-venv"
  exit 1
fi

# ---- system packages (only with --services)
apt_install() {
  local missing=("$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    say "missing system packages: ${missing[*]}. Install them: sudo apt-get install ${missing[*]}"
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing system packages: ${missing[*]}. This is not a Debian/Ubuntu machine: install them with its package manager."
    exit 1
  fi
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  say "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
if [ $want_services -eq 1 ]; then
  need=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto mosquitto-clients)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # Chinese text in the console's screenshots needs a CJK font; Chromium shows boxes without one.
  [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
  # deploy/compose.yaml is validated with `docker-compose config` (no container engine runs here).
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  # deploy/compose/Caddyfile (the stack's HTTPS door) is validated with `caddy adapt`.
  command -v caddy >/dev/null 2>&1 || need+=(caddy)
  apt_install "${need[@]}"
  # Debian starts the packaged services on install; the tests start their own on free ports.
  if command -v service >/dev/null 2>&1; then
    service mosquitto stop >/dev/null 2>&1 || true
    service caddy stop >/dev/null 2>&1 || true
  fi
fi

# ---- virtual environment with the pinned packages
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment in .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.shouwang-installed"
digest="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  say "installing Python packages (pinned in pyproject.toml)"
  log=".venv/pip-install.log"
  .venv/bin/python -m pip install -q --upgrade pip >"$log" 2>&1 || true
  if ! .venv/bin/python -m pip install -q -e '.[dev]' >>"$log" 2>&1; then
    tail -40 "$log" >&2
    say "installing the Python packages failed; the whole log is in $log"
    exit 1
  fi
  echo "$digest" > "$stamp"
fi
