// A sign-out storm: SESSIONS sessions (made by real sign-ins in setup) all sign out at
// once, VUS at a time, through the CSRF-protected form of the user page: GET /.gatehouse/
// (the form and its token), POST /.gatehouse/sign_out, then the old cookie must be refused
// (401 for an API client) straight away.
//
//   k6 run -e GATEHOUSE_URL=http://127.0.0.1:8080 -e IDP_URL=http://127.0.0.2:8082 \
//          -e SESSIONS=100 -e VUS=20 loadtest/k6/signout-storm.js
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { config, ms, newSession, withSession } from './lib/flow.js';

const sessions = Number(__ENV.SESSIONS || 100);

export const options = {
  setupTimeout: '180s',
  scenarios: {
    storm: {
      executor: 'shared-iterations',
      vus: Number(__ENV.VUS || 20),
      iterations: sessions,
      maxDuration: config.duration,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{name:sign_out}': [`p(95)<${ms('P95_MS', 100)}`, `p(99)<${ms('P99_MS', 250)}`],
    'http_req_duration{name:user_page}': [`p(95)<${ms('P95_MS', 100)}`, `p(99)<${ms('P99_MS', 250)}`],
    // Every session must have signed out (not merely most of them).
    'checks{step:refused}': ['rate==1'],
  },
};

export function setup() {
  const cookies = [];
  for (let i = 0; i < sessions; i += 1) {
    cookies.push(newSession(config.users[i % config.users.length], { phase: 'setup' }));
  }
  return cookies;
}

export default function (cookies) {
  const cookie = cookies[exec.scenario.iterationInTest];
  const page = http.get(`${config.target}/.gatehouse/`, withSession(cookie, {
    headers: { Accept: 'text/html' }, tags: { name: 'user_page' },
  }));
  const csrf = (page.body.match(/name="csrf" value="([^"]*)"/) || [])[1];
  check(page, { 'user page with a sign-out token': (r) => r.status === 200 && Boolean(csrf) }, { step: 'page' });
  const out = http.post(`${config.target}/.gatehouse/sign_out`, { csrf: (csrf || '').replace(/&amp;/g, '&') },
    withSession(cookie, { redirects: 0, tags: { name: 'sign_out' } }));
  check(out, { 'signed out: 302': (r) => r.status === 302 }, { step: 'sign_out' });
  const after = http.get(config.target + config.protectedPath, withSession(cookie, {
    headers: { Accept: 'application/json' },
    tags: { name: 'after_sign_out' },
    responseCallback: http.expectedStatuses(401),
  }));
  check(after, { 'old cookie refused: 401': (r) => r.status === 401 }, { step: 'refused' });
}
