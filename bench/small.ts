import { benchCertificates, numberArgument, startEngineProcess, stringArgument, summary, writeResult } from './harness.js';
import { load, localTarget, startBenchUpstream, startForwardAgent, tunnelTarget, type LoadFigures, type Target } from './load.js';
import { startLocaltunnel } from './localtunnel.js';
import type { BenchRow, ScenarioResult, TargetCheck } from './report.js';

/**
 * Small HTTP responses (100 bytes) as fast as they go, autocannon with keep-alive connections, at each
 * concurrency of --connections: through a published Rivulet tunnel (HTTPS, engine with 2 workers and a
 * `rivulet forward` agent, each its own process) vs the same upstream directly over HTTPS vs the same
 * through localtunnel (plain HTTP). Runs interleaved: every target once per concurrency per round.
 * Usage: node dist/bench/small.js [--runs N] [--seconds S] [--connections 1,50,200] [--out FILE]
 */

const RUNS = numberArgument('runs', 3);
const SECONDS = numberArgument('seconds', 5);
const CONNECTIONS = (stringArgument('connections') ?? '1,50,200').split(',').map(Number);

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const { port: enginePort, engine } = await startEngineProcess(certs, () => '{ workers: 2 }');
  const upstream = await startBenchUpstream(certs);
  const children = [engine, upstream.child];
  try {
    children.push(await startForwardAgent(certs, enginePort, upstream.http, 'bench'));
    const peer = await startLocaltunnel(upstream.http);
    children.push(...peer.children);
    const targets: Target[] = [tunnelTarget('rivulet', 'bench', enginePort), localTarget('direct', upstream.https), peer.target];
    for (const target of targets) await load(target, 10, 1); // warm-up: pools and JITs

    const figures = new Map<string, LoadFigures[]>();
    for (let run = 1; run <= RUNS; run++) {
      for (const connections of CONNECTIONS) {
        for (const target of targets) {
          const key = `${connections} ${target.name}`;
          const figure = await load(target, connections, SECONDS);
          figures.set(key, [...(figures.get(key) ?? []), figure]);
          process.stderr.write(`run ${run}/${RUNS} c=${connections} ${target.name}: ${Math.round(figure.rps)} req/s\n`);
        }
      }
    }
    const rows: BenchRow[] = [];
    const of = (connections: number, name: string, pick: (figure: LoadFigures) => number) => summary(figures.get(`${connections} ${name}`)!.map(pick));
    for (const connections of CONNECTIONS) {
      const label = `${connections} connection${connections === 1 ? '' : 's'}`;
      for (const [metric, unit, pick, higherIsBetter] of [
        ['throughput', 'req/s', (figure: LoadFigures) => figure.rps, true],
        ['latency p50', 'ms', (figure: LoadFigures) => figure.p50, false],
        ['latency p99', 'ms', (figure: LoadFigures) => figure.p99, false],
      ] as const) {
        rows.push({ case: label, metric, unit, higherIsBetter, series: Object.fromEntries(targets.map((target) => [target.name, of(connections, target.name, pick)])) });
      }
    }
    const reference = CONNECTIONS.includes(50) ? 50 : CONNECTIONS.at(-1)!;
    const rps = (name: string): number => of(reference, name, (figure) => figure.rps).median;
    const overPeer = rps('rivulet') / rps('localtunnel');
    const overDirect = rps('rivulet') / rps('direct');
    const targetsMet: TargetCheck[] = [
      { target: `small responses: Rivulet ≥ 10× localtunnel (${reference} connections)`, measured: `${overPeer.toFixed(1)}×`, met: overPeer >= 10 },
      { target: `small responses: Rivulet ≥ 50 % of direct HTTPS (${reference} connections)`, measured: `${Math.round(overDirect * 100)} %`, met: overDirect >= 0.5 },
    ];
    const errors = [...figures.entries()].filter(([, runs]) => runs.some((figure) => figure.errors > 0)).map(([key]) => key);
    const result: ScenarioResult = {
      scenario: 'small',
      title: 'Small HTTP responses (100 B): Rivulet tunnel vs direct HTTPS vs localtunnel',
      runs: RUNS,
      rows,
      targets: targetsMet,
      generatorCpu: Object.fromEntries(targets.map((target) => [`autocannon → ${target.name}`, summary([...figures.entries()].filter(([key]) => key.endsWith(` ${target.name}`)).flatMap(([, runs]) => runs.map((figure) => figure.generatorCores))).median])),
      notes: [
        `${SECONDS} s per run. Rivulet and direct are HTTPS (TLS 1.3); localtunnel is plain HTTP, as it ships.`,
        ...(errors.length > 0 ? [`Runs with errors or non-2xx responses: ${errors.join(', ')}.`] : []),
      ],
    };
    writeResult('small', { ...result });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

await main();
