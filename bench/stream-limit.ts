import { benchCertificates, CLI_PATH, numberArgument, startEngineProcess, stringArgument, summary, writeResult, type BenchChild } from './harness.js';
import { load, startBenchUpstream, startForwardAgent, tunnelTarget, type LoadFigures, type Target } from './load.js';
import type { BenchRow } from './report.js';

/**
 * Requests at max_streams_per_tunnel: one published tunnel limited to --limit streams (engine with 2
 * workers, a `rivulet forward` agent), autocannon with --connections keep-alive connections on
 * `/small`, so most requests wait for a stream that another request (often on the other worker) holds.
 * With `--builds NAME=CLI,…` each engine build runs in turn, interleaved run by run, for a before/after
 * comparison on one machine (CLI: that build's dist/src/cli/main.js).
 * Usage: node dist/bench/stream-limit.js [--runs 5] [--seconds 5] [--limit 4] [--connections 32] [--builds a=…,b=…] [--out FILE]
 */

const RUNS = numberArgument('runs', 5);
const SECONDS = numberArgument('seconds', 5);
const LIMIT = numberArgument('limit', 4);
const CONNECTIONS = numberArgument('connections', 32);
const BUILDS = (stringArgument('builds') ?? `this=${CLI_PATH}`).split(',').map((entry) => {
  const [name, cli] = entry.split('=');
  return { name: name!, cli: cli! };
});

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const upstream = await startBenchUpstream(certs);
  const children: BenchChild[] = [upstream.child];
  try {
    const targets: Target[] = [];
    for (const build of BUILDS) {
      const { port, engine } = await startEngineProcess(certs, () => `{ workers: 2, max_streams_per_tunnel: ${LIMIT} }`, [], undefined, build.cli);
      children.push(engine, await startForwardAgent(certs, port, upstream.http, 'limited'));
      targets.push(tunnelTarget(build.name, 'limited', port));
    }
    for (const target of targets) await load(target, CONNECTIONS, 1); // warm-up: pools and JITs
    const figures = new Map<string, LoadFigures[]>();
    for (let run = 1; run <= RUNS; run++) {
      for (const target of targets) {
        const figure = await load(target, CONNECTIONS, SECONDS);
        figures.set(target.name, [...(figures.get(target.name) ?? []), figure]);
        process.stderr.write(`run ${run}/${RUNS} ${target.name}: ${Math.round(figure.rps)} req/s, p99 ${figure.p99} ms, ${figure.errors} errors\n`);
      }
    }
    const rows: BenchRow[] = [];
    const label = `${CONNECTIONS} connections, ${LIMIT} streams`;
    for (const [metric, unit, pick, higherIsBetter] of [
      ['throughput', 'req/s', (figure: LoadFigures) => figure.rps, true],
      ['latency p50', 'ms', (figure: LoadFigures) => figure.p50, false],
      ['latency p99', 'ms', (figure: LoadFigures) => figure.p99, false],
      ['errors and non-2xx', 'count', (figure: LoadFigures) => figure.errors, false],
    ] as const) {
      rows.push({ case: label, metric, unit, higherIsBetter, series: Object.fromEntries(targets.map((target) => [target.name, summary(figures.get(target.name)!.map(pick))])) });
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

await main();
