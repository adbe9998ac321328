#!/usr/bin/env node
// A deliberately broken OpenID Provider for gatehouse's negative relying-party tests ONLY.
//
// It speaks just enough OIDC (discovery, /authorize, /token, /jwks, /userinfo) for a code +
// PKCE login to complete, and then lies in the way the current mode says: bad signatures,
// wrong iss/aud/azp/nonce, alg none, HS256 keyed with the public key, unknown or rotated
// kids, a broken token endpoint. /authorize asks nobody: it redirects straight back with a
// code for the user "mallory". No authentication on /__mode: never expose it beyond loopback.
//
//   node idp/hostile.mjs --host 127.0.0.2 --port 0 --client-id ID --client-secret SECRET
//
// When ready it prints ONE line on stdout, {"issuer":"http://HOST:PORT","port":PORT}.
// SIGTERM/SIGINT stop it. See README.md for the modes.

import http from 'node:http';
import crypto from 'node:crypto';

import {
  SignJWT, base64url, exportJWK, exportSPKI, generateKeyPair,
} from 'jose';

import {
  consoleToStderr, escapeHtml, hostForUrl, listen, onShutdown, parseCli, parseJsonObject,
  printReady, readBody, sendHtml, sendJson,
} from './lib/util.mjs';

consoleToStderr();

const USAGE = `usage: node idp/hostile.mjs --client-id ID --client-secret SECRET [--host 127.0.0.2] [--port 0]
       [--exit-with-parent]`;

const opts = parseCli(process.argv.slice(2), {
  host: { type: 'string', default: '127.0.0.2' },
  port: { type: 'number', default: 0 },
  'client-id': { type: 'string', required: true },
  'client-secret': { type: 'string', required: true },
  'exit-with-parent': { type: 'boolean', default: false },
}, USAGE);

const CLIENT_ID = opts['client-id'];
const CLIENT_SECRET = opts['client-secret'];

const MODES = [
  'ok', // a valid ID token (RS256)
  'ok_es256', // a valid ID token signed ES256 with the published EC key
  'bad_signature', // one bit of the RS256 signature flipped
  'wrong_iss', // iss http://evil.example
  'wrong_aud', // aud ["someone-else"]
  'wrong_azp', // aud [client, "other-client"], azp "other-client"
  'wrong_nonce', // nonce "not-the-nonce"
  'other_sub', // sub "someone-else" (valid otherwise: for "refresh keeps the same sub")
  'alg_none', // header alg none, empty signature
  'missing_sub',
  'missing_iat',
  'expired', // iat now-2h, exp now-1h
  'hs256_with_public_key', // HS256 keyed with the RSA public key PEM, kid of the RSA key
  'kid_kty_mismatch', // header alg ES256 with the kid of the RSA key, signed by the EC key
  'unknown_kid', // signed by a key never published
  'kid_rotated', // signed by a second key that /jwks publishes only after N fetches (default 1)
  'wrong_response_iss', // /authorize redirects with iss=http://evil.example
  'userinfo_other_sub', // /userinfo says sub "someone-else"
  'token_500', // /token answers 500
  'token_html', // /token answers 200 with an HTML page
  'token_hang', // /token never answers until the mode changes (or the client gives up)
  // Microsoft Entra's multi-tenant shape (discovery at /common/v2.0 says issuer
  // ".../{tenantid}/v2.0"; ID tokens carry the real tenant in iss and tid; no response iss):
  'azure', // a valid Entra-shaped ID token
  'azure_wrong_tenant', // iss names another tenant than the tid claim
];

/** The tenant of the Entra-shaped modes. */
const AZURE_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const isAzure = () => mode === 'azure' || mode === 'azure_wrong_tenant';

// ---------------------------------------------------------------------------------------
// Keys.

async function rsaKey(kid) {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { privateKey, publicKey, jwk };
}
const goodKey = await rsaKey(`good-${crypto.randomBytes(3).toString('hex')}`);
const unknownKey = await rsaKey(`unknown-${crypto.randomBytes(3).toString('hex')}`);
const rotatedKey = await rsaKey(`rotated-${crypto.randomBytes(3).toString('hex')}`);
const ecKey = await (async () => {
  const kid = `ec-${crypto.randomBytes(3).toString('hex')}`;
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
})();
const goodPublicPem = await exportSPKI(goodKey.publicKey);

// ---------------------------------------------------------------------------------------
// State.

let mode = 'ok';
let rotation = { before: 1, fetches: 0 }; // kid_rotated: JWKS fetches that still omit the key
let modeChanged = deferred();

function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

function freshStats() {
  return {
    token_requests: 0, jwks_requests: 0, authorization_requests: 0, userinfo_requests: 0, discovery_requests: 0,
  };
}
let stats = freshStats();

const codes = new Map(); // code -> { nonce, challenge, method, redirectUri, expiresAt }
const refreshTokens = new Set();
const accessTokens = new Set();
const BOUND = 10_000;
function remember(setOrMap, key, value) {
  if (setOrMap.size >= BOUND) setOrMap.delete(setOrMap.keys().next().value);
  if (setOrMap instanceof Map) setOrMap.set(key, value);
  else setOrMap.add(key);
}

const random = () => crypto.randomBytes(24).toString('base64url');

// ---------------------------------------------------------------------------------------
// The ID token, as the current mode has it.

async function idToken(issuer, nonce) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    sub: 'mallory',
    aud: [CLIENT_ID],
    iat: now,
    exp: now + 300,
    email: 'mallory@example.com',
    email_verified: true,
    name: 'Mallory',
  };
  if (nonce !== undefined) claims.nonce = nonce;
  switch (mode) {
    case 'azure': claims.iss = `${issuer}/${AZURE_TENANT}/v2.0`; claims.tid = AZURE_TENANT; break;
    case 'azure_wrong_tenant':
      claims.iss = `${issuer}/00000000-0000-0000-0000-000000000000/v2.0`; claims.tid = AZURE_TENANT; break;
    case 'wrong_iss': claims.iss = 'http://evil.example'; break;
    case 'wrong_aud': claims.aud = ['someone-else']; break;
    case 'wrong_azp': claims.aud = [CLIENT_ID, 'other-client']; claims.azp = 'other-client'; break;
    case 'wrong_nonce': claims.nonce = 'not-the-nonce'; break;
    case 'other_sub': claims.sub = 'someone-else'; break;
    case 'missing_sub': delete claims.sub; break;
    case 'missing_iat': delete claims.iat; break;
    case 'expired': claims.iat = now - 7200; claims.exp = now - 3600; break;
    default: break;
  }

  const sign = (key, header) => new SignJWT(claims).setProtectedHeader({ typ: 'JWT', ...header }).sign(key);
  switch (mode) {
    case 'alg_none': {
      const enc = (v) => base64url.encode(JSON.stringify(v));
      return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
    }
    case 'bad_signature': {
      const jwt = await sign(goodKey.privateKey, { alg: 'RS256', kid: goodKey.jwk.kid });
      const [h, p, s] = jwt.split('.');
      const sig = Buffer.from(s, 'base64url');
      sig[sig.length >> 1] ^= 0x01;
      return `${h}.${p}.${sig.toString('base64url')}`;
    }
    case 'hs256_with_public_key':
      return sign(new TextEncoder().encode(goodPublicPem), { alg: 'HS256', kid: goodKey.jwk.kid });
    case 'kid_kty_mismatch':
      return sign(ecKey.privateKey, { alg: 'ES256', kid: goodKey.jwk.kid });
    case 'ok_es256':
      return sign(ecKey.privateKey, { alg: 'ES256', kid: ecKey.jwk.kid });
    case 'unknown_kid':
      return sign(unknownKey.privateKey, { alg: 'RS256', kid: unknownKey.jwk.kid });
    case 'kid_rotated':
      return sign(rotatedKey.privateKey, { alg: 'RS256', kid: rotatedKey.jwk.kid });
    default:
      return sign(goodKey.privateKey, { alg: 'RS256', kid: goodKey.jwk.kid });
  }
}

// ---------------------------------------------------------------------------------------
// Endpoints.

function discovery(issuer) {
  return {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    userinfo_endpoint: `${issuer}/userinfo`,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256', 'ES256'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    scopes_supported: ['openid', 'email', 'profile', 'offline_access'],
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nonce', 'email', 'email_verified', 'name'],
    authorization_response_iss_parameter_supported: true,
  };
}

function jwks(res) {
  stats.jwks_requests += 1;
  const keys = [goodKey.jwk, ecKey.jwk];
  if (mode === 'kid_rotated') {
    if (rotation.fetches >= rotation.before) keys.push(rotatedKey.jwk);
    rotation.fetches += 1;
  }
  return sendJson(res, 200, { keys }, { 'cache-control': 'no-cache' });
}

function authorize(res, url, issuer) {
  stats.authorization_requests += 1;
  const q = url.searchParams;
  const redirectUri = q.get('redirect_uri');
  if (q.get('client_id') !== CLIENT_ID || !redirectUri || !/^https?:\/\//.test(redirectUri)) {
    return sendHtml(res, 400, `<!doctype html><p>hostile OP: bad client_id or redirect_uri (${escapeHtml(q.get('client_id'))})</p>`);
  }
  const code = random();
  remember(codes, code, {
    nonce: q.get('nonce') ?? undefined,
    state: q.get('state'),
    challenge: q.get('code_challenge'),
    method: q.get('code_challenge_method'),
    redirectUri,
    expiresAt: Date.now() + 60_000,
  });
  const target = new URL(redirectUri);
  target.searchParams.set('code', code);
  if (q.has('state')) target.searchParams.set('state', q.get('state'));
  if (!isAzure()) target.searchParams.set('iss', mode === 'wrong_response_iss' ? 'http://evil.example' : issuer);
  res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
  return res.end();
}

function clientAuthenticated(req, form) {
  const header = req.headers.authorization ?? '';
  let id;
  let secret;
  if (/^basic /i.test(header)) {
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    try {
      id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
      secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
    } catch {
      return false;
    }
  } else {
    id = form.get('client_id');
    secret = form.get('client_secret');
  }
  if (id !== CLIENT_ID || typeof secret !== 'string') return false;
  const a = crypto.createHash('sha256').update(secret).digest();
  const b = crypto.createHash('sha256').update(CLIENT_SECRET).digest();
  return crypto.timingSafeEqual(a, b);
}

const oauthError = (res, status, error, description) => sendJson(res, status, { error, error_description: description });

async function token(req, res, issuer) {
  stats.token_requests += 1;
  const form = new URLSearchParams((await readBody(req)).toString('utf8'));
  let closed = false;
  res.on('close', () => { closed = true; });
  while (mode === 'token_hang') {
    await modeChanged.promise;
    if (closed) return undefined;
  }
  if (mode === 'token_500') {
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
    return res.end('hostile OP: 500\n');
  }
  if (mode === 'token_html') {
    return sendHtml(res, 200, '<!doctype html><html><body><h1>Welcome to the hostile OP</h1></body></html>');
  }
  if (!clientAuthenticated(req, form)) {
    return oauthError(res, 401, 'invalid_client', 'client authentication failed');
  }

  let nonce;
  const grantType = form.get('grant_type');
  if (grantType === 'authorization_code') {
    const code = form.get('code');
    const entry = code && codes.get(code);
    if (!entry) return oauthError(res, 400, 'invalid_grant', 'unknown or used code');
    codes.delete(code);
    if (entry.expiresAt < Date.now()) return oauthError(res, 400, 'invalid_grant', 'code expired');
    if (form.get('redirect_uri') !== entry.redirectUri) return oauthError(res, 400, 'invalid_grant', 'redirect_uri mismatch');
    const verifier = form.get('code_verifier') ?? '';
    const computed = crypto.createHash('sha256').update(verifier).digest('base64url');
    if (entry.method !== 'S256' || !entry.challenge || computed !== entry.challenge) {
      return oauthError(res, 400, 'invalid_grant', 'PKCE verification failed');
    }
    ({ nonce } = entry);
  } else if (grantType === 'refresh_token') {
    const rt = form.get('refresh_token');
    if (!rt || !refreshTokens.has(rt)) return oauthError(res, 400, 'invalid_grant', 'unknown refresh token');
    refreshTokens.delete(rt);
  } else {
    return oauthError(res, 400, 'unsupported_grant_type', 'authorization_code or refresh_token');
  }

  const accessToken = random();
  const refreshToken = random();
  remember(accessTokens, accessToken);
  remember(refreshTokens, refreshToken);
  return sendJson(res, 200, {
    access_token: accessToken,
    token_type: 'Bearer',
    expires_in: 300,
    refresh_token: refreshToken,
    id_token: await idToken(issuer, nonce),
    scope: 'openid email profile',
  }, { pragma: 'no-cache' });
}

function userinfo(req, res) {
  stats.userinfo_requests += 1;
  const m = /^bearer (.+)$/i.exec(req.headers.authorization ?? '');
  if (!m || !accessTokens.has(m[1].trim())) {
    return sendJson(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
  return sendJson(res, 200, {
    sub: mode === 'userinfo_other_sub' ? 'someone-else' : 'mallory',
    email: 'mallory@example.com',
    email_verified: true,
    name: 'Mallory',
  });
}

async function setMode(req, res) {
  const body = parseJsonObject(await readBody(req));
  if (!MODES.includes(body.mode)) return sendJson(res, 400, { error: `mode must be one of ${MODES.join(', ')}` });
  mode = body.mode;
  const before = body.jwks_fetches_before_publish ?? 1;
  if (!Number.isInteger(before) || before < 0) return sendJson(res, 400, { error: 'jwks_fetches_before_publish must be an integer >= 0' });
  rotation = { before, fetches: 0 };
  const old = modeChanged;
  modeChanged = deferred();
  old.resolve();
  return sendJson(res, 200, modeState());
}

function modeState() {
  return {
    mode,
    ...(mode === 'kid_rotated' ? {
      jwks_fetches_before_publish: rotation.before,
      jwks_fetches_since_mode: rotation.fetches,
      next_jwks_includes_rotated_kid: rotation.fetches >= rotation.before,
      rotated_kid: rotatedKey.jwk.kid,
    } : {}),
  };
}

// ---------------------------------------------------------------------------------------

const server = http.createServer();
const port = await listen(server, opts.host, opts.port);
const issuer = `http://${hostForUrl(opts.host)}:${port}`;

server.on('request', async (req, res) => {
  const url = new URL(req.url, issuer);
  const route = `${req.method} ${url.pathname}`;
  try {
    switch (route) {
      case 'GET /.well-known/openid-configuration':
        stats.discovery_requests += 1;
        return sendJson(res, 200, discovery(issuer));
      case 'GET /common/v2.0/.well-known/openid-configuration':
        stats.discovery_requests += 1;
        return sendJson(res, 200, {
          ...discovery(issuer),
          issuer: `${issuer}/{tenantid}/v2.0`,
          authorization_response_iss_parameter_supported: false,
        });
      case 'GET /jwks': return jwks(res);
      case 'GET /authorize': return authorize(res, url, issuer);
      case 'POST /token': return await token(req, res, issuer);
      case 'GET /userinfo':
      case 'POST /userinfo': return userinfo(req, res);
      case 'POST /__mode': return await setMode(req, res);
      case 'GET /__mode': return sendJson(res, 200, modeState());
      case 'GET /__stats': return sendJson(res, 200, stats);
      case 'POST /__stats/reset':
        stats = freshStats();
        return sendJson(res, 200, stats);
      default:
        return sendJson(res, 404, { error: 'not found' });
    }
  } catch (err) {
    if (!err.status) console.error('hostile OP error:', err);
    if (res.headersSent) return res.destroy();
    return sendJson(res, err.status || 500, { error: err.message });
  }
});

onShutdown(server, { exitWithParent: opts['exit-with-parent'] });
printReady(issuer, port);
