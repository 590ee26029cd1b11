#!/usr/bin/env node
// Headless-browser check of the control plane's web dashboard.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:PORT --token TOKEN --out DIR \
//     [--devices N] [--stage "Stage 1 of 3"] [--training-job ID] [--timeout SECONDS]
//
// TOKEN is the API token the dashboard signs in with (a viewer token is enough): it is
// placed in the tab's session storage before the page loads, as the sign-in form does.
//
// Drives Chromium (CHROMIUM, default /usr/bin/chromium) through every view, asserts
// what the arguments expect, saves a PNG per view in DIR and exits non-zero on the
// first failed check. Uncaught page errors and console errors fail the run. With
// --training-job, the Training view must list that job and show its log.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    out: { type: 'string', default: 'target/dashboard-screenshots' },
    devices: { type: 'string' },
    stage: { type: 'string' },
    'training-job': { type: 'string' },
    timeout: { type: 'string', default: '30' },
  },
});

if (!args.url || !args.token) {
  console.error('usage: node tests/browser/dashboard.mjs --url http://127.0.0.1:PORT --token TOKEN --out DIR [--devices N] [--stage "Stage 1 of 3"] [--training-job ID]');
  process.exit(2);
}
const base = args.url.replace(/\/+$/, '');
const timeoutMs = Number(args.timeout) * 1000;
const expectedDevices = args.devices === undefined ? null : Number(args.devices);
if (expectedDevices !== null && !Number.isInteger(expectedDevices)) {
  console.error(`--devices must be a whole number, got ${JSON.stringify(args.devices)}`);
  process.exit(2);
}

class CheckFailed extends Error {}

/** Puts the API token where the dashboard's sign-in form keeps it, before any page loads. */
async function signIn(context) {
  await context.addInitScript((token) => sessionStorage.setItem('edgewise.token', token), args.token);
}
const pageErrors = [];
let browser;

function ok(message) {
  console.log(`ok   ${message}`);
}

/** Fails when the page reported an uncaught error or a console error so far. */
function checkPageErrors(where) {
  if (pageErrors.length) {
    throw new CheckFailed(`page errors ${where}:\n  ${pageErrors.join('\n  ')}`);
  }
}

/**
 * Polls `probe` in the page until `accept(value)` holds, up to the timeout; the failure
 * message shows the last value seen.
 */
async function waitFor(page, what, probe, accept, arg) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await page.evaluate(probe, arg);
    } catch (err) {
      last = `evaluation failed: ${err.message}`;
    }
    if (accept(last)) return last;
    checkPageErrors(`while waiting for ${what}`);
    if (Date.now() > deadline) {
      throw new CheckFailed(`${what}: not seen within ${timeoutMs / 1000} s; last seen ${JSON.stringify(last)}`);
    }
    await page.waitForTimeout(250);
  }
}

async function watch(page) {
  page.on('pageerror', (err) => pageErrors.push(`uncaught: ${err.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(`console.error: ${message.text()}`);
  });
}

async function shot(page, name) {
  const file = path.join(args.out, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`     screenshot ${file}`);
}

/** Opens a view through its nav link, as a keyboard or mouse user would. */
async function openView(page, view) {
  await page.click(`nav a[data-view="${view}"]`);
  await waitFor(page, `nav link ${view} to be current`,
    (v) => document.querySelector(`nav a[data-view="${v}"]`)?.getAttribute('aria-current'),
    (value) => value === 'page', view);
}

const deviceCount = () => document.querySelector('[data-testid="device-count"]')?.textContent.trim() ?? null;
const acceptCount = (value) => (expectedDevices === null ? /^\d+$/.test(value ?? '') : value === String(expectedDevices));
const trainingJob = args['training-job'] ?? null;
const jobListed = (id) => [...document.querySelectorAll('main table tbody th')].some((th) => th.textContent.trim() === id);

/** Opens the Training view, selects the job and waits for its log to show a line. */
async function checkTraining(page) {
  await openView(page, 'training');
  await waitFor(page, `training job ${trainingJob} listed`, jobListed, Boolean, trainingJob);
  ok(`training: job ${trainingJob} listed`);
  const button = page.locator(`button[data-job="${trainingJob}"]`);
  if ((await button.getAttribute('aria-current')) !== 'true') await button.click();
  await waitFor(page, `training: job ${trainingJob} selected`,
    (id) => document.getElementById('job-title')?.textContent.includes(id) ?? false, Boolean, trainingJob);
  const lines = await waitFor(page, `training: a line in the log of ${trainingJob}`,
    () => (document.querySelector('[data-testid="job-log"]')?.textContent ?? '').split('\n').filter((l) => l.trim()).length,
    (n) => n >= 1);
  ok(`training: log of ${trainingJob} shows ${lines} line(s)`);
}

async function main() {
  await mkdir(args.out, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });

  // Desktop.
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await signIn(desktop);
  const page = await desktop.newPage();
  await watch(page);
  const response = await page.goto(`${base}/#fleet`, { waitUntil: 'load' });
  if (!response || !response.ok()) throw new CheckFailed(`GET ${base}/ answered ${response?.status()}`);
  ok(`dashboard served at ${base}/`);
  const who = await waitFor(page, 'the signed-in identity',
    () => document.getElementById('who')?.textContent.trim() ?? null, (v) => /\((viewer|ci|operator|admin)\)/.test(v ?? ''));
  ok(`signed in as ${who}`);

  const count = await waitFor(page, `fleet device count ${expectedDevices ?? '(a number)'}`, deviceCount, acceptCount);
  ok(`fleet: device count is ${count}`);
  const online = await waitFor(page, 'fleet online count',
    () => document.querySelector('[data-testid="online-count"]')?.textContent.trim() ?? null, (v) => /^\d+$/.test(v ?? ''));
  ok(`fleet: online count is ${online}`);
  await waitFor(page, 'fleet alerts list', () => !!document.querySelector('[data-testid="alerts"]'), Boolean);
  ok('fleet: alerts list present');
  await shot(page, 'fleet-desktop');

  await openView(page, 'models');
  const versions = await waitFor(page, 'model versions listed',
    () => document.querySelectorAll('main article.card').length + document.querySelectorAll('main .empty').length,
    (n) => n > 0);
  ok(`models: ${versions} version card(s) or empty state shown`);
  await shot(page, 'models');

  await openView(page, 'rollouts');
  const stage = await waitFor(page, `rollout stage text ${args.stage ? JSON.stringify(args.stage) : '(Stage N of M)'}`,
    () => [...document.querySelectorAll('[data-testid="rollout-stage"]')].map((e) => e.textContent.trim()),
    (texts) => Array.isArray(texts) && texts.some((t) => (args.stage ? t === args.stage : /^Stage \d+ of \d+$/.test(t))));
  ok(`rollouts: stage text shown (${stage.join('; ')})`);
  const verdicts = await waitFor(page, 'a gate verdict among pass/fail/wait',
    () => [...document.querySelectorAll('[data-testid="gate-verdict"]')].map((e) => e.textContent.trim()),
    (texts) => Array.isArray(texts) && texts.some((t) => ['pass', 'fail', 'wait'].includes(t)));
  const odd = verdicts.filter((t) => !['pass', 'fail', 'wait'].includes(t));
  if (odd.length) throw new CheckFailed(`rollouts: gate verdicts must read pass, fail or wait; saw ${JSON.stringify(odd)}`);
  ok(`rollouts: gate verdicts ${JSON.stringify(verdicts)}`);
  await shot(page, 'rollouts');

  await openView(page, 'drift');
  const points = await waitFor(page, 'drift chart with a series of at least 2 points',
    () => [...document.querySelectorAll('[data-testid="drift-chart"] svg path.series')].map((p) => Number(p.getAttribute('data-points'))),
    (counts) => Array.isArray(counts) && counts.some((n) => n >= 2));
  ok(`drift: chart has ${points.length} series, points ${JSON.stringify(points)}`);
  const label = await page.evaluate(() => document.querySelector('[data-testid="drift-chart"] svg[role="img"]')?.getAttribute('aria-label'));
  if (!label) throw new CheckFailed('drift: chart SVG lacks role="img" with an aria-label');
  ok('drift: chart has role="img" and an aria-label');
  await shot(page, 'drift');

  await openView(page, 'performance');
  await waitFor(page, 'performance latency and error charts',
    () => ['latency-chart', 'error-chart'].every((id) => {
      const box = document.querySelector(`[data-testid="${id}"]`);
      return box && (box.querySelector('svg') || box.querySelector('.empty'));
    }), Boolean);
  ok('performance: latency and error charts rendered');
  await shot(page, 'performance');

  if (trainingJob !== null) {
    await checkTraining(page);
    await shot(page, 'training');
  }
  checkPageErrors('on desktop');
  await desktop.close();

  // Phone.
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  await signIn(phone);
  const small = await phone.newPage();
  await watch(small);
  await small.goto(`${base}/#fleet`, { waitUntil: 'load' });
  await waitFor(small, `phone: fleet device count ${expectedDevices ?? '(a number)'}`, deviceCount, acceptCount);
  const overflow = await small.evaluate(() => ({
    scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth,
  }));
  if (overflow.scrollWidth > overflow.innerWidth + 1) {
    await shot(small, 'fleet-phone');
    throw new CheckFailed(`phone: page scrolls sideways: scrollWidth ${overflow.scrollWidth} > innerWidth ${overflow.innerWidth}`);
  }
  ok(`phone: no horizontal overflow at 390x844 (scrollWidth ${overflow.scrollWidth})`);
  await shot(small, 'fleet-phone');
  if (trainingJob !== null) {
    await checkTraining(small);
    const wide = await small.evaluate(() => document.scrollingElement.scrollWidth - window.innerWidth);
    if (wide > 1) {
      await shot(small, 'training-phone');
      throw new CheckFailed(`phone: the Training view scrolls sideways by ${wide} px`);
    }
    ok('phone: no horizontal overflow in the Training view');
    await shot(small, 'training-phone');
  }
  checkPageErrors('on phone');
  await phone.close();
  ok('no page errors');
}

try {
  await main();
  console.log('all dashboard checks passed');
} catch (err) {
  console.error(err instanceof CheckFailed ? `FAIL ${err.message}` : `FAIL unexpected error: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  await browser?.close().catch(() => {});
}
