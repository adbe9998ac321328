#!/usr/bin/env bash
# Installs the Debian packages gatehouse's build and tests need, if any are missing.
set -euo pipefail
need=(cmake libclang-dev clang pkg-config openssl curl nodejs)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian's package.
if [ " ${missing[*]} " = " nodejs " ] && command -v node >/dev/null; then missing=(); fi
missing=("${missing[@]/nodejs/}")
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "installing: ${missing[*]}"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
