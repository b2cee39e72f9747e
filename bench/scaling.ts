import os from 'node:os';
import { benchCertificates, numberArgument, startEngineProcess, summary, writeResult } from './harness.js';
import { load, startBenchUpstream, startForwardAgent, tunnelTarget, type LoadFigures } from './load.js';
import type { ScenarioResult } from './report.js';

/**
 * Scaling with workers: the small-response scenario (100 B, --connections keep-alive connections,
 * autocannon) through two engine processes that differ only in dataplane.workers (1 and 2), each
 * with its own agent, runs interleaved with the order alternating.
 * Usage: node dist/bench/scaling.js [--runs N] [--seconds S] [--connections C] [--out FILE]
 */

const RUNS = numberArgument('runs', 3);
const SECONDS = numberArgument('seconds', 5);
const CONNECTIONS = numberArgument('connections', 50);

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const one = await startEngineProcess(certs, () => '{ workers: 1 }');
  const two = await startEngineProcess(certs, () => '{ workers: 2 }');
  const upstream = await startBenchUpstream(certs);
  const children = [one.engine, two.engine, upstream.child];
  try {
    children.push(await startForwardAgent(certs, one.port, upstream.http, 'one'));
    children.push(await startForwardAgent(certs, two.port, upstream.http, 'two'));
    const targets = { '1 worker': tunnelTarget('1 worker', 'one', one.port), '2 workers': tunnelTarget('2 workers', 'two', two.port) };
    for (const target of Object.values(targets)) await load(target, 10, 1);
    const figures: Record<string, LoadFigures[]> = { '1 worker': [], '2 workers': [] };
    for (let run = 1; run <= RUNS; run++) {
      const order = run % 2 ? (['1 worker', '2 workers'] as const) : (['2 workers', '1 worker'] as const);
      for (const name of order) {
        figures[name]!.push(await load(targets[name], CONNECTIONS, SECONDS));
        process.stderr.write(`run ${run}/${RUNS} ${name}: ${Math.round(figures[name]!.at(-1)!.rps)} req/s\n`);
      }
    }
    const series = (pick: (figure: LoadFigures) => number) => Object.fromEntries(Object.entries(figures).map(([name, runs]) => [name, summary(runs.map(pick))]));
    const rps = series((figure) => figure.rps);
    const gain = rps['2 workers']!.median / rps['1 worker']!.median;
    const result: ScenarioResult = {
      scenario: 'scaling',
      title: 'Scaling: small responses with dataplane.workers = 1 and = 2',
      runs: RUNS,
      rows: [
        { case: `${CONNECTIONS} connections`, metric: 'throughput', unit: 'req/s', higherIsBetter: true, series: rps },
        { case: `${CONNECTIONS} connections`, metric: 'latency p99', unit: 'ms', higherIsBetter: false, series: series((figure) => figure.p99) },
      ],
      targets: [{ target: '2 workers ≥ 1.3× one worker on small responses', measured: `${gain.toFixed(2)}×`, met: gain >= 1.3 }],
      generatorCpu: Object.fromEntries(Object.entries(figures).map(([name, runs]) => [`autocannon → ${name}`, summary(runs.map((figure) => figure.generatorCores)).median])),
      notes: [
        os.cpus().length > 2
          ? 'The load generator shares the machine with the engine, agent and upstream.'
          : `Not pinned: on ${os.cpus().length} cores there is no core to give the generator alone; engine, agent, upstream and generator share them, which caps what a second worker can add.`,
      ],
    };
    writeResult('scaling', { ...result });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

await main();
