import fs from 'node:fs';
import path from 'node:path';
import { benchCertificates, numberArgument, startEngineProcess, stringArgument, summary, writeResult, spawnNode } from './harness.js';
import { startForwardAgent } from './load.js';
import type { BenchRow, ScenarioResult, TargetCheck } from './report.js';

/**
 * Memory per idle tunneled connection: N TLS connections through a published TLS tunnel, each spliced
 * to its own stream to the agent and on to an upstream that holds it, then the RSS growth of the
 * engine process and of the agent process divided by N. Two tunnel modes: passthrough (the engine
 * holds the raw downstream socket and the proxy connection) and terminated (plus the downstream TLS
 * session). Each measurement starts from a fresh baseline after the previous connections closed.
 * Usage: node dist/bench/memory.js [--runs N] [--counts 1000,5000] [--out FILE]
 */

const RUNS = numberArgument('runs', 3);
const COUNTS = (stringArgument('counts') ?? '1000,5000').split(',').map(Number);
const HOLD = path.join(path.dirname(new URL(import.meta.url).pathname), 'hold.js');
const MODES = ['passthrough', 'terminated'] as const;

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const { port: enginePort, engine } = await startEngineProcess(certs, () => '{ workers: 2 }');
  const holder = spawnNode([HOLD, 'server', certs.cert, certs.key]);
  const children = [engine, holder];
  try {
    const upstreams = (await holder.waitForLine((line) => typeof line.tcp === 'number')) as { tcp: number; tls: number };
    const agents = {
      passthrough: await startForwardAgent(certs, enginePort, upstreams.tls, 'mem-pass', ['--tls', '--tls-mode', 'passthrough']),
      terminated: await startForwardAgent(certs, enginePort, upstreams.tcp, 'mem-term', ['--tls', '--tls-mode', 'terminated']),
    };
    children.push(agents.passthrough, agents.terminated);
    const perConnection: Record<string, { engine: number[]; agent: number[] }> = {};
    for (let run = 1; run <= RUNS; run++) {
      for (const count of COUNTS) {
        for (const mode of MODES) {
          const agent = agents[mode];
          await openAndClose(enginePort, `mem-${mode === 'passthrough' ? 'pass' : 'term'}.t.localhost`, 200); // warm-up, and the pools' first growth
          await settle();
          const before = { engine: rss(engine.child.pid!), agent: rss(agent.child.pid!) };
          const clients = spawnNode([HOLD, 'clients', String(enginePort), `mem-${mode === 'passthrough' ? 'pass' : 'term'}.t.localhost`, String(count)]);
          await clients.waitForLine((line) => line.open === count, 120_000);
          await settle();
          const after = { engine: rss(engine.child.pid!), agent: rss(agent.child.pid!) };
          await clients.stop();
          const key = `${count} ${mode}`;
          perConnection[key] ??= { engine: [], agent: [] };
          perConnection[key].engine.push((after.engine - before.engine) / count / 1024);
          perConnection[key].agent.push((after.agent - before.agent) / count / 1024);
          process.stderr.write(`run ${run}/${RUNS} ${count} ${mode}: engine ${((after.engine - before.engine) / count / 1024).toFixed(1)} KiB, agent ${((after.agent - before.agent) / count / 1024).toFixed(1)} KiB per connection\n`);
          await settle(); // the closed connections' memory is freed before the next baseline
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
    const targets: TargetCheck[] = MODES.map((mode) => {
      const kib = summary(perConnection[`${largest} ${mode}`]!.engine).median;
      return { target: `engine RSS ≤ 32 KiB per idle tunneled connection (${mode}, ${largest.toLocaleString('en-US')} connections)`, measured: `${kib.toFixed(1)} KiB`, met: kib <= 32 };
    });
    const result: ScenarioResult = {
      scenario: 'memory',
      title: 'Memory per idle tunneled connection (RSS growth / N)',
      runs: RUNS,
      rows,
      targets,
      notes: ['RSS from /proc/<pid>/status (VmRSS), each process measured 1 s after the connections are up; the engine has 2 workers.'],
    };
    writeResult('memory', { ...result });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

/** Resident set size of a process, bytes. */
function rss(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1000));

async function openAndClose(port: number, servername: string, count: number): Promise<void> {
  const clients = spawnNode([HOLD, 'clients', String(port), servername, String(count)]);
  await clients.waitForLine((line) => line.open === count, 60_000);
  await clients.stop();
}

await main();
