import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import { SignJWT } from 'jose';
import WebSocket, { WebSocketServer } from 'ws';
import { runDial } from '../src/agent/dial.js';
import { BENCH_SECRET, CLI_PATH, benchCertificates, numberArgument, spawnNode, startEngineProcess, summary, writeResult, type BenchChild } from './harness.js';
import type { BenchRow, ScenarioResult, TargetCheck } from './report.js';

/**
 * Soak: mixed traffic for a long time, watching the engine and its agents for leaks. The engine and
 * two `rivulet forward` agents (a published HTTP tunnel, a private TCP tunnel) run in their own
 * processes; this process is the upstream and the clients:
 *   - HTTP/1.1 keep-alive requests (4 clients), fresh-connection requests, h2 requests on one session;
 *   - WebSocket sessions (connect, 10 echoes, close);
 *   - private dials (1 KiB echoed, half-close);
 *   - agent churn: a third agent started, used once and stopped, over and over.
 * Every `--sample-seconds` it reads each process's RSS and open descriptors from /proc. Reports them
 * per sixth of the run, the least-squares growth after the first third (warm-up), and every error.
 * Usage: node dist/bench/soak.js [--minutes M] [--sample-seconds S] [--churn-seconds C]
 */

const MINUTES = numberArgument('minutes', 30);
const SAMPLE_SECONDS = numberArgument('sample-seconds', 60);
const CHURN_SECONDS = numberArgument('churn-seconds', 15);
const HOST = 'soak.t.localhost';
const PRIVATE_NAME = 'soak-private';
/** Growth allowed over the post-warm-up window before a process counts as leaking. */
const FLAT_FRACTION = 0.05;
const FLAT_MIB = 5;

type ProcessName = 'engine' | 'agent (published)' | 'agent (private)';

interface Sample {
  atSeconds: number;
  rssMiB: Record<ProcessName, number>;
  descriptors: Record<ProcessName, number>;
}

const OPERATION_KINDS = ['keep-alive requests', 'fresh-connection requests', 'h2 requests', 'WebSocket sessions', 'private dials', 'agent churns'] as const;
type OperationKind = (typeof OPERATION_KINDS)[number];

class Tally {
  readonly done = Object.fromEntries(OPERATION_KINDS.map((kind) => [kind, 0])) as Record<OperationKind, number>;
  readonly errors: string[] = [];
  errorCount = 0;

  ok(kind: OperationKind): void {
    this.done[kind]++;
  }

  failed(kind: OperationKind, error: unknown): void {
    this.errorCount++;
    if (this.errors.length < 20) this.errors.push(`${kind}: ${(error as Error).message ?? String(error)}`);
  }
}

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const ca = fs.readFileSync(certs.caCert);
  const token = await new SignJWT({ sub: 'soak' }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(BENCH_SECRET));
  const upstream = await startUpstream();
  const echo = await startTcpEcho();
  const { port, engine } = await startEngineProcess(certs, () => '{ workers: 2 }');
  const agentEnv = { RSTREAM_ENGINE: `127.0.0.1:${port}`, RSTREAM_AUTHENTICATION_TOKEN: token, NODE_EXTRA_CA_CERTS: certs.caCert, RSTREAM_CONFIG: '/nonexistent' };
  const startAgent = async (args: string[]): Promise<BenchChild> => {
    const agent = spawnNode([CLI_PATH, 'forward', ...args, '--retry-interval', '500', '-o', 'json'], agentEnv);
    await agent.waitForLine((line) => line.status === 'online');
    return agent;
  };
  const published = await startAgent([String(upstream.port), '--host', 'soak']);
  const privateAgent = await startAgent([String(echo.port), '--no-publish', '--name', PRIVATE_NAME]);
  const processes: Record<ProcessName, number> = {
    engine: engine.child.pid!,
    'agent (published)': published.child.pid!,
    'agent (private)': privateAgent.child.pid!,
  };

  const tally = new Tally();
  const started = Date.now();
  const deadline = started + MINUTES * 60_000;
  const running = (): boolean => Date.now() < deadline;
  const samples: Sample[] = [];
  const sampler = setInterval(() => samples.push(sample(processes, started)), SAMPLE_SECONDS * 1000);
  samples.push(sample(processes, started));

  const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 4 });
  const get = (agent: https.Agent, path: string): Promise<void> => request({ port, ca, agent, path });
  const loops: Array<Promise<void>> = [
    ...Array.from({ length: 4 }, () => repeat(running, 5, tally, 'keep-alive requests', () => get(keepAlive, '/bytes?n=4096'))),
    repeat(running, 50, tally, 'fresh-connection requests', () => get(new https.Agent({ keepAlive: false }), '/bytes?n=1024')),
    h2Loop(port, ca, running, tally),
    repeat(running, 200, tally, 'WebSocket sessions', () => webSocketSession(port, ca)),
    repeat(running, 100, tally, 'private dials', () => privateDial(port, certs.caCert, token)),
    repeat(running, CHURN_SECONDS * 1000, tally, 'agent churns', async () => {
      const churning = await startAgent([String(upstream.port), '--host', `churn-${tally.done['agent churns']}`]);
      try {
        await request({ port, ca, agent: new https.Agent(), path: '/bytes?n=16', host: `churn-${tally.done['agent churns']}.t.localhost` });
      } finally {
        await churning.stop();
      }
    }),
  ];
  const progress = setInterval(() => {
    const minutes = (Date.now() - started) / 60_000;
    process.stderr.write(`soak: ${minutes.toFixed(1)}/${MINUTES} min, ${Object.values(tally.done).reduce((a, b) => a + b, 0)} operations, ${tally.errorCount} errors\n`);
  }, 10_000);
  await Promise.all(loops);
  clearInterval(progress);
  clearInterval(sampler);
  samples.push(sample(processes, started));
  keepAlive.destroy();

  await Promise.all([published.stop(), privateAgent.stop()]);
  await engine.stop();
  upstream.close();
  echo.close();

  writeResult('soak', report(samples, tally) as unknown as Record<string, unknown>);
  process.exit(0);
}

/** Runs `operation` back to back (pausing `pauseMs` after each) until `running()` says stop. */
async function repeat(running: () => boolean, pauseMs: number, tally: Tally, kind: OperationKind, operation: () => Promise<void>): Promise<void> {
  while (running()) {
    try {
      await operation();
      tally.ok(kind);
    } catch (error) {
      tally.failed(kind, error);
    }
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}

function request(options: { port: number; ca: Buffer; agent: https.Agent; path: string; host?: string }): Promise<void> {
  const host = options.host ?? HOST;
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', port: options.port, servername: host, ca: options.ca, agent: options.agent, path: options.path, headers: { host } },
      (res) => {
        let length = 0;
        res.on('data', (chunk: Buffer) => (length += chunk.length));
        res.on('end', () => {
          const expected = Number(new URL(options.path, 'http://x').searchParams.get('n'));
          if (res.statusCode !== 200 || length !== expected) reject(new Error(`status ${res.statusCode}, ${length} of ${expected} bytes`));
          else resolve();
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('no answer in 30 s')));
  });
}

/** h2 requests on one long-lived session (reopened if it fails). */
async function h2Loop(port: number, ca: Buffer, running: () => boolean, tally: Tally): Promise<void> {
  let session: http2.ClientHttp2Session | undefined;
  while (running()) {
    try {
      if (!session || session.closed || session.destroyed) {
        session = http2.connect(`https://127.0.0.1:${port}`, { servername: HOST, ca });
        session.on('error', () => {});
      }
      const current = session;
      await new Promise<void>((resolve, reject) => {
        const stream = current.request({ ':path': '/bytes?n=2048', ':authority': HOST });
        let length = 0;
        let status = 0;
        stream.on('response', (headers) => (status = Number(headers[':status'])));
        stream.on('data', (chunk: Buffer) => (length += chunk.length));
        stream.on('end', () => (status === 200 && length === 2048 ? resolve() : reject(new Error(`h2 status ${status}, ${length} bytes`))));
        stream.on('error', reject);
      });
      tally.ok('h2 requests');
    } catch (error) {
      tally.failed('h2 requests', error);
      session?.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  session?.close();
}

function webSocketSession(port: number, ca: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca, servername: HOST, headers: { host: HOST } } as WebSocket.ClientOptions);
    let echoed = 0;
    const timer = setTimeout(() => socket.terminate(), 30_000);
    socket.on('open', () => socket.send(`message ${echoed}`));
    socket.on('message', (data) => {
      if (String(data) !== `message ${echoed}`) {
        socket.terminate();
        reject(new Error(`echo "${String(data)}" for message ${echoed}`));
        return;
      }
      if (++echoed === 10) socket.close(1000);
      else socket.send(`message ${echoed}`);
    });
    socket.on('close', (code) => {
      clearTimeout(timer);
      if (echoed === 10 && code === 1000) resolve();
      else reject(new Error(`WebSocket closed with ${code} after ${echoed} echoes`));
    });
    socket.on('error', () => {});
  });
}

async function privateDial(port: number, caFile: string, token: string): Promise<void> {
  const payload = Buffer.alloc(1024, 0x62);
  const output = new PassThrough();
  const received: Buffer[] = [];
  output.on('data', (chunk: Buffer) => received.push(chunk));
  let failure = '';
  const status = await runDial({
    engine: { host: '127.0.0.1', port, caPem: fs.readFileSync(caFile, 'utf8') },
    token,
    target: PRIVATE_NAME,
    zeroRtt: true,
    input: Readable.from([payload]),
    output,
    printError: (line) => (failure = line),
  });
  const echoed = Buffer.concat(received);
  if (status !== 0 || !echoed.equals(payload)) throw new Error(`dial exit ${status}, ${echoed.length} bytes echoed ${failure}`);
}

/** The published tunnel's upstream: `/bytes?n=N` and a WebSocket echo at `/ws`. */
async function startUpstream(): Promise<{ port: number; close(): void }> {
  const server = http.createServer((req, res) => {
    const size = Number(new URL(req.url!, 'http://x').searchParams.get('n') ?? 0);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    res.end(Buffer.alloc(size, 0x61));
  });
  const sockets = new WebSocketServer({ server, path: '/ws' });
  sockets.on('connection', (socket) => socket.on('message', (data, binary) => socket.send(data, { binary })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      sockets.close();
      server.closeAllConnections();
      server.close();
    },
  };
}

/** The private tunnel's upstream: echoes, and ends after the client's end. */
async function startTcpEcho(): Promise<{ port: number; close(): void }> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

function sample(processes: Record<ProcessName, number>, started: number): Sample {
  const rssMiB = {} as Record<ProcessName, number>;
  const descriptors = {} as Record<ProcessName, number>;
  for (const [name, pid] of Object.entries(processes) as Array<[ProcessName, number]>) {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    rssMiB[name] = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
    descriptors[name] = fs.readdirSync(`/proc/${pid}/fd`).length;
  }
  return { atSeconds: (Date.now() - started) / 1000, rssMiB, descriptors };
}

/** Least-squares slope of `values` over `seconds`, per second. */
function slope(seconds: number[], values: number[]): number {
  const n = seconds.length;
  const meanX = seconds.reduce((a, b) => a + b, 0) / n;
  const meanY = values.reduce((a, b) => a + b, 0) / n;
  let numerator = 0;
  let denominator = 0;
  for (let i = 0; i < n; i++) {
    numerator += (seconds[i]! - meanX) * (values[i]! - meanY);
    denominator += (seconds[i]! - meanX) ** 2;
  }
  return denominator === 0 ? 0 : numerator / denominator;
}

function report(samples: Sample[], tally: Tally): ScenarioResult {
  const names: ProcessName[] = ['engine', 'agent (published)', 'agent (private)'];
  const totalSeconds = samples[samples.length - 1]!.atSeconds;
  const rows: BenchRow[] = [];
  const sixth = totalSeconds / 6;
  for (let part = 0; part < 6; part++) {
    const inPart = samples.filter((one) => one.atSeconds >= part * sixth && (one.atSeconds < (part + 1) * sixth || part === 5));
    if (inPart.length === 0) continue;
    const label = `minutes ${((part * sixth) / 60).toFixed(1)}–${(((part + 1) * sixth) / 60).toFixed(1)}`;
    rows.push(
      { case: label, metric: 'RSS', unit: 'MiB', higherIsBetter: false, series: Object.fromEntries(names.map((name) => [name, summary(inPart.map((one) => one.rssMiB[name]))])) },
      { case: label, metric: 'open descriptors', unit: 'count', higherIsBetter: false, series: Object.fromEntries(names.map((name) => [name, summary(inPart.map((one) => one.descriptors[name]))])) },
    );
  }
  rows.push({
    case: 'whole run',
    metric: 'operations completed',
    unit: 'count',
    higherIsBetter: true,
    series: Object.fromEntries(OPERATION_KINDS.map((kind) => [kind, summary([tally.done[kind]])])),
  });

  const settled = samples.filter((one) => one.atSeconds >= totalSeconds / 3);
  const seconds = settled.map((one) => one.atSeconds);
  const windowMinutes = (seconds[seconds.length - 1]! - seconds[0]!) / 60;
  const targets: TargetCheck[] = [];
  for (const name of names) {
    const rss = settled.map((one) => one.rssMiB[name]);
    const perMinute = slope(seconds, rss) * 60;
    const growth = perMinute * windowMinutes;
    const allowed = Math.max(FLAT_MIB, FLAT_FRACTION * summary(rss).median);
    targets.push({
      target: `${name}: RSS flat after warm-up (least-squares growth ≤ ${allowed.toFixed(1)} MiB over the last two thirds)`,
      measured: `${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB over ${windowMinutes.toFixed(1)} min (${(perMinute * 1024).toFixed(0)} KiB/min; median ${summary(rss).median.toFixed(1)} MiB)`,
      met: growth <= allowed,
    });
    const fds = settled.map((one) => one.descriptors[name]);
    const last = fds[fds.length - 1]!;
    const typical = summary(fds).median;
    targets.push({
      target: `${name}: open descriptors at the end ≤ their post-warm-up median + 10 %`,
      measured: `${last} at the end, median ${typical}`,
      met: last <= Math.ceil(typical * 1.1) + 2,
    });
  }
  targets.push({ target: 'every operation succeeded', measured: `${tally.errorCount} errors`, met: tally.errorCount === 0 });
  return {
    scenario: 'soak',
    title: `Soak: ${MINUTES} minutes of mixed traffic, engine and agents watched for leaks`,
    runs: 1,
    rows,
    targets,
    notes: [
      `Samples every ${SAMPLE_SECONDS} s (seconds: engine RSS MiB / descriptors): ` +
        samples.map((one) => `${one.atSeconds.toFixed(0)}: ${one.rssMiB.engine.toFixed(1)}/${one.descriptors.engine}`).join(', '),
      `Operations: ${OPERATION_KINDS.map((kind) => `${kind} ${tally.done[kind]}`).join(', ')}.`,
      ...tally.errors.map((error) => `error: ${error}`),
    ],
  };
}

await main();
