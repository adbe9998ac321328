// A scripted login (no browser): opens URL through gatehouse, follows redirects to the IdP
// (idp/server.mjs), submits its login and consent forms, and prints the gatehouse session
// cookie ("_gatehouse=…") on stdout. For load tests: sessions come from a real login.
// Usage: node loadtest/login.mjs URL USER PASSWORD [COOKIE_NAME]
const [url, user, password, cookieName = '_gatehouse'] = process.argv.slice(2);
if (!url || !user || !password) {
  console.error('usage: node loadtest/login.mjs URL USER PASSWORD [COOKIE_NAME]');
  process.exit(2);
}
const jar = new Map(); // host -> Map(name -> value)
function remember(target, response) {
  const host = new URL(target).host.replace(/:\d+$/, '');
  const cookies = jar.get(host) ?? new Map();
  for (const line of response.headers.getSetCookie()) {
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
async function go(target, form) {
  const headers = { accept: 'text/html', cookie: cookieHeader(target) };
  const init = { redirect: 'manual', headers };
  if (form) {
    init.method = 'POST';
    init.body = new URLSearchParams(form).toString();
    headers['content-type'] = 'application/x-www-form-urlencoded';
  }
  const response = await fetch(target, init);
  remember(target, response);
  return response;
}
let next = url;
let form;
for (let hop = 0; hop < 30; hop += 1) {
  const response = await go(next, form);
  form = undefined;
  if (response.status >= 300 && response.status < 400) {
    next = new URL(response.headers.get('location'), next).toString();
    continue;
  }
  const html = await response.text();
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
