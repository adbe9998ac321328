#!/usr/bin/env node
// A headless login through a real browser (Debian chromium driven by playwright-core):
// gatehouse-protected page -> IdP login -> consent -> the page -> /.gatehouse/ user page ->
// Sign out (and the IdP's logout confirmation, if shown) -> the page again lands on the IdP
// login. Screenshots of every step go to --screenshots DIR.
//
//   node idp/browser-login.mjs --url URL [--user alice] [--password alice]
//        [--screenshots DIR] [--expect-text TEXT] [--expect-user-page-text TEXT]
//        [--chromium PATH] [--timeout SECONDS]
//
// Success: one JSON summary line on stdout, exit 0. Failure: failure.png in DIR, the error,
// the current URL and the page text (first 2000 chars) on stderr, exit 1. For demos and
// tests only (chromium runs with --no-sandbox, as root).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { parseCli } from './lib/util.mjs';

const USAGE = `usage: node idp/browser-login.mjs --url URL [--user alice] [--password PASSWORD]
       [--screenshots DIR] [--expect-text TEXT] [--expect-user-page-text TEXT]
       [--chromium PATH] [--timeout SECONDS]`;

const opts = parseCli(process.argv.slice(2), {
  url: { type: 'string', required: true },
  user: { type: 'string', default: 'alice' },
  password: { type: 'string' },
  screenshots: { type: 'string' },
  'expect-text': { type: 'string' },
  'expect-user-page-text': { type: 'string' },
  chromium: { type: 'string' },
  timeout: { type: 'number', default: 60 },
}, USAGE);

const target = new URL(opts.url);
const origin = target.origin;
const password = opts.password ?? opts.user;
const expectText = opts['expect-text'] ?? opts.user;
const expectUserPageText = opts['expect-user-page-text'] ?? opts.user;
const executablePath = opts.chromium || process.env.CHROMIUM || '/usr/bin/chromium';
const dir = path.resolve(opts.screenshots
  ?? fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-browser-login-')));
fs.mkdirSync(dir, { recursive: true });

const STEP_TIMEOUT = 15_000;
const LOGIN_FORM = 'form[method="post"][action^="/interaction/"][action$="/login"]';
const CONSENT_FORM = 'form[method="post"][action^="/interaction/"][action$="/confirm"]';
const IDP_LOGOUT_BUTTON = 'button[type="submit"][name="logout"][value="yes"]';
const SIGN_OUT_FORM = 'form[method="post"][action="/.gatehouse/sign_out"]';

const started = Date.now();
const steps = [];
let browser;
let page;

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

// Waits until the page has loaded and its URL has stayed put for a moment (redirect chains,
// auto-submitting forms).
async function settle() {
  const deadline = Date.now() + STEP_TIMEOUT;
  let last = '';
  while (Date.now() < deadline) {
    await page.waitForLoadState('load', { timeout: STEP_TIMEOUT }).catch(() => {});
    const now = page.url();
    if (now === last) return;
    last = now;
    await sleep(300);
  }
  throw new Error(`page did not settle within ${STEP_TIMEOUT} ms (at ${page.url()})`);
}

async function shot(name) {
  const file = path.join(dir, name);
  await page.screenshot({ path: file, fullPage: true });
  steps.push({ step: name.replace(/^\d+-|\.png$/g, ''), url: page.url(), screenshot: file });
}

async function bodyText() {
  return page.locator('body').innerText({ timeout: 2000 }).catch(() => '');
}

async function clickAndSettle(locator) {
  await Promise.all([
    page.waitForEvent('framenavigated', { timeout: STEP_TIMEOUT }),
    locator.click(),
  ]);
  await settle();
}

// On the IdP login page: returns the IdP origin.
async function expectIdpLogin(what) {
  await page.locator(LOGIN_FORM).waitFor({ timeout: STEP_TIMEOUT }).catch(() => {
    throw new Error(`${what}: expected the IdP login form (${LOGIN_FORM})`);
  });
  const here = new URL(page.url()).origin;
  if (here === origin) throw new Error(`${what}: the login form is on the app origin ${origin}, not an IdP`);
  return here;
}

async function waitForText(text, what) {
  const deadline = Date.now() + STEP_TIMEOUT;
  while (Date.now() < deadline) {
    if ((await bodyText()).includes(text)) return;
    await sleep(200);
  }
  throw new Error(`${what}: the page does not contain ${JSON.stringify(text)}`);
}

async function run() {
  browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--no-zygote'] });
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);

  // 1. the protected page sends us to the IdP
  await page.goto(opts.url);
  await settle();
  const idpOrigin = await expectIdpLogin('opening --url');
  await shot('01-idp-login.png');

  // 2. sign in
  const form = page.locator(LOGIN_FORM);
  await form.locator('input[name="login"]').fill(opts.user);
  await form.locator('input[name="password"][type="password"]').fill(password);
  await clickAndSettle(form.locator('button[type="submit"]', { hasText: 'Sign in' }));
  if (await page.locator(LOGIN_FORM).count()) {
    const text = await bodyText();
    throw new Error(text.includes('Invalid username or password')
      ? `the IdP rejected user ${opts.user}: Invalid username or password`
      : 'still on the login form after signing in');
  }

  // 3. consent (absent when this browser already consented, which a fresh one has not)
  let consentShown = false;
  if (await page.locator(CONSENT_FORM).count()) {
    consentShown = true;
    await shot('02-idp-consent.png');
    await clickAndSettle(page.locator(CONSENT_FORM).locator('button[type="submit"]', { hasText: 'Continue' }));
  }

  // 4. back on the app
  if (new URL(page.url()).origin !== origin) {
    throw new Error(`after the IdP: expected to be back on ${origin}`);
  }
  await waitForText(expectText, 'back on the app');
  await shot('03-app.png');

  // 5. the proxy's user page
  await page.goto(`${origin}/.gatehouse/`);
  await settle();
  if (new URL(page.url()).origin !== origin) throw new Error('/.gatehouse/: left the app origin (not signed in?)');
  await waitForText(expectUserPageText, '/.gatehouse/');
  const signOut = page.locator(SIGN_OUT_FORM).locator('button[type="submit"]', { hasText: 'Sign out' });
  if (!(await signOut.count())) throw new Error(`/.gatehouse/: no Sign out button in ${SIGN_OUT_FORM}`);
  await shot('04-user-page.png');

  // 6. sign out, confirming at the IdP if it asks
  await clickAndSettle(signOut);
  let idpLogoutConfirmed = false;
  if (await page.locator(IDP_LOGOUT_BUTTON).count()) {
    await shot('05-idp-logout.png');
    await clickAndSettle(page.locator(IDP_LOGOUT_BUTTON));
    idpLogoutConfirmed = true;
  }
  await shot('06-signed-out.png');
  const signedOutUrl = page.url();

  // 7. the protected page asks for a login again
  await page.goto(opts.url);
  await settle();
  await expectIdpLogin('opening --url after signing out');
  await shot('07-idp-login-again.png');

  return {
    ok: true,
    url: opts.url,
    user: opts.user,
    idp_origin: idpOrigin,
    consent_shown: consentShown,
    idp_logout_confirmed: idpLogoutConfirmed,
    signed_out_url: signedOutUrl,
    screenshots_dir: dir,
    steps,
    duration_ms: Date.now() - started,
  };
}

async function fail(err) {
  process.stderr.write(`browser-login FAILED: ${err?.message ?? err}\n`);
  if (page) {
    process.stderr.write(`current URL: ${page.url()}\n`);
    await page.screenshot({ path: path.join(dir, 'failure.png'), fullPage: true, timeout: 5000 })
      .then(() => process.stderr.write(`screenshot: ${path.join(dir, 'failure.png')}\n`))
      .catch((e) => process.stderr.write(`(no failure screenshot: ${e.message})\n`));
    process.stderr.write(`page text:\n${(await bodyText()).slice(0, 2000)}\n`);
  }
  process.stderr.write(`steps done: ${JSON.stringify(steps)}\n`);
}

let timer;
const overall = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Error(`overall timeout of ${opts.timeout} s`)), opts.timeout * 1000);
});

let code = 0;
try {
  const summary = await Promise.race([run(), overall]);
  await new Promise((resolve) => { process.stdout.write(`${JSON.stringify(summary)}\n`, resolve); });
} catch (err) {
  code = 1;
  await fail(err);
} finally {
  clearTimeout(timer);
  await browser?.close().catch(() => {});
}
process.exit(code);
