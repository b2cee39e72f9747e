import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { edgeRequest } from './helpers/edge-client.js';
import { startTestEngine, type TestEngine } from './helpers/engine.js';
import { startForward } from './helpers/forward.js';
import { mintToken } from './helpers/rstrm-agent.js';
import { VERSION } from '../src/version.js';
import { listenUpstream, upstreamHandler } from './helpers/upstream-server.js';

/**
 * The dashboard in Debian's Chromium, driven by puppeteer-core against a real engine and a real
 * `rivulet forward`: it asserts on the DOM, and saves a screenshot of each state under
 * test-output/dashboard/ (README's picture is one of them).
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOTS = new URL('../../test-output/dashboard/', import.meta.url).pathname;

let t: TestEngine;
/** An engine with `dashboard.request_log: on` (the other has it off, the default). */
let logging: TestEngine;
let browser: Browser;
let upstream: http.Server;

before(async () => {
  t = await startTestEngine();
  logging = await startTestEngine({ dashboard: { request_log: 'on' } });
  upstream = http.createServer(upstreamHandler([]));
  await listenUpstream(upstream);
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // The engine's certificate comes from a CA made for this run; the browser is told to accept it.
    acceptInsecureCerts: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
});
after(async () => {
  await browser?.close();
  upstream.closeAllConnections();
  upstream.close();
  await t.stop();
  await logging?.stop();
});

async function openPage(width = 1280, height = 800, engine = t): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewport({ width, height });
  await page.goto(`https://localhost:${engine.engine.publicPort}/dashboard/`);
  return page;
}

async function logIn(page: Page, token: string): Promise<void> {
  await page.waitForSelector('#token');
  await replaceText(page, '#token', token);
  await page.click('form.login button[type=submit]');
}

/** Selects what the field holds and types over it, as a person would. */
async function replaceText(page: Page, selector: string, text: string): Promise<void> {
  await page.click(selector, { count: 3 });
  await page.keyboard.press('Backspace');
  await page.type(selector, text);
}

const shot = (page: Page, name: string): Promise<unknown> => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });

test('a bad token gets the API message and the prompt again; a good one opens the dashboard, kept for the tab only', async () => {
  const page = await openPage();
  try {
    await logIn(page, 'not-a-token');
    await page.waitForSelector('#login-error:not(:empty)');
    const message = await page.$eval('#login-error', (element) => element.textContent);
    assert.match(message ?? '', /token|jwt|invalid/i);
    await shot(page, 'login-refused');
    await logIn(page, await mintToken());
    await page.waitForSelector('section.tunnels');
    // The engine panel: this engine's certificate was made for this run and lasts longer than 14 days.
    await page.waitForSelector('.engine-facts dd[data-expiry-days]');
    const facts = (await page.$eval('.engine-facts', (element) => element.textContent)) ?? '';
    assert.ok(facts.includes(`${VERSION} (Node ${process.version})`), facts);
    assert.match(facts, /Workers2, (reuse-port|shared-fd)/);
    assert.equal(await page.$('.engine-facts .warning'), null);
    const stored = JSON.parse(String(await page.evaluate('JSON.stringify({ session: Object.keys(sessionStorage), local: Object.keys(localStorage) })')));
    assert.deepEqual(stored, { session: ['rivulet.dashboard.token'], local: [] });
    // A reload keeps the tab's session: no prompt.
    await page.reload();
    await page.waitForSelector('section.tunnels');
  } finally {
    await page.close();
  }
});

test('a forward appears without reload, 100 requests move its counters, and when it stops its row goes and the feed says so', async () => {
  const token = await mintToken();
  const page = await openPage();
  const agent = await (async () => {
    await logIn(page, token);
    await page.waitForSelector('section.tunnels');
    await shot(page, 'empty');
    return startForward(t, token, (upstream.address() as net.AddressInfo).port, ['--host', 'shown', '--label', 'team=web']);
  })();
  try {
    const row = `.row[data-tunnel="${agent.tunnelId}"]`;
    await page.waitForSelector(row);
    assert.match((await page.$eval(row, (element) => element.textContent)) ?? '', /shown\.t\.localhost.*team=web/);
    const keptAlive = new https.Agent({ keepAlive: true, maxSockets: 10 });
    const replies = await Promise.all(Array.from({ length: 100 }, () => edgeRequest(t.engine.publicPort, t.ca, 'shown.t.localhost', { path: '/echo', agent: keptAlive })));
    keptAlive.destroy();
    assert.ok(replies.every((reply) => reply.status === 200));
    await page.waitForSelector(`${row}[data-requests="100"]`, { timeout: 10_000 });
    const totals = await page.$eval('[data-total="tunnels"] .tile-value', (element) => element.textContent);
    assert.equal(totals, '1');
    await shot(page, 'traffic');
    // Filtering by label keeps the row; another label hides it.
    await page.type('#tunnel-filter', 'team=web');
    assert.ok(await page.$(row));
    await replaceText(page, '#tunnel-filter', 'team=db');
    assert.equal(await page.$(row), null);
    await replaceText(page, '#tunnel-filter', '');
    agent.child.kill('SIGTERM');
    await agent.exited;
    await page.waitForSelector(row, { hidden: true, timeout: 10_000 });
    await page.waitForSelector('.feed li[data-event="tunnel.deleted"]');
    await shot(page, 'stopped');
  } finally {
    agent.child.kill('SIGKILL');
    await page.close();
  }
});

test('keyboard: from the filter, Tab reaches the sort buttons and Enter sorts; the table takes focus to scroll', async () => {
  const page = await openPage();
  try {
    await logIn(page, await mintToken());
    await page.waitForSelector('section.tunnels');
    await page.focus('#tunnel-filter');
    const focused = (): Promise<string> => page.evaluate('document.activeElement?.dataset?.sort ?? document.activeElement?.id ?? ""') as Promise<string>;
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'name', 'the first sort button follows the filter');
    for (const expected of ['protocol', 'client', 'age', 'rps']) {
      await page.keyboard.press('Tab');
      assert.equal(await focused(), expected);
    }
    await page.keyboard.press('Enter');
    assert.equal(await page.$eval('[role=columnheader].rps', (element) => element.getAttribute('aria-sort')), 'descending');
    await page.keyboard.press('Enter');
    assert.equal(await page.$eval('[role=columnheader].rps', (element) => element.getAttribute('aria-sort')), 'ascending');
    for (let i = 0; i < 6; i++) await page.keyboard.press('Tab'); // in, out, streams, 4xx, 5xx, then the rows
    assert.equal(await page.evaluate('document.activeElement?.classList.contains("viewport")'), true, 'after the last sort button, the rows');
  } finally {
    await page.close();
  }
});

test('the request log, on: a selected tunnel shows its requests, paths without their queries; Escape and the arrow keys move the selection', async () => {
  const token = await mintToken();
  const page = await openPage(1280, 800, logging);
  const agent = await startForward(logging, token, (upstream.address() as net.AddressInfo).port, ['--host', 'logged']);
  try {
    await logIn(page, token);
    const row = `.row[data-tunnel="${agent.tunnelId}"]`;
    await page.waitForSelector(row);
    const keptAlive = new https.Agent({ keepAlive: true, maxSockets: 2 });
    const sent = [
      { path: '/page/1?secret=abc123', method: 'GET' },
      { path: '/page/2?secret=abc123&x=1', method: 'GET' },
      { path: '/form?rstream.token=zzz999', method: 'POST' },
      { path: '/plain', method: 'GET' },
    ];
    for (const request of sent) {
      const reply = await edgeRequest(logging.engine.publicPort, logging.ca, 'logged.t.localhost', { ...request, body: request.method === 'POST' ? Buffer.from('a=1') : undefined, agent: keptAlive });
      assert.equal(reply.status, 200);
    }
    keptAlive.destroy();
    await page.click(`${row} .cell.client`);
    await page.waitForSelector(`${row}[aria-selected="true"]`);
    const logRows = '.request-log[data-state="on"] tbody tr';
    await page.waitForFunction(`document.querySelectorAll(${JSON.stringify(logRows)}).length === 4`, { timeout: 10_000 });
    const panel = (await page.$eval('.request-log', (element) => element.textContent)) ?? '';
    assert.match(panel, /Requests — logged\.t\.localhost/);
    const paths = await page.$$eval('.request-log tbody td.path', (cells) => cells.map((cell) => cell.textContent));
    assert.deepEqual(paths, ['/plain', '/form', '/page/2', '/page/1'], 'newest first, no query string');
    assert.ok(!/\?|abc123|zzz999/.test(panel), panel);
    await page.waitForSelector(`${row}[data-requests="4"]`, { timeout: 10_000 });
    await shot(page, 'request-log');
    // Escape clears the selection; from the table, the arrow keys select again.
    await page.focus('.viewport');
    await page.keyboard.press('Escape');
    await page.waitForSelector('.request-log[data-tunnel=""]');
    assert.equal(await page.$(`${row}[aria-selected="true"]`), null);
    await page.keyboard.press('ArrowDown');
    await page.waitForSelector(`${row}[aria-selected="true"]`);
    assert.equal(await page.$eval('.viewport', (element) => element.getAttribute('aria-activedescendant')), `row-${agent.tunnelId}`);
    await page.waitForFunction(`document.querySelectorAll(${JSON.stringify(logRows)}).length === 4`, { timeout: 10_000 });
  } finally {
    agent.child.kill('SIGKILL');
    await page.close();
  }
});

test('the request log, off (the default): a selected tunnel says so and shows no request', async () => {
  const token = await mintToken();
  const page = await openPage();
  const agent = await startForward(t, token, (upstream.address() as net.AddressInfo).port, ['--host', 'unlogged']);
  try {
    await logIn(page, token);
    const row = `.row[data-tunnel="${agent.tunnelId}"]`;
    await page.waitForSelector(row);
    const reply = await edgeRequest(t.engine.publicPort, t.ca, 'unlogged.t.localhost', { path: '/page?secret=abc123', agent: false });
    assert.equal(reply.status, 200);
    await page.click(`${row} .cell.client`);
    await page.waitForSelector('.request-log[data-state="off"]');
    assert.match((await page.$eval('.request-log-status', (element) => element.textContent)) ?? '', /request log is off/);
    assert.equal((await page.$$('.request-log tbody tr')).length, 0);
  } finally {
    agent.child.kill('SIGKILL');
    await page.close();
  }
});

test('phone width: the page fits, the tunnels table scrolls sideways within it', async () => {
  const page = await openPage(390, 844);
  try {
    await logIn(page, await mintToken());
    await page.waitForSelector('section.tunnels');
    const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth'));
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
    await shot(page, 'phone');
  } finally {
    await page.close();
  }
});
