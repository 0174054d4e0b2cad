// Drives the outbox dashboard in headless Chromium, one step per run:
//   node tests/browser/dashboard.mjs <step> <baseUrl> [args...]
// The Rust test that runs it prepares the data and checks the database afterwards.
// Env: OUTBOX_BROWSER_MODULES (a node_modules folder holding playwright-core), CHROMIUM,
//      OUTBOX_TOKEN (the admin token), OUTBOX_SCREENSHOT (overview step: where to save a PNG).
import { createRequire } from 'node:module';
import path from 'node:path';

const TIMEOUT = 15_000;

async function loadPlaywright() {
  const dir = process.env.OUTBOX_BROWSER_MODULES;
  if (dir) {
    // Resolving from a file inside the folder finds packages in it (a node_modules folder)
    // or below it (a folder that has node_modules/).
    const require = createRequire(path.join(path.resolve(dir), 'package.json'));
    try {
      return require('playwright-core');
    } catch {
      return require(path.join(path.resolve(dir), 'playwright-core'));
    }
  }
  const mod = await import('playwright-core');
  return mod.default ?? mod;
}

/** A CSS attribute selector value, quoted. */
const attr = (value) => `"${String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

const digits = (text) => String(text).replace(/[^0-9]/g, '');

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const ok = (message) => console.log(`ok: ${message}`);

/** Polls fn until it returns a truthy value; fails with describe()'s text after the timeout. */
async function until(fn, describe) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const value = await fn().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${await describe()}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Opens a hash route of the app, handing it the token first when there is one. */
async function open(page, base, hashRoute = '#/', { withToken = true } = {}) {
  const root = base.replace(/\/*$/, '/');
  const token = process.env.OUTBOX_TOKEN;
  if (withToken && token) {
    await page.goto(`${root}#token=${encodeURIComponent(token)}`);
    // the app moves the token to sessionStorage and clears it from the address bar
    await page.waitForFunction(() => !location.hash.includes('token='));
  }
  await page.goto(root + hashRoute);
}

async function waitNotice(page, word) {
  await page.waitForFunction((w) => {
    const el = document.querySelector('#notice');
    return el && !el.hidden && el.textContent.includes(w);
  }, word);
  ok(`notice: ${await page.textContent('#notice')}`);
}

/** Confirms the open dialog after checking that its text contains `expected`. */
async function confirm(page, expected) {
  await page.waitForSelector('#confirm', { state: 'visible' });
  const text = await page.textContent('#confirm-text');
  check(text.includes(expected), `confirmation "${text}" does not contain "${expected}"`);
  ok(`confirmation: ${text}`);
  await page.click('#confirm-ok');
}

const steps = {
  async overview(page, base, key, pending, failed) {
    await open(page, base);
    const row = `#keys tr[data-key=${attr(key)}]`;
    await page.waitForSelector(row);
    ok(`row for ${key}`);
    for (const [col, want] of [['pending', pending], ['failed', failed]]) {
      const cell = `${row} td[data-col="${col}"]`;
      await until(async () => digits(await page.textContent(cell)) === digits(want),
        async () => `${col} of ${key} shows "${await page.textContent(cell)}", expected ${want}`);
      ok(`${col} = ${want}`);
    }
    if (process.env.OUTBOX_SCREENSHOT) {
      await page.screenshot({ path: process.env.OUTBOX_SCREENSHOT, fullPage: true });
      ok(`screenshot ${process.env.OUTBOX_SCREENSHOT}`);
    }
  },

  async 'failed-listed'(page, base, id, key, otherKey) {
    const row = `#events tr[data-id=${attr(id)}]`;
    const routingKey = '#filters input[name="routingKey"]';
    await open(page, base, '#/events?status=FAILED');
    await page.waitForSelector(row);
    ok(`${id} listed among FAILED`);

    await page.fill(routingKey, otherKey);
    await page.click('#apply');
    await page.waitForSelector(row, { state: 'detached' });
    const inHash = await page.evaluate(() =>
      new URLSearchParams(location.hash.split('?')[1] || '').get('routingKey'));
    check(inHash === otherKey, `the hash has routingKey=${inHash}, expected ${otherKey}`);
    ok(`filtered by ${otherKey}: row gone, hash ${await page.evaluate(() => location.hash)}`);

    await page.fill(routingKey, key);
    await page.click('#apply');
    await page.waitForSelector(row);
    ok(`filtered by ${key}: row back`);

    await page.reload();
    await until(async () => (await page.inputValue(routingKey)) === key,
      async () => `after a reload the routingKey filter is "${await page.inputValue(routingKey)}"`);
    await page.waitForSelector(row);
    ok('the filter survives a reload');
  },

  async replay(page, base, id) {
    await open(page, base, `#/event/${encodeURIComponent(id)}`);
    await page.click('#replay-one');
    await confirm(page, '1');
    await waitNotice(page, 'replayed');
  },

  async 'replay-all'(page, base, key, count) {
    await open(page, base, `#/events?${new URLSearchParams({ status: 'FAILED', routingKey: key })}`);
    await page.click('#replay-all');
    await confirm(page, Number(count).toLocaleString('en-US'));
    await waitNotice(page, 'replayed');
  },

  async pause(page, base, key) {
    await toggle(page, base, key, 'pause', 'resume');
  },

  async resume(page, base, key) {
    await toggle(page, base, key, 'resume', 'pause');
  },

  async refused(page, base) {
    const token = process.env.OUTBOX_TOKEN;
    check(token, 'OUTBOX_TOKEN is needed for the refused step');
    await open(page, base, '#/', { withToken: false });
    await page.waitForSelector('#token-form', { state: 'visible' });
    ok('token form shown');
    const rows = await page.locator('#keys tbody tr').count();
    check(rows === 0, `${rows} key rows shown without a token`);
    ok('no key rows without a token');
    await page.fill('#token', token);
    await page.click('#token-save');
    await page.waitForSelector('#keys tbody tr');
    ok('key rows shown with the token');
  },

  async payload(page, base, id, ...expected) {
    await open(page, base, `#/event/${encodeURIComponent(id)}`);
    await page.waitForSelector('#payload');
    for (const text of expected) {
      await until(async () => (await page.textContent('#payload')).includes(text),
        async () => `#payload does not contain ${JSON.stringify(text)}: ${await page.textContent('#payload')}`);
      ok(`payload contains ${text}`);
    }
  },
};

/** Clicks a pause/resume button of a key, confirms, and waits for the opposite button. */
async function toggle(page, base, key, action, opposite) {
  await open(page, base);
  await page.click(`#keys button[data-action="${action}"][data-key=${attr(key)}]`);
  await confirm(page, key);
  await page.waitForSelector(`#keys button[data-action="${opposite}"][data-key=${attr(key)}]`);
  ok(`${key}: ${action}d, the row offers ${opposite}`);
}

async function main() {
  const [stepName, base, ...args] = process.argv.slice(2);
  const step = steps[stepName];
  if (!step || !base) {
    console.error(`usage: dashboard.mjs <${Object.keys(steps).join('|')}> <baseUrl> [args...]`);
    process.exit(2);
  }
  const { chromium } = await loadPlaywright();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let page;
  const pageErrors = [];
  try {
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await step(page, base, ...args);
    ok(`step ${stepName} passed`);
  } catch (e) {
    console.error(`FAILED ${stepName}: ${e && e.message ? e.message : e}`);
    for (const err of pageErrors) console.error(`page error: ${err}`);
    if (page) {
      const text = await page.evaluate(() => document.body.innerText).catch((err) => `(no page text: ${err})`);
      console.error(`--- page text ---\n${String(text).slice(0, 3000)}`);
    }
    process.exitCode = 1;
  } finally {
    await browser.close().catch(() => {});
  }
}

await main();
