#!/usr/bin/env bash
# Creates throwaway self-signed certificates for config/example.yaml (never for production).
set -euo pipefail
dir="$(dirname "$0")/../config/tls"
mkdir -p "$dir"
for name in apps.example.com api.example.com; do
  [ -f "$dir/$name.crt" ] && continue
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$name" -addext "subjectAltName=DNS:$name,DNS:*.$name" \
    -keyout "$dir/$name.key" -out "$dir/$name.crt" 2>/dev/null
done
