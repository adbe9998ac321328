// Walks idp/server.mjs as a relying party would: discovery, code + PKCE through the login
// and consent pages, token exchange, ID token checks, userinfo, refresh, key rotation,
// injected token failures, RP-initiated logout, SIGTERM.
//
//   node --test idp/test/
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

import {
  Browser, basic, form, jsonPost, pkce, randomString, startScript, tempFile,
} from './support.mjs';

const RP = 'http://127.0.0.1:9999';
const CLIENT = {
  client_id: 'rp',
  client_secret: 'rp-secret',
  redirect_uris: [`${RP}/oauth2/callback`],
  post_logout_redirect_uris: [`${RP}/`],
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
};

let idp;
let meta;
const browser = new Browser();

before(async () => {
  idp = await startScript('server.mjs', [
    '--host', '127.0.0.2', '--port', '0', '--clients', tempFile('clients.json', [CLIENT]),
    '--access-ttl', '120', '--id-token-ttl', '60',
  ]);
});

after(async () => {
  if (idp) await idp.stop();
});

async function getJson(path, init) {
  const res = await fetch(new URL(path, idp.issuer), init);
  return { status: res.status, body: await res.json() };
}

// Code flow up to the redirect back to the RP, walking whatever pages the IdP shows.
// Returns what the RP needs for the token call and the pages seen ('login', 'consent').
async function authorize({ user = 'alice', password = user, scope = 'openid email profile' } = {}) {
  const { verifier, challenge } = pkce();
  const state = randomString();
  const nonce = randomString();
  const auth = new URL(meta.authorization_endpoint);
  auth.search = new URLSearchParams({
    client_id: CLIENT.client_id,
    redirect_uri: CLIENT.redirect_uris[0],
    response_type: 'code',
    scope,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  const pages = [];
  let step = await browser.follow(auth.href);
  while (!step.location?.startsWith(RP)) {
    assert.ok(pages.length < 4, `too many pages: ${pages}`);
    const html = await step.res.text();
    const login = /<form method="post" action="(\/interaction\/[^"/]+\/login)">/.exec(html);
    const confirm = /<form method="post" action="(\/interaction\/[^"/]+\/confirm)">/.exec(html);
    if (login) {
      pages.push('login');
      assert.match(html, /<input name="login"/);
      assert.match(html, /<input name="password" type="password"/);
      assert.match(html, /<button type="submit">Sign in<\/button>/);
      const wrong = await browser.fetch(new URL(login[1], idp.issuer), form({ login: user, password: `${password}-wrong` }));
      assert.equal(wrong.status, 200);
      assert.match(await wrong.text(), /Invalid username or password/);
      step = await browser.follow(new URL(login[1], idp.issuer).href, form({ login: user, password }));
    } else if (confirm) {
      pages.push('consent');
      assert.match(html, /<button type="submit">Continue<\/button>/);
      step = await browser.follow(new URL(confirm[1], idp.issuer).href, form({}));
    } else {
      assert.fail(`login or consent form expected, got ${step.res.status} at ${step.url}:\n${html}`);
    }
  }
  const cb = new URL(step.location);
  assert.equal(cb.origin + cb.pathname, CLIENT.redirect_uris[0]);
  assert.equal(cb.searchParams.get('state'), state);
  assert.equal(cb.searchParams.get('iss'), idp.issuer, 'RFC 9207 iss in the authorization response');
  const code = cb.searchParams.get('code');
  assert.ok(code);
  return { code, verifier, nonce, pages };
}

async function tokenRequest(params, auth = basic(CLIENT.client_id, CLIENT.client_secret), signal = undefined) {
  const res = await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
    body: new URLSearchParams(params).toString(),
    signal,
  });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body, type: res.headers.get('content-type') };
}

async function verifyIdToken(idToken, nonce) {
  const jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(idToken, jwks, {
    issuer: idp.issuer, audience: CLIENT.client_id, algorithms: ['RS256'],
  });
  if (nonce) assert.equal(payload.nonce, nonce);
  return { payload, protectedHeader };
}

let tokens;
let firstNonce;

test('discovery', async () => {
  const { status, body } = await getJson('/.well-known/openid-configuration');
  assert.equal(status, 200);
  meta = body;
  assert.equal(meta.issuer, idp.issuer);
  assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
  assert.equal(meta.authorization_response_iss_parameter_supported, true);
  assert.ok(meta.end_session_endpoint);
  assert.ok(meta.userinfo_endpoint);
  assert.ok(meta.claims_supported.includes('groups'));
  assert.deepEqual(idp.extraStdoutLines, [JSON.stringify({ issuer: idp.issuer, port: idp.port })]);
});

test('PKCE is required', async () => {
  const auth = new URL(meta.authorization_endpoint);
  auth.search = new URLSearchParams({
    client_id: CLIENT.client_id, redirect_uri: CLIENT.redirect_uris[0], response_type: 'code',
    scope: 'openid', state: 's', nonce: 'n',
  });
  const res = await fetch(auth, { redirect: 'manual' });
  const loc = new URL(res.headers.get('location'));
  assert.equal(loc.searchParams.get('error'), 'invalid_request');
});

test('login, consent, code exchange, ID token claims', async () => {
  const { code, verifier, nonce, pages } = await authorize();
  assert.deepEqual(pages, ['login', 'consent']);
  firstNonce = nonce;
  const bad = await tokenRequest({
    grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: `${verifier}x`,
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error, 'invalid_grant');
  // a failed PKCE check consumes nothing in oidc-provider? It does: start a fresh flow.
  const again = await authorize();
  assert.deepEqual(again.pages, [], 'session and consent remembered');
  const res = await tokenRequest({
    grant_type: 'authorization_code', code: again.code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: again.verifier,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  tokens = res.body;
  assert.equal(tokens.token_type, 'Bearer');
  assert.equal(tokens.expires_in, 120);
  assert.ok(tokens.refresh_token, 'refresh token without offline_access');
  const { payload, protectedHeader } = await verifyIdToken(tokens.id_token, again.nonce);
  assert.equal(payload.sub, 'alice');
  assert.equal(payload.email, 'alice@example.com');
  assert.equal(payload.email_verified, true);
  assert.equal(payload.name, 'Alice Admin');
  assert.deepEqual(payload.groups, ['admins', 'devs']);
  assert.equal(payload.exp - payload.iat, 60);
  assert.ok(protectedHeader.kid);
  assert.ok(firstNonce);
});

test('userinfo', async () => {
  const { status, body } = await getJson(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(status, 200);
  assert.deepEqual(body, {
    sub: 'alice', email: 'alice@example.com', email_verified: true, name: 'Alice Admin', groups: ['admins', 'devs'],
  });
});

test('refresh shows changed groups and rotates the refresh token', async () => {
  const changed = await getJson('/__test/users/alice', jsonPost({ groups: ['admins', 'ops'] }));
  assert.deepEqual(changed.body.groups, ['admins', 'ops']);
  const res = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.ok(res.body.id_token, 'refresh returns a new ID token');
  assert.notEqual(res.body.refresh_token, tokens.refresh_token, 'rotated');
  const { payload } = await verifyIdToken(res.body.id_token);
  assert.deepEqual(payload.groups, ['admins', 'ops']);
  assert.equal(payload.sub, 'alice');
  assert.equal(typeof payload.nonce, 'string', 'oidc-provider repeats the original nonce');
  const old = tokens.refresh_token;
  tokens = res.body;
  const second = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(second.status, 200);
  tokens = second.body;
  // reuse of a rotated-out refresh token: invalid_grant, and oidc-provider revokes the whole grant
  const reuse = await tokenRequest({ grant_type: 'refresh_token', refresh_token: old });
  assert.equal(reuse.status, 400);
  assert.equal(reuse.body.error, 'invalid_grant');
  const revoked = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(revoked.status, 400, 'reuse detection revoked the grant');
  // start again: a new code (the IdP session stays, the consent was revoked with the grant)
  const again = await authorize();
  assert.deepEqual(again.pages, ['consent']);
  const fresh = await tokenRequest({
    grant_type: 'authorization_code', code: again.code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: again.verifier,
  });
  assert.equal(fresh.status, 200);
  tokens = fresh.body;
});

test('carol: unverified email, no groups', async () => {
  const saved = browser.cookies;
  const b2 = new Browser();
  browser.cookies = b2.cookies;
  try {
    const { code, verifier } = await authorize({ user: 'carol', scope: 'openid email groups' });
    const res = await tokenRequest({
      grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: verifier,
    });
    assert.equal(res.status, 200);
    const { payload } = await verifyIdToken(res.body.id_token);
    assert.equal(payload.email_verified, false);
    assert.deepEqual(payload.groups, []);
    assert.equal(payload.name, undefined, 'no profile scope, no name');
  } finally {
    browser.cookies = saved;
  }
});

test('rotate-keys publishes a new signing key; sessions and grants survive', async () => {
  const before = await getJson(meta.jwks_uri);
  const oldKid = decodeProtectedHeader(tokens.id_token).kid;
  assert.ok(before.body.keys.some((k) => k.kid === oldKid));
  const rotated = await getJson('/__test/rotate-keys', jsonPost({}));
  assert.equal(rotated.status, 200);
  assert.notEqual(rotated.body.kid, oldKid);
  const afterJwks = await getJson(meta.jwks_uri);
  const kids = afterJwks.body.keys.map((k) => k.kid);
  assert.ok(kids.includes(rotated.body.kid));
  assert.ok(!kids.includes(oldKid), 'old key dropped by default');
  assert.ok(afterJwks.body.keys.every((k) => !k.d), 'no private parts');

  const res = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(decodeProtectedHeader(res.body.id_token).kid, rotated.body.kid);
  await verifyIdToken(res.body.id_token);
  tokens = res.body;

  const kept = await getJson('/__test/rotate-keys', jsonPost({ keep_old: true }));
  const kids2 = (await getJson(meta.jwks_uri)).body.keys.map((k) => k.kid);
  assert.equal(kids2[0], kept.body.kid);
  assert.ok(kids2.includes(rotated.body.kid), 'keep_old keeps the previous key listed');
  const res2 = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(decodeProtectedHeader(res2.body.id_token).kid, kept.body.kid, 'newest key signs');
  tokens = res2.body;

  // the IdP session survived the rebuild: a new authorization needs no login or consent
  const { code, verifier, pages } = await authorize({});
  assert.deepEqual(pages, []);
  const res3 = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: verifier });
  assert.equal(res3.status, 200);
});

test('token-failure modes', async () => {
  const set = (mode, grantType = 'refresh_token') => getJson('/__test/token-failure', jsonPost({ mode, grant_type: grantType }));
  const refresh = (signal) => tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, undefined, signal);

  await set('500');
  let r = await refresh();
  assert.equal(r.status, 500);
  await set('html');
  r = await refresh();
  assert.equal(r.status, 200);
  assert.match(r.type, /text\/html/);
  await set('invalid_grant');
  r = await refresh();
  assert.equal(r.status, 400);
  assert.equal(r.body.error, 'invalid_grant');
  // an authorization_code request is not affected by a refresh_token failure
  const { code, verifier } = await authorize({});
  const ok = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: verifier });
  assert.equal(ok.status, 200);
  await set('500', 'any');
  const c2 = await authorize({});
  r = await tokenRequest({ grant_type: 'authorization_code', code: c2.code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: c2.verifier });
  assert.equal(r.status, 500);

  await set('hang');
  const gaveUp = await refresh(AbortSignal.timeout(300)).then(() => 'answered', (e) => e.name);
  assert.equal(gaveUp, 'TimeoutError');
  const held = refresh();
  await new Promise((resolve) => { setTimeout(resolve, 200); });
  await set('off');
  r = await held;
  assert.equal(r.status, 200, 'a held request proceeds once the mode is off');
  tokens = r.body;
  r = await refresh();
  assert.equal(r.status, 200);
  tokens = r.body;

  assert.equal((await set('bogus')).status, 400);
});

test('stats count and reset', async () => {
  await getJson('/__test/stats/reset', jsonPost({}));
  await fetch(meta.jwks_uri);
  await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  const r = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  tokens = r.body;
  const { body } = await getJson('/__test/stats');
  assert.equal(body.token_requests, 1);
  assert.equal(body.jwks_requests, 1);
  assert.equal(body.userinfo_requests, 1);
  assert.equal(body.authorization_requests, 0);
  assert.deepEqual(body.token_requests_by_grant_type, { refresh_token: 1 });
});

test('RP-initiated logout ends the IdP session and its refresh tokens', async () => {
  const end = new URL(meta.end_session_endpoint);
  end.search = new URLSearchParams({
    id_token_hint: tokens.id_token, post_logout_redirect_uri: CLIENT.post_logout_redirect_uris[0], state: 'bye',
  });
  const res = await browser.fetch(end.href);
  assert.equal(res.status, 200);
  const html = await res.text();
  const f = /<form id="op.logoutForm" method="post" action="([^"]+)"><input type="hidden" name="xsrf" value="([^"]+)"\/><button type="submit" name="logout" value="yes">Sign out<\/button><\/form>/.exec(html);
  assert.ok(f, `logout form expected, got:\n${html}`);
  const done = await browser.fetch(f[1], form({ xsrf: f[2], logout: 'yes' }));
  assert.equal(done.status, 303);
  assert.equal(done.headers.get('location'), `${CLIENT.post_logout_redirect_uris[0]}?state=bye`);

  const r = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(r.status, 400);
  assert.equal(r.body.error, 'invalid_grant');

  // signed out: the next authorization shows the login form again
  const { pages } = await authorize({});
  assert.deepEqual(pages, ['login', 'consent'], 'logout revoked the grant too');

  // without a post_logout_redirect_uri the IdP shows its own signed-out page
  const plain = await browser.follow(new URL(meta.end_session_endpoint).href);
  const html2 = await plain.res.text();
  const f2 = /action="([^"]+)"><input type="hidden" name="xsrf" value="([^"]+)"/.exec(html2);
  const done2 = await browser.follow(f2[1], form({ xsrf: f2[2], logout: 'yes' }));
  assert.equal(done2.res.status, 200);
  assert.match(await done2.res.text(), /Signed out/);
});

test('escaping on the login page', async () => {
  const evil = '<script>x</script>';
  await getJson(`/__test/users/${encodeURIComponent(evil)}`, jsonPost({ name: 'Evil' }));
  const b = new Browser();
  const saved = browser.cookies;
  browser.cookies = b.cookies;
  try {
    const auth = new URL(meta.authorization_endpoint);
    const { challenge } = pkce();
    auth.search = new URLSearchParams({
      client_id: CLIENT.client_id, redirect_uri: CLIENT.redirect_uris[0], response_type: 'code',
      scope: 'openid', state: 's', nonce: 'n', code_challenge: challenge, code_challenge_method: 'S256',
    });
    const step = await browser.follow(auth.href);
    const html = await step.res.text();
    assert.ok(!html.includes(evil));
    assert.ok(html.includes('&lt;script&gt;'));
  } finally {
    browser.cookies = saved;
  }
});

test('SIGTERM exits cleanly', async () => {
  const { code, signal } = await idp.stop();
  assert.equal(code, 0, `exit ${code}/${signal}; stderr:\n${idp.stderr()}`);
  idp = undefined;
});

test('--users FILE replaces the built-in users (with an optional password field)', async () => {
  const other = await startScript('server.mjs', [
    '--clients', tempFile('clients.json', [CLIENT]),
    '--users', tempFile('users.json', { dave: { name: 'Dave', email: 'dave@example.org', email_verified: true, groups: ['x'], password: 'pw' } }),
  ]);
  try {
    const saved = { idp, meta, cookies: browser.cookies };
    idp = other;
    meta = await (await fetch(`${other.issuer}/.well-known/openid-configuration`)).json();
    browser.cookies = new Map();
    try {
      const { code, verifier, pages } = await authorize({ user: 'dave', password: 'pw', scope: 'openid groups' });
      assert.deepEqual(pages, ['login', 'consent']);
      const res = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: verifier });
      const { payload } = await verifyIdToken(res.body.id_token);
      assert.equal(payload.sub, 'dave');
      assert.deepEqual(payload.groups, ['x']);
      assert.equal(payload.email, undefined, 'no email scope');
      assert.equal(payload.password, undefined);
      assert.equal(res.body.expires_in, 3600, 'default access TTL');
      assert.equal(payload.exp - payload.iat, 3600, 'default ID token TTL');
    } finally {
      ({ idp, meta } = saved);
      browser.cookies = saved.cookies;
    }
  } finally {
    assert.equal((await other.stop()).code, 0);
  }
});

test('after rotate-keys (old key dropped) an id_token_hint signed by the old key is refused; client_id works', async () => {
  const other = await startScript('server.mjs', ['--clients', tempFile('clients.json', [CLIENT])]);
  const saved = { idp, meta, cookies: browser.cookies };
  try {
    idp = other;
    meta = await (await fetch(`${other.issuer}/.well-known/openid-configuration`)).json();
    browser.cookies = new Map();
    const { code, verifier } = await authorize();
    const res = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: verifier });
    await getJson('/__test/rotate-keys', jsonPost({}));
    const end = new URL(meta.end_session_endpoint);
    end.search = new URLSearchParams({ id_token_hint: res.body.id_token, post_logout_redirect_uri: CLIENT.post_logout_redirect_uris[0] });
    const refused = await browser.fetch(end.href);
    assert.equal(refused.status, 400);
    assert.match(await refused.text(), /could not validate id_token_hint/);
    end.search = new URLSearchParams({ client_id: CLIENT.client_id, post_logout_redirect_uri: CLIENT.post_logout_redirect_uris[0] });
    const page = await browser.fetch(end.href);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /name="logout" value="yes">Sign out</);
  } finally {
    ({ idp, meta } = saved);
    browser.cookies = saved.cookies;
    assert.equal((await other.stop()).code, 0);
  }
});

test('scope offline_access (as Pomerium requests by default) is accepted', async () => {
  const other = await startScript('server.mjs', ['--clients', tempFile('clients.json', [CLIENT])]);
  const saved = { idp, meta, cookies: browser.cookies };
  try {
    idp = other;
    meta = await (await fetch(`${other.issuer}/.well-known/openid-configuration`)).json();
    browser.cookies = new Map();
    const { code, verifier } = await authorize({ user: 'bob', scope: 'openid profile email offline_access' });
    const res = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: verifier });
    assert.equal(res.status, 200);
    assert.ok(res.body.refresh_token);
    const { payload } = await verifyIdToken(res.body.id_token);
    assert.deepEqual(payload.groups, ['devs']);
    assert.equal(typeof payload.aud, 'string', 'oidc-provider sends aud as a string');
    assert.equal(payload.azp, undefined);
    // without prompt=consent oidc-provider drops offline_access; the refresh token is still
    // issued (issueRefreshToken) and lives as long as the IdP session
    assert.equal(res.body.scope, 'openid profile email');
  } finally {
    ({ idp, meta } = saved);
    browser.cookies = saved.cookies;
    assert.equal((await other.stop()).code, 0);
  }
});
