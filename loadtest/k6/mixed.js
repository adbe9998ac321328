// A public/protected route mix, as real traffic looks: anonymous visitors on the public
// route, signed-in users on the protected one, an admin on the group-restricted route, a
// non-admin denied there (403 expected), and anonymous API calls to a protected route
// (401 expected). Expected denials are not failures; wrong answers are. Open model: RATE
// requests/s in all.
//
//   k6 run -e GATEHOUSE_URL=http://127.0.0.1:8080 -e IDP_URL=http://127.0.0.2:8082 \
//          -e DURATION=20s -e RATE=200 loadtest/k6/mixed.js
import http from 'k6/http';
import { check } from 'k6';
import { config, ms, newSession, withSession } from './lib/flow.js';

// kind: [share, path, who ('admin' | 'nonAdmin' | null), expected status]
const MIX = [
  ['public', 0.40, config.publicPath, null, 200],
  ['protected', 0.35, config.protectedPath, 'admin', 200],
  ['admin_allowed', 0.10, config.adminPath, 'admin', 200],
  ['admin_denied', 0.10, config.adminPath, 'nonAdmin', 403],
  ['anonymous_api', 0.05, config.protectedPath, null, 401],
];

const latency = [`p(95)<${ms('P95_MS', 100)}`, `p(99)<${ms('P99_MS', 250)}`];
export const options = {
  setupTimeout: '60s',
  scenarios: {
    mix: Object.assign({}, config.arrivals, { rate: Number(__ENV.RATE || 200) }),
  },
  thresholds: Object.assign({
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  }, Object.fromEntries(MIX.map(([kind]) => [`http_req_duration{kind:${kind}}`, latency]))),
};

export function setup() {
  return { admin: newSession(config.admin), nonAdmin: newSession(config.nonAdmin) };
}

export default function (sessions) {
  let roll = Math.random();
  const [kind, , path, who, expected] = MIX.find(([, share]) => (roll -= share) < 0) || MIX[0];
  const base = {
    headers: { Accept: kind === 'anonymous_api' ? 'application/json' : 'text/html' },
    tags: { kind, name: kind },
    responseCallback: http.expectedStatuses(expected),
  };
  const params = who ? withSession(sessions[who], base) : Object.assign({ jar: new http.CookieJar() }, base);
  const res = http.get(config.target + path, params);
  check(res, { [`${kind}: ${expected}`]: (r) => r.status === expected });
  if (config.echo && expected === 200) {
    check(res, { [`${kind}: answered by the upstream`]: (r) => r.body.includes('gatehouse demo app') });
  }
}
