// Checks that idp/hostile.mjs lies exactly as each mode says (a jose verifier stands in for
// the relying party), and that its PKCE, client auth, stats and controls work.
//
//   node --test idp/test/
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify,
} from 'jose';

import { basic, jsonPost, pkce, randomString, startScript } from './support.mjs';

const CLIENT_ID = 'gatehouse-test';
const CLIENT_SECRET = 'hostile secret:with/odd chars';
const REDIRECT = 'http://127.0.0.1:9999/oauth2/callback';

let op;
let meta;

before(async () => {
  op = await startScript('hostile.mjs', ['--host', '127.0.0.2', '--port', '0', '--client-id', CLIENT_ID, '--client-secret', CLIENT_SECRET]);
  meta = await (await fetch(`${op.issuer}/.well-known/openid-configuration`)).json();
});

after(async () => {
  if (op) await op.stop();
});

const setMode = async (mode, extra = {}) => {
  const res = await fetch(`${op.issuer}/__mode`, jsonPost({ mode, ...extra }));
  return { status: res.status, body: await res.json() };
};
const stats = async () => (await fetch(`${op.issuer}/__stats`)).json();
const jwks = async () => (await fetch(meta.jwks_uri)).json();

async function authorize({ withPkce = true } = {}) {
  const { verifier, challenge } = pkce();
  const state = randomString();
  const nonce = randomString();
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: CLIENT_ID, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid email', state, nonce,
    ...(withPkce ? { code_challenge: challenge, code_challenge_method: 'S256' } : {}),
  });
  const res = await fetch(url, { redirect: 'manual' });
  assert.equal(res.status, 302);
  const cb = new URL(res.headers.get('location'));
  assert.equal(cb.origin + cb.pathname, REDIRECT);
  assert.equal(cb.searchParams.get('state'), state);
  return { code: cb.searchParams.get('code'), iss: cb.searchParams.get('iss'), verifier, nonce };
}

async function token(params, auth = basic(CLIENT_ID, CLIENT_SECRET), signal = undefined) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (auth) headers.authorization = auth;
  const res = await fetch(meta.token_endpoint, { method: 'POST', headers, body: new URLSearchParams(params), signal });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body, type: res.headers.get('content-type') };
}

async function login() {
  const a = await authorize();
  const t = await token({ grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, code_verifier: a.verifier });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  return { ...a, tokens: t.body };
}

// What a strict RP would conclude about an ID token.
async function rpVerdict(idToken, nonce, keys) {
  try {
    const { payload } = await jwtVerify(idToken, createLocalJWKSet(keys ?? await jwks()), {
      issuer: op.issuer, audience: CLIENT_ID, algorithms: ['RS256', 'ES256'], requiredClaims: ['sub', 'iat'],
    });
    if (payload.nonce !== nonce) return 'nonce mismatch';
    if (payload.azp !== undefined && payload.azp !== CLIENT_ID) return 'azp mismatch';
    return 'valid';
  } catch (e) {
    return e.code;
  }
}

test('discovery document', () => {
  assert.equal(meta.issuer, op.issuer);
  assert.deepEqual(meta.id_token_signing_alg_values_supported, ['RS256', 'ES256']);
  assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(meta.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post']);
  assert.equal(meta.authorization_response_iss_parameter_supported, true);
  assert.deepEqual(op.extraStdoutLines, [JSON.stringify({ issuer: op.issuer, port: op.port })]);
});

test('ok: a valid login, client_secret_post too, refresh, userinfo', async () => {
  await setMode('ok');
  const { tokens, nonce, iss } = await login();
  assert.equal(iss, op.issuer);
  assert.equal(await rpVerdict(tokens.id_token, nonce), 'valid');
  const claims = decodeJwt(tokens.id_token);
  assert.equal(claims.sub, 'mallory');
  assert.deepEqual(claims.aud, [CLIENT_ID]);
  assert.equal(claims.email, 'mallory@example.com');
  assert.equal(claims.email_verified, true);
  assert.equal(tokens.token_type, 'Bearer');
  assert.equal(tokens.expires_in, 300);

  const a = await authorize();
  const post = await token({
    grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, code_verifier: a.verifier,
    client_id: CLIENT_ID, client_secret: CLIENT_SECRET,
  }, null);
  assert.equal(post.status, 200);

  const r = await token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(r.status, 200);
  assert.equal(await rpVerdict(r.body.id_token, undefined), 'valid');
  assert.equal((await token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token })).status, 400, 'rotated');

  const ui = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.deepEqual((await ui.json()).sub, 'mallory');
  assert.equal((await fetch(meta.userinfo_endpoint)).status, 401);
});

test('PKCE, code reuse and client authentication are checked', async () => {
  await setMode('ok');
  let a = await authorize();
  let t = await token({ grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, code_verifier: `${a.verifier}x` });
  assert.equal(t.status, 400);
  assert.equal(t.body.error, 'invalid_grant');
  a = await authorize({ withPkce: false });
  t = await token({ grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, code_verifier: a.verifier });
  assert.equal(t.body.error, 'invalid_grant');
  a = await authorize();
  t = await token({ grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, code_verifier: a.verifier }, basic(CLIENT_ID, 'wrong'));
  assert.equal(t.status, 401);
  assert.equal(t.body.error, 'invalid_client');
  t = await token({ grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, code_verifier: a.verifier });
  assert.equal(t.status, 200);
  t = await token({ grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, code_verifier: a.verifier });
  assert.equal(t.body.error, 'invalid_grant', 'codes are single-use');
});

const expectations = {
  ok_es256: 'valid',
  bad_signature: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  wrong_iss: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
  wrong_aud: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
  wrong_azp: 'azp mismatch',
  wrong_nonce: 'nonce mismatch',
  missing_sub: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
  missing_iat: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
  expired: 'ERR_JWT_EXPIRED',
  alg_none: 'ERR_JOSE_ALG_NOT_ALLOWED',
  hs256_with_public_key: 'ERR_JOSE_ALG_NOT_ALLOWED',
  unknown_kid: 'ERR_JWKS_NO_MATCHING_KEY',
};

for (const [mode, verdict] of Object.entries(expectations)) {
  test(`mode ${mode}: the RP verdict is ${verdict}`, async () => {
    assert.equal((await setMode(mode)).status, 200);
    const { tokens, nonce } = await login();
    assert.equal(await rpVerdict(tokens.id_token, nonce), verdict);
    const header = decodeProtectedHeader(tokens.id_token);
    if (mode === 'alg_none') {
      assert.equal(header.alg, 'none');
      assert.ok(tokens.id_token.endsWith('.'));
    }
    if (mode === 'hs256_with_public_key') assert.equal(header.alg, 'HS256');
    if (mode === 'wrong_azp') assert.deepEqual(decodeJwt(tokens.id_token).aud, [CLIENT_ID, 'other-client']);
  });
}

test('mode kid_kty_mismatch: ES256 header with the RSA key kid', async () => {
  await setMode('kid_kty_mismatch');
  const { tokens, nonce } = await login();
  const header = decodeProtectedHeader(tokens.id_token);
  const keys = await jwks();
  assert.equal(header.alg, 'ES256');
  assert.equal(keys.keys.find((k) => k.kid === header.kid).kty, 'RSA');
  assert.notEqual(await rpVerdict(tokens.id_token, nonce), 'valid');
});

test('mode kid_rotated: the new kid appears in /jwks after the first fetch', async () => {
  const cached = await jwks(); // what an RP fetched before the rotation
  const set = await setMode('kid_rotated');
  assert.equal(set.body.jwks_fetches_before_publish, 1);
  await fetch(`${op.issuer}/__stats/reset`, { method: 'POST' });
  const { tokens, nonce } = await login();
  const { kid } = decodeProtectedHeader(tokens.id_token);
  assert.equal(await rpVerdict(tokens.id_token, nonce, cached), 'ERR_JWKS_NO_MATCHING_KEY');
  const first = await jwks();
  assert.ok(!first.keys.some((k) => k.kid === kid), 'first fetch after the mode: not yet');
  const second = await jwks();
  assert.ok(second.keys.some((k) => k.kid === kid), 'second fetch: published');
  assert.equal(await rpVerdict(tokens.id_token, nonce, second), 'valid');
  assert.equal((await stats()).jwks_requests, 2);

  await setMode('kid_rotated', { jwks_fetches_before_publish: 0 });
  assert.ok((await jwks()).keys.some((k) => k.kid === kid), 'with 0: published at once');
  await setMode('ok');
  assert.ok(!(await jwks()).keys.some((k) => k.kid === kid), 'only while the mode is on');
});

test('mode wrong_response_iss and userinfo_other_sub', async () => {
  await setMode('wrong_response_iss');
  assert.equal((await authorize()).iss, 'http://evil.example');
  await setMode('userinfo_other_sub');
  const { tokens } = await login();
  const ui = await (await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } })).json();
  assert.equal(ui.sub, 'someone-else');
  assert.equal(decodeJwt(tokens.id_token).sub, 'mallory');
});

test('token endpoint failures', async () => {
  await setMode('ok');
  const a = await authorize();
  const params = { grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, code_verifier: a.verifier };
  await setMode('token_500');
  assert.equal((await token(params)).status, 500);
  await setMode('token_html');
  const html = await token(params);
  assert.equal(html.status, 200);
  assert.match(html.type, /text\/html/);
  await setMode('token_hang');
  const gaveUp = await token(params, undefined, AbortSignal.timeout(300)).then(() => 'answered', (e) => e.name);
  assert.equal(gaveUp, 'TimeoutError');
  const held = token(params);
  await new Promise((r) => { setTimeout(r, 200); });
  await setMode('ok');
  assert.equal((await held).status, 200, 'a held request proceeds once the mode changes');
});

test('stats, unknown modes', async () => {
  await fetch(`${op.issuer}/__stats/reset`, { method: 'POST' });
  await setMode('ok');
  await login();
  await jwks();
  const s = await stats();
  assert.equal(s.token_requests, 1);
  assert.equal(s.jwks_requests, 1);
  assert.equal((await setMode('nope')).status, 400);
});

test('SIGTERM exits cleanly', async () => {
  const { code } = await op.stop();
  assert.equal(code, 0, op.stderr());
  op = undefined;
});
