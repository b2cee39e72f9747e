import { benchCertificates, buildsArgument, freePort, numberArgument, startEngineProcess, summary, writeResult, type BenchChild } from './harness.js';
import { load, startBenchUpstream, startForwardAgent, tunnelTarget, type LoadFigures, type Target } from './load.js';
import type { BenchRow } from './report.js';

/**
 * Requests at max_streams_per_tunnel: one published tunnel limited to --limit streams (engine with 2
 * workers, a `rivulet forward` agent), autocannon with --connections keep-alive connections, so most
 * requests wait for a stream that another request (often on the other worker) holds. Two cases:
 * streams reused (`/small`, the request waits for a pooled stream to come free), and a new stream per
 * request (the upstream answers `Connection: close`, so each request waits for room under the limit,
 * freed when another request's stream closes, on either worker).
 * With `--builds NAME=CLI,…` each engine build runs in turn, interleaved run by run, for a before/after
 * comparison on one machine (CLI: that build's dist/src/cli/main.js).
 * Usage: node dist/bench/stream-limit.js [--runs 5] [--seconds 5] [--limit 4] [--connections 32] [--builds a=…,b=…] [--out FILE]
 */

const RUNS = numberArgument('runs', 5);
const SECONDS = numberArgument('seconds', 5);
const LIMIT = numberArgument('limit', 4);
const CONNECTIONS = numberArgument('connections', 32);
const CASES = [
  { name: 'streams reused', path: '/small' },
  { name: 'a new stream per request', path: '/mix?n=100&close=1' },
];
const BUILDS = buildsArgument();

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const upstream = await startBenchUpstream(certs);
  const children: BenchChild[] = [upstream.child];
  try {
    const targets: Array<Target & { metricsPort: number }> = [];
    for (const build of BUILDS) {
      const metricsPort = await freePort();
      const metrics = `metrics: { prometheus: { enabled: true, listen_addr: "127.0.0.1:${metricsPort}" } }`;
      const { port, engine } = await startEngineProcess(certs, () => `{ workers: 2, max_streams_per_tunnel: ${LIMIT} }`, [metrics], undefined, build.cli);
      children.push(engine, await startForwardAgent(certs, port, upstream.http, 'limited'));
      targets.push({ ...tunnelTarget(build.name, 'limited', port), metricsPort });
    }
    for (const target of targets) await load(target, CONNECTIONS, 1); // warm-up: pools and JITs
    const figures = new Map<string, Array<LoadFigures & { streamsPerThousand: number }>>();
    for (let run = 1; run <= RUNS; run++) {
      for (const { name, path } of CASES) {
        for (const target of targets) {
          const streamsBefore = await streamsOpened(target.metricsPort);
          const figure = await load(target, CONNECTIONS, SECONDS, undefined, path);
          const streamsPerThousand = ((await streamsOpened(target.metricsPort)) - streamsBefore) / ((figure.rps * SECONDS) / 1000);
          const key = `${name} ${target.name}`;
          figures.set(key, [...(figures.get(key) ?? []), { ...figure, streamsPerThousand }]);
          const line = `${Math.round(figure.rps)} req/s, p99 ${figure.p99} ms, ${figure.errors} errors, ${streamsPerThousand.toFixed(1)} streams per 1000 requests`;
          process.stderr.write(`run ${run}/${RUNS} ${name}, ${target.name}: ${line}\n`);
        }
      }
    }
    const rows: BenchRow[] = [];
    for (const { name } of CASES) {
      for (const [metric, unit, pick, higherIsBetter] of [
        ['throughput', 'req/s', (figure: LoadFigures) => figure.rps, true],
        ['latency p50', 'ms', (figure: LoadFigures) => figure.p50, false],
        ['latency p99', 'ms', (figure: LoadFigures) => figure.p99, false],
        ['errors and non-2xx', 'count', (figure: LoadFigures) => figure.errors, false],
        ['streams opened per 1000 requests', 'count', (figure: { streamsPerThousand: number }) => figure.streamsPerThousand, false],
      ] as const) {
        const series = Object.fromEntries(targets.map((target) => [target.name, summary(figures.get(`${name} ${target.name}`)!.map(pick))]));
        rows.push({ case: `${name} (${CONNECTIONS} connections, ${LIMIT} streams)`, metric, unit, higherIsBetter, series });
      }
    }
    writeResult('stream-limit', {
      scenario: 'stream-limit',
      title: 'Requests at max_streams_per_tunnel',
      rows,
      notes: [`${RUNS} runs of ${SECONDS} s per build, interleaved; builds: ${BUILDS.map((build) => build.name).join(', ')}.`],
    });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

/** HTTP streams the engine has connected so far (rivulet_streams_total, kind http, outcome connected). */
async function streamsOpened(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^rivulet_streams_total\{kind="http",outcome="connected"\} (\S+)$/m.exec(text)?.[1] ?? NaN);
}

await main();
