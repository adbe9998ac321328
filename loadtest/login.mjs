// A scripted login (no browser): opens URL through gatehouse, follows redirects to the IdP
// (idp/server.mjs), submits its login and consent forms, and prints the gatehouse session
// cookie ("_gatehouse=…") on stdout. For load tests: sessions come from a real login.
// Works for any relying party on that URL (e.g. Apache + mod_auth_openidc with
// COOKIE_NAME mod_auth_openidc_session). Requests carry a browser navigation's headers
// (Sec-Fetch-Mode: navigate): some RPs redirect only those to the IdP. node:http, not fetch,
// because fetch always sends Sec-Fetch-Mode: cors.
// Usage: node loadtest/login.mjs URL USER PASSWORD [COOKIE_NAME]
import http from 'node:http';

const [url, user, password, cookieName = '_gatehouse'] = process.argv.slice(2);
if (!url || !user || !password) {
  console.error('usage: node loadtest/login.mjs URL USER PASSWORD [COOKIE_NAME]');
  process.exit(2);
}
const jar = new Map(); // host -> Map(name -> value)
function remember(target, response) {
  const host = new URL(target).host.replace(/:\d+$/, '');
  const cookies = jar.get(host) ?? new Map();
  for (const line of response.headers['set-cookie'] ?? []) {
    const [pair] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (/Max-Age=0/i.test(line) || value === '') cookies.delete(name); else cookies.set(name, value);
  }
  jar.set(host, cookies);
}
function cookieHeader(target) {
  const cookies = jar.get(new URL(target).host.replace(/:\d+$/, ''));
  return cookies ? [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') : '';
}
// One request, no redirects followed: {status, headers, text}.
function go(target, form) {
  const headers = {
    accept: 'text/html', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document',
    cookie: cookieHeader(target),
  };
  const body = form ? new URLSearchParams(form).toString() : undefined;
  if (body !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers['content-length'] = Buffer.byteLength(body);
  }
  return new Promise((resolve, reject) => {
    const request = http.request(target, { method: form ? 'POST' : 'GET', headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const response = { status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() };
        remember(target, response);
        resolve(response);
      });
      res.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}
let next = url;
let form;
for (let hop = 0; hop < 30; hop += 1) {
  const response = await go(next, form);
  form = undefined;
  if (response.status >= 300 && response.status < 400) {
    next = new URL(response.headers.location, next).toString();
    continue;
  }
  const html = response.text;
  const login = html.match(/action="([^"]*\/login)"/);
  const confirm = html.match(/action="([^"]*\/confirm)"/);
  if (login) {
    next = new URL(login[1], next).toString();
    form = { login: user, password };
  } else if (confirm) {
    next = new URL(confirm[1], next).toString();
    form = {};
  } else {
    const value = jar.get(new URL(url).host.replace(/:\d+$/, ''))?.get(cookieName);
    if (response.status !== 200 || !value) {
      console.error(`login failed at ${next}: HTTP ${response.status}\n${html.slice(0, 500)}`);
      process.exit(1);
    }
    console.log(`${cookieName}=${value}`);
    process.exit(0);
  }
}
console.error('login: too many hops');
process.exit(1);
