// The demo upstream: shows the request it received (method, path, headers) and — when
// gatehouse sent an identity assertion — the claims of that JWT after verifying it against
// gatehouse's published keys. HTML for browsers, JSON for everything else. No dependencies
// beyond Node's standard library.
//
// Verifying gatehouse's assertion in an upstream (the part to copy):
//   1. fetch the keys once (and again on an unknown kid) from
//      <gatehouse origin>/.well-known/gatehouse/jwks.json
//   2. take the X-Gatehouse-Jwt-Assertion header, split header.payload.signature,
//      require alg ES256 and a known kid, verify the ECDSA P-256 signature over
//      "header.payload" (the signature is r||s, 64 bytes),
//   3. require aud == your own host name, exp in the future, and iss == what you expect.
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');

const [host, port] = (process.argv[2] || '127.0.0.1:8081').split(':');
const jwksUrl = process.argv[3] || 'http://127.0.0.1:8080/.well-known/gatehouse/jwks.json';

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

let keys = new Map();
async function fetchKeys() {
  const res = await fetch(jwksUrl);
  if (!res.ok) throw new Error(`JWKS: HTTP ${res.status}`);
  const { keys: list } = await res.json();
  keys = new Map(list.map((jwk) => [jwk.kid, crypto.createPublicKey({ key: jwk, format: 'jwk' })]));
}

// Returns the verified claims, or throws with the reason.
async function verifyAssertion(token, audience) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new Error('not a JWT');
  const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
  if (header.alg !== 'ES256' || !header.kid) throw new Error('alg must be ES256 with a kid');
  if (!keys.has(header.kid)) await fetchKeys();
  const key = keys.get(header.kid);
  if (!key) throw new Error('unknown kid');
  const ok = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), { key, dsaEncoding: 'ieee-p1363' },
    Buffer.from(parts[2], 'base64url'));
  if (!ok) throw new Error('bad signature');
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  if (claims.aud !== audience) throw new Error(`aud ${claims.aud} is not ${audience}`);
  if (!(claims.exp > Date.now() / 1000)) throw new Error('expired');
  return claims;
}

const server = http.createServer((req, res) => {
  let bytes = 0;
  req.on('data', (chunk) => { bytes += chunk.length; });
  req.on('end', async () => {
    const seen = {
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      headers: req.rawHeaders.reduce((acc, v, i, all) => (i % 2 ? acc : [...acc, [v, all[i + 1]]]), []),
      bodyBytes: bytes,
    };
    const assertion = req.headers['x-gatehouse-jwt-assertion'];
    if (assertion) {
      const audience = String(req.headers['x-forwarded-host'] || req.headers.host || '').replace(/:\d+$/, '');
      try {
        seen.identity = { verified: true, claims: await verifyAssertion(assertion, audience) };
      } catch (e) {
        seen.identity = { verified: false, error: e.message };
      }
    }
    if ((req.headers.accept || '').startsWith('text/html')) {
      const rows = seen.headers.map(([k, v]) => `<tr><th>${escape(k)}</th><td><code>${escape(v)}</code></td></tr>`).join('');
      let who = '<p>No identity assertion came with this request (a public route).</p>';
      if (seen.identity && seen.identity.verified) {
        const c = seen.identity.claims;
        who = `<h2>Signed in as ${escape(c.name || c.email || c.sub)}</h2>
<p>gatehouse's <code>X-Gatehouse-Jwt-Assertion</code> verified against its JWKS. Its claims:</p>
<pre>${escape(JSON.stringify(c, null, 2))}</pre>
<p><a href="/.gatehouse/">Your session</a> · <a href="/admin/">Admins only</a> · <a href="/public/">Public page</a></p>`;
      } else if (seen.identity) {
        who = `<p><strong>The identity assertion did not verify: ${escape(seen.identity.error)}</strong></p>`;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><head><meta charset="utf-8"><title>gatehouse demo app</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
th{text-align:left;padding-right:1rem;vertical-align:top}td code{word-break:break-all}</style></head>
<body><h1>gatehouse demo app</h1>${who}<p>This page is served by a small app behind gatehouse. The
request exactly as gatehouse forwarded it:</p>
<p><code>${escape(seen.method)} ${escape(seen.url)} HTTP/${escape(seen.httpVersion)}</code></p>
<table>${rows}</table></body></html>`);
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(seen, null, 2) + '\n');
    }
  });
});
server.listen(Number(port), host, () => console.log(`demo app on http://${host}:${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
