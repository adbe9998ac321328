#!/usr/bin/env bash
# `make run`: the demo app on 127.0.0.1:8081 and gatehouse on http://127.0.0.1:8080 in
# front of it (admin on 127.0.0.1:9090). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${GATEHOUSE_BIN:?set GATEHOUSE_BIN}"
node demo/app.js 127.0.0.1:8081 &
app=$!
"$bin" run -c config/demo.yaml --pid-file /tmp/gatehouse-demo.pid --upgrade-sock /tmp/gatehouse-demo.sock &
gh=$!
trap 'kill $gh $app 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<MSG

  gatehouse is running.
    http://127.0.0.1:8080/          the demo app, through gatehouse (shows the forwarded request)
    http://localhost:8080/hello     a static response route
    http://localhost:8080/old/x     a redirect route
    http://127.0.0.1:9090/metrics   Prometheus metrics (admin listener)

  Edit config/demo.yaml while it runs: changes apply within a second.
  Ctrl-C stops everything.

MSG
wait $gh
