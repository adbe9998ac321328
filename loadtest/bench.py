#!/usr/bin/env python3
"""gatehouse benchmark: every lane of /work/shared/BENCH.md side by side, in one run.

Lanes (same upstream, same client, same run):
  direct               wrk straight to the upstream (nginx `return 200`): the floor
  nginx-proxy          nginx as a plain reverse proxy
  nginx-auth_request   nginx `auth_request` to a session check (forward-auth architecture)
  apache-oidc          Apache 2.4 + mod_auth_openidc, a real OIDC RP, sessions in Redis
  gatehouse-public     a gatehouse route with allow_public_unauthenticated_access
  gatehouse-auth       a logged-in session (group policy, identity JWT + claim headers), warm
  gatehouse-auth-cold  every request a session never seen before by that gatehouse (Redis)

Pinning: the proxy under test on core 0 with one worker; wrk/oha, the upstream, Redis and the
IdP on core 1. A warm-up run per lane, then ROUNDS rounds that alternate the lanes (the order
rotates every round); medians are reported. Then every lane at a fixed rate, half of
gatehouse-public's median max rate (oha, open loop with latency correction). Then the scale
checks: 10 vs 10,000 routes, ~1M sessions in Redis, RSS idle and with 10k idle connections.

Writes loadtest/results/<date>/{report.md,results.json,plot.svg} and the README's benchmark
block. --smoke: every lane for ~1 s, one round, small scale figures, output in a temporary
directory; checks that everything ran and every request got a 2xx, exits 1 otherwise.

Needs: nginx, apache2 + libapache2-mod-auth-openidc, wrk, redis-server, taskset, node (and
idp/node_modules), oha (cargo install oha), GATEHOUSE_BIN (default target/release/gatehouse).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import re
import resource
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import plot  # noqa: E402  (loadtest/plot.py)

ROOT = Path(__file__).resolve().parent.parent
PROXY_CORE = "0"
CLIENT_CORE = "1"
CONNS = 64
UPSTREAM_BODY = "hello from upstream\n"
LANES = [
    "direct",
    "nginx-proxy",
    "nginx-auth_request",
    "apache-oidc",
    "gatehouse-public",
    "gatehouse-auth",
    "gatehouse-auth-cold",
]
README_BEGIN = "<!-- bench:begin (written by make bench) -->"
README_END = "<!-- bench:end -->"
APACHE_MODULES = Path("/usr/lib/apache2/modules")


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------
# Processes


class Processes:
    """Every process this run starts, each in its own process group; all stopped at the end."""

    def __init__(self, work: Path):
        self.work = work
        self.procs: list[tuple[str, subprocess.Popen, int]] = []

    def start(self, name, argv, core, stop_signal=signal.SIGTERM, stdout=None, stdin=None):
        out = stdout if stdout is not None else open(self.work / f"{name}.out", "wb")
        err = open(self.work / f"{name}.err", "wb")
        proc = subprocess.Popen(
            ["taskset", "-c", core, *map(str, argv)],
            stdout=out,
            stderr=err,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
        self.procs.append((name, proc, stop_signal))
        return proc

    def stop(self, proc, timeout=10):
        for name, p, sig in list(self.procs):
            if p is proc:
                self._signal(p, sig)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal(p, signal.SIGKILL)
                    p.wait()
                self.procs.remove((name, p, sig))

    @staticmethod
    def _signal(p, sig):
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self):
        for _, proc, _ in reversed(list(self.procs)):
            self.stop(proc)

    def check_alive(self):
        for name, p, _ in self.procs:
            if p.poll() is not None:
                err = (self.work / f"{name}.err").read_text(errors="replace")[-2000:]
                raise BenchError(f"{name} exited with {p.returncode}:\n{err}")


def free_port(host="127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)


def http_get(url, headers=None, timeout=5.0):
    """(status, body) without following redirects; (0, error) when nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with HTTP.open(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def wait_until(check, what, procs: Processes, timeout=60.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        procs.check_alive()
        time.sleep(interval)
    raise BenchError(f"timed out waiting for {what}")


def run(argv, core=None, timeout=600, env=None, check=True) -> subprocess.CompletedProcess:
    full = ["taskset", "-c", core, *map(str, argv)] if core else list(map(str, argv))
    result = subprocess.run(
        full, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(full)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def redis_cli(port, *args) -> str:
    return run(["redis-cli", "-p", port, *args]).stdout


def redis_info(port, section) -> dict:
    info = {}
    for line in redis_cli(port, "info", section).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k] = v.strip()
    return info


def group_stats(pgid) -> list[list[str]]:
    """The /proc/PID/stat fields (after the command name) of every process in group `pgid`."""
    stats = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            stats.append([entry, *fields])
    return stats


def cpu_seconds(pgid) -> float:
    """User + system CPU time of every process in process group `pgid`."""
    ticks = sum(int(f[12]) + int(f[13]) for f in group_stats(pgid))
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for {pid}")


# --------------------------------------------------------------------------------------
# Load generators


def parse_duration_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise BenchError(f"wrk: cannot read duration {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}[unit]


def wrk(url, secs, headers=(), script=None, env=None) -> dict:
    """One wrk run on the client core: req/s, p50, p99 (ms), requests, errors, non-2xx/3xx."""
    argv = ["wrk", "-t1", f"-c{CONNS}", f"-d{secs}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    argv.append(url)
    full_env = dict(os.environ, **(env or {}))
    out = run(argv, core=CLIENT_CORE, timeout=secs + 60, env=full_env).stdout
    res = {"rps": None, "p50_ms": None, "p99_ms": None, "requests": 0, "errors": 0, "non2xx3xx": 0}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            res["rps"] = float(line.split()[1])
        elif m := re.match(r"^50(?:\.000)?%\s+(\S+)", line):
            res["p50_ms"] = parse_duration_ms(m.group(1))
        elif m := re.match(r"^99(?:\.000)?%\s+(\S+)", line):
            res["p99_ms"] = parse_duration_ms(m.group(1))
        elif m := re.match(r"^(\d+) requests in", line):
            res["requests"] = int(m.group(1))
        elif line.startswith("Socket errors:"):
            res["errors"] = sum(int(n) for n in re.findall(r"\d+", line))
        elif line.startswith("Non-2xx or 3xx responses:"):
            res["non2xx3xx"] = int(line.split(":")[1])
    if res["rps"] is None or res["p99_ms"] is None:
        raise BenchError(f"wrk printed no result:\n{out}")
    return res


def oha_bin() -> str:
    found = shutil.which("oha")
    if found:
        return found
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    if (home / "bin" / "oha").exists():
        return str(home / "bin" / "oha")
    raise BenchError("missing: oha (cargo install --locked oha)")


def oha(url, secs, rate, headers=()) -> dict:
    """Open-loop run at `rate` req/s (oha -q with --latency-correction: latency counts from
    when a request was due, so a stalled server is not hidden by a waiting client)."""
    argv = [
        oha_bin(), "-z", f"{secs}s", "-q", f"{rate:.0f}", "-c", CONNS, "--latency-correction",
        "--no-tui", "--output-format", "json",
    ]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    data = json.loads(run(argv, core=CLIENT_CORE, timeout=secs + 120).stdout)
    statuses = {int(k): v for k, v in (data.get("statusCodeDistribution") or {}).items()}
    errors = dict(data.get("errorDistribution") or {})
    # Requests still in flight when the duration ends are cut off; that is not an error.
    cut = sum(v for k, v in errors.items() if "deadline" in k.lower())
    errors = {k: v for k, v in errors.items() if "deadline" not in k.lower()}
    pct = data.get("latencyPercentiles") or {}
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "target_rps": rate,
        "achieved_rps": ok / secs,
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "responses": sum(statuses.values()),
        "non2xx": sum(v for k, v in statuses.items() if not 200 <= k < 300),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "cut_at_end": cut,
    }


# --------------------------------------------------------------------------------------
# The stack


COLD_LUA = """-- Every request carries the next cookie of BENCH_COOKIES (one per line): a new session.
local cookies = {}
for line in io.lines(os.getenv("BENCH_COOKIES")) do cookies[#cookies + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #cookies then i = 1 end
  return wrk.format(nil, nil, { ["Cookie"] = cookies[i] })
end
"""


class Stack:
    """Upstream, proxies, Redis and the IdP for one run."""

    def __init__(self, work: Path, procs: Processes, gatehouse: str):
        self.work = work
        self.procs = procs
        self.gatehouse = gatehouse
        self.cookie_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.check_token = secrets.token_urlsafe(32)
        self.ports = {name: free_port() for name in [
            "upstream", "nginx", "nginx_auth", "nginx_check", "apache", "redis",
            "gh", "gh_admin", "cold", "cold_admin",
        ]}
        self.ports["idp"] = None
        self.cookies: dict[str, str] = {}
        self.cold_minted = 0
        self.cold_batch = 0
        self.sessions_in_redis = 0
        self.gh = self.cold = self.upstream = self.nginx_proxy = self.apache = None

    # ---- start

    def start(self):
        p = self.ports
        self.procs.start(
            "redis",
            ["redis-server", "--port", p["redis"], "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"],
            CLIENT_CORE,
        )
        wait_until(lambda: run(["redis-cli", "-p", p["redis"], "ping"], check=False).stdout
                   .strip() == "PONG", "redis", self.procs)
        self.start_idp()
        self.upstream = self.nginx("upstream", CLIENT_CORE, f"""
  server {{ listen 127.0.0.1:{p['upstream']}; keepalive_requests 1000000;
    location / {{ return 200 '{UPSTREAM_BODY.strip()}\\n'; }}
    location = /.bench/status {{ stub_status; }} }}""")
        fwd = ("proxy_http_version 1.1; proxy_set_header Connection \"\"; "
               "proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr;")
        self.nginx_proxy = self.nginx("proxy", PROXY_CORE, f"""
  upstream u {{ server 127.0.0.1:{p['upstream']}; keepalive 64; }}
  upstream check {{ server 127.0.0.1:{p['nginx_check']}; keepalive 64; }}
  server {{ listen 127.0.0.1:{p['nginx']}; keepalive_requests 1000000;
    location / {{ proxy_pass http://u; {fwd} }} }}
  server {{ listen 127.0.0.1:{p['nginx_auth']}; keepalive_requests 1000000;
    location / {{ auth_request /.auth; proxy_pass http://u; {fwd} }}
    location = /.auth {{ internal; proxy_pass http://check/check; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_pass_request_body off;
      proxy_set_header Content-Length ""; proxy_set_header X-Original-URI $request_uri; }} }}
  server {{ listen 127.0.0.1:{p['nginx_check']}; keepalive_requests 1000000;
    location = /check {{ if ($cookie_bench_session = "{self.check_token}") {{ return 204; }}
      return 401; }} }}""")
        self.start_apache()
        self.gh = self.start_gatehouse("gh", p["gh"], p["gh_admin"])
        self.cold = self.start_gatehouse("cold", p["cold"], p["cold_admin"])
        for name, port in [("upstream", p["upstream"]), ("nginx-proxy", p["nginx"]),
                           ("nginx-auth", p["nginx_auth"]), ("apache", p["apache"])]:
            wait_until(lambda port=port: http_get(f"http://127.0.0.1:{port}/")[0] != 0,
                       name, self.procs)

    def start_idp(self):
        p = self.ports
        clients = [
            {"client_id": "bench", "client_secret": "bench-secret",
             "redirect_uris": [f"http://127.0.0.1:{p['gh']}/oauth2/callback",
                               f"http://127.0.0.1:{p['cold']}/oauth2/callback"],
             "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
             "token_endpoint_auth_method": "client_secret_basic"},
            {"client_id": "apache", "client_secret": "apache-secret",
             "redirect_uris": [f"http://127.0.0.1:{p['apache']}/redirect_uri"],
             "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
             "token_endpoint_auth_method": "client_secret_basic"},
        ]
        (self.work / "clients.json").write_text(json.dumps(clients))
        # Token lifetimes longer than the run: no session needs a refresh while measured.
        idp = self.procs.start(
            "idp",
            ["node", "idp/server.mjs", "--host", "127.0.0.2", "--port", "0",
             "--clients", self.work / "clients.json", "--access-ttl", "86400",
             "--id-token-ttl", "86400", "--exit-with-parent"],
            CLIENT_CORE, stdout=subprocess.PIPE,
        )
        ready, _, _ = select.select([idp.stdout], [], [], 180)
        line = idp.stdout.readline() if ready else b""
        if not line:
            self.procs.check_alive()
            raise BenchError("the IdP did not start")
        p["idp"] = json.loads(line)["port"]

    def nginx(self, name, core, body):
        d = self.work / name
        d.mkdir()
        (d / "nginx.conf").write_text(
            f"worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;\n"
            f"events {{ worker_connections 16384; }}\n"
            f"http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};{body}\n}}\n")
        return self.procs.start(f"nginx-{name}", ["nginx", "-p", d, "-c", d / "nginx.conf"],
                                core, stop_signal=signal.SIGQUIT)

    def start_apache(self):
        p = self.ports
        d = self.work / "apache"
        d.mkdir()
        user = ""
        if os.geteuid() == 0:
            user = "User www-data\nGroup www-data\n"
        mods = "\n".join(
            f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so"
            for m in ["mpm_event", "authn_core", "authz_core", "proxy", "proxy_http",
                      "auth_openidc"])
        (d / "apache2.conf").write_text(f"""ServerRoot {d}
Listen 127.0.0.1:{p['apache']}
ServerName 127.0.0.1
PidFile {d}/apache.pid
DefaultRuntimeDir {d}
Mutex file:{d} default
ErrorLog {d}/error.log
LogLevel warn
{user}{mods}
# One process with one pool of 128 threads (more than wrk's 64 connections; one core).
StartServers 1
ServerLimit 1
ThreadLimit 128
ThreadsPerChild 128
MinSpareThreads 1
MaxSpareThreads 128
MaxRequestWorkers 128
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60

OIDCProviderMetadataURL http://127.0.0.2:{p['idp']}/.well-known/openid-configuration
OIDCClientID apache
OIDCClientSecret apache-secret
OIDCRedirectURI http://127.0.0.1:{p['apache']}/redirect_uri
OIDCCryptoPassphrase {secrets.token_urlsafe(32)}
OIDCScope "openid email profile groups"
OIDCPKCEMethod S256
OIDCSessionType server-cache
OIDCCacheType redis
OIDCRedisCacheServer 127.0.0.1:{p['redis']}
OIDCSessionInactivityTimeout 86400
OIDCSessionMaxDuration 86400
OIDCPassClaimsAs headers
OIDCPassIDTokenAs serialized

<Location />
  AuthType openid-connect
  Require claim groups:admins
</Location>
ProxyPass /redirect_uri !
ProxyPass / http://127.0.0.1:{p['upstream']}/
""")
        self.apache = self.procs.start(
            "apache", ["apache2", "-f", d / "apache2.conf", "-DFOREGROUND"], PROXY_CORE)

    def gatehouse_config(self, name, port, admin, routes: str) -> Path:
        path = self.work / f"{name}.yaml"
        path.write_text(f"""address: 127.0.0.1:{port}
insecure_server: true
metrics_address: 127.0.0.1:{admin}
threads: 1
log_level: warn
shutdown_grace_period: 1s
idp_provider_url: http://127.0.0.2:{self.ports['idp']}
idp_client_id: bench
idp_client_secret: bench-secret
cookie_secret: {self.cookie_secret}
session_store: redis://127.0.0.1:{self.ports['redis']}
pass_identity_headers: true
jwt_claims_headers: [email, groups]
routes:
{routes}""")
        return path

    def bench_routes(self, port) -> str:
        up = self.ports["upstream"]
        return (f"  - from: http://bench.test\n    to: http://127.0.0.1:{up}\n"
                f"    allow_public_unauthenticated_access: true\n"
                f"  - from: http://127.0.0.1:{port}\n    to: http://127.0.0.1:{up}\n"
                f"    allowed_groups: [admins]\n")

    def start_gatehouse(self, name, port, admin, routes=None):
        config = self.gatehouse_config(name, port, admin, routes or self.bench_routes(port))
        started = time.monotonic()
        proc = self.procs.start(
            name,
            [self.gatehouse, "run", "-c", config, "--pid-file", self.work / f"{name}.pid",
             "--upgrade-sock", self.work / f"{name}.sock"],
            PROXY_CORE, stop_signal=signal.SIGINT,
        )
        wait_until(lambda: http_get(f"http://127.0.0.1:{admin}/readyz")[0] == 200,
                   f"{name} /readyz", self.procs, interval=0.005)
        proc.ready_seconds = time.monotonic() - started
        proc.rss_ready_kib = rss_kib(proc.pid)
        proc.config = config
        proc.admin = admin
        return proc

    # ---- sessions

    def login(self):
        p = self.ports
        self.cookies["gatehouse"] = run(
            ["node", "loadtest/login.mjs", f"http://127.0.0.1:{p['gh']}/", "alice", "alice"],
            core=CLIENT_CORE, timeout=60).stdout.strip()
        self.cookies["apache"] = run(
            ["node", "loadtest/login.mjs", f"http://127.0.0.1:{p['apache']}/", "alice", "alice",
             "mod_auth_openidc_session"], core=CLIENT_CORE, timeout=60).stdout.strip()
        self.sessions_in_redis += 1

    def mint(self, count, keep=True) -> Path:
        """`count` more real-format sessions (copies of the logged-in one, fresh tickets);
        their cookies one per line in a new file (or discarded)."""
        self.cold_batch += 1
        path = self.work / f"cold-{self.cold_batch}.txt" if keep else Path(os.devnull)
        with open(path, "w") as out:
            result = subprocess.run(
                ["taskset", "-c", CLIENT_CORE, self.gatehouse, "bench-clone-session",
                 "-c", self.cold.config, "--cookie", self.cookies["gatehouse"],
                 "--count", str(count)],
                stdout=out, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=3600)
        if result.returncode != 0:
            raise BenchError(f"bench-clone-session failed:\n{result.stderr}")
        self.sessions_in_redis += count
        return path

    # ---- lanes

    def lane_target(self, lane):
        """(url, headers) of a lane's requests."""
        p = self.ports
        host = ["Host: bench.test"]
        return {
            "direct": (f"http://127.0.0.1:{p['upstream']}/", host),
            "nginx-proxy": (f"http://127.0.0.1:{p['nginx']}/", host),
            "nginx-auth_request": (f"http://127.0.0.1:{p['nginx_auth']}/",
                                   [f"Cookie: bench_session={self.check_token}"]),
            "apache-oidc": (f"http://127.0.0.1:{p['apache']}/",
                            [f"Cookie: {self.cookies['apache']}"]),
            "gatehouse-public": (f"http://127.0.0.1:{p['gh']}/", host),
            "gatehouse-auth": (f"http://127.0.0.1:{p['gh']}/",
                               [f"Cookie: {self.cookies['gatehouse']}"]),
            "gatehouse-auth-cold": (f"http://127.0.0.1:{p['cold']}/", []),
        }[lane]

    def lane_server(self, lane):
        """The process (group) doing a lane's work on the proxy core (direct: the upstream)."""
        return {"direct": self.upstream, "nginx-proxy": self.nginx_proxy,
                "nginx-auth_request": self.nginx_proxy, "apache-oidc": self.apache,
                "gatehouse-public": self.gh, "gatehouse-auth": self.gh,
                "gatehouse-auth-cold": self.cold}[lane]

    def verify_lanes(self):
        """Each lane answers the upstream's body with a session, and refuses without one."""
        for lane in LANES:
            url, headers = self.lane_target(lane)
            if lane == "gatehouse-auth-cold":
                headers = [f"Cookie: {self.cookies['gatehouse']}"]
            hdrs = dict(h.split(": ", 1) for h in headers)
            status, body = http_get(url, hdrs)
            if status != 200 or body != UPSTREAM_BODY:
                raise BenchError(f"{lane}: expected 200 from the upstream, got {status}: "
                                 f"{body[:300]}")
            if lane in ("direct", "nginx-proxy", "gatehouse-public"):
                continue
            status, _ = http_get(url)
            if status not in (302, 401):
                raise BenchError(f"{lane}: without a session expected 302 or 401, got {status}")

    def upstream_requests(self) -> int:
        status, text = http_get(f"http://127.0.0.1:{self.ports['upstream']}/.bench/status")
        if status != 200:
            raise BenchError(f"upstream status page: {status}")
        return int(text.splitlines()[2].split()[2])

    def run_lane(self, lane, secs, cold_file=None) -> dict:
        url, headers = self.lane_target(lane)
        script = env = None
        if lane == "gatehouse-auth-cold":
            script = str(self.work / "cold.lua")
            env = {"BENCH_COOKIES": str(cold_file)}
            hits_before = int(redis_info(self.ports["redis"], "stats")["keyspace_hits"])
        server = self.lane_server(lane).pid
        seen_before = self.upstream_requests()
        cpu_before = cpu_seconds(server)
        res = wrk(url, secs, headers, script, env)
        cpu = cpu_seconds(server) - cpu_before
        # The status request itself is counted too.
        res["upstream_seen"] = self.upstream_requests() - seen_before - 1
        # CPU the server used (its whole process group), per request and as a share of a core.
        res["cpu_us_per_request"] = cpu * 1e6 / max(res["requests"], 1)
        res["cpu_share"] = cpu / secs
        if lane == "gatehouse-auth-cold":
            hits = int(redis_info(self.ports["redis"], "stats")["keyspace_hits"]) - hits_before
            res["store_reads_per_request"] = hits / max(res["requests"], 1)
            res["sessions_available"] = sum(1 for _ in open(cold_file))
        return res

    def cold_sessions_for(self, secs, rate_estimate) -> Path:
        """A fresh batch of sessions, more than a run of `secs` can use."""
        return self.mint(int(rate_estimate * secs * 2) + 10 * CONNS + 1000)


# --------------------------------------------------------------------------------------
# Checks


def lane_problems(lane, res) -> list[str]:
    problems = []
    if res["requests"] <= 0:
        problems.append("no requests completed")
    if res["errors"]:
        problems.append(f"{res['errors']} socket errors")
    if res["non2xx3xx"]:
        problems.append(f"{res['non2xx3xx']} non-2xx/3xx responses")
    # Every completed request must have reached the upstream (a 3xx/401 would not have).
    if res["upstream_seen"] < res["requests"]:
        problems.append(f"only {res['upstream_seen']} of {res['requests']} requests reached "
                        "the upstream (non-2xx answers)")
    if lane == "gatehouse-auth-cold":
        if res["requests"] + CONNS > res["sessions_available"]:
            problems.append("ran out of fresh sessions (some were reused)")
        if res["store_reads_per_request"] < 0.99:
            problems.append(f"only {res['store_reads_per_request']:.2f} store reads per request")
    return problems


def fixed_problems(res) -> list[str]:
    problems = []
    if res["responses"] <= 0:
        problems.append("no responses")
    if res["non2xx"]:
        problems.append(f"{res['non2xx']} non-2xx responses")
    if res["errors"]:
        problems.append(f"errors: {res['error_kinds']}")
    return problems


# --------------------------------------------------------------------------------------
# Phases


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def throughput_phase(stack: Stack, secs, warmup_secs, rounds, results):
    (stack.work / "cold.lua").write_text(COLD_LUA)
    runs = {lane: [] for lane in LANES}
    cold_rate = 5000.0
    if warmup_secs:
        log(f"warm-up: {warmup_secs}s per lane")
        for lane in LANES:
            cold_file = None
            if lane == "gatehouse-auth-cold":
                cold_file = stack.cold_sessions_for(warmup_secs, 20000)
            res = stack.run_lane(lane, warmup_secs, cold_file)
            if lane == "gatehouse-auth-cold":
                cold_rate = res["rps"]
    for r in range(rounds):
        order = LANES[r % len(LANES):] + LANES[:r % len(LANES)]
        for lane in order:
            cold_file = None
            if lane == "gatehouse-auth-cold":
                cold_file = stack.cold_sessions_for(secs, cold_rate)
            res = stack.run_lane(lane, secs, cold_file)
            if lane == "gatehouse-auth-cold":
                cold_rate = max(cold_rate, res["rps"])
            res["round"] = r + 1
            res["problems"] = lane_problems(lane, res)
            runs[lane].append(res)
            log(f"  round {r + 1} {lane:20} {res['rps']:10.0f} req/s  p50 {res['p50_ms']:.3f} ms"
                f"  p99 {res['p99_ms']:.3f} ms" + (f"  PROBLEM: {res['problems']}"
                                                  if res["problems"] else ""))
    summary = {}
    for lane in LANES:
        rs = runs[lane]
        summary[lane] = {
            "rps": median(r["rps"] for r in rs),
            "rps_min": min(r["rps"] for r in rs),
            "rps_max": max(r["rps"] for r in rs),
            "p50_ms": median(r["p50_ms"] for r in rs),
            "p99_ms": median(r["p99_ms"] for r in rs),
            "cpu_us_per_request": median(r["cpu_us_per_request"] for r in rs),
            "cpu_share": median(r["cpu_share"] for r in rs),
            "problems": sorted({p for r in rs for p in r["problems"]}),
        }
    public, nginx = summary["gatehouse-public"]["rps"], summary["nginx-proxy"]["rps"]
    for lane in LANES:
        summary[lane]["vs_gatehouse_public"] = summary[lane]["rps"] / public
        summary[lane]["vs_nginx_proxy"] = summary[lane]["rps"] / nginx
    results["throughput"] = {"runs": runs, "median": summary}


def fixed_load_phase(stack: Stack, secs, rounds, results):
    rate = results["throughput"]["median"]["gatehouse-public"]["rps"] / 2
    lanes = [lane for lane in LANES if lane != "gatehouse-auth-cold"]
    log(f"fixed load: {rate:.0f} req/s (half of gatehouse-public's max), {secs}s per lane")
    runs = {lane: [] for lane in lanes}
    for r in range(rounds):
        for lane in lanes[r % len(lanes):] + lanes[:r % len(lanes)]:
            url, headers = stack.lane_target(lane)
            res = oha(url, secs, rate, headers)
            res["problems"] = fixed_problems(res)
            runs[lane].append(res)
            log(f"  round {r + 1} {lane:20} {res['achieved_rps']:10.0f} req/s  "
                f"p50 {res['p50_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms"
                + (f"  PROBLEM: {res['problems']}" if res["problems"] else ""))
    summary = {}
    for lane in lanes:
        rs = runs[lane]
        achieved = median(r["achieved_rps"] for r in rs)
        summary[lane] = {
            "achieved_rps": achieved,
            "p50_ms": median(r["p50_ms"] for r in rs),
            "p99_ms": median(r["p99_ms"] for r in rs),
            "saturated": achieved < 0.95 * rate,
            "problems": sorted({p for r in rs for p in r["problems"]}),
        }
    for lane in lanes:
        summary[lane]["p50_added_ms"] = summary[lane]["p50_ms"] - summary["direct"]["p50_ms"]
        summary[lane]["p99_added_ms"] = summary[lane]["p99_ms"] - summary["direct"]["p99_ms"]
    results["fixed_load"] = {
        "rate": rate, "secs": secs, "tool": "oha (open loop, --latency-correction)",
        "runs": runs, "median": summary,
        "excluded": {"gatehouse-auth-cold": "oha sends the same headers on every request"},
    }


def many_routes(stack: Stack, port, count) -> str:
    """`count` routes: the measured public route on bench.test, 99 more prefixes on that host
    (when count allows) and the rest on other hosts, 10 prefixes each, with group policies."""
    up = stack.ports["upstream"]
    routes = [f"  - from: http://bench.test\n    prefix: /\n    to: http://127.0.0.1:{up}\n"
              f"    allow_public_unauthenticated_access: true\n"]
    same_host = min(99, count - 1) if count > 100 else 0
    for i in range(same_host):
        routes.append(f"  - from: http://bench.test\n    prefix: /api-{i}\n"
                      f"    to: http://127.0.0.1:{up}\n    allowed_groups: [admins]\n")
    i = 0
    while len(routes) < count - 1:
        routes.append(f"  - from: http://svc-{i // 10}.bench.test\n    prefix: /p{i % 10}\n"
                      f"    to: http://127.0.0.1:{up}\n"
                      f"    allowed_groups: [admins, team-{i % 50}]\n")
        i += 1
    routes.append(f"  - from: http://reload.test\n    allow_public_unauthenticated_access: true\n"
                  f"    response:\n      status: 200\n      body: generation-0\n")
    return "".join(routes)


def reloads_total(admin) -> float:
    status, text = http_get(f"http://127.0.0.1:{admin}/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith("gatehouse_config_reloads_total") and 'result="success"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def measure_reload(stack: Stack, proc, times) -> list[float]:
    """Seconds from rewriting the config (a changed route) to the reload being counted."""
    seconds = []
    config = proc.config
    for n in range(1, times + 1):
        before = reloads_total(proc.admin)
        text = re.sub(r"body: generation-\d+", f"body: generation-{n}", config.read_text())
        tmp = config.with_suffix(".tmp")
        tmp.write_text(text)
        started = time.monotonic()
        os.replace(tmp, config)
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: reloads_total(proc.admin) > before, "config reload", stack.procs,
                   timeout=120, interval=0.005)
        seconds.append(time.monotonic() - started)
        # The file watcher may reload the same change once more: wait until that is over.
        settled = reloads_total(proc.admin)
        while True:
            time.sleep(1.2)
            now = reloads_total(proc.admin)
            if now == settled:
                break
            settled = now
    return seconds


def routes_phase(stack: Stack, secs, rounds, scale, results):
    log(f"scale: 10 vs {scale['routes']} routes")
    instances = {}
    for count in (10, scale["routes"]):
        port, admin = free_port(), free_port()
        proc = stack.start_gatehouse(f"routes-{count}", port, admin,
                                     many_routes(stack, port, count))
        instances[count] = (proc, port)
    out = {}
    for count, (proc, port) in instances.items():
        out[count] = {"ready_seconds": proc.ready_seconds, "runs": []}
    url = {c: f"http://127.0.0.1:{port}/" for c, (_, port) in instances.items()}
    for count in instances:
        wrk(url[count], 1, ["Host: bench.test"])
    for r in range(rounds):
        for count in instances:
            seen = stack.upstream_requests()
            res = wrk(url[count], secs, ["Host: bench.test"])
            res["upstream_seen"] = stack.upstream_requests() - seen - 1
            res["problems"] = lane_problems("routes", res)
            out[count]["runs"].append(res)
            log(f"  {count:6} routes {res['rps']:10.0f} req/s  p99 {res['p99_ms']:.3f} ms"
                + (f"  PROBLEM: {res['problems']}" if res["problems"] else ""))
    for count, (proc, _) in instances.items():
        o = out[count]
        o["rps"] = median(r["rps"] for r in o["runs"])
        o["p99_ms"] = median(r["p99_ms"] for r in o["runs"])
        o["reload_seconds"] = measure_reload(stack, proc, scale["reloads"])
        o["reload_seconds_median"] = median(o["reload_seconds"])
        o["problems"] = sorted({p for r in o["runs"] for p in r["problems"]})
        log(f"  {count:6} routes: ready in {o['ready_seconds']:.3f}s, reload "
            f"{o['reload_seconds_median']:.3f}s")
    small, big = out[10], out[scale["routes"]]
    results["scale_routes"] = {
        "counts": [10, scale["routes"]], "by_count": {str(k): v for k, v in out.items()},
        "throughput_ratio": big["rps"] / small["rps"],
    }
    return instances[10]


def sessions_phase(stack: Stack, secs, scale, cold_rate, results):
    target = scale["sessions"]
    log(f"scale: {target} sessions in Redis, cold lookups")
    fresh = int(cold_rate * secs * 1.5) + 10 * CONNS + 1000
    filler = target - stack.sessions_in_redis - fresh
    started = time.monotonic()
    if filler > 0:
        stack.mint(filler, keep=False)
    cold_file = stack.mint(fresh)
    mint_seconds = time.monotonic() - started
    keys = int(redis_cli(stack.ports["redis"], "dbsize").strip())
    memory = redis_info(stack.ports["redis"], "memory")
    res = stack.run_lane("gatehouse-auth-cold", secs, cold_file)
    res["problems"] = lane_problems("gatehouse-auth-cold", res)
    log(f"  {stack.sessions_in_redis} sessions: {res['rps']:.0f} req/s  p50 {res['p50_ms']:.3f} ms"
        f"  p99 {res['p99_ms']:.3f} ms" + (f"  PROBLEM: {res['problems']}"
                                          if res["problems"] else ""))
    results["scale_sessions"] = {
        "sessions": stack.sessions_in_redis, "redis_keys": keys,
        "redis_used_memory_bytes": int(memory.get("used_memory", 0)),
        "mint_seconds": mint_seconds, "mint_count": max(filler, 0) + fresh,
        "cold": res, "problems": res["problems"],
    }


def group_rss_kib(pgid) -> int:
    """RSS of every process in process group `pgid` (nginx: master + worker)."""
    total = 0
    for fields in group_stats(pgid):
        try:
            total += rss_kib(int(fields[0]))
        except (OSError, BenchError):
            continue
    return total


def hold_connections(stack: Stack, port, count, measure) -> tuple[int, int]:
    """Opens `count` idle keep-alive connections (one request each) to `port`, calls
    `measure()` while they are open; returns (connections open, measure())."""
    holder = stack.procs.start(
        "hold-conns",
        [sys.executable, "loadtest/hold_conns.py", "127.0.0.1", port, count, "bench.test"],
        CLIENT_CORE, stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    ready, _, _ = select.select([holder.stdout], [], [], 120)
    line = holder.stdout.readline() if ready else b""
    if not line:
        stack.procs.check_alive()
        raise BenchError("hold_conns.py did not report")
    held = json.loads(line)
    time.sleep(0.5)
    value = measure()
    holder.stdin.close()
    stack.procs.stop(holder)
    return held["open"], value


def rss_phase(stack: Stack, instance, scale, results):
    proc, port = instance
    count = scale["connections"]
    log(f"scale: RSS idle and with {count} idle keep-alive connections")
    idle = rss_kib(proc.pid)
    held, loaded = hold_connections(stack, port, count, lambda: rss_kib(proc.pid))
    # The same for nginx as a plain proxy, for scale.
    nginx = stack.nginx_proxy.pid
    nginx_idle = group_rss_kib(nginx)
    nginx_held, nginx_loaded = hold_connections(stack, stack.ports["nginx"], count,
                                                lambda: group_rss_kib(nginx))
    problems = [f"only {n} of {count} connections to {who} opened"
                for who, n in (("gatehouse", held), ("nginx", nginx_held)) if n < count]
    results["scale_rss"] = {
        "rss_at_start_kib": proc.rss_ready_kib, "rss_idle_kib": idle, "connections": held,
        "rss_with_connections_kib": loaded, "kib_per_connection": (loaded - idle) / max(held, 1),
        "nginx_rss_idle_kib": nginx_idle, "nginx_rss_with_connections_kib": nginx_loaded,
        "nginx_kib_per_connection": (nginx_loaded - nginx_idle) / max(nginx_held, 1),
        "problems": problems,
    }
    log(f"  gatehouse RSS at start {proc.rss_ready_kib} KiB, idle after load {idle} KiB, with "
        f"{held} connections {loaded} KiB; nginx {nginx_idle} -> {nginx_loaded} KiB")


# --------------------------------------------------------------------------------------
# Report


def machine_info() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    os_name = ""
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": os.uname().release, "os": os_name,
            "memory_gib": round(int(mem) / 1048576, 1)}


def versions(gatehouse) -> dict:
    def first_line(argv, stderr=False):
        r = run(argv, check=False)
        text = (r.stderr if stderr else r.stdout) or r.stdout or r.stderr
        return text.strip().splitlines()[0] if text.strip() else "?"

    def deb(pkg):
        return run(["dpkg-query", "-W", "-f=${Version}", pkg], check=False).stdout.strip() or "?"

    git = run(["git", "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], check=False).stdout
    return {
        "gatehouse": first_line([gatehouse, "--version"]) + f" (git {git}{'+dirty' if dirty else ''})",
        "nginx": first_line(["nginx", "-v"], stderr=True),
        "apache": first_line(["apache2", "-v"]),
        "mod_auth_openidc": deb("libapache2-mod-auth-openidc"),
        "wrk": first_line(["wrk", "-v"]),
        "oha": first_line([oha_bin(), "--version"]),
        "redis": first_line(["redis-server", "--version"]),
        "node": first_line(["node", "--version"]),
    }


def fmt_ms(v):
    if v is None:
        return "–"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def fmt_rps(v):
    return "–" if v is None else f"{v:,.0f}"


TARGETS = [
    ("gatehouse-auth ≥ 0.90 × gatehouse-public",
     lambda t, f: (t["gatehouse-auth"]["vs_gatehouse_public"], 0.90, ">=")),
    ("gatehouse-auth ≥ 1.0 × nginx-proxy",
     lambda t, f: (t["gatehouse-auth"]["vs_nginx_proxy"], 1.0, ">=")),
    ("gatehouse-auth ≥ 10 × apache-oidc",
     lambda t, f: (t["gatehouse-auth"]["rps"] / t["apache-oidc"]["rps"], 10, ">=")),
    ("gatehouse-auth p99 ≤ 1/10 of apache-oidc's",
     lambda t, f: (t["gatehouse-auth"]["p99_ms"] / t["apache-oidc"]["p99_ms"], 0.1, "<=")),
    ("gatehouse-auth ≥ 2 × nginx-auth_request",
     lambda t, f: (t["gatehouse-auth"]["rps"] / t["nginx-auth_request"]["rps"], 2, ">=")),
    ("gatehouse-auth: added p99 over direct < 1 ms at half load",
     lambda t, f: (f["gatehouse-auth"]["p99_added_ms"], 1.0, "<")),
    ("gatehouse-public: added p99 over direct < 1 ms at half load",
     lambda t, f: (f["gatehouse-public"]["p99_added_ms"], 1.0, "<")),
]

LANE_NOTES = {
    "direct": "wrk straight to the upstream (nginx `return 200`, 20-byte body): the floor",
    "nginx-proxy": "nginx plain reverse proxy, upstream keep-alive, no auth",
    "nginx-auth_request": "nginx `auth_request` subrequest (keep-alive) to a check server in the "
                          "same nginx that compares a cookie to a fixed value: the forward-auth "
                          "hop with the cheapest possible check (no crypto, no store), so an "
                          "upper bound for oauth2-proxy-style setups",
    "apache-oidc": "Apache (event MPM, one process, 128 threads) + mod_auth_openidc: session "
                   "from a real login through Apache's redirect flow at the same IdP, "
                   "`server-cache` sessions in the same Redis, `Require claim groups:admins`, "
                   "claims and the ID token passed as headers. mod_auth_openidc reads Redis on "
                   "every request (two GETs here) over one connection per process behind a "
                   "global mutex, so with one process its throughput is bound by Redis round "
                   "trips, not by its CPU (see the CPU-use column)",
    "gatehouse-public": "route with `allow_public_unauthenticated_access`",
    "gatehouse-auth": "session cookie from a real login, `allowed_groups: [admins]`, identity "
                      "JWT + claim headers (email, groups); sessions in Redis, warm caches",
    "gatehouse-auth-cold": "every request a different session, never seen before by that "
                           "gatehouse process: copies of a real login's session stored under "
                           "fresh tickets (`gatehouse bench-clone-session`), a new batch per "
                           "run, cookies cycled by a wrk Lua script; so every request reads "
                           "Redis, opens the record, decides the policy and signs a new JWT",
}


def report_md(results) -> str:
    t = results["throughput"]["median"]
    f = results["fixed_load"]["median"]
    m = results["machine"]
    cfg = results["settings"]
    lines = [
        f"# gatehouse benchmark — {results['date']}",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu']}, kernel {m['kernel']}, {m['os']}, "
        f"{m['memory_gib']} GiB. Load average before/after: {results['loadavg_before']} / "
        f"{results['loadavg_after']}.",
        "",
        "Shared machine: other jobs used the same cores during the run, so absolute numbers are "
        "noisy; ratios from the same run are what to compare. The range column shows the "
        "spread between rounds."
        if not results["smoke"] else "**Smoke run** (harness check, ~1 s per lane): the "
        "numbers mean nothing.",
        "",
        f"Proxy under test pinned to core {PROXY_CORE} (one worker); wrk/oha, the upstream, "
        f"Redis and the IdP on core {CLIENT_CORE}. wrk -t1 -c{CONNS} -d{cfg['secs']}s, "
        f"HTTP/1.1 keep-alive, {cfg['warmup_secs']}s warm-up per lane, {cfg['rounds']} rounds "
        "alternating the lanes; medians.",
        "",
        "## Throughput (closed loop)",
        "",
        "| lane | req/s | range | p50 ms | p99 ms | × gatehouse-public | × nginx-proxy "
        "| server CPU µs/req | server CPU use |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lane in LANES:
        s = t[lane]
        flag = " ⚠" if s["problems"] else ""
        lines.append(
            f"| {lane}{flag} | {fmt_rps(s['rps'])} | {fmt_rps(s['rps_min'])}–"
            f"{fmt_rps(s['rps_max'])} | {fmt_ms(s['p50_ms'])} | {fmt_ms(s['p99_ms'])} | "
            f"{s['vs_gatehouse_public']:.2f} | {s['vs_nginx_proxy']:.2f} | "
            f"{s['cpu_us_per_request']:.0f} | {s['cpu_share'] * 100:.0f}% |")
    lines += [
        "",
        "Server CPU: user + system time of the lane's server processes (for direct: the "
        "upstream) during the run, per completed request, and as a share of one core. It "
        "excludes Redis (apache-oidc and gatehouse-auth-cold read it) and, for direct, wrk. "
        "A server well below 100% of its core was waiting: for CPU that other processes on a "
        "shared machine took, for the client/upstream core, or for Redis or a lock. CPU per "
        "request is the steadier figure when the machine is shared.",
    ]
    fl = results["fixed_load"]
    lines += [
        "",
        f"## Latency at a fixed load: {fl['rate']:,.0f} req/s (half of gatehouse-public's max)",
        "",
        f"{fl['tool']}, {CONNS} connections, {fl['secs']}s per lane, {cfg['rounds']} rounds, "
        "medians. \"added\" = lane minus direct. gatehouse-auth-cold is not in this table: "
        "oha cannot vary the cookie per request.",
        "",
        "| lane | achieved req/s | p50 ms | p99 ms | p50 added ms | p99 added ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for lane, s in f.items():
        note = " (saturated: cannot sustain this rate)" if s["saturated"] else ""
        flag = " ⚠" if s["problems"] else ""
        lines.append(
            f"| {lane}{flag}{note} | {fmt_rps(s['achieved_rps'])} | {fmt_ms(s['p50_ms'])} | "
            f"{fmt_ms(s['p99_ms'])} | {fmt_ms(s['p50_added_ms'])} | "
            f"{fmt_ms(s['p99_added_ms'])} |")
    lines += ["", "## Targets (BENCH.md)", "", "| target | measured | met |", "|---|---:|:-:|"]
    for name, fn in TARGETS:
        value, bound, op = fn(t, f)
        met = {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]
        lines.append(f"| {name} | {value:.3f} | {'yes' if met else 'no'} |")
    if "scale_routes" in results:
        sr = results["scale_routes"]
        small, big = (sr["by_count"][str(c)] for c in sr["counts"])
        lines += [
            "", "## Scale", "",
            "| check | result |", "|---|---|",
            f"| routes: {sr['counts'][0]} vs {sr['counts'][1]} (public route, wrk as above) | "
            f"{fmt_rps(small['rps'])} vs {fmt_rps(big['rps'])} req/s = "
            f"**{sr['throughput_ratio']:.2f}×**; p99 {fmt_ms(small['p99_ms'])} vs "
            f"{fmt_ms(big['p99_ms'])} ms |",
            f"| config load (start → /readyz 200) | {small['ready_seconds']:.3f} s vs "
            f"**{big['ready_seconds']:.3f} s** |",
            f"| reload (config rewritten + SIGHUP → reload counted; median of "
            f"{len(big['reload_seconds'])}) | {small['reload_seconds_median']:.3f} s vs "
            f"**{big['reload_seconds_median']:.3f} s** |",
        ]
        if "scale_sessions" in results:
            ss = results["scale_sessions"]
            c = ss["cold"]
            lines.append(
                f"| {ss['sessions']:,} sessions in Redis ({ss['redis_used_memory_bytes'] / 2**20:,.0f}"
                f" MiB), cold lookups (every request a new session) | {fmt_rps(c['rps'])} req/s, "
                f"p50 {fmt_ms(c['p50_ms'])} ms, **p99 {fmt_ms(c['p99_ms'])} ms** (cold lane in "
                f"the table above: p99 {fmt_ms(t['gatehouse-auth-cold']['p99_ms'])} ms) |")
        if "scale_rss" in results:
            rs = results["scale_rss"]
            lines += [
                f"| RSS idle ({sr['counts'][0]} routes): at start / after its wrk runs | "
                f"{rs['rss_at_start_kib'] / 1024:.1f} MiB / {rs['rss_idle_kib'] / 1024:.1f} MiB |",
                f"| RSS with {rs['connections']:,} idle keep-alive connections | "
                f"{rs['rss_with_connections_kib'] / 1024:.1f} MiB "
                f"({rs['kib_per_connection']:.1f} KiB per connection; nginx-proxy: "
                f"{rs['nginx_rss_idle_kib'] / 1024:.1f} → "
                f"{rs['nginx_rss_with_connections_kib'] / 1024:.1f} MiB, "
                f"{rs['nginx_kib_per_connection']:.1f} KiB per connection) |",
            ]
    problems = results["problems"]
    lines += ["", "## Checks", ""]
    lines.append("Every lane: no socket errors, no non-2xx response, every completed request "
                 "reached the upstream; cold lane: one Redis read per request, no session "
                 "reused. " + ("All passed." if not problems else "**Failed:**"))
    lines += [f"- {p}" for p in problems]
    lines += ["", "## Lanes", ""]
    lines += [f"- **{lane}**: {LANE_NOTES[lane]}" for lane in LANES]
    lines += ["", "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in results["versions"].items()]
    lines += ["", "![plot](plot.svg)", ""]
    return "\n".join(lines)


def update_readme(results, out_dir: Path):
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        log("README.md has no benchmark block; not updated")
        return
    rel = out_dir.relative_to(ROOT)
    t = results["throughput"]["median"]
    f = results["fixed_load"]["median"]
    m = results["machine"]
    block = [
        README_BEGIN,
        f"Latest `make bench` ({results['date']}, [full report]({rel}/report.md)) on "
        f"{m['nproc']} cores ({m['cpu']}, kernel {m['kernel']}), a machine shared with other "
        f"jobs (load average {results['loadavg_before'].split()[0]} before, "
        f"{results['loadavg_after'].split()[0]} after; noisy: compare ratios and CPU per "
        "request, not absolute numbers). Proxy on one pinned core, "
        f"wrk -c{CONNS} on the other; medians of {results['settings']['rounds']} rounds. "
        f"\"+p99 @ half load\" is p99 minus direct's at {results['fixed_load']['rate']:,.0f} "
        "req/s (oha, open loop). CPU µs/req: the server's CPU time per request.",
        "",
        "| lane | req/s | p50 ms | p99 ms | × gatehouse-public | × nginx-proxy | +p99 @ half load "
        "| CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lane in LANES:
        s = t[lane]
        added = f.get(lane)
        added_text = "–" if added is None else (
            "saturated" if added["saturated"] else fmt_ms(added["p99_added_ms"]) + " ms")
        block.append(f"| {lane} | {fmt_rps(s['rps'])} | {fmt_ms(s['p50_ms'])} | "
                     f"{fmt_ms(s['p99_ms'])} | {s['vs_gatehouse_public']:.2f} | "
                     f"{s['vs_nginx_proxy']:.2f} | {added_text} | "
                     f"{s['cpu_us_per_request']:.0f} |")
    block += ["", f"![benchmark plot]({rel}/plot.svg)", README_END]
    start = text.index(README_BEGIN)
    end = text.index(README_END) + len(README_END)
    readme.write_text(text[:start] + "\n".join(block) + text[end:])


# --------------------------------------------------------------------------------------
# Main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        default=os.environ.get("BENCH_SMOKE") == "1",
                        help="~1 s per lane, one round, small scale figures (harness check)")
    parser.add_argument("--only", choices=["lanes", "scale"],
                        help="run only the lanes or only the scale checks")
    parser.add_argument("--secs", type=int, help="seconds per run (default 10; smoke 1)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; smoke 1)")
    parser.add_argument("--out", help="output directory (default loadtest/results/<date>; "
                                      "smoke: a temporary directory)")
    parser.add_argument("--render", metavar="DIR",
                        help="only rewrite DIR/report.md, DIR/plot.svg and the README block "
                             "from DIR/results.json")
    args = parser.parse_args()
    if args.render:
        out_dir = Path(args.render).resolve()
        results = json.loads((out_dir / "results.json").read_text())
        (out_dir / "report.md").write_text(report_md(results))
        (out_dir / "plot.svg").write_text(plot.svg(results, LANES))
        update_readme(results, out_dir)
        return 0
    smoke = args.smoke
    secs = args.secs or (1 if smoke else 10)
    rounds = args.rounds or (1 if smoke else 3)
    warmup = 0 if smoke else 2
    scale = ({"routes": 10000, "sessions": 20000, "connections": 2000, "reloads": 1} if smoke
             else {"routes": 10000, "sessions": 1_000_000, "connections": 10000, "reloads": 3})
    gatehouse = os.environ.get("GATEHOUSE_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "gatehouse")
    gatehouse = str(Path(gatehouse).resolve())

    missing = [t for t in ["nginx", "wrk", "apache2", "redis-server", "redis-cli", "taskset",
                           "node"] if not shutil.which(t)]
    if not (APACHE_MODULES / "mod_auth_openidc.so").exists():
        missing.append("libapache2-mod-auth-openidc")
    if not Path(gatehouse).exists():
        missing.append(gatehouse)
    if not (ROOT / "idp" / "node_modules").exists():
        missing.append("idp/node_modules (cd idp && npm ci)")
    try:
        oha_bin()
    except BenchError:
        missing.append("oha (cargo install --locked oha)")
    if missing:
        log(f"bench: missing: {', '.join(missing)} (make deps installs them)")
        return 1
    if len(os.sched_getaffinity(0)) < 2 and os.cpu_count() < 2:
        log("bench: needs two cores (proxy on core 0, load generator on core 1)")
        return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < scale["connections"] + 1000:
        scale["connections"] = max(hard - 1000, 100)

    date = datetime.date.today().isoformat()
    if args.out:
        out_dir = Path(args.out).resolve()
    elif smoke:
        out_dir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-smoke-"))
    else:
        out_dir = ROOT / "loadtest" / "results" / date
    out_dir.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    os.chmod(work, 0o755)
    procs = Processes(work)

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    started = time.monotonic()
    results = {
        "date": date, "smoke": smoke, "machine": machine_info(),
        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "settings": {"secs": secs, "rounds": rounds, "warmup_secs": warmup, "connections": CONNS,
                     "proxy_core": PROXY_CORE, "client_core": CLIENT_CORE, "scale": scale},
        "versions": versions(gatehouse),
    }
    try:
        stack = Stack(work, procs, gatehouse)
        log(f"starting the stack in {work}")
        stack.start()
        stack.login()
        stack.verify_lanes()
        log(f"stack up and verified ({time.monotonic() - started:.1f}s)")
        if args.only != "scale":
            throughput_phase(stack, secs, warmup, rounds, results)
            fixed_load_phase(stack, secs, rounds, results)
        if args.only != "lanes":
            instance = routes_phase(stack, secs, rounds, scale, results)
            rss_phase(stack, instance, scale, results)
            cold = results.get("throughput", {}).get("median", {}).get("gatehouse-auth-cold")
            cold_rate = max(cold["rps"] if cold else 0, 2000 if smoke else 10000)
            sessions_phase(stack, secs, scale, cold_rate, results)
    except BenchError as e:
        log(f"bench: {e}")
        return 1
    finally:
        procs.stop_all()
        if os.environ.get("BENCH_KEEP_WORK") != "1":
            shutil.rmtree(work, ignore_errors=True)

    results["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    problems = []
    for section in ("throughput", "fixed_load"):
        for lane, s in results.get(section, {}).get("median", {}).items():
            problems += [f"{section} {lane}: {p}" for p in s.get("problems", [])]
    for section in ("scale_sessions", "scale_rss"):
        problems += [f"{section}: {p}" for p in results.get(section, {}).get("problems", [])]
    for count, o in results.get("scale_routes", {}).get("by_count", {}).items():
        problems += [f"scale_routes {count}: {p}" for p in o["problems"]]
    results["problems"] = problems

    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.only != "scale":
        (out_dir / "report.md").write_text(report_md(results))
        (out_dir / "plot.svg").write_text(plot.svg(results, LANES))
        if not smoke and not args.out:
            update_readme(results, out_dir)
    log(f"wrote {out_dir} ({results['elapsed_seconds']}s)")

    if smoke:
        checks = smoke_checks(results, out_dir, args.only)
        failed = [name for name, ok in checks if not ok]
        for name in failed:
            log(f"FAILED: {name}")
        log(f"bench-smoke: {len(checks) - len(failed)} passed, {len(failed)} failed")
        if not args.out and not failed and os.environ.get("BENCH_KEEP_WORK") != "1":
            shutil.rmtree(out_dir, ignore_errors=True)
        return 1 if failed else 0
    for p in problems:
        log(f"PROBLEM: {p}")
    return 1 if problems else 0


def smoke_checks(results, out_dir: Path, only) -> list[tuple[str, bool]]:
    checks = []
    if only != "scale":
        for lane in LANES:
            runs = results["throughput"]["runs"][lane]
            checks.append((f"lane {lane}: every request 2xx, no errors",
                           bool(runs) and all(not r["problems"] for r in runs)))
        for lane, runs in results["fixed_load"]["runs"].items():
            checks.append((f"fixed load {lane}: every response 2xx, no errors",
                           bool(runs) and all(not r["problems"] for r in runs)))
        for name in ("report.md", "results.json", "plot.svg"):
            path = out_dir / name
            checks.append((f"{name} written", path.exists() and path.stat().st_size > 0))
        try:
            ET.parse(out_dir / "plot.svg")
            checks.append(("plot.svg is well-formed XML", True))
        except (ET.ParseError, OSError):
            checks.append(("plot.svg is well-formed XML", False))
        report = (out_dir / "report.md").read_text() if (out_dir / "report.md").exists() else ""
        checks.append(("report has every lane", all(f"| {lane}" in report for lane in LANES)))
    if only != "lanes":
        sr = results.get("scale_routes", {})
        checks.append(("scale: routes measured", bool(sr) and all(
            not o["problems"] and o["reload_seconds"] for o in sr["by_count"].values())))
        checks.append(("scale: sessions measured",
                       "scale_sessions" in results and not results["scale_sessions"]["problems"]))
        checks.append(("scale: RSS measured",
                       "scale_rss" in results and not results["scale_rss"]["problems"]))
    json.loads((out_dir / "results.json").read_text())
    return checks


if __name__ == "__main__":
    sys.exit(main())
