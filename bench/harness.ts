import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeDevCertificates, type DevCertificateFiles } from '../src/certs/dev-ca.js';
import { buildConfig } from '../src/config/load.js';
import { startEngine, type RunningEngine } from '../src/control/engine.js';
import { createLogger } from '../src/log.js';

/** What every benchmark shares: arguments, statistics, a throwaway engine, and the results file. */

export function numberArgument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The median and the min–max of a set of runs. */
export function summary(values: number[]): { median: number; min: number; max: number } {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

export const BENCH_SECRET = 'bench-secret-bench-secret-bench-secret';

/** Development certificates for `localhost` (and 127.0.0.1) in a fresh temporary directory. */
export async function benchCertificates(): Promise<DevCertificateFiles> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-bench-'));
  return writeDevCertificates({ host: 'localhost', extraSans: ['127.0.0.1'], outDir: dir, days: 2, force: true });
}

/** An engine in this process on an ephemeral loopback port; `dataplane` adds to the defaults. */
export async function startBenchEngine(certs: DevCertificateFiles, dataplane: Record<string, unknown>): Promise<RunningEngine> {
  const { config } = buildConfig(
    {
      engine: { host: 'localhost', log_level: 'error' },
      tls: { enabled: true, listen_addr: '127.0.0.1:0' },
      certs: { static: { enabled: true, cert_file: certs.cert, key_file: certs.key } },
      auth: { jwt: { enabled: true, token_jwt_secret: BENCH_SECRET } },
      dataplane,
    },
    {},
  );
  return startEngine(config, createLogger('error'), (reason) => {
    throw new Error(reason);
  });
}

/** Writes `bench/results/<name>.json` with the machine it ran on, and prints it. */
export function writeResult(name: string, result: Record<string, unknown>): void {
  const full = {
    ...result,
    date: new Date().toISOString(),
    host: os.hostname(),
    cpus: os.cpus().length,
    node: process.version,
  };
  const out = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'bench', 'results', `${name}.json`);
  fs.writeFileSync(out, JSON.stringify(full, null, 2) + '\n');
  process.stdout.write(JSON.stringify(full, null, 2) + '\n');
}
