// k6 soak load: a constant arrival rate (RATE requests/s for SECONDS s) of GETs to URL, each
// with one of the session cookies in COOKIES (a JSON list, from real scripted logins). Every
// answer must be 200. Run by scripts/soak.sh.
import http from 'k6/http';
import { check } from 'k6';

const cookies = JSON.parse(__ENV.COOKIES);

export const options = {
  discardResponseBodies: true,
  noCookiesReset: true,
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE),
      timeUnit: '1s',
      duration: `${__ENV.SECONDS}s`,
      preAllocatedVUs: 64,
      maxVUs: 512,
    },
  },
};

export default function () {
  const cookie = cookies[Math.floor(Math.random() * cookies.length)];
  const r = http.get(__ENV.URL, { headers: { Cookie: cookie }, redirects: 0 });
  check(r, { 'status is 200': (res) => res.status === 200 });
}
