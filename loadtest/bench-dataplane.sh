#!/usr/bin/env bash
# Data-plane benchmark (BENCH.md pinning): one upstream (nginx `return 200`), then the same
# wrk load straight to it, through nginx as a plain reverse proxy, through a gatehouse
# public route, and through a gatehouse route for signed-in users (a session cookie from a
# real scripted login at the local IdP; group policy; identity JWT and claim headers added).
# Proxies get core 0 and one worker; wrk and the upstream share core 1.
# Usage: loadtest/bench-dataplane.sh [seconds-per-run] [rounds]   (needs nginx, wrk, taskset)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"; rounds="${2:-3}"; conns=64
bin="${GATEHOUSE_BIN:-${CARGO_TARGET_DIR:-target}/release/gatehouse}"
for t in nginx wrk taskset "$bin"; do command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 1; }; done
work="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port); px=$(free_port); gh=$(free_port); admin=$(free_port); idp=$(free_port)
cat > "$work/clients.json" <<JSON
[{"client_id":"bench","client_secret":"bench-secret","redirect_uris":["http://127.0.0.1:$gh/oauth2/callback"],
  "grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_basic"}]
JSON
taskset -c 1 node idp/server.mjs --host 127.0.0.2 --port "$idp" --clients "$work/clients.json" >/dev/null 2>"$work/idp.log" & pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.2:$idp/.well-known/openid-configuration" >/dev/null 2>&1 && break; sleep 0.1; done

nginx_conf() { # name body
  mkdir -p "$work/$1"
  cat > "$work/$1/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/$1/nginx.pid; error_log $work/$1/error.log;
events { worker_connections 4096; }
http { access_log off; $2 }
CONF
}
nginx_conf upstream "server { listen 127.0.0.1:$up; keepalive_requests 100000; location / { return 200 'hello from upstream\n'; } }"
nginx_conf proxy "upstream u { server 127.0.0.1:$up; keepalive 64; }
  server { listen 127.0.0.1:$px; keepalive_requests 100000; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr; } }"
taskset -c 1 nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" & pids+=($!)
taskset -c 0 nginx -p "$work/proxy" -c "$work/proxy/nginx.conf" & pids+=($!)
cat > "$work/gatehouse.yaml" <<CONF
address: 127.0.0.1:$gh
insecure_server: true
metrics_address: 127.0.0.1:$admin
threads: 1
log_level: warn
idp_provider_url: http://127.0.0.2:$idp
idp_client_id: bench
idp_client_secret: bench-secret
cookie_secret: $(head -c32 /dev/urandom | base64)
pass_identity_headers: true
jwt_claims_headers: [email, groups]
routes:
  - from: http://bench.test
    to: http://127.0.0.1:$up
    allow_public_unauthenticated_access: true
  - from: http://127.0.0.1:$gh
    to: http://127.0.0.1:$up
    allowed_groups: [admins]
CONF
taskset -c 0 "$bin" run -c "$work/gatehouse.yaml" --pid-file "$work/gh.pid" --upgrade-sock "$work/gh.sock" 2>"$work/gh.log" & pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
for port in $up $px $gh; do curl -fs -H 'Host: bench.test' "http://127.0.0.1:$port/" >/dev/null; done
cookie=$(node loadtest/login.mjs "http://127.0.0.1:$gh/" alice alice)
curl -fs -o /dev/null -H "Cookie: $cookie" "http://127.0.0.1:$gh/" || { echo "the session cookie does not work" >&2; exit 1; }

run() { # lane port -> "rps p50_ms p99_ms"
  local hdr=(-H 'Host: bench.test')
  [ "$1" = gatehouse-auth ] && hdr=(-H "Cookie: $cookie")
  taskset -c 1 wrk -t1 -c$conns -d"${secs}s" --latency "${hdr[@]}" "http://127.0.0.1:$2/" 2>/dev/null |
    awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
         END { printf "%.0f %.3f %.3f\n", r, ms(p50), ms(p99) }'
}
echo "warm-up..."; for port in $up $px $gh; do taskset -c 1 wrk -t1 -c$conns -d2s -H 'Host: bench.test' "http://127.0.0.1:$port/" >/dev/null; done
taskset -c 1 wrk -t1 -c$conns -d2s -H "Cookie: $cookie" "http://127.0.0.1:$gh/" >/dev/null
declare -A res
for r in $(seq 1 "$rounds"); do
  for lane in direct:$up nginx-proxy:$px gatehouse-public:$gh gatehouse-auth:$gh; do
    name=${lane%%:*}; port=${lane##*:}
    res[$name]+="$(run "$name" "$port")"$'\n'
    echo "round $r $name: $(echo "${res[$name]}" | sed '/^$/d' | tail -1)"
  done
done
median() { sed '/^$/d' | awk -v c="$1" '{print $c}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "| lane | req/s | p50 ms | p99 ms | vs nginx-proxy | vs gatehouse-public |"
echo "|---|---|---|---|---|---|"
base=$(echo "${res[nginx-proxy]}" | median 1)
public=$(echo "${res[gatehouse-public]}" | median 1)
for name in direct nginx-proxy gatehouse-public gatehouse-auth; do
  rps=$(echo "${res[$name]}" | median 1); p50=$(echo "${res[$name]}" | median 2); p99=$(echo "${res[$name]}" | median 3)
  echo "| $name | $rps | $p50 | $p99 | $(awk -v a="$rps" -v b="$base" 'BEGIN{printf "%.2f", a/b}') | $(awk -v a="$rps" -v b="$public" 'BEGIN{printf "%.2f", a/b}') |"
done
echo
echo "($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); ${secs}s x ${rounds} rounds, $conns connections, medians)"
