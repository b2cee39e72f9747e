import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { writeDevCertificates, type DevCertificateFiles } from '../src/certs/dev-ca.js';
import { buildConfig } from '../src/config/load.js';
import { startEngine, type RunningEngine } from '../src/engine.js';
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

export interface Summary {
  median: number;
  min: number;
  max: number;
}

/** The median and the min–max of a set of runs. */
export function summary(values: number[]): Summary {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

export function stringArgument(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? process.argv[index + 1] : undefined;
}

/**
 * `--builds NAME=CLI,…`: engine builds to compare side by side (CLI: that build's dist/src/cli/main.js);
 * by default this checkout alone.
 */
export function buildsArgument(): Array<{ name: string; cli: string }> {
  return (stringArgument('builds') ?? `this=${CLI_PATH}`).split(',').map((entry) => {
    const [name, cli] = entry.split('=');
    return { name: name!, cli: cli! };
  });
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

/**
 * Writes `bench/results/<name>.json` with the machine it ran on, and prints it; with `--out FILE`
 * (how the suite runs a scenario) it writes FILE instead.
 */
export function writeResult(name: string, result: Record<string, unknown>): void {
  const full = {
    ...result,
    date: new Date().toISOString(),
    host: os.hostname(),
    cpus: os.cpus().length,
    node: process.version,
  };
  const out = stringArgument('out') ?? path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'bench', 'results', `${name}.json`);
  fs.writeFileSync(out, JSON.stringify(full, null, 2) + '\n');
  if (!stringArgument('out')) process.stdout.write(JSON.stringify(full, null, 2) + '\n');
}

/** A child process whose stdout lines are kept (JSON lines parsed) for `waitForLine`. */
export interface BenchChild {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the first stdout line (parsed JSON) matching `predicate`. */
  waitForLine(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export function spawnNode(args: string[], env: NodeJS.ProcessEnv = {}): BenchChild {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let pending = '';
  const waiters = new Set<() => void>();
  const onOutput = (chunk: Buffer): void => {
    pending += chunk.toString();
    const parts = pending.split('\n');
    pending = parts.pop()!;
    lines.push(...parts);
    for (const waiter of waiters) waiter();
  };
  child.stdout!.on('data', onOutput);
  child.stderr!.on('data', (chunk: Buffer) => process.stderr.write(chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    lines,
    waitForLine(predicate, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          for (const line of lines) {
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(line) as Record<string, unknown>;
            } catch {
              continue;
            }
            if (predicate(parsed)) {
              clearTimeout(timer);
              waiters.delete(check);
              resolve(parsed);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching line from ${args.join(' ')}: ${lines.slice(-5).join(' | ')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A TCP port free on loopback right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Waits until something accepts TCP connections on `port`. */
export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Runs a command to its end under bash, whose `times` reports the CPU its children used: stdout and
 * the command's CPU seconds (user + system), to tell readers how much of a 2-core machine a load
 * generator took.
 */
export function runMeasured(command: string, args: string[]): Promise<{ stdout: string; cpuSeconds: number }> {
  return new Promise((resolve, reject) => {
    const script = '"$@"; status=$?; times >&2; exit $status';
    execFile('bash', ['-c', script, 'bash', command, ...args], { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) {
        reject(new Error(`${command} failed: ${stderr || error.message}`));
        return;
      }
      // `times`: the shell's own user/sys, then its children's, as `XmY.YYYs XmY.YYYs`.
      const children = stderr.trim().split('\n').at(-1) ?? '';
      const seconds = [...children.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, match) => sum + Number(match[1]) * 60 + Number(match[2]), 0);
      resolve({ stdout, cpuSeconds: seconds });
    });
  });
}

/** Runs a command to its end and returns its stdout. */
export function runCommand(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

/** The built CLI entry point (`rivulet`). */
export const CLI_PATH = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'src', 'cli', 'main.js');

/**
 * `rivulet engine` in its own process on a loopback port (a free one unless `port`); `dataplane` gives
 * its YAML dataplane section, `extraYaml` further top-level sections.
 */
export async function startEngineProcess(
  certs: DevCertificateFiles,
  dataplane: (port: number) => string,
  extraYaml: string[] = [],
  port?: number,
  /** Another build's `dist/src/cli/main.js`, to compare builds side by side. */
  cliPath = CLI_PATH,
): Promise<{ port: number; engine: BenchChild }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-bench-engine-'));
  port ??= await freePort();
  const configFile = path.join(dir, 'engine.yaml');
  fs.writeFileSync(
    configFile,
    [
      'engine: { host: localhost, log_level: error }',
      `tls: { enabled: true, listen_addr: "127.0.0.1:${port}" }`,
      `certs: { static: { enabled: true, cert_file: "${certs.cert}", key_file: "${certs.key}" } }`,
      `auth: { jwt: { enabled: true, token_jwt_secret: "${BENCH_SECRET}" } }`,
      `dataplane: ${dataplane(port)}`,
      ...extraYaml,
      '',
    ].join('\n'),
  );
  const engine = spawnNode([cliPath, 'engine', '-c', configFile]);
  await waitForPort(port);
  return { port, engine };
}
