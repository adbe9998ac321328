#!/usr/bin/env bash
# Soak test: gatehouse (release build) in front of an nginx upstream, sessions in Redis, the
# local IdP (tokens of 5 minutes, so sessions are refreshed during the run), and an
# authenticated route. Sessions come from real scripted logins (loadtest/login.mjs).
#  1. measures the maximum rate briefly with wrk (SOAK_MAX_SECONDS, default 10),
#  2. runs oha open-loop at half that rate (SOAK_RATE overrides) for SOAK_SECONDS (default
#     1800): two clients, two sessions, SOAK_CONNS kept-alive connections in all (default
#     128; a fixed client population, so memory that follows the connection count does not
#     pass for growth). k6 cannot send half of the maximum on two shared cores; oha can.
#  3. samples gatehouse's RSS and open connections every 10 s into $SOAK_OUT/rss.csv.
# Passes when RSS grows less than 5% from the end of the warm-up (SOAK_WARMUP_SECONDS,
# default 360) to the end, and no request failed. Prints a summary; exit 1 on failure.
# The warm-up covers timeout_idle (300 s): Pingora's timer wheel keeps one entry per 10 ms
# slot and thread up to the longest pending timeout (the keep-alive timeout), so it grows
# for that long under load and then stays level (measured with heaptrack; ~8 MB here).
# Needs: redis-server, node, nginx, wrk, oha (scripts/deps.sh), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${SOAK_SECONDS:-1800}"
warmup="${SOAK_WARMUP_SECONDS:-360}"
max_secs="${SOAK_MAX_SECONDS:-10}"
interval=10
bin="${GATEHOUSE_BIN:-${CARGO_TARGET_DIR:-target}/release/gatehouse}"
out="${SOAK_OUT:-$(mktemp -d /tmp/gatehouse-soak.XXXXXX)}"
mkdir -p "$out"
[ "$warmup" -lt "$secs" ] || { echo "SOAK_WARMUP_SECONDS must be below SOAK_SECONDS" >&2; exit 2; }
conns="${SOAK_CONNS:-128}"
oha="$(command -v oha || echo "${CARGO_HOME:-$HOME/.cargo}/bin/oha")"
for t in redis-server node nginx wrk "$oha" curl python3 "$bin"; do
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

# RSS with the open downstream connections beside it: memory that follows the number of
# connections is per-connection state, not growth.
open_conns() { curl -fs "http://127.0.0.1:$admin/metrics" | awk '/^gatehouse_downstream_connections / {print $2}'; }
echo "elapsed_s,rss_kb,connections" > "$out/rss.csv"
(
  t0=$(date +%s)
  while kill -0 "$ghpid" 2>/dev/null; do
    echo "$(( $(date +%s) - t0 )),$(ps -o rss= -p "$ghpid" | tr -d ' '),$(open_conns)" >> "$out/rss.csv"
    sleep "$interval"
  done
) & sampler=$!; pids+=($sampler)

# Two open-loop clients (oha -q with latency correction: latency counts from when a request
# was due), each with its own session, at half the rate each.
clients=()
for i in 0 1; do
  "$oha" -z "${secs}s" -q "$(( rate / 2 ))" -c "$(( conns / 2 ))" --latency-correction --no-tui \
    --output-format json -H "Cookie: ${cookies[$i]}" "http://127.0.0.1:$gh/" \
    > "$out/oha-$i.json" 2> "$out/oha-$i.log" & clients+=($!)
done
wait "${clients[@]}" || true
kill "$sampler" 2>/dev/null || true
echo "$(( secs + 1 )),$(ps -o rss= -p "$ghpid" | tr -d ' '),$(open_conns)" >> "$out/rss.csv"
curl -fs "http://127.0.0.1:$admin/metrics" > "$out/metrics.txt" || true
cp "$work/gh.log" "$out/gatehouse.log"

python3 - "$out" "$secs" "$warmup" "$max" "$rate" <<'PY'
import json, sys
out, secs, warmup, max_rate, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [tuple(int(float(x)) for x in l.split(',')[:2]) for l in open(f'{out}/rss.csv').read().split()[1:] if ',' in l and l.split(',')[1]]
after = [r for r in rows if r[0] >= warmup]
start, end = after[0][1], rows[-1][1]
growth = (end - start) * 100.0 / start
early = next((r[1] for r in rows if r[0] >= 60), start)
reqs = errors = cut = 0
p50s, p99s, maxes, error_kinds = [], [], [], {}
for i in (0, 1):
    d = json.load(open(f'{out}/oha-{i}.json'))
    statuses = {int(k): v for k, v in (d.get('statusCodeDistribution') or {}).items()}
    reqs += sum(statuses.values())
    errors += sum(v for k, v in statuses.items() if k != 200)
    for kind, n in (d.get('errorDistribution') or {}).items():
        # Requests in flight when the duration ends are cut off: not failures.
        if 'deadline' in kind.lower():
            cut += n
        else:
            errors += n
            error_kinds[kind] = error_kinds.get(kind, 0) + n
    lat = d.get('latencyPercentiles') or {}
    p50s.append((lat.get('p50') or 0) * 1000)
    p99s.append((lat.get('p99') or 0) * 1000)
    maxes.append((d.get('summary', {}).get('slowest') or 0) * 1000)
refresh = [l for l in open(f'{out}/metrics.txt') if l.startswith('gatehouse_session_refreshes_total')]
ok = growth < 5.0 and errors == 0 and reqs > 0
print(f"SOAK: duration_s={secs}, max_rate={max_rate} req/s (wrk), target_rate={rate} req/s, "
      f"requests={reqs}, achieved_rate={reqs/secs:.0f} req/s, errors={errors} {error_kinds or ''}, cut_at_end={cut}, "
      f"p50_ms={max(p50s):.2f}, p99_ms={max(p99s):.2f}, max_ms={max(maxes):.1f}, "
      f"rss_at_60s_kb={early}, rss_after_warmup_kb={start} (at {after[0][0]} s), rss_end_kb={end}, rss_growth_pct={growth:.2f}, "
      f"refreshes={' '.join(l.split('{')[1].replace('} ', '=').strip() for l in refresh) or 'none'} "
      f"-> {'PASS' if ok else 'FAIL'}")
print(f"  files: {out}/rss.csv, oha-0.json, oha-1.json, metrics.txt, gatehouse.log")
sys.exit(0 if ok else 1)
PY
