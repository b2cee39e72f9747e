import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { SignJWT } from 'jose';
import { BENCH_SECRET, CLI_PATH, benchCertificates, numberArgument, runCommand, spawnNode, startEngineProcess, summary, writeResult } from './harness.js';

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
const AUTOCANNON = createRequire(import.meta.url).resolve('autocannon/autocannon.js');
const LABEL = 'bench';

interface Target {
  name: string;
  /** URL curl can use (it resolves *.localhost itself). */
  url: string;
  /** What autocannon dials, with the SNI and Host it must send. */
  dial: string;
  servername: string;
  host: string;
}

interface LoadFigures {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-bench-http-'));
  const { port: enginePort, engine } = await startEngineProcess(
    certs,
    (port) => `{ workers: ${WORKERS}, affinity: { enabled: ${AFFINITY}, port_base: ${port + 1}, advertise_host: 127.0.0.1 } }`,
  );
  const upstream = spawnNode([path.join(path.dirname(new URL(import.meta.url).pathname), 'bench-upstream.js'), certs.cert, certs.key]);
  const relayScript = path.join(path.dirname(new URL(import.meta.url).pathname), 'tls-relay.js');
  const children = [engine, upstream];
  try {
    const ports = (await upstream.waitForLine((line) => typeof line.http === 'number')) as { http: number; https: number };
    const token = await new SignJWT({ sub: 'bench' }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(BENCH_SECRET));
    const agent = spawnNode([CLI_PATH, 'forward', String(ports.http), '--host', LABEL, '-o', 'json'], {
      RSTREAM_ENGINE: `127.0.0.1:${enginePort}`,
      RSTREAM_AUTHENTICATION_TOKEN: token,
      NODE_EXTRA_CA_CERTS: certs.caCert,
      RSTREAM_CONFIG: path.join(dir, 'no-rstream-config.yaml'),
    });
    children.push(agent);
    await agent.waitForLine((line) => line.status === 'online');
    const secondHop = spawnNode([relayScript, certs.cert, certs.key, `127.0.0.1:${ports.http}`]);
    children.push(secondHop);
    const secondPort = (await secondHop.waitForLine((line) => typeof line.port === 'number')).port as number;
    const firstHop = spawnNode([relayScript, certs.cert, certs.key, `127.0.0.1:${secondPort}`, '--to-tls']);
    children.push(firstHop);
    const relayPort = (await firstHop.waitForLine((line) => typeof line.port === 'number')).port as number;

    const tunnelHost = `${LABEL}.t.localhost`;
    const tunnel: Target = {
      name: 'tunnel',
      url: `https://${tunnelHost}:${enginePort}`,
      dial: `https://127.0.0.1:${enginePort}`,
      servername: tunnelHost,
      host: `${tunnelHost}:${enginePort}`,
    };
    const direct: Target = { name: 'direct', url: `https://localhost:${ports.https}`, dial: `https://127.0.0.1:${ports.https}`, servername: 'localhost', host: `localhost:${ports.https}` };
    const relay: Target = { name: 'relay', url: `https://localhost:${relayPort}`, dial: `https://127.0.0.1:${relayPort}`, servername: 'localhost', host: `localhost:${relayPort}` };

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

/** autocannon in its own process against `target`: req/s and latency percentiles (ms). */
async function load(target: Target, connections: number, seconds: number, overallRate?: number): Promise<LoadFigures> {
  const args = [AUTOCANNON, '-j', '-n', '-c', String(connections), '-d', String(seconds), '-s', target.servername, '-H', `host=${target.host}`];
  if (overallRate) args.push('-R', String(overallRate));
  const output = await runCommand(process.execPath, [...args, `${target.dial}/small`]);
  const result = JSON.parse(output) as {
    requests: { average: number };
    latency: { p50: number; p99: number };
    errors: number;
    non2xx: number;
  };
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
}

/** One download with curl over HTTP/1.1; MB/s (10^6 bytes). */
async function download(target: Target, caFile: string, mib: number): Promise<number> {
  const output = await runCommand('curl', ['-sS', '--http1.1', '--cacert', caFile, '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', `${target.url}/bytes?n=${mib * 1024 * 1024}`]);
  const [speed, size] = output.trim().split(' ').map(Number);
  if (size !== mib * 1024 * 1024) throw new Error(`${target.name}: downloaded ${size} bytes`);
  return round(speed! / 1e6);
}

function summarize(figures: Record<string, LoadFigures[]>): Record<string, Record<keyof LoadFigures, ReturnType<typeof summary>>> {
  return Object.fromEntries(
    Object.entries(figures).map(([name, runs]) => [
      name,
      {
        rps: summary(runs.map((run) => run.rps)),
        p50: summary(runs.map((run) => run.p50)),
        p99: summary(runs.map((run) => run.p99)),
        errors: summary(runs.map((run) => run.errors)),
      },
    ]),
  );
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
