import { benchCertificates, buildsArgument, numberArgument, startEngineProcess, summary, writeResult, type BenchChild } from './harness.js';
import { load, startBenchUpstream, startForwardAgent, tunnelTarget, type LoadFigures, type Target } from './load.js';
import type { BenchRow } from './report.js';

/**
 * The cost of per-tunnel traffic counting: the small-response scenario (100-byte responses, 50
 * keep-alive connections, autocannon, 2 workers) through engine builds that differ in it, side by side.
 * Counting has no switch (it is one `Atomics.add` per response and a few per stream a second), so the
 * comparison is between builds: `--builds before=<checkout without it>/dist/src/cli/main.js,after=…`.
 * Runs interleaved, the order rotating each round, so machine noise hits every build alike.
 * Usage: node dist/bench/tunnel-stats-cost.js --builds a=CLI,b=CLI [--runs 7] [--seconds 5]
 */

const RUNS = numberArgument('runs', 7);
const SECONDS = numberArgument('seconds', 5);
const CONNECTIONS = 50;
const BUILDS = buildsArgument();

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const upstream = await startBenchUpstream(certs);
  const children: BenchChild[] = [upstream.child];
  try {
    const targets: Target[] = [];
    for (const build of BUILDS) {
      const { port, engine } = await startEngineProcess(certs, () => '{ workers: 2 }', [], undefined, build.cli);
      children.push(engine, await startForwardAgent(certs, port, upstream.http, build.name));
      targets.push(tunnelTarget(build.name, build.name, port));
    }
    for (const target of targets) await load(target, CONNECTIONS, 2); // warm-up: pools and JITs
    const figures = new Map<string, LoadFigures[]>(targets.map((target) => [target.name, []]));
    for (let run = 1; run <= RUNS; run++) {
      const order = targets.map((_, index) => targets[(index + run) % targets.length]!);
      for (const target of order) figures.get(target.name)!.push(await load(target, CONNECTIONS, SECONDS));
      process.stderr.write(`run ${run}/${RUNS}: ${targets.map((target) => `${target.name} ${Math.round(figures.get(target.name)!.at(-1)!.rps)}/s`).join(', ')}\n`);
    }
    const rows: BenchRow[] = [];
    for (const [metric, unit, pick, higherIsBetter] of [
      ['throughput', 'req/s', (figure: LoadFigures) => figure.rps, true],
      ['latency p50', 'ms', (figure: LoadFigures) => figure.p50, false],
      ['latency p99', 'ms', (figure: LoadFigures) => figure.p99, false],
      ['errors and non-2xx', 'count', (figure: LoadFigures) => figure.errors, false],
    ] as const) {
      const series = Object.fromEntries(targets.map((target) => [target.name, summary(figures.get(target.name)!.map(pick))]));
      rows.push({ case: `small 100 B responses (${CONNECTIONS} connections, 2 workers)`, metric, unit, higherIsBetter, series });
    }
    const [first, second] = targets;
    const ratios = first && second ? figures.get(second.name)!.map((figure, run) => figure.rps / figures.get(first.name)![run]!.rps) : [];
    writeResult('tunnel-stats-cost', {
      scenario: 'tunnel-stats-cost',
      title: 'The cost of per-tunnel traffic counting',
      rows,
      notes: [
        `${RUNS} runs of ${SECONDS} s per build, interleaved, order rotating; builds: ${BUILDS.map((build) => build.name).join(', ')}.`,
        ...(ratios.length > 0 ? [`${second!.name}/${first!.name} req/s per round: ${ratios.map((ratio) => ratio.toFixed(3)).join(', ')}; median ${summary(ratios).median.toFixed(3)}.`] : []),
      ],
    });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

await main();
