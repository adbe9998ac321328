// The demo upstream: shows the request it received (method, path, headers) as HTML for
// browsers and JSON for everything else. No dependencies beyond Node's standard library.
'use strict';
const http = require('node:http');

const [host, port] = (process.argv[2] || '127.0.0.1:8081').split(':');

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

const server = http.createServer((req, res) => {
  let bytes = 0;
  req.on('data', (chunk) => { bytes += chunk.length; });
  req.on('end', () => {
    const seen = {
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      headers: req.rawHeaders.reduce((acc, v, i, all) => (i % 2 ? acc : [...acc, [v, all[i + 1]]]), []),
      bodyBytes: bytes,
    };
    if ((req.headers.accept || '').startsWith('text/html')) {
      const rows = seen.headers.map(([k, v]) => `<tr><th>${escape(k)}</th><td><code>${escape(v)}</code></td></tr>`).join('');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><head><meta charset="utf-8"><title>gatehouse demo app</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
th{text-align:left;padding-right:1rem;vertical-align:top}td code{word-break:break-all}</style></head>
<body><h1>gatehouse demo app</h1><p>This page is served by a small app behind gatehouse. It shows
the request exactly as gatehouse forwarded it.</p>
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
