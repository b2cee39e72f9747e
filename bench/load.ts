import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import type { DevCertificateFiles } from '../src/certs/dev-ca.js';
import { BENCH_SECRET, CLI_PATH, runMeasured, spawnNode, summary, type BenchChild } from './harness.js';

/** What the HTTP benchmarks share: targets, autocannon runs, and the `rivulet forward` agent. */

const AUTOCANNON = createRequire(import.meta.url).resolve('autocannon/autocannon.js');

export interface Target {
  name: string;
  /** URL curl can use (it resolves *.localhost itself). */
  url: string;
  /** What autocannon dials, with the SNI and Host it must send. */
  dial: string;
  servername: string;
  host: string;
}

export interface LoadFigures {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU the generator itself used, in cores (CPU seconds / wall seconds). */
  generatorCores: number;
}

/** A published tunnel `<label>.t.localhost` on the engine at `enginePort`. */
export function tunnelTarget(name: string, label: string, enginePort: number): Target {
  const host = `${label}.t.localhost`;
  return { name, url: `https://${host}:${enginePort}`, dial: `https://127.0.0.1:${enginePort}`, servername: host, host: `${host}:${enginePort}` };
}

/** A plain-HTTP server reached with `host` in the Host header (localtunnel routes by it). */
export function plainTarget(name: string, port: number, host: string): Target {
  return { name, url: `http://127.0.0.1:${port}`, dial: `http://127.0.0.1:${port}`, servername: host, host: `${host}:${port}` };
}

/** A TLS server for `localhost` on `port` (the direct reference, a relay). */
export function localTarget(name: string, port: number): Target {
  return { name, url: `https://localhost:${port}`, dial: `https://127.0.0.1:${port}`, servername: 'localhost', host: `localhost:${port}` };
}

/** autocannon in its own process against `target` + `urlPath`: req/s and latency percentiles (ms). */
export async function load(target: Target, connections: number, seconds: number, overallRate?: number, urlPath = '/small'): Promise<LoadFigures> {
  const args = [AUTOCANNON, '-j', '-n', '-c', String(connections), '-d', String(seconds), '-s', target.servername, '-H', `host=${target.host}`];
  if (overallRate) args.push('-R', String(overallRate));
  const started = Date.now();
  const { stdout, cpuSeconds } = await runMeasured(process.execPath, [...args, `${target.dial}${urlPath}`]);
  const result = JSON.parse(stdout) as {
    requests: { average: number };
    latency: { p50: number; p99: number };
    errors: number;
    non2xx: number;
  };
  const generatorCores = cpuSeconds / ((Date.now() - started) / 1000);
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx, generatorCores };
}

export function summarize(figures: Record<string, LoadFigures[]>): Record<string, Record<keyof LoadFigures, ReturnType<typeof summary>>> {
  return Object.fromEntries(
    Object.entries(figures).map(([name, runs]) => [
      name,
      {
        rps: summary(runs.map((run) => run.rps)),
        p50: summary(runs.map((run) => run.p50)),
        p99: summary(runs.map((run) => run.p99)),
        errors: summary(runs.map((run) => run.errors)),
        generatorCores: summary(runs.map((run) => run.generatorCores)),
      },
    ]),
  );
}

/** `rivulet forward <upstreamPort> --host <label> [flags]` against the engine at `enginePort`, once online. */
export async function startForwardAgent(certs: DevCertificateFiles, enginePort: number, upstreamPort: number, label: string, flags: string[] = []): Promise<BenchChild> {
  const token = await new SignJWT({ sub: 'bench' }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(BENCH_SECRET));
  const agent = spawnNode([CLI_PATH, 'forward', String(upstreamPort), '--host', label, '-o', 'json', ...flags], {
    RSTREAM_ENGINE: `127.0.0.1:${enginePort}`,
    RSTREAM_AUTHENTICATION_TOKEN: token,
    NODE_EXTRA_CA_CERTS: certs.caCert,
    RSTREAM_CONFIG: path.join(os.tmpdir(), 'rivulet-bench-no-rstream-config.yaml'),
  });
  await agent.waitForLine((line) => line.status === 'online');
  return agent;
}

/** The bench upstream (bench-upstream.ts) in its own process: its plain HTTP and HTTPS ports. */
export async function startBenchUpstream(certs: DevCertificateFiles): Promise<{ child: BenchChild; http: number; https: number; impatient: number }> {
  const child = spawnNode([path.join(path.dirname(new URL(import.meta.url).pathname), 'bench-upstream.js'), certs.cert, certs.key]);
  const ports = (await child.waitForLine((line) => typeof line.http === 'number')) as { http: number; https: number; impatient: number };
  return { child, ...ports };
}

/**
 * The Node ceiling: two TLS relay hops (tls-relay.ts) in front of the upstream's plain port, carrying
 * what a tunnel carries (TLS ⇄ hop ⇄ TLS ⇄ hop ⇄ TCP) with nothing else. Its TLS port.
 */
export async function startTwoHopRelay(certs: DevCertificateFiles, upstreamPort: number): Promise<{ port: number; children: BenchChild[] }> {
  const relayScript = path.join(path.dirname(new URL(import.meta.url).pathname), 'tls-relay.js');
  const secondHop = spawnNode([relayScript, certs.cert, certs.key, `127.0.0.1:${upstreamPort}`]);
  const secondPort = (await secondHop.waitForLine((line) => typeof line.port === 'number')).port as number;
  const firstHop = spawnNode([relayScript, certs.cert, certs.key, `127.0.0.1:${secondPort}`, '--to-tls']);
  const port = (await firstHop.waitForLine((line) => typeof line.port === 'number')).port as number;
  return { port, children: [firstHop, secondHop] };
}
