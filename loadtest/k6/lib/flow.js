// Shared by the k6 scenarios: configuration from environment variables, and the
// browser-less sign-in (gatehouse → IdP → login and consent forms → callback) with k6's
// http module, one hop at a time so that every hop is measured and tagged.
//
// The IdP forms are those of the local test IdP (idp/server.mjs: a form posting `login` and
// `password` to …/login, then a consent form posting to …/confirm). Another IdP needs its
// own form-filling here.
import http from 'k6/http';

export const config = {
  // gatehouse's public origin (the `make run` demo by default).
  target: (__ENV.GATEHOUSE_URL || 'http://127.0.0.1:8080').replace(/\/$/, ''),
  // The IdP's origin, only used to tag its requests (any other host is tagged "other").
  idp: (__ENV.IDP_URL || 'http://127.0.0.2:8082').replace(/\/$/, ''),
  cookieName: __ENV.COOKIE_NAME || '_gatehouse',
  // user:password pairs; the first is used where one user is enough.
  users: parseUsers(__ENV.USERS || 'alice:alice,bob:bob'),
  // A user allowed on ADMIN_PATH and one denied there (mixed.js).
  admin: parseUsers(__ENV.ADMIN_USER || 'alice:alice')[0],
  nonAdmin: parseUsers(__ENV.NON_ADMIN_USER || 'bob:bob')[0],
  protectedPath: __ENV.PROTECTED_PATH || '/',
  publicPath: __ENV.PUBLIC_PATH || '/public/',
  adminPath: __ENV.ADMIN_PATH || '/admin/',
  // Programmatic login hands the token to this loopback URL; nothing needs to listen there
  // (the scenario reads the token from the redirect).
  callbackUrl: __ENV.CALLBACK_URL || 'http://127.0.0.1:8765/gatehouse-callback',
  duration: __ENV.DURATION || '20s',
  // The upstream is the demo app (demo/app.js), which answers with the request it received
  // and the verified identity assertion: the scenarios then also check what reached it.
  // Set ECHO_UPSTREAM=0 against any other upstream.
  echo: (__ENV.ECHO_UPSTREAM || '1') !== '0',
};

// An open-model scenario: RATE iterations per second for DURATION, however long each takes
// (VUs are added up to MAX_VUS when answers slow down).
config.arrivals = {
  executor: 'constant-arrival-rate',
  rate: Number(__ENV.RATE || 100),
  timeUnit: '1s',
  duration: config.duration,
  preAllocatedVUs: Number(__ENV.VUS || 20),
  maxVUs: Number(__ENV.MAX_VUS || 200),
};

/** Milliseconds from env `name`, else `fallback` (threshold overrides). */
export function ms(name, fallback) {
  return Number(__ENV[name] || fallback);
}

function parseUsers(spec) {
  return spec.split(',').filter(Boolean).map((pair) => {
    const i = pair.indexOf(':');
    if (i < 0) throw new Error(`USERS: "${pair}" is not user:password`);
    return { user: pair.slice(0, i), password: pair.slice(i + 1) };
  });
}

/** `location` resolved against `base` (absolute URL, absolute path, or relative path). */
export function resolve(base, location) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(location)) return location;
  const origin = base.match(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i)[0];
  if (location.startsWith('//')) return base.split(':')[0] + ':' + location;
  if (location.startsWith('/')) return origin + location;
  const path = base.slice(origin.length).replace(/[?#].*$/, '');
  return origin + path.replace(/[^/]*$/, '') + location;
}

/** A low-cardinality name for a URL of the sign-in flow (interaction ids, states and codes
 * stay out of the metric tags). */
export function step(url) {
  const path = url.replace(/^[a-z]+:\/\/[^/]*/i, '').replace(/[?#].*$/, '');
  if (url.startsWith(config.idp)) {
    const m = path.match(/^\/interaction\/[^/]+(?:\/(login|confirm))?$/);
    if (m) return `idp ${m[1] || 'interaction'}`;
    return `idp ${path.split('/')[1] || '/'}`;
  }
  if (url.startsWith(config.target)) {
    if (path === '/oauth2/callback') return 'gatehouse callback';
    if (path.startsWith('/.gatehouse/')) return `gatehouse ${path}`;
    return 'gatehouse app';
  }
  return 'other';
}

function unescapeHtml(s) {
  return s.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'");
}

/**
 * Opens `url` as a browser would (Accept: text/html, cookies in `jar`), follows redirects,
 * signs in at the IdP and confirms its consent page. Stops at the first page that is
 * neither a redirect nor an IdP form, or at a redirect to a URL starting with `stopAt`.
 * Returns {status, url, body, stoppedAt, hops}; status 0 means "gave up" (see body).
 */
export function signIn(url, { user, password }, { jar, stopAt, tags = {} } = {}) {
  let form = null;
  for (let hop = 1; hop <= 20; hop += 1) {
    const params = {
      jar,
      redirects: 0,
      headers: { Accept: 'text/html,application/xhtml+xml,*/*;q=0.8' },
      tags: Object.assign({ name: step(url) }, tags),
    };
    const res = form === null ? http.get(url, params) : http.post(url, form, params);
    form = null;
    if (res.status >= 300 && res.status < 400) {
      const next = resolve(url, res.headers.Location || '');
      if (stopAt && next.startsWith(stopAt)) {
        return { status: res.status, url, body: res.body, stoppedAt: next, hops: hop };
      }
      url = next;
      continue;
    }
    const body = res.body || '';
    const login = body.match(/action="([^"]*\/login)"/);
    const confirm = body.match(/action="([^"]*\/confirm)"/);
    if (login && res.status === 200 && !/Invalid username or password/.test(body)) {
      url = resolve(url, unescapeHtml(login[1]));
      form = { login: user, password };
    } else if (confirm && res.status === 200) {
      url = resolve(url, unescapeHtml(confirm[1]));
      form = {};
    } else {
      return { status: res.status, url, body, hops: hop };
    }
  }
  return { status: 0, url, body: 'too many hops', hops: 20 };
}

/** The value of gatehouse's session cookie in `jar`, or undefined. */
export function sessionCookie(jar) {
  const values = jar.cookiesForURL(config.target + '/')[config.cookieName];
  return values && values.length ? values[values.length - 1] : undefined;
}

/** Signs `who` in through a fresh cookie jar; returns the session cookie value or throws. */
export function newSession(who, tags = {}) {
  const jar = new http.CookieJar();
  const page = signIn(config.target + config.protectedPath, who, { jar, tags });
  const cookie = sessionCookie(jar);
  if (page.status !== 200 || !cookie) {
    throw new Error(`sign-in as ${who.user} failed at ${page.url}: HTTP ${page.status}\n${String(page.body).slice(0, 300)}`);
  }
  return cookie;
}

/** A bearer token from programmatic login (/.gatehouse/api/v1/login) for `who`, or throws. */
export function newBearerToken(who, tags = {}) {
  const login = `${config.target}/.gatehouse/api/v1/login?redirect_uri=${encodeURIComponent(config.callbackUrl)}`;
  const res = http.get(login, { tags: Object.assign({ name: 'gatehouse /.gatehouse/api/v1/login' }, tags) });
  if (res.status !== 200 || !res.body.startsWith('http')) {
    throw new Error(`programmatic login: HTTP ${res.status}: ${String(res.body).slice(0, 300)}`);
  }
  const jar = new http.CookieJar();
  const done = signIn(res.body.trim(), who, { jar, stopAt: config.callbackUrl, tags });
  const m = (done.stoppedAt || '').match(/[?&]gatehouse_token=([^&#]+)/);
  if (!m) {
    throw new Error(`programmatic login as ${who.user} did not reach ${config.callbackUrl}: ended at ${done.url} (HTTP ${done.status})`);
  }
  return decodeURIComponent(m[1]);
}

/** Request params carrying `cookie` as gatehouse's session cookie, in an isolated jar. */
export function withSession(cookie, params = {}) {
  return Object.assign({
    jar: new http.CookieJar(),
    cookies: { [config.cookieName]: { value: cookie, replace: true } },
  }, params);
}
