#!/usr/bin/env bash
# Soak test: gatehouse (release build) in front of an nginx upstream, sessions in Redis, the
# local IdP (tokens of 5 minutes, so sessions are refreshed during the run), and an
# authenticated route. Sessions come from real scripted logins (loadtest/login.mjs).
#  1. measures the maximum rate briefly with wrk (SOAK_MAX_SECONDS, default 10),
#  2. runs k6 at half that rate (constant arrival rate; SOAK_RATE overrides) for SOAK_SECONDS
#     (default 1800),
#  3. samples gatehouse's RSS every 10 s into $SOAK_OUT/rss.csv (elapsed_s,rss_kb).
# Passes when RSS grows less than 5% from the end of the warm-up (SOAK_WARMUP_SECONDS,
# default 60) to the end, and no request failed. Prints a summary; exit 1 on failure.
# Needs: redis-server, node, nginx, wrk, k6 (loadtest/k6/install.sh), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${SOAK_SECONDS:-1800}"
warmup="${SOAK_WARMUP_SECONDS:-60}"
max_secs="${SOAK_MAX_SECONDS:-10}"
interval=10
bin="${GATEHOUSE_BIN:-${CARGO_TARGET_DIR:-target}/release/gatehouse}"
out="${SOAK_OUT:-$(mktemp -d /tmp/gatehouse-soak.XXXXXX)}"
mkdir -p "$out"
[ "$warmup" -lt "$secs" ] || { echo "SOAK_WARMUP_SECONDS must be below SOAK_SECONDS" >&2; exit 2; }
for t in redis-server node nginx wrk k6 curl python3 "$bin"; do
  command -v "$t" >/dev/null || { echo "missing: $t (make soak installs it)" >&2; exit 1; }
done

work="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $*" >&2; cat "$work"/*.log >&2; return 1; }
up=$(free_port); gh=$(free_port); admin=$(free_port); idp=$(free_port); redis=$(free_port)

redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 & pids+=($!)
wait_for redis-cli -p "$redis" ping
cat > "$work/clients.json" <<JSON
[{"client_id":"soak","client_secret":"soak-secret","redirect_uris":["http://127.0.0.1:$gh/oauth2/callback"],
  "grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_basic"}]
JSON
node idp/server.mjs --host 127.0.0.2 --port "$idp" --clients "$work/clients.json" \
  --access-ttl 300 --id-token-ttl 300 >/dev/null 2>"$work/idp.log" & pids+=($!)
wait_for curl -fs "http://127.0.0.2:$idp/.well-known/openid-configuration"
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$up; keepalive_requests 1000000;
  location / { return 200 'hello from upstream\n'; } } }
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & pids+=($!)
cat > "$work/gatehouse.yaml" <<CONF
address: 127.0.0.1:$gh
insecure_server: true
metrics_address: 127.0.0.1:$admin
log_level: warn
idp_provider_url: http://127.0.0.2:$idp
idp_client_id: soak
idp_client_secret: soak-secret
cookie_secret: $(head -c32 /dev/urandom | base64)
session_store: redis://127.0.0.1:$redis
pass_identity_headers: true
jwt_claims_headers: [email, groups]
routes:
  - from: http://127.0.0.1:$gh
    to: http://127.0.0.1:$up
    allow_any_authenticated_user: true
CONF
"$bin" run -c "$work/gatehouse.yaml" --pid-file "$work/gh.pid" --upgrade-sock "$work/gh.sock" 2>"$work/gh.log" & ghpid=$!; pids+=($ghpid)
wait_for curl -fs "http://127.0.0.1:$admin/readyz"
wait_for curl -fs "http://127.0.0.1:$up/"

# Sessions from real logins, stored in Redis.
cookies=()
for user in alice bob carol alice; do cookies+=("$(node loadtest/login.mjs "http://127.0.0.1:$gh/" "$user" "$user")"); done
for c in "${cookies[@]}"; do curl -fs -o /dev/null -H "Cookie: $c" "http://127.0.0.1:$gh/" || { echo "a session cookie does not work" >&2; exit 1; }; done
stored=$(redis-cli -p "$redis" --scan --pattern 'gatehouse:s:*' | wc -l)
[ "$stored" -ge "${#cookies[@]}" ] || { echo "sessions are not in Redis ($stored)" >&2; exit 1; }

echo "measuring the maximum rate (wrk, ${max_secs}s, 32 connections)..."
max=$(wrk -t1 -c32 -d"${max_secs}s" -H "Cookie: ${cookies[0]}" "http://127.0.0.1:$gh/" | awk '/Requests\/sec/ {printf "%d", $2}')
rate="${SOAK_RATE:-$(( max / 2 ))}"   # SOAK_RATE overrides (when the client cannot keep up)
[ "$rate" -gt 0 ] || { echo "could not measure a rate" >&2; exit 1; }
echo "max ${max} req/s; soaking at ${rate} req/s for ${secs}s (RSS every ${interval}s -> $out/rss.csv)"

echo "elapsed_s,rss_kb" > "$out/rss.csv"
(
  t0=$(date +%s)
  while kill -0 "$ghpid" 2>/dev/null; do
    echo "$(( $(date +%s) - t0 )),$(ps -o rss= -p "$ghpid" | tr -d ' ')" >> "$out/rss.csv"
    sleep "$interval"
  done
) & sampler=$!; pids+=($sampler)

cookie_json=$(printf '%s\n' "${cookies[@]}" | python3 -c 'import json,sys; print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))')
k6 run --quiet --no-color --summary-export "$out/k6-summary.json" \
  -e URL="http://127.0.0.1:$gh/" -e RATE="$rate" -e SECONDS="$secs" -e COOKIES="$cookie_json" \
  loadtest/soak.js > "$out/k6.log" 2>&1 || true
kill "$sampler" 2>/dev/null || true
echo "$(( secs + 1 )),$(ps -o rss= -p "$ghpid" | tr -d ' ')" >> "$out/rss.csv"
curl -fs "http://127.0.0.1:$admin/metrics" > "$out/metrics.txt" || true
cp "$work/gh.log" "$out/gatehouse.log"

python3 - "$out" "$secs" "$warmup" "$max" "$rate" <<'PY'
import json, sys
out, secs, warmup, max_rate, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [tuple(int(x) for x in l.split(',')) for l in open(f'{out}/rss.csv').read().split()[1:] if ',' in l and l.split(',')[1]]
after = [r for r in rows if r[0] >= warmup]
start, end = after[0][1], rows[-1][1]
growth = (end - start) * 100.0 / start
m = json.load(open(f'{out}/k6-summary.json'))['metrics']
reqs = int(m['http_reqs']['count'])
failed = int(m['http_req_failed'].get('passes', 0))   # passes of "failed" = failed requests
checks_failed = int(m['checks'].get('fails', 0))
dropped = int(m.get('dropped_iterations', {}).get('count', 0))
dur = m['http_req_duration']
errors = failed + checks_failed
refresh = [l for l in open(f'{out}/metrics.txt') if l.startswith('gatehouse_session_refreshes_total')]
ok = growth < 5.0 and errors == 0 and reqs > 0
print(f"SOAK: duration_s={secs}, max_rate={max_rate} req/s (wrk), target_rate={rate} req/s, "
      f"requests={reqs}, achieved_rate={reqs/secs:.0f} req/s, errors={errors}, dropped_iterations={dropped}, "
      f"p50_ms={dur['p(50)']:.2f}, p99_ms={dur['p(99)']:.2f}, max_ms={dur['max']:.1f}, "
      f"rss_after_warmup_kb={start}, rss_end_kb={end}, rss_growth_pct={growth:.2f}, "
      f"refreshes={' '.join(l.split('{')[1].replace('} ', '=').strip() for l in refresh) or 'none'} "
      f"-> {'PASS' if ok else 'FAIL'}")
print(f"  files: {out}/rss.csv, k6-summary.json, k6.log, metrics.txt, gatehouse.log")
sys.exit(0 if ok else 1)
PY
