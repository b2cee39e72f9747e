import fs from 'node:fs';
import { SignJWT } from 'jose';
import puppeteer from 'puppeteer-core';
import { emptyTunnelProperties } from '../src/protocol/messages.js';
import { BENCH_SECRET, benchCertificates, numberArgument, startEngineProcess, summary, writeResult } from './harness.js';
import { RawAgent } from './raw-agent.js';

/**
 * The dashboard at scale, in Debian's Chromium (puppeteer-core): an engine process (2 workers) with
 * --tunnels private tunnels from 20 raw agents, and a churn of tunnels opened and closed while the page
 * watches (each one an event the page applies and redraws for). Reported: time from the token's submit
 * to the full table; time for a label filter to apply; the page's main-thread long tasks (> 50 ms) and
 * script time per second over --seconds of live updates.
 * Usage: node dist/bench/dashboard-scale.js [--tunnels 10000] [--seconds 10] [--churn 10]
 */

const TUNNELS = numberArgument('tunnels', 10_000);
const SECONDS = numberArgument('seconds', 10);
/** Tunnels opened and closed per second during the live window. */
const CHURN = numberArgument('churn', 10);
const AGENTS = 20;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const perAgent = Math.ceil(TUNNELS / AGENTS);
  const { port, engine } = await startEngineProcess(certs, () => `{ workers: 2, max_tunnels_per_client: ${perAgent + SECONDS * CHURN + 10} }`);
  const agents: RawAgent[] = [];
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, acceptInsecureCerts: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  try {
    const token = await new SignJWT({ sub: 'bench' }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(BENCH_SECRET));
    const ca = fs.readFileSync(certs.caCert);
    for (let i = 0; i < AGENTS; i++) agents.push(await RawAgent.open(port, ca, token));
    await Promise.all(
      agents.map(async (agent, a) => {
        const count = Math.min(perAgent, TUNNELS - a * perAgent);
        for (let i = 0; i < count; i++) {
          agent.send({ type: 'open_tunnel_req', request_id: String(i), tunnel_properties: { ...emptyTunnelProperties(), publish: false, labels: { agent: String(a), n: String(i) } } });
        }
        for (let i = 0; i < count; i++) await agent.next('open_tunnel_rsp');
      }),
    );

    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(`https://localhost:${port}/dashboard/`);
    await page.waitForSelector('#token');
    await page.type('#token', token);
    const submitted = performance.now();
    await page.click('form.login button[type=submit]');
    // Page-side code as strings: this program is compiled without the DOM's types.
    const countIs = (text: string): string => `document.querySelector('.tunnels .count')?.textContent === ${JSON.stringify(text)}`;
    await page.waitForFunction(countIs(`${TUNNELS} of ${TUNNELS}`), { timeout: 120_000, polling: 50 });
    const firstTableMs = performance.now() - submitted;
    process.stderr.write(`table of ${TUNNELS} after ${Math.round(firstTableMs)} ms\n`);

    const filterStarted = performance.now();
    // `agent=7` matches agent 7's tunnels only (labels are matched as `key=value` substrings: 7, not 70–79).
    await page.type('#tunnel-filter', 'agent=7');
    await page.waitForFunction(countIs(`${perAgent} of ${TUNNELS}`), { polling: 50 });
    const filterMs = performance.now() - filterStarted;
    await page.click('#tunnel-filter', { count: 3 });
    await page.keyboard.press('Backspace');
    await page.waitForFunction(countIs(`${TUNNELS} of ${TUNNELS}`), { polling: 50 });

    // Live window: long tasks observed in the page, and its script time, while tunnels come and go.
    await page.evaluate(`window.longTasks = []; new PerformanceObserver((list) => list.getEntries().forEach((entry) => window.longTasks.push(entry.duration))).observe({ type: 'longtask' });`);
    const before = await page.metrics();
    const churner = agents[0]!;
    const churnEnd = Date.now() + SECONDS * 1000;
    let churned = 0;
    while (Date.now() < churnEnd) {
      const tickEnd = Date.now() + 1000 / CHURN;
      churner.send({ type: 'open_tunnel_req', request_id: `churn-${churned}`, tunnel_properties: { ...emptyTunnelProperties(), publish: false, labels: { churn: String(churned) } } });
      const reply = await churner.next('open_tunnel_rsp');
      const id = (reply as unknown as { result: { tunnel_properties?: { id?: string } } }).result.tunnel_properties?.id;
      if (id) churner.send({ type: 'close_tunnel_req', tunnel_id: id });
      churned++;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickEnd - Date.now())));
    }
    const after = await page.metrics();
    const longTasks = ((await page.evaluate('window.longTasks')) as number[]).sort((a, b) => a - b);
    const scriptSecondsPerSecond = ((after.ScriptDuration ?? 0) - (before.ScriptDuration ?? 0)) / SECONDS;
    const taskSecondsPerSecond = ((after.TaskDuration ?? 0) - (before.TaskDuration ?? 0)) / SECONDS;
    process.stderr.write(`live: ${longTasks.length} long tasks (max ${Math.round(longTasks.at(-1) ?? 0)} ms), script ${(scriptSecondsPerSecond * 1000).toFixed(0)} ms/s\n`);
    writeResult('dashboard-scale', {
      scenario: 'dashboard-scale',
      tunnels: TUNNELS,
      seconds: SECONDS,
      churn_per_second: CHURN,
      tunnels_churned: churned,
      first_table_ms: Math.round(firstTableMs),
      label_filter_ms: Math.round(filterMs),
      long_tasks: { count: longTasks.length, ...(longTasks.length > 0 ? summary(longTasks) : {}) },
      page_script_ms_per_second: Math.round(scriptSecondsPerSecond * 1000),
      page_task_ms_per_second: Math.round(taskSecondsPerSecond * 1000),
    });
  } finally {
    await browser.close();
    for (const agent of agents) agent.close();
    await engine.stop();
  }
}

await main();
