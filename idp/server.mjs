#!/usr/bin/env node
// gatehouse's local OpenID Provider, for the demo and the tests ONLY.
//
// A real OP built on the npm package `oidc-provider` (OpenID Certified): authorization code
// + PKCE (S256, required), refresh tokens, userinfo, RP-initiated logout, RFC 9207 `iss`.
// The users have their username as password, and the test controls under /__test/ are
// always on with no authentication: anyone who can reach this server can rotate its keys,
// rewrite its users and break its token endpoint. Never expose it beyond loopback.
//
//   node idp/server.mjs --host 127.0.0.2 --port 0 --clients FILE
//        [--users FILE] [--access-ttl S] [--id-token-ttl S] [--refresh-ttl S]
//        [--refresh-rotation always|default|never] [--exit-with-parent]
//
// When ready it prints ONE line on stdout, {"issuer":"http://HOST:PORT","port":PORT};
// anything else goes to stderr. SIGTERM/SIGINT stop it. See README.md for the contracts.

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';

import Provider, { errors } from 'oidc-provider';

import { SharedMemoryAdapter } from './lib/memory-store.mjs';
import {
  consoleToStderr, escapeHtml, hostForUrl, listen, onShutdown, parseCli, parseJsonObject,
  printReady, readBody, sendHtml, sendJson,
} from './lib/util.mjs';

consoleToStderr();

const USAGE = `usage: node idp/server.mjs --clients FILE [--host 127.0.0.2] [--port 0]
       [--users FILE] [--access-ttl SECONDS] [--id-token-ttl SECONDS] [--refresh-ttl SECONDS]
       [--refresh-rotation always|default|never] [--exit-with-parent]`;

const opts = parseCli(process.argv.slice(2), {
  host: { type: 'string', default: '127.0.0.2' },
  port: { type: 'number', default: 0 },
  clients: { type: 'string', required: true },
  users: { type: 'string' },
  'access-ttl': { type: 'number', default: 3600 },
  'id-token-ttl': { type: 'number', default: 3600 },
  'refresh-ttl': { type: 'number', default: 14 * 24 * 3600 },
  'refresh-rotation': { type: 'string', default: 'always' },
  'exit-with-parent': { type: 'boolean', default: false },
}, USAGE);

if (!['always', 'default', 'never'].includes(opts['refresh-rotation'])) {
  process.stderr.write(`--refresh-rotation must be always, default or never\n${USAGE}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------
// Users: username -> claims. `sub` is the username; the password is the username unless a
// users file gives a `password`.

const DEFAULT_USERS = {
  alice: { name: 'Alice Admin', email: 'alice@example.com', email_verified: true, groups: ['admins', 'devs'] },
  bob: { name: 'Bob Builder', email: 'bob@example.com', email_verified: true, groups: ['devs'] },
  carol: { name: 'Carol Unverified', email: 'carol@example.com', email_verified: false, groups: [] },
};

function loadJson(file, what) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    process.stderr.write(`cannot read ${what} file ${file}: ${err.message}\n`);
    process.exit(2);
  }
}

const users = new Map(Object.entries(opts.users ? loadJson(opts.users, 'users') : DEFAULT_USERS)
  .map(([name, fields]) => [name, { ...fields }]));

const clients = loadJson(opts.clients, 'clients');
if (!Array.isArray(clients)) {
  process.stderr.write(`${opts.clients}: expected a JSON array of client metadata\n`);
  process.exit(2);
}

function userClaims(username) {
  const u = users.get(username);
  const claims = { sub: username };
  for (const [k, v] of Object.entries(u)) if (k !== 'password' && k !== 'sub') claims[k] = v;
  return claims;
}

// ---------------------------------------------------------------------------------------
// Keys. RSA keys are what rotate-keys replaces; the EC P-256 key (ES256) stays.

let keyGeneration = 0;
function newRsaKey() {
  keyGeneration += 1;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `rsa-${keyGeneration}-${crypto.randomBytes(4).toString('hex')}`;
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}
function newEcKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = `ec-${crypto.randomBytes(4).toString('hex')}`;
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
}
let rsaKeys = [newRsaKey()]; // the first one signs
const ecKey = newEcKey();
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

// ---------------------------------------------------------------------------------------
// Test-control state.

const ROUTES = {
  authorization: '/auth',
  token: '/token',
  userinfo: '/me',
  jwks: '/jwks',
  end_session: '/session/end',
  revocation: '/token/revocation',
};

function freshStats() {
  return {
    token_requests: 0,
    authorization_requests: 0,
    userinfo_requests: 0,
    jwks_requests: 0,
    discovery_requests: 0,
    end_session_requests: 0,
    token_requests_by_grant_type: {},
  };
}
let stats = freshStats();

const FAILURE_MODES = ['off', '500', 'html', 'hang', 'invalid_grant'];
const FAILURE_GRANTS = ['refresh_token', 'authorization_code', 'any'];
let tokenFailure = { mode: 'off', grant_type: 'any' };
function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}
let failureChanged = deferred();

// ---------------------------------------------------------------------------------------
// Pages.

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0}input{display:block;width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem;font-size:1rem}.note{background:#fff6d5;padding:.6rem;border-radius:4px;font-size:.9rem}
.error{color:#b00020;font-weight:600}ul{padding-left:1.2rem}
</style></head>
<body>
<p class="note">gatehouse demo IdP &mdash; for local demos and tests only.</p>
${body}
</body></html>
`;
}

function loginPage(uid, client, { error } = {}) {
  const who = client?.clientName || client?.clientId || 'an application';
  return page('Sign in', `<h1>Sign in</h1>
<p>to continue to <strong>${escapeHtml(who)}</strong></p>
${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Username <input name="login"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button>
</form>
<p class="note">Demo users: ${[...users.keys()].map((u) => `<code>${escapeHtml(u)}</code>`).join(', ')}.
The password is the username (demo only).</p>
<p><a href="/interaction/${escapeHtml(uid)}/abort">Cancel</a></p>`);
}

function consentPage(uid, client, details, params, accountId) {
  const who = client?.clientName || client?.clientId || 'an application';
  const scopes = details.missingOIDCScope || String(params.scope || '').split(' ').filter(Boolean);
  const claims = details.missingOIDCClaims || [];
  return page('Authorize', `<h1>Authorize ${escapeHtml(who)}</h1>
<p>Signed in as <strong>${escapeHtml(accountId)}</strong>.</p>
<p>${escapeHtml(who)} asks for:</p>
<ul>${scopes.map((s) => `<li>scope <code>${escapeHtml(s)}</code></li>`).join('')}${
  claims.map((c) => `<li>claim <code>${escapeHtml(c)}</code></li>`).join('')}</ul>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
<button type="submit">Continue</button>
</form>
<p><a href="/interaction/${escapeHtml(uid)}/abort">Cancel</a></p>`);
}

async function logoutSource(ctx, form) {
  // `form` is oidc-provider's <form id="op.logoutForm" ...> with its hidden xsrf input; the
  // Sign out button goes inside it so that the form is self-contained.
  const withButton = form.replace('</form>',
    '<button type="submit" name="logout" value="yes">Sign out</button></form>');
  ctx.type = 'html';
  ctx.body = page('Sign out', `<h1>Sign out</h1>
<p>Do you want to sign out of the gatehouse demo IdP (${escapeHtml(ctx.host)})?</p>
${withButton}`);
}

async function postLogoutSuccessSource(ctx) {
  const client = ctx.oidc.client?.clientName || ctx.oidc.client?.clientId;
  ctx.type = 'html';
  ctx.body = page('Signed out', `<h1>Signed out</h1>
<p>You are signed out of the gatehouse demo IdP${client ? ` and ${escapeHtml(client)}` : ''}.</p>`);
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', `<h1>Error</h1>
${Object.entries(out).map(([k, v]) => `<p><strong>${escapeHtml(k)}</strong>: <code>${escapeHtml(v)}</code></p>`).join('\n')}`);
}

// ---------------------------------------------------------------------------------------
// The Provider. Rebuilt (same issuer, same storage, same cookie keys) when keys rotate.

function buildProvider(issuer) {
  const rotation = opts['refresh-rotation'];
  const provider = new Provider(issuer, {
    adapter: SharedMemoryAdapter,
    clients: structuredClone(clients),
    jwks: { keys: [...rsaKeys, ecKey] },
    cookies: { keys: cookieKeys },
    routes: ROUTES,
    responseTypes: ['code'],
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'groups'],
      groups: ['groups'],
      acr: null,
      sid: null,
      auth_time: null,
      iss: null,
    },
    // Scope claims go into the ID token too (not only userinfo) for the code flow.
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      if (!users.has(sub)) return undefined;
      return { accountId: sub, claims: async () => userClaims(sub) };
    },
    pkce: { required: () => true },
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    rotateRefreshToken(ctx) {
      if (rotation === 'always') return true;
      if (rotation === 'never') return false;
      return ctx.oidc.entities.RefreshToken.ttlPercentagePassed() >= 70;
    },
    ttl: {
      AccessToken: () => opts['access-ttl'],
      IdToken: () => opts['id-token-ttl'],
      RefreshToken: () => opts['refresh-ttl'],
      AuthorizationCode: () => 60,
      Interaction: () => 3600,
      Session: () => 14 * 24 * 3600,
      Grant: () => 14 * 24 * 3600,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    },
    clientBasedCORS: () => false,
    renderError,
  });
  provider.on('server_error', (_ctx, err) => console.error('idp server_error:', err));
  return provider;
}

// ---------------------------------------------------------------------------------------
// Interactions: our own login and consent pages.

async function interactionRoute(req, res, url, provider) {
  const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/.exec(url.pathname);
  if (!m) return sendHtml(res, 404, page('Not found', '<h1>Not found</h1>'));
  const [, uid, action] = m;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      return sendHtml(res, 400, page('Error', `<h1>Sign-in expired</h1><p>${escapeHtml(err.message)}.
Go back to the application and start again.</p>`));
    }
    throw err;
  }
  if (details.uid !== uid) {
    return sendHtml(res, 400, page('Error', '<h1>Sign-in mismatch</h1><p>This sign-in page is stale. Start again.</p>'));
  }
  const { prompt, params } = details;
  const client = await provider.Client.find(String(params.client_id));

  if (req.method === 'GET' && action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }

  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return sendHtml(res, 200, loginPage(uid, client));
    if (prompt.name === 'consent') {
      return sendHtml(res, 200, consentPage(uid, client, prompt.details, params, details.session?.accountId));
    }
    return sendHtml(res, 400, page('Error', `<h1>Unsupported prompt</h1><p>${escapeHtml(prompt.name)}</p>`));
  }

  if (req.method === 'POST' && action === 'login') {
    if (prompt.name !== 'login') return sendHtml(res, 400, page('Error', '<h1>Not a sign-in step</h1>'));
    const form = new URLSearchParams((await readBody(req)).toString('utf8'));
    const login = form.get('login') ?? '';
    const password = form.get('password') ?? '';
    const user = users.get(login);
    const expected = user ? String(user.password ?? login) : undefined;
    const ok = expected !== undefined
      && crypto.timingSafeEqual(
        crypto.createHash('sha256').update(expected).digest(),
        crypto.createHash('sha256').update(password).digest(),
      );
    if (!ok) return sendHtml(res, 200, loginPage(uid, client, { error: 'Invalid username or password' }));
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }

  if (req.method === 'POST' && action === 'confirm') {
    if (prompt.name !== 'consent') return sendHtml(res, 400, page('Error', '<h1>Not a consent step</h1>'));
    await readBody(req);
    const { accountId } = details.session;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }

  return sendHtml(res, 405, page('Error', '<h1>Method not allowed</h1>'));
}

// ---------------------------------------------------------------------------------------
// The token endpoint wrapper: counts grant types and injects failures.

async function tokenRoute(req, res, passOn) {
  stats.token_requests += 1;
  // Read the form here; oidc-provider then takes it from req.body (it reads req.body when the
  // stream has already been consumed).
  const body = await readBody(req);
  req.body = body;
  const grantType = new URLSearchParams(body.toString('utf8')).get('grant_type') ?? '';
  stats.token_requests_by_grant_type[grantType] = (stats.token_requests_by_grant_type[grantType] ?? 0) + 1;

  let closed = false;
  res.on('close', () => { closed = true; });
  for (;;) {
    const { mode, grant_type: which } = tokenFailure;
    if (mode === 'off' || (which !== 'any' && which !== grantType)) return passOn();
    if (mode === '500') {
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      return res.end('injected failure: 500\n');
    }
    if (mode === 'html') {
      return sendHtml(res, 200, '<!doctype html><html><body><h1>Service temporarily unavailable</h1><p>injected failure: html</p></body></html>');
    }
    if (mode === 'invalid_grant') {
      return sendJson(res, 400, { error: 'invalid_grant', error_description: 'injected failure: invalid_grant' }, { pragma: 'no-cache' });
    }
    // hang: wait until the mode changes or the client goes away
    await failureChanged.promise;
    if (closed) return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// /__test/ controls.

async function testRoute(req, res, url, state) {
  const path = url.pathname;
  const json = async () => parseJsonObject(await readBody(req));

  if (path === '/__test/stats' && req.method === 'GET') return sendJson(res, 200, stats);
  if (path === '/__test/stats/reset' && req.method === 'POST') {
    stats = freshStats();
    return sendJson(res, 200, stats);
  }

  if (path === '/__test/rotate-keys' && req.method === 'POST') {
    const { keep_old: keepOld = false } = await json();
    const key = newRsaKey();
    rsaKeys = keepOld ? [key, ...rsaKeys] : [key];
    state.rebuild();
    return sendJson(res, 200, { kid: key.kid, kids: [...rsaKeys.map((k) => k.kid), ecKey.kid] });
  }

  const u = /^\/__test\/users\/([^/]+)$/.exec(path);
  if (u) {
    const name = decodeURIComponent(u[1]);
    if (req.method === 'GET') {
      return users.has(name) ? sendJson(res, 200, userClaims(name)) : sendJson(res, 404, { error: 'no such user' });
    }
    if (req.method === 'POST') {
      const fields = await json();
      delete fields.sub;
      users.set(name, { ...(users.get(name) ?? {}), ...fields });
      return sendJson(res, 200, userClaims(name));
    }
  }

  if (path === '/__test/token-failure' && req.method === 'POST') {
    const { mode = 'off', grant_type: grantType = 'any' } = await json();
    if (!FAILURE_MODES.includes(String(mode))) return sendJson(res, 400, { error: `mode must be one of ${FAILURE_MODES.join(', ')}` });
    if (!FAILURE_GRANTS.includes(grantType)) return sendJson(res, 400, { error: `grant_type must be one of ${FAILURE_GRANTS.join(', ')}` });
    tokenFailure = { mode: String(mode), grant_type: grantType };
    const old = failureChanged;
    failureChanged = deferred();
    old.resolve();
    return sendJson(res, 200, tokenFailure);
  }
  if (path === '/__test/token-failure' && req.method === 'GET') return sendJson(res, 200, tokenFailure);

  return sendJson(res, 404, { error: 'unknown test control' });
}

// ---------------------------------------------------------------------------------------

const server = http.createServer();
const port = await listen(server, opts.host, opts.port);
const issuer = `http://${hostForUrl(opts.host)}:${port}`;

const state = {
  provider: undefined,
  handler: undefined,
  rebuild() {
    this.provider = buildProvider(issuer);
    this.handler = this.provider.callback();
  },
};
state.rebuild();

server.on('request', async (req, res) => {
  const url = new URL(req.url, issuer);
  const path = url.pathname;
  const { provider, handler } = state; // a request stays on the instance it started with
  try {
    if (path.startsWith('/__test/')) return await testRoute(req, res, url, state);
    if (path.startsWith('/interaction/')) return await interactionRoute(req, res, url, provider);
    if (path === ROUTES.authorization) stats.authorization_requests += 1;
    else if (path === ROUTES.userinfo) stats.userinfo_requests += 1;
    else if (path === ROUTES.jwks) stats.jwks_requests += 1;
    else if (path === ROUTES.end_session) stats.end_session_requests += 1;
    else if (path === '/.well-known/openid-configuration') stats.discovery_requests += 1;
    if (path === ROUTES.token && req.method === 'POST') return await tokenRoute(req, res, () => handler(req, res));
    return handler(req, res);
  } catch (err) {
    if (!err.status) console.error('idp error:', err);
    if (res.headersSent) return res.destroy();
    if (path.startsWith('/__test/')) return sendJson(res, err.status || 500, { error: err.message });
    return sendHtml(res, err.status || 500, page('Error', `<h1>Error</h1><p>${escapeHtml(err.message)}</p>`));
  }
});

onShutdown(server, { exitWithParent: opts['exit-with-parent'] });
printReady(issuer, port);
