import path from 'node:path';
import { benchCertificates, numberArgument, runCommand, spawnNode, startEngineProcess, summary, writeResult } from './harness.js';
import { load, localTarget, startBenchUpstream, startForwardAgent, summarize, tunnelTarget, type LoadFigures, type Target } from './load.js';

/**
 * The HTTP tunnel edge against its references, every process separate as in production (engine with
 * 2 workers, `rivulet forward` agent, upstream service, load generator), runs interleaved:
 *   small  – 100-byte responses, 50 keep-alive connections, as fast as they go (autocannon):
 *            through the published tunnel vs the same upstream directly over HTTPS vs the two-hop
 *            Node TLS relay (the same process hops with no HTTP work in them);
 *   paced  – the same at a fixed 1,000 req/s (10 connections): latency added by the tunnel;
 *   bulk   – one download of --mib MiB (curl, HTTP/1.1): tunnel vs direct vs a two-hop Node TLS relay.
 * Usage: node dist/bench/http-edge.js [--runs N] [--seconds S] [--mib M] [--workers W] [--affinity]
 * (--affinity: proxy connections land on the worker holding the downstream, no worker↔worker relay)
 */

const RUNS = numberArgument('runs', 3);
const SECONDS = numberArgument('seconds', 5);
const BULK_MIB = numberArgument('mib', 1024);
const WORKERS = numberArgument('workers', 2);
const AFFINITY = process.argv.includes('--affinity');
const LABEL = 'bench';

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const { port: enginePort, engine } = await startEngineProcess(
    certs,
    (port) => `{ workers: ${WORKERS}, affinity: { enabled: ${AFFINITY}, port_base: ${port + 1}, advertise_host: 127.0.0.1 } }`,
  );
  const upstream = await startBenchUpstream(certs);
  const relayScript = path.join(path.dirname(new URL(import.meta.url).pathname), 'tls-relay.js');
  const ports = upstream;
  const children = [engine, upstream.child];
  try {
    children.push(await startForwardAgent(certs, enginePort, ports.http, LABEL));
    const secondHop = spawnNode([relayScript, certs.cert, certs.key, `127.0.0.1:${ports.http}`]);
    children.push(secondHop);
    const secondPort = (await secondHop.waitForLine((line) => typeof line.port === 'number')).port as number;
    const firstHop = spawnNode([relayScript, certs.cert, certs.key, `127.0.0.1:${secondPort}`, '--to-tls']);
    children.push(firstHop);
    const relayPort = (await firstHop.waitForLine((line) => typeof line.port === 'number')).port as number;

    const tunnel = tunnelTarget('tunnel', LABEL, enginePort);
    const direct = localTarget('direct', ports.https);
    const relay = localTarget('relay', relayPort);

    // Warm-up: the tunnel's pool and both JITs.
    await load(tunnel, 50, 2);
    await load(direct, 50, 2);

    const small: Record<string, LoadFigures[]> = { tunnel: [], direct: [], relay: [] };
    const paced: Record<string, LoadFigures[]> = { tunnel: [], direct: [] };
    const bulk: Record<string, number[]> = { tunnel: [], direct: [], relay: [] };
    for (let run = 1; run <= RUNS; run++) {
      for (const target of [tunnel, direct, relay]) small[target.name]!.push(await load(target, 50, SECONDS));
      for (const target of [tunnel, direct]) paced[target.name]!.push(await load(target, 10, SECONDS, 1000));
      for (const target of [tunnel, direct, relay]) bulk[target.name]!.push(await download(target, certs.caCert, BULK_MIB));
      process.stderr.write(`run ${run}/${RUNS}: small ${fmt(small)}; paced p99 ${fmtP99(paced)}; bulk ${JSON.stringify(lastOf(bulk))} MB/s\n`);
    }

    const smallSummary = summarize(small);
    const pacedSummary = summarize(paced);
    const bulkSummary = Object.fromEntries(Object.entries(bulk).map(([name, values]) => [name, summary(values)]));
    writeResult(AFFINITY || WORKERS !== 2 ? `http-edge-${WORKERS}w${AFFINITY ? '-affinity' : ''}` : 'http-edge', {
      workers: WORKERS,
      affinity: AFFINITY,
      runs: RUNS,
      seconds: SECONDS,
      bulk_mib: BULK_MIB,
      small_100B_50_connections: smallSummary,
      paced_1000_rps_10_connections: pacedSummary,
      bulk_download_MBps: bulkSummary,
      ratios: {
        small_rps_tunnel_over_direct: round(smallSummary.tunnel!.rps.median / smallSummary.direct!.rps.median),
        small_rps_tunnel_over_relay: round(smallSummary.tunnel!.rps.median / smallSummary.relay!.rps.median),
        paced_p99_added_ms: round(pacedSummary.tunnel!.p99.median - pacedSummary.direct!.p99.median),
        bulk_tunnel_over_relay: round(bulkSummary.tunnel!.median / bulkSummary.relay!.median),
        bulk_tunnel_over_direct: round(bulkSummary.tunnel!.median / bulkSummary.direct!.median),
      },
    });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

/** One download with curl over HTTP/1.1; MB/s (10^6 bytes). */
async function download(target: Target, caFile: string, mib: number): Promise<number> {
  const output = await runCommand('curl', ['-sS', '--http1.1', '--cacert', caFile, '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', `${target.url}/bytes?n=${mib * 1024 * 1024}`]);
  const [speed, size] = output.trim().split(' ').map(Number);
  if (size !== mib * 1024 * 1024) throw new Error(`${target.name}: downloaded ${size} bytes`);
  return round(speed! / 1e6);
}

const round = (value: number): number => Math.round(value * 100) / 100;
const lastOf = (values: Record<string, number[]>): Record<string, number | undefined> =>
  Object.fromEntries(Object.entries(values).map(([name, list]) => [name, list.at(-1)]));
const fmt = (figures: Record<string, LoadFigures[]>): string =>
  Object.entries(figures)
    .map(([name, runs]) => `${name} ${Math.round(runs.at(-1)!.rps)}/s`)
    .join(', ');
const fmtP99 = (figures: Record<string, LoadFigures[]>): string =>
  Object.entries(figures)
    .map(([name, runs]) => `${name} ${runs.at(-1)!.p99} ms`)
    .join(', ');

await main();
