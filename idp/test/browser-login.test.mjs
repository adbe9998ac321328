// Runs idp/browser-login.mjs against idp/server.mjs and a stand-in relying party that shows
// the same browser-visible surface as gatehouse (a protected page, /oauth2/callback,
// /.gatehouse/ with a Sign out form, RP-initiated logout). This tests the script and the
// IdP pages, not gatehouse; the gatehouse end-to-end test drives the same script against the
// real proxy. Skipped when no chromium is installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { IDP_DIR, startScript, tempFile } from './support.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function standInRp() {
  const sessions = new Map();
  const pending = new Map();
  const rp = { meta: undefined, issuer: undefined, origin: undefined };
  rp.server = http.createServer(async (req, res) => {
    const url = new URL(req.url, rp.origin);
    const sid = /(?:^|; )sid=([^;]+)/.exec(req.headers.cookie || '')?.[1];
    const session = sid && sessions.get(sid);
    const redirect = (location, cookie) => {
      res.writeHead(302, { location, ...(cookie ? { 'set-cookie': cookie } : {}) });
      res.end();
    };
    if (url.pathname === '/oauth2/callback') {
      const p = pending.get(url.searchParams.get('state'));
      pending.delete(url.searchParams.get('state'));
      if (!p || url.searchParams.get('iss') !== rp.issuer) {
        res.writeHead(400);
        return res.end('bad state or iss');
      }
      const r = await fetch(rp.meta.token_endpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from('rp:rp-secret').toString('base64')}` },
        body: new URLSearchParams({
          grant_type: 'authorization_code', code: url.searchParams.get('code'),
          redirect_uri: `${rp.origin}/oauth2/callback`, code_verifier: p.verifier,
        }),
      });
      const t = await r.json();
      const claims = JSON.parse(Buffer.from(t.id_token.split('.')[1], 'base64url'));
      const id = crypto.randomUUID();
      sessions.set(id, { claims });
      return redirect(p.returnTo, `sid=${id}; Path=/; HttpOnly`);
    }
    if (url.pathname === '/.gatehouse/sign_out' && req.method === 'POST') {
      sessions.delete(sid);
      const end = new URL(rp.meta.end_session_endpoint);
      end.search = new URLSearchParams({ client_id: 'rp', post_logout_redirect_uri: `${rp.origin}/` });
      return redirect(end.href, 'sid=; Path=/; Max-Age=0');
    }
    if (!session) {
      const verifier = crypto.randomBytes(32).toString('base64url');
      const state = crypto.randomBytes(16).toString('base64url');
      pending.set(state, { verifier, returnTo: url.pathname });
      const auth = new URL(rp.meta.authorization_endpoint);
      auth.search = new URLSearchParams({
        client_id: 'rp', redirect_uri: `${rp.origin}/oauth2/callback`, response_type: 'code',
        scope: 'openid email profile', state, nonce: crypto.randomUUID(),
        code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
      });
      return redirect(auth.href);
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    if (url.pathname === '/.gatehouse/') {
      return res.end(`<h1>Signed in</h1><p>${session.claims.email}</p>
<form method="post" action="/.gatehouse/sign_out"><button type="submit">Sign out</button></form>`);
    }
    return res.end(`<h1>Stand-in app</h1><p>Hello ${session.claims.sub}</p>`);
  });
  return rp;
}

test('browser-login.mjs walks login, consent, user page, sign-out, login again', {
  skip: !fs.existsSync(CHROMIUM) && `no chromium at ${CHROMIUM}`,
  timeout: 90_000,
}, async () => {
  const rp = standInRp();
  await new Promise((r) => { rp.server.listen(0, '127.0.0.1', r); });
  rp.origin = `http://127.0.0.1:${rp.server.address().port}`;
  const idp = await startScript('server.mjs', ['--clients', tempFile('clients.json', [{
    client_id: 'rp', client_secret: 'rp-secret', redirect_uris: [`${rp.origin}/oauth2/callback`],
    post_logout_redirect_uris: [`${rp.origin}/`], grant_types: ['authorization_code', 'refresh_token'],
  }])]);
  rp.issuer = idp.issuer;
  rp.meta = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-browser-login-test-'));
  try {
    const run = (extra) => new Promise((resolve) => {
      const child = spawn(process.execPath, [path.join(IDP_DIR, 'browser-login.mjs'),
        '--url', `${rp.origin}/some/page`, '--screenshots', dir, '--chromium', CHROMIUM, ...extra]);
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      child.on('exit', (code) => resolve({ code, out, err }));
    });

    const ok = await run(['--user', 'bob', '--expect-text', 'Hello bob']);
    assert.equal(ok.code, 0, ok.err);
    const summary = JSON.parse(ok.out.trim());
    assert.equal(summary.ok, true);
    assert.equal(summary.idp_origin, idp.issuer);
    assert.equal(summary.consent_shown, true);
    assert.equal(summary.idp_logout_confirmed, true);
    assert.deepEqual(summary.steps.map((s) => s.step),
      ['idp-login', 'idp-consent', 'app', 'user-page', 'idp-logout', 'signed-out', 'idp-login-again']);
    for (const s of summary.steps) assert.ok(fs.statSync(s.screenshot).size > 1000);

    const bad = await run(['--user', 'bob', '--password', 'wrong', '--timeout', '30']);
    assert.equal(bad.code, 1);
    assert.equal(bad.out, '');
    assert.match(bad.err, /Invalid username or password/);
    assert.match(bad.err, /current URL: http:\/\/127\.0\.0\.2:/);
    assert.ok(fs.existsSync(path.join(dir, 'failure.png')));
  } finally {
    await idp.stop();
    rp.server.closeAllConnections();
    rp.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
