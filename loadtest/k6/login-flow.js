// The browser-less sign-in flow under load: every iteration is a new browser (empty cookie
// jar) opening a protected page, redirected to the IdP, signing in, confirming consent,
// back through gatehouse's callback to the page, which must show the verified identity.
// The whole flow's time is the `login_flow_duration` trend; each hop is tagged by step.
//
//   k6 run -e GATEHOUSE_URL=http://127.0.0.1:8080 -e IDP_URL=http://127.0.0.2:8082 \
//          -e USERS=alice:alice,bob:bob -e DURATION=20s -e VUS=4 loadtest/k6/login-flow.js
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Trend } from 'k6/metrics';
import { config, ms, sessionCookie, signIn } from './lib/flow.js';

const flowDuration = new Trend('login_flow_duration', true);

export const options = {
  scenarios: {
    logins: { executor: 'constant-vus', vus: Number(__ENV.VUS || 4), duration: config.duration },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    login_flow_duration: [`p(95)<${ms('FLOW_P95_MS', 1500)}`, `p(99)<${ms('FLOW_P99_MS', 3000)}`],
    'http_req_duration{name:gatehouse callback}': [`p(95)<${ms('CALLBACK_P95_MS', 500)}`],
    'http_req_duration{name:gatehouse app}': [`p(95)<${ms('P95_MS', 100)}`, `p(99)<${ms('P99_MS', 250)}`],
  },
};

export default function () {
  const who = config.users[exec.scenario.iterationInTest % config.users.length];
  const jar = new http.CookieJar();
  const started = Date.now();
  const page = signIn(config.target + config.protectedPath, who, { jar });
  flowDuration.add(Date.now() - started);
  check(page, {
    'signed in: 200 on the page asked for': (p) => p.status === 200 && p.url === config.target + config.protectedPath,
    'went through the IdP': (p) => p.hops >= 5,
    'session cookie set': () => Boolean(sessionCookie(jar)),
  });
  if (config.echo) {
    check(page, { 'upstream verified the identity': (p) => /verified against its JWKS/.test(p.body) });
  }
}
