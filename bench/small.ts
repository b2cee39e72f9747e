import { benchCertificates, freePort, numberArgument, startEngineProcess, stringArgument, summary, writeResult } from './harness.js';
import { load, startBenchUpstream, type LoadFigures } from './load.js';
import { comparisonTargets } from './comparison.js';
import type { BenchRow, ScenarioResult, TargetCheck } from './report.js';

/**
 * Small HTTP responses (100 bytes) as fast as they go, autocannon with keep-alive connections, at each
 * concurrency of --connections: through a published Rivulet tunnel (HTTPS, engine with 2 workers and a
 * `rivulet forward` agent, each its own process) vs the same upstream directly over HTTPS vs the
 * two-hop Node TLS relay (what a tunnel carries, with nothing else: the Node ceiling) vs the same
 * through localtunnel (plain HTTP). Runs interleaved: every target once per concurrency per round.
 * Usage: node dist/bench/small.js [--runs N] [--seconds S] [--connections 1,50,200] [--out FILE]
 */

const RUNS = numberArgument('runs', 3);
const SECONDS = numberArgument('seconds', 5);
const CONNECTIONS = (stringArgument('connections') ?? '1,50,200').split(',').map(Number);

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const metricsPort = await freePort();
  const { port: enginePort, engine } = await startEngineProcess(certs, () => '{ workers: 2 }', [
    `metrics: { prometheus: { enabled: true, listen_addr: "127.0.0.1:${metricsPort}" } }`,
  ]);
  const upstream = await startBenchUpstream(certs);
  const children = [engine, upstream.child];
  try {
    const { targets, peerUnavailable } = await comparisonTargets(certs, enginePort, upstream, children);
    for (const target of targets) await load(target, Math.max(...CONNECTIONS), 1); // warm-up: pools and JITs
    const relayBytesAfterWarmUp = await relayBytes(metricsPort);

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
    const relayedDuringRuns = (await relayBytes(metricsPort)) - relayBytesAfterWarmUp;
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
    const overRelay = rps('rivulet') / rps('node relay');
    const p99 = (name: string): number => of(reference, name, (figure) => figure.p99).median;
    const targetsMet: TargetCheck[] = [
      { target: `small responses: Rivulet ≥ 0.8× the two-hop Node TLS relay (${reference} connections)`, measured: `${overRelay.toFixed(2)}×`, met: overRelay >= 0.8 },
      {
        target: `small responses: Rivulet p99 ≤ 2× the relay's p99 (${reference} connections)`,
        measured: `${p99('rivulet')} ms vs ${p99('node relay')} ms`,
        met: p99('rivulet') <= 2 * Math.max(1, p99('node relay')),
      },
      { target: 'small responses: no stream bytes relayed between workers after warm-up', measured: `${relayedDuringRuns} bytes`, met: relayedDuringRuns === 0 },
    ];
    if (peerUnavailable === undefined) {
      const overPeer = rps('rivulet') / rps('localtunnel');
      targetsMet.splice(1, 0, { target: `small responses: Rivulet ≥ 3.5× localtunnel (${reference} connections)`, measured: `${overPeer.toFixed(1)}×`, met: overPeer >= 3.5 });
    }
    if (CONNECTIONS.includes(1) && peerUnavailable === undefined) {
      const single = (name: string): number => of(1, name, (figure) => figure.rps).median;
      const overPeerSingle = single('rivulet') / single('localtunnel');
      targetsMet.push({ target: 'small responses: Rivulet ≥ localtunnel at 1 connection', measured: `${overPeerSingle.toFixed(2)}×`, met: overPeerSingle >= 1 });
    }
    const errors = [...figures.entries()].filter(([, runs]) => runs.some((figure) => figure.errors > 0)).map(([key]) => key);
    const result: ScenarioResult = {
      scenario: 'small',
      title: 'Small HTTP responses (100 B): Rivulet tunnel vs direct HTTPS vs the Node TLS relay vs localtunnel',
      runs: RUNS,
      rows,
      targets: targetsMet,
      generatorCpu: Object.fromEntries(targets.map((target) => [`autocannon → ${target.name}`, summary([...figures.entries()].filter(([key]) => key.endsWith(` ${target.name}`)).flatMap(([, runs]) => runs.map((figure) => figure.generatorCores))).median])),
      notes: [
        `${SECONDS} s per run. Rivulet, direct and the relay are HTTPS (TLS 1.3); localtunnel is plain HTTP, as it ships. The relay is two Node processes (TLS in, TLS to the second hop, TCP to the upstream), the shape of engine and agent with no HTTP work.`,
        `rivulet_worker_relay_bytes_total grew by ${relayedDuringRuns} bytes over the measured runs (after warm-up).`,
        ...(errors.length > 0 ? [`Runs with errors or non-2xx responses: ${errors.join(', ')}.`] : []),
        ...(peerUnavailable ? [`No localtunnel series: ${peerUnavailable}.`] : []),
      ],
    };
    writeResult('small', { ...result });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

/** rivulet_worker_relay_bytes_total from the engine's Prometheus listener. */
async function relayBytes(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^rivulet_worker_relay_bytes_total (\S+)$/m.exec(text)?.[1] ?? NaN);
}

await main();
