import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchCertificates, freePort, numberArgument, startEngineProcess, summary, writeResult, type BenchChild } from './harness.js';
import { curlTransfer } from './curl-transfer.js';
import { load, startBenchUpstream, startForwardAgent, tunnelTarget, type LoadFigures, type Target } from './load.js';
import type { BenchRow, ScenarioResult } from './report.js';

/**
 * Endpoint pools: one engine (2 workers, tunnels.pooling.enabled), one upstream, and the same traffic
 * through a hostname served by one `rivulet forward` agent and through one served by a pool of two.
 * Rows: small responses (autocannon, 50 keep-alive connections), bulk download and upload (curl, one
 * stream of --mib MiB), and failover: 20 connections of GETs for --failover-seconds while one member of
 * a third pool is SIGKILLed a third of the way in, counting failed requests and requests moved to the
 * survivor. Runs interleaved.
 * Usage: node dist/bench/pool.js [--runs N] [--seconds S] [--mib M] [--failover-seconds F]
 */

const RUNS = numberArgument('runs', 3);
const SECONDS = numberArgument('seconds', 5);
const MIB = numberArgument('mib', 256);
const FAILOVER_SECONDS = numberArgument('failover-seconds', 10);
const CONNECTIONS = 50;
const FAILOVER_CONNECTIONS = 20;

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const metricsPort = await freePort();
  const uploadFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-bench-pool-')), 'upload.bin');
  fs.writeFileSync(uploadFile, Buffer.alloc(MIB * 1024 * 1024, 0x61));
  const { port, engine } = await startEngineProcess(certs, () => '{ workers: 2 }', [
    'tunnels: { pooling: { enabled: true } }',
    `metrics: { prometheus: { enabled: true, listen_addr: "127.0.0.1:${metricsPort}" } }`,
  ]);
  const upstream = await startBenchUpstream(certs);
  const children: BenchChild[] = [engine, upstream.child];
  try {
    children.push(await startForwardAgent(certs, port, upstream.http, 'solo'));
    for (let member = 0; member < 2; member++) children.push(await startForwardAgent(certs, port, upstream.http, 'pooled', ['--pool', 'bench']));
    const targets: Target[] = [tunnelTarget('one agent', 'solo', port), tunnelTarget('pool of two', 'pooled', port)];
    for (const target of targets) await load(target, CONNECTIONS, 1); // warm-up: pools and JITs

    const small = new Map<string, LoadFigures[]>(targets.map((target) => [target.name, []]));
    const bulk: Record<'download' | 'upload', Record<string, number[]>> = { download: {}, upload: {} };
    for (let run = 1; run <= RUNS; run++) {
      for (const target of targets) {
        const figure = await load(target, CONNECTIONS, SECONDS);
        small.get(target.name)!.push(figure);
        process.stderr.write(`run ${run}/${RUNS} small ${target.name}: ${Math.round(figure.rps)} req/s\n`);
      }
      for (const direction of ['download', 'upload'] as const) {
        for (const target of targets) {
          const speed = await curlTransfer(target, certs.caCert, direction, MIB, uploadFile);
          (bulk[direction][target.name] ??= []).push(speed);
          process.stderr.write(`run ${run}/${RUNS} ${direction} ${target.name}: ${speed} MB/s\n`);
        }
      }
    }
    const failover = await failoverUnderLoad(certs, port, upstream.http, metricsPort, children);

    const rows: BenchRow[] = [];
    for (const [metric, unit, pick, higherIsBetter] of [
      ['throughput', 'req/s', (figure: LoadFigures) => figure.rps, true],
      ['latency p50', 'ms', (figure: LoadFigures) => figure.p50, false],
      ['latency p99', 'ms', (figure: LoadFigures) => figure.p99, false],
    ] as const) {
      rows.push({ case: `small 100 B responses (${CONNECTIONS} connections)`, metric, unit, higherIsBetter, series: Object.fromEntries(targets.map((target) => [target.name, summary(small.get(target.name)!.map(pick))])) });
    }
    for (const direction of ['download', 'upload'] as const) {
      rows.push({ case: `bulk ${direction} ${MIB} MiB (one stream)`, metric: 'throughput', unit: 'MB/s', higherIsBetter: true, series: Object.fromEntries(Object.entries(bulk[direction]).map(([name, values]) => [name, summary(values)])) });
    }
    rows.push(
      { case: `failover: ${FAILOVER_CONNECTIONS} connections of GETs, one of two members SIGKILLed`, metric: 'requests answered', unit: 'count', higherIsBetter: true, series: { 'pool of two': summary([failover.answered]) } },
      { case: `failover: ${FAILOVER_CONNECTIONS} connections of GETs, one of two members SIGKILLed`, metric: 'failed requests', unit: 'count', higherIsBetter: false, series: { 'pool of two': summary([failover.failed]) } },
      { case: `failover: ${FAILOVER_CONNECTIONS} connections of GETs, one of two members SIGKILLed`, metric: 'requests moved to the survivor', unit: 'count', higherIsBetter: false, series: { 'pool of two': summary([failover.failovers]) } },
    );
    const rps = (name: string): number => summary(small.get(name)!.map((figure) => figure.rps)).median;
    const result: ScenarioResult = {
      scenario: 'pool',
      title: 'Endpoint pools: one agent vs a pool of two behind one hostname, and failover under load',
      runs: RUNS,
      rows,
      targets: [{ target: 'failover: no GET fails when a member is SIGKILLed under load', measured: `${failover.failed} of ${failover.answered + failover.failed}`, met: failover.failed === 0 }],
      notes: [
        `${SECONDS} s per small run; bulk is curl over HTTP/1.1, one stream at a time (a stream goes to one member). Pool of two / one agent, small req/s: ${(rps('pool of two') / rps('one agent')).toFixed(2)}×.`,
        'Every agent, the engine, the upstream and the load generator share the machine: on 2 cores a second agent process adds CPU to share, not cores.',
        `Failover run: ${FAILOVER_SECONDS} s, the member killed after ${Math.round(FAILOVER_SECONDS / 3)} s; failed = autocannon errors and non-2xx; moved = rivulet_pool_failovers_total.`,
      ],
    };
    writeResult('pool', { ...result });
  } finally {
    for (const child of children.reverse()) await child.stop();
    fs.rmSync(path.dirname(uploadFile), { recursive: true, force: true });
  }
}

/** GETs through a third pool of two while one member is SIGKILLed: what was answered, failed and moved. */
async function failoverUnderLoad(
  certs: Awaited<ReturnType<typeof benchCertificates>>,
  port: number,
  upstreamPort: number,
  metricsPort: number,
  children: BenchChild[],
): Promise<{ answered: number; failed: number; failovers: number }> {
  const doomed = await startForwardAgent(certs, port, upstreamPort, 'failover', ['--pool', 'failover']);
  children.push(doomed, await startForwardAgent(certs, port, upstreamPort, 'failover', ['--pool', 'failover']));
  const target = tunnelTarget('failover', 'failover', port);
  await load(target, FAILOVER_CONNECTIONS, 1);
  const before = await poolFailovers(metricsPort);
  const running = load(target, FAILOVER_CONNECTIONS, FAILOVER_SECONDS);
  await new Promise((resolve) => setTimeout(resolve, (FAILOVER_SECONDS * 1000) / 3));
  doomed.child.kill('SIGKILL');
  const figure = await running;
  const failovers = (await poolFailovers(metricsPort)) - before;
  process.stderr.write(`failover: ${Math.round(figure.rps * FAILOVER_SECONDS)} answered, ${figure.errors} failed, ${failovers} moved\n`);
  return { answered: Math.round(figure.rps * FAILOVER_SECONDS), failed: figure.errors, failovers };
}

/** rivulet_pool_failovers_total from the engine's Prometheus listener. */
async function poolFailovers(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^rivulet_pool_failovers_total (\S+)$/m.exec(text)?.[1] ?? NaN);
}

await main();
