import fs from 'node:fs';
import path from 'node:path';
import { benchCertificates, numberArgument, startEngineProcess, stringArgument, summary, writeResult, spawnNode } from './harness.js';
import type { DevCertificateFiles } from '../src/certs/dev-ca.js';
import { startForwardAgent } from './load.js';
import type { BenchRow, ScenarioResult, TargetCheck } from './report.js';

/**
 * Memory per idle tunneled connection: N TLS connections through a published TLS tunnel, each spliced
 * to its own stream to the agent and on to an upstream that holds it, then the RSS growth of the
 * engine process and of the agent process divided by N. Two tunnel modes: passthrough (the engine
 * holds the raw downstream socket and the proxy connection) and terminated (plus the downstream TLS
 * session). Every measurement starts a fresh engine and agent.
 * Usage: node dist/bench/memory.js [--runs N] [--counts 1000,5000] [--out FILE]
 */

const RUNS = numberArgument('runs', 3);
const COUNTS = (stringArgument('counts') ?? '1000,5000').split(',').map(Number);
const HOLD = path.join(path.dirname(new URL(import.meta.url).pathname), 'hold.js');
const MODES = ['passthrough', 'terminated'] as const;
const WARM_UP = 20;
const SETTLE_MS = 2000;

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const perConnection: Record<string, { engine: number[]; agent: number[] }> = {};
  for (let run = 1; run <= RUNS; run++) {
    for (const count of COUNTS) {
      for (const mode of MODES) {
        const growth = await measure(certs, mode, count);
        const key = `${count} ${mode}`;
        perConnection[key] ??= { engine: [], agent: [] };
        perConnection[key].engine.push(growth.engine / count / 1024);
        perConnection[key].agent.push(growth.agent / count / 1024);
        process.stderr.write(
          `run ${run}/${RUNS} ${count} ${mode}: engine ${(growth.engine / count / 1024).toFixed(1)} KiB, agent ${(growth.agent / count / 1024).toFixed(1)} KiB per connection\n`,
        );
      }
    }
  }
  const rows: BenchRow[] = COUNTS.map((count) => ({
    case: `${count.toLocaleString('en-US')} idle connections`,
    metric: 'RSS per connection',
    unit: 'KiB',
    higherIsBetter: false,
    series: Object.fromEntries(
      MODES.flatMap((mode) => [
        [`engine ${mode}`, summary(perConnection[`${count} ${mode}`]!.engine)],
        [`agent ${mode}`, summary(perConnection[`${count} ${mode}`]!.agent)],
      ]),
    ),
  }));
  const largest = Math.max(...COUNTS);
  // A terminated connection holds one TLS session more than a passthrough one.
  const TARGET_KIB = { passthrough: 32, terminated: 48 } as const;
  const targets: TargetCheck[] = MODES.map((mode) => {
    const kib = summary(perConnection[`${largest} ${mode}`]!.engine).median;
    return {
      target: `engine RSS ≤ ${TARGET_KIB[mode]} KiB per idle tunneled connection (${mode}, ${largest.toLocaleString('en-US')} connections)`,
      measured: `${kib.toFixed(1)} KiB`,
      met: kib <= TARGET_KIB[mode],
    };
  });
  const result: ScenarioResult = {
    scenario: 'memory',
    title: 'Memory per idle tunneled connection (RSS growth / N)',
    runs: RUNS,
    rows,
    targets,
    notes: [
      'Each measurement uses a fresh engine (2 workers) and agent: freed memory is not returned to the system promptly, so a process that held connections before gives no clean baseline. ' +
        `RSS from /proc/<pid>/status (VmRSS) after ${WARM_UP} warm-up connections came and went, then ${SETTLE_MS / 1000} s after the N connections are up.`,
    ],
  };
  writeResult('memory', { ...result });
}

/** RSS growth (bytes) of a fresh engine and agent while `count` idle connections go through a `mode` TLS tunnel. */
async function measure(certs: DevCertificateFiles, mode: (typeof MODES)[number], count: number): Promise<{ engine: number; agent: number }> {
  const { port: enginePort, engine } = await startEngineProcess(certs, () => '{ workers: 2 }');
  const holder = spawnNode([HOLD, 'server', certs.cert, certs.key]);
  const children = [engine, holder];
  try {
    const upstreams = (await holder.waitForLine((line) => typeof line.tcp === 'number')) as { tcp: number; tls: number };
    const agent = await startForwardAgent(certs, enginePort, mode === 'passthrough' ? upstreams.tls : upstreams.tcp, 'mem', ['--tls', '--tls-mode', mode]);
    children.push(agent);
    await holdConnections(enginePort, WARM_UP, async () => undefined); // code paths compiled, pools sized once
    await settle();
    const before = { engine: rss(engine.child.pid!), agent: rss(agent.child.pid!) };
    return await holdConnections(enginePort, count, async () => {
      await settle();
      return { engine: rss(engine.child.pid!) - before.engine, agent: rss(agent.child.pid!) - before.agent };
    });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

/** Opens `count` idle connections to the tunnel, runs `whileOpen`, then closes them. */
async function holdConnections<T>(port: number, count: number, whileOpen: () => Promise<T>): Promise<T> {
  const clients = spawnNode([HOLD, 'clients', String(port), 'mem.t.localhost', String(count)]);
  try {
    await clients.waitForLine((line) => line.open === count, 180_000);
    return await whileOpen();
  } finally {
    await clients.stop();
  }
}

/** Resident set size of a process, bytes. */
function rss(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

await main();
