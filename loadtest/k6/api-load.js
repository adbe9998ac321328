// Authenticated API load: the same protected route hammered with a session cookie (from a
// real browser-less sign-in) and with a bearer token (from programmatic login,
// /.gatehouse/api/v1/login), in two concurrent scenarios with their own thresholds.
// Every answer must be the upstream's 200 carrying a verified identity assertion. Open
// model: RATE requests/s per scenario whatever the latency, so the latency thresholds hold
// at a known load (raise RATE to find the knee; `dropped_iterations` shows when k6 could not
// keep the rate).
//
//   k6 run -e GATEHOUSE_URL=http://127.0.0.1:8080 -e IDP_URL=http://127.0.0.2:8082 \
//          -e DURATION=20s -e RATE=100 loadtest/k6/api-load.js
import http from 'k6/http';
import { check } from 'k6';
import { config, ms, newBearerToken, newSession, withSession } from './lib/flow.js';

const url = config.target + (__ENV.API_PATH || '/api/items');
const who = config.users[0];

export const options = {
  setupTimeout: '60s',
  scenarios: {
    cookie: Object.assign({ exec: 'withCookie', tags: { auth: 'cookie' } }, config.arrivals),
    bearer: Object.assign({ exec: 'withBearer', tags: { auth: 'bearer' } }, config.arrivals),
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{auth:cookie}': [`p(95)<${ms('P95_MS', 100)}`, `p(99)<${ms('P99_MS', 250)}`],
    'http_req_duration{auth:bearer}': [`p(95)<${ms('P95_MS', 100)}`, `p(99)<${ms('P99_MS', 250)}`],
  },
};

export function setup() {
  return { cookie: newSession(who), token: newBearerToken(who) };
}

let reported = 0; // per VU: the first few failures are logged with their reason

function verify(res) {
  check(res, { 'status 200': (r) => r.status === 200 });
  if (!config.echo) return;
  let seen = null;
  try { seen = res.json(); } catch (_) { /* not the upstream's JSON echo */ }
  const verified = Boolean(seen && seen.identity && seen.identity.verified);
  if (!verified && reported < 5) {
    reported += 1;
    const why = seen ? JSON.stringify(seen.identity) : `not JSON: ${String(res.body).slice(0, 200)}`;
    console.warn(`no verified identity upstream (HTTP ${res.status}): ${why}`);
  }
  const headers = (seen && seen.headers) || [];
  check(res, {
    'upstream echo received': () => seen !== null && Array.isArray(seen.headers),
    'identity assertion verified upstream': () => verified,
    'gatehouse credential not forwarded': () => seen !== null
      && !JSON.stringify(headers).includes(`${config.cookieName}=`)
      && !headers.some(([k]) => k.toLowerCase() === 'authorization'),
  });
}

export function withCookie(data) {
  verify(http.get(url, withSession(data.cookie, { headers: { Accept: 'application/json' }, tags: { name: 'api' } })));
}

export function withBearer(data) {
  verify(http.get(url, {
    jar: new http.CookieJar(),
    headers: { Accept: 'application/json', Authorization: `Bearer ${data.token}` },
    tags: { name: 'api' },
  }));
}
