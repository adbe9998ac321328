// Helpers for the idp/ self-tests: start a server script and wait for its ready line, a
// fetch with a cookie jar, PKCE values.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const IDP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const tempDirs = [];
process.on('exit', () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

export function tempFile(name, content) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-idp-test-'));
  tempDirs.push(dir);
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

// Starts `node idp/SCRIPT args...`; resolves with { issuer, port, child, stderr(), stop() }.
export function startScript(script, args, { timeoutMs = 10_000 } = {}) {
  const child = spawn(process.execPath, [path.join(IDP_DIR, script), ...args, '--exit-with-parent'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const lines = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} not ready in ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with ${code} before ready; stderr:\n${stderr}`));
    });
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      lines.push(line);
      if (lines.length > 1) return;
      clearTimeout(timer);
      const ready = JSON.parse(line);
      const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
      resolve({
        ...ready,
        child,
        extraStdoutLines: lines,
        stderr: () => stderr,
        exited,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          return exited;
        },
      });
    });
  });
}

export function pkce() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

export function randomString() {
  return crypto.randomBytes(12).toString('base64url');
}

// fetch with a cookie jar and manual redirects (all cookies go to the one server).
export class Browser {
  constructor() {
    this.cookies = new Map(); // name -> { value, path }
  }

  async fetch(url, init = {}) {
    const u = new URL(url);
    const cookie = [...this.cookies.entries()]
      .filter(([, c]) => u.pathname.startsWith(c.path))
      .map(([name, c]) => `${name}=${c.value}`)
      .join('; ');
    const headers = new Headers(init.headers || {});
    if (cookie) headers.set('cookie', cookie);
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let cpath = '/';
      let expired = false;
      for (const a of attrs) {
        const [k, v] = a.split('=');
        if (k.toLowerCase() === 'path') cpath = v;
        if (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now()) expired = true;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      }
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, { value, path: cpath });
    }
    return res;
  }

  // Follows redirects while they stay on `origin`; returns the last response and its URL.
  async follow(url, init = {}, origin = new URL(url).origin) {
    let current = url;
    let res = await this.fetch(current, init);
    for (let i = 0; i < 10 && res.status >= 300 && res.status < 400; i += 1) {
      const next = new URL(res.headers.get('location'), current).href;
      if (new URL(next).origin !== origin) return { res, url: current, location: next };
      current = next;
      res = await this.fetch(current);
    }
    return { res, url: current, location: res.headers.get('location') };
  }
}

export function form(fields) {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  };
}

export function jsonPost(value) {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(value ?? {}),
  };
}

export function basic(id, secret) {
  const enc = (s) => encodeURIComponent(s);
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}
