import { benchCertificates, freePort, numberArgument, startEngineProcess, writeResult } from './harness.js';
import { load, startBenchUpstream, startForwardAgent, summarize, tunnelTarget, type LoadFigures } from './load.js';

/**
 * The cost of counting: the small-response scenario (100-byte responses, 50 keep-alive
 * connections, autocannon) through two engines that differ only in metrics.prometheus.enabled; the one
 * with the emitter is scraped every second during its runs, as Prometheus would. Runs interleaved
 * (off, on, off, on …) so machine noise hits both alike. The counting itself is always on (the workers'
 * SharedArrayBuffer rows); what the emitter adds is the listener, prom-client's default collectors
 * and the scrapes.
 * Usage: node dist/bench/metrics-cost.js [--runs N] [--seconds S]
 */

const RUNS = numberArgument('runs', 5);
const SECONDS = numberArgument('seconds', 5);

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const metricsPort = await freePort();
  const off = await startEngineProcess(certs, () => '{ workers: 2 }');
  const on = await startEngineProcess(certs, () => '{ workers: 2 }', [`metrics: { prometheus: { enabled: true, listen_addr: "127.0.0.1:${metricsPort}" } }`]);
  const upstream = await startBenchUpstream(certs);
  const children = [off.engine, on.engine, upstream.child];
  let scrapes = 0;
  let scrapeBytes = 0;
  const scraper = setInterval(() => {
    void fetch(`http://127.0.0.1:${metricsPort}/metrics`)
      .then((reply) => reply.text())
      .then((body) => {
        scrapes++;
        scrapeBytes = body.length;
      })
      .catch(() => undefined);
  }, 1000);
  try {
    children.push(await startForwardAgent(certs, off.port, upstream.http, 'off'));
    children.push(await startForwardAgent(certs, on.port, upstream.http, 'on'));
    const targets = { off: tunnelTarget('off', 'off', off.port), on: tunnelTarget('on', 'on', on.port) };
    await load(targets.off, 50, 2);
    await load(targets.on, 50, 2);
    const figures: Record<'off' | 'on', LoadFigures[]> = { off: [], on: [] };
    for (let run = 1; run <= RUNS; run++) {
      // Alternate which goes first, so neither always follows the other.
      const order = run % 2 ? (['off', 'on'] as const) : (['on', 'off'] as const);
      for (const name of order) figures[name].push(await load(targets[name], 50, SECONDS));
      process.stderr.write(`run ${run}/${RUNS}: off ${Math.round(figures.off.at(-1)!.rps)}/s, on ${Math.round(figures.on.at(-1)!.rps)}/s\n`);
    }
    const summarized = summarize(figures);
    const ratios = figures.on.map((run, i) => run.rps / figures.off[i]!.rps).sort((a, b) => a - b);
    writeResult('metrics-cost', {
      runs: RUNS,
      seconds: SECONDS,
      scenario: 'small 100 B responses, 50 connections, 2 workers, through a published tunnel',
      emitter_off: summarized.off,
      emitter_on_scraped_every_second: summarized.on,
      scrapes,
      exposition_bytes: scrapeBytes,
      on_over_off_rps_median: Math.round((summarized.on!.rps.median / summarized.off!.rps.median) * 1000) / 1000,
      on_over_off_rps_per_pair: ratios.map((ratio) => Math.round(ratio * 1000) / 1000),
    });
  } finally {
    clearInterval(scraper);
    for (const child of children.reverse()) await child.stop();
  }
}

await main();
