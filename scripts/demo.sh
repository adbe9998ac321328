#!/usr/bin/env bash
# `make run`: the local OpenID Provider on http://127.0.0.2:8082, the demo app on
# 127.0.0.1:8081 and gatehouse on http://127.0.0.1:8080 in front of it (admin on
# 127.0.0.1:9090). Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${GATEHOUSE_BIN:?set GATEHOUSE_BIN}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
node idp/server.mjs --host 127.0.0.2 --port 8082 --clients idp/clients.demo.json >/dev/null &
pids+=($!)
node demo/app.js 127.0.0.1:8081 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.2:8082/.well-known/openid-configuration >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin" run -c config/demo.yaml --pid-file /tmp/gatehouse-demo.pid --upgrade-sock /tmp/gatehouse-demo.sock &
pids+=($!)
gh=$!
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<MSG

  gatehouse is running.
    http://127.0.0.1:8080/          the demo app for any signed-in user: sign in as
                                    alice/alice (group admins) or bob/bob (group devs)
    http://127.0.0.1:8080/admin/    admins only (bob gets 403 with the reasons)
    http://127.0.0.1:8080/public/   no sign-in needed
    http://127.0.0.1:8080/.gatehouse/   your session, and the sign-out button
    http://127.0.0.2:8082/          the local OpenID Provider (npm oidc-provider)
    http://127.0.0.1:9090/metrics   Prometheus metrics (admin listener)

  Edit config/demo.yaml while it runs: changes apply within a second.
  Ctrl-C stops everything.

MSG
wait $gh
