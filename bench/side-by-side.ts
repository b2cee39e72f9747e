import { benchCertificates, startEngineProcess, summary, writeResult, type BenchChild } from './harness.js';
import { load, startBenchUpstream, startForwardAgent, tunnelTarget, type LoadFigures, type Target } from './load.js';
import type { BenchRow } from './report.js';

/** One engine under comparison: a build (its CLI) and what its config adds. */
export interface Variant {
  name: string;
  cli?: string;
  extraYaml?: string[];
}

const CONNECTIONS = 50;

/**
 * The small-response scenario (100-byte responses, 50 keep-alive connections, autocannon, 2 workers)
 * through each variant's engine, side by side: runs interleaved, the order rotating each round, so
 * machine noise hits every variant alike. The result names the second variant's req/s over the first's
 * per round, and their median.
 */
export async function compareOnSmallResponses(options: { scenario: string; title: string; variants: Variant[]; runs: number; seconds: number }): Promise<void> {
  const { variants, runs, seconds } = options;
  const certs = await benchCertificates();
  const upstream = await startBenchUpstream(certs);
  const children: BenchChild[] = [upstream.child];
  try {
    const targets: Target[] = [];
    for (const variant of variants) {
      const { port, engine } = await startEngineProcess(certs, () => '{ workers: 2 }', variant.extraYaml ?? [], undefined, variant.cli);
      children.push(engine, await startForwardAgent(certs, port, upstream.http, variant.name));
      targets.push(tunnelTarget(variant.name, variant.name, port));
    }
    for (const target of targets) await load(target, CONNECTIONS, 2); // warm-up: pools and JITs
    const figures = new Map<string, LoadFigures[]>(targets.map((target) => [target.name, []]));
    for (let run = 1; run <= runs; run++) {
      const order = targets.map((_, index) => targets[(index + run) % targets.length]!);
      for (const target of order) figures.get(target.name)!.push(await load(target, CONNECTIONS, seconds));
      process.stderr.write(`run ${run}/${runs}: ${targets.map((target) => `${target.name} ${Math.round(figures.get(target.name)!.at(-1)!.rps)}/s`).join(', ')}\n`);
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
    writeResult(options.scenario, {
      scenario: options.scenario,
      title: options.title,
      rows,
      notes: [
        `${runs} runs of ${seconds} s per engine, interleaved, order rotating; engines: ${variants.map((variant) => variant.name).join(', ')}.`,
        ...(ratios.length > 0 ? [`${second!.name}/${first!.name} req/s per round: ${ratios.map((ratio) => ratio.toFixed(3)).join(', ')}; median ${summary(ratios).median.toFixed(3)}.`] : []),
      ],
    });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}
