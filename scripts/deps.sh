#!/usr/bin/env bash
# Installs the Debian packages gatehouse's build and tests need, if any are missing, and the
# benchmark's peers and load generators (make test runs the benchmark harness in smoke mode):
# nginx, apache2 + libapache2-mod-auth-openidc, wrk, and oha (cargo install).
set -euo pipefail
need=(cmake libclang-dev clang pkg-config openssl curl nodejs npm redis-server chromium
  nginx apache2 libapache2-mod-auth-openidc wrk python3)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian's package.
if command -v node >/dev/null; then missing=("${missing[@]/nodejs/}"); fi
if command -v npm >/dev/null; then missing=("${missing[@]/npm/}"); fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# oha: the open-loop (fixed-rate) load generator of loadtest/bench.py; not in Debian.
OHA_VERSION=1.16.0
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v oha >/dev/null && [ ! -x "$cargo_bin/oha" ]; then
  echo "installing: oha $OHA_VERSION (cargo install)"
  (cd / && env -u CARGO_TARGET_DIR cargo install --locked --quiet oha --version "$OHA_VERSION")
fi
# The local IdP and browser driver (npm, pinned by idp/package-lock.json).
cd "$(dirname "$0")/../idp"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
