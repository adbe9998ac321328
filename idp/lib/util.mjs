// Small helpers shared by server.mjs and hostile.mjs (Node standard library only).

const BODY_LIMIT = 64 * 1024;

export function escapeHtml(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

// Reads a request body (at most 64 KiB) into a Buffer.
export async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > BODY_LIMIT) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

// A JSON object from a body that may be empty (→ {}).
export function parseJsonObject(buf) {
  const text = buf.toString('utf8').trim();
  if (!text) return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw Object.assign(new Error('body is not valid JSON'), { status: 400 });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw Object.assign(new Error('body must be a JSON object'), { status: 400 });
  }
  return value;
}

export function sendJson(res, status, value, headers = {}) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(body);
}

export function sendHtml(res, status, html, headers = {}) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(html);
}

// Parses `--name value` / `--name=value` / `--flag` arguments against a spec
// { name: { type: 'string' | 'number' | 'boolean', default, required } }.
export function parseCli(argv, spec, usage) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stderr.write(`${usage}\n`);
      process.exit(0);
    }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!m || !(m[1] in spec)) fail(`unknown argument: ${arg}`, usage);
    const [, name, inline] = m;
    const { type } = spec[name];
    let value = inline;
    if (type === 'boolean') {
      value = value === undefined ? true : value !== 'false';
    } else {
      if (value === undefined) {
        i += 1;
        if (i >= argv.length) fail(`missing value for --${name}`, usage);
        value = argv[i];
      }
      if (type === 'number') {
        const n = Number(value);
        if (!Number.isFinite(n) || n < 0) fail(`--${name} must be a non-negative number`, usage);
        value = n;
      }
    }
    out[name] = value;
  }
  for (const [name, { default: def, required }] of Object.entries(spec)) {
    if (out[name] === undefined) {
      if (required) fail(`--${name} is required`, usage);
      out[name] = def;
    }
  }
  return out;
}

function fail(msg, usage) {
  process.stderr.write(`${msg}\n${usage}\n`);
  process.exit(2);
}

// The one stdout line a test harness waits for.
export function printReady(issuer, port) {
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
}

// Route console.log/info/debug to stderr so that stdout carries only the ready line.
export function consoleToStderr() {
  const toStderr = (...args) => console.error(...args);
  console.log = toStderr;
  console.info = toStderr;
  console.debug = toStderr;
}

export function listen(server, host, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

// SIGTERM/SIGINT close the server and exit 0. With exitWithParent, the process also exits
// when its parent dies (it was re-parented), so a crashed test run leaves nothing behind.
export function onShutdown(server, { exitWithParent = false } = {}) {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (exitWithParent) {
    const parent = process.ppid;
    setInterval(() => { if (process.ppid !== parent) stop(); }, 500).unref();
  }
}

export function hostForUrl(host) {
  return host.includes(':') ? `[${host}]` : host;
}
