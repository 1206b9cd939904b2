#!/usr/bin/env bash
# Prepare this checkout: the virtual environment with the locked packages, and (with --services) the system
# packages the tests run for real: Mosquitto, PostgreSQL, Chromium, and the tools that validate deploy/.
#   bash scripts/bootstrap.sh [--services] [--for run|test]
# --for run installs what the system runs (requirements/server.lock, used by scripts/start.sh); --for test (the
# default) also what the tests need (requirements/test.lock, used by scripts/test.sh). Both lock files pin every
# package with its hashes (scripts/lock.sh makes them), so two machines install the same versions.
# Safe to run again: each step is skipped when already done; a half-made .venv (no python, no pip) is made again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_services=0
purpose=test
while [ $# -gt 0 ]; do
  case "$1" in
    --services) want_services=1 ;;
    --for) purpose="${2:-}"; shift ;;
    *) echo "usage: bash scripts/bootstrap.sh [--services] [--for run|test]" >&2; exit 2 ;;
  esac
  shift
done
case "$purpose" in
  run) lock=requirements/server.lock ;;
  test) lock=requirements/test.lock ;;
  *) echo "bootstrap: --for run or --for test" >&2; exit 2 ;;
esac

say() { printf '\033[1mshouwang:\033[0m %s\n' "$*" >&2; }

# ---- system packages (apt), when missing
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

# ---- Python 3.11+ with venv and ensurepip (Debian splits them into python3-venv)
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
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  say "$PY has no venv/ensurepip (Debian's python3-venv is missing)"
  apt_install "python${pyver}-venv"
  "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || { say "still no venv/ensurepip in $PY: install python${pyver}-venv"; exit 1; }
fi

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

# ---- the virtual environment: made again if an earlier run left it half-made (e.g. venv without ensurepip)
if [ -e .venv ] && ! { [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1; }; then
  say "repairing a half-made .venv (no working python or pip in it): making it again"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment in .venv"
  "$PY" -m venv .venv
fi

# ---- the locked packages, then this project itself (editable, no dependencies of its own: the lock has them all)
stamp=".venv/.shouwang-installed"
digest="$purpose $(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || ! grep -qxF "$digest" "$stamp"; then
  say "installing Python packages from $lock (every version and hash locked)"
  log=".venv/pip-install.log"
  if ! { .venv/bin/python -m pip install -q --require-hashes --no-deps -r "$lock" && .venv/bin/python -m pip install -q --no-deps -e .; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    say "installing the Python packages failed; the whole log is in $log"
    exit 1
  fi
  {
    echo "$digest"
    # The test lock holds the run lock's versions: a test install serves `start.sh` too.
    [ "$purpose" = test ] && echo "run $(cat requirements/server.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
  } > "$stamp"
fi
