#!/usr/bin/env bash
# Re-resolve the lock files in requirements/ from pyproject.toml: every transitive version pinned, with the hashes of
# every published file, for every platform and Python (3.11+) the README names (`uv pip compile --universal`).
# Versions already in a lock file are kept unless a pin in pyproject.toml moves them: `bash scripts/lock.sh --upgrade`
# takes the newest versions allowed. Run after changing the dependencies in pyproject.toml; commit the three files.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tools="${XDG_CACHE_HOME:-$HOME/.cache}/shouwang-lock-tools"  # uv itself, outside the checkout
if [ ! -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
compile() {
  "$tools/bin/uv" pip compile pyproject.toml --extra "$1" --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "bash scripts/lock.sh" -q -o "requirements/$1.lock" "${@:2}"
}
mkdir -p requirements
compile test "$@"
# One resolution for all three: the smaller locks start from the test lock's versions (uv keeps an output file's pins).
for extra in server edge; do
  cp requirements/test.lock "requirements/$extra.lock"
  compile "$extra"
done
