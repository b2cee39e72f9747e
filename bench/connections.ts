import path from 'node:path';
import { benchCertificates, numberArgument, runMeasured, startEngineProcess, summary, writeResult } from './harness.js';
import { startBenchUpstream, startForwardAgent } from './load.js';
import type { BenchRow, ScenarioResult } from './report.js';

/**
 * New downstream connections per second: each a full TLS handshake (no resumption), one request with
 * `Connection: close`, the response read to its end. Series:
 *   rivulet tls  – a published TLS tunnel terminated by the engine: every connection is also a fresh
 *                  stream to the agent (ProxyConnReq, a new proxy connection with its own handshake);
 *   rivulet http – a published HTTP tunnel: a fresh handshake, the upstream stream from the pool;
 *   direct       – the upstream's own HTTPS listener.
 * Usage: node dist/bench/connections.js [--runs N] [--seconds S] [--concurrency C] [--out FILE]
 */

const RUNS = numberArgument('runs', 3);
const SECONDS = numberArgument('seconds', 5);
const CONCURRENCY = numberArgument('concurrency', 32);
const GENERATOR = path.join(path.dirname(new URL(import.meta.url).pathname), 'connect-load.js');

interface ConnectFigures {
  perSecond: number;
  p50: number;
  p99: number;
  errors: number;
  cores: number;
}

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const { port: enginePort, engine } = await startEngineProcess(certs, () => '{ workers: 2 }');
  const upstream = await startBenchUpstream(certs);
  const children = [engine, upstream.child];
  try {
    children.push(await startForwardAgent(certs, enginePort, upstream.http, 'conn-http'));
    children.push(await startForwardAgent(certs, enginePort, upstream.http, 'conn-tls', ['--tls', '--tls-mode', 'terminated']));
    const series: Record<string, { port: number; servername: string }> = {
      'rivulet tls': { port: enginePort, servername: 'conn-tls.t.localhost' },
      'rivulet http': { port: enginePort, servername: 'conn-http.t.localhost' },
      direct: { port: upstream.https, servername: 'localhost' },
    };
    for (const target of Object.values(series)) await connect(target.port, target.servername, 4, 1); // warm-up
    const figures: Record<string, ConnectFigures[]> = {};
    for (let run = 1; run <= RUNS; run++) {
      for (const [name, target] of Object.entries(series)) {
        const figure = await connect(target.port, target.servername, CONCURRENCY, SECONDS);
        (figures[name] ??= []).push(figure);
        process.stderr.write(`run ${run}/${RUNS} ${name}: ${figure.perSecond} connections/s\n`);
      }
    }
    const row = (metric: string, unit: string, higherIsBetter: boolean, pick: (figure: ConnectFigures) => number): BenchRow => ({
      case: `${CONCURRENCY} concurrent`,
      metric,
      unit,
      higherIsBetter,
      series: Object.fromEntries(Object.entries(figures).map(([name, runs]) => [name, summary(runs.map(pick))])),
    });
    const result: ScenarioResult = {
      scenario: 'connections',
      title: 'New downstream connections per second (full TLS handshake, one request each)',
      runs: RUNS,
      rows: [
        row('new connections', 'conn/s', true, (figure) => figure.perSecond),
        row('connect + response p50', 'ms', false, (figure) => figure.p50),
        row('connect + response p99', 'ms', false, (figure) => figure.p99),
      ],
      targets: [],
      generatorCpu: Object.fromEntries(Object.entries(figures).map(([name, runs]) => [`connect-load → ${name}`, summary(runs.map((figure) => figure.cores)).median])),
      notes: [
        `${SECONDS} s per run; the generator is bench/connect-load.ts (Node TLS client, its own process).`,
        ...Object.entries(figures)
          .filter(([, runs]) => runs.some((figure) => figure.errors > 0))
          .map(([name, runs]) => `${name}: ${runs.map((figure) => figure.errors).join('/')} failed connections per run.`),
      ],
    };
    writeResult('connections', { ...result });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

async function connect(port: number, servername: string, concurrency: number, seconds: number): Promise<ConnectFigures> {
  const started = Date.now();
  const { stdout, cpuSeconds } = await runMeasured(process.execPath, [GENERATOR, String(port), servername, String(concurrency), String(seconds)]);
  const result = JSON.parse(stdout) as { perSecond: number; p50: number; p99: number; errors: number };
  return { ...result, cores: cpuSeconds / ((Date.now() - started) / 1000) };
}

await main();
