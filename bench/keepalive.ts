import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import { benchCertificates, numberArgument, startEngineProcess, summary, writeResult } from './harness.js';
import { startBenchUpstream, startForwardAgent } from './load.js';
import { PATTERN, PATTERN_BYTES } from './pattern.js';
import type { BenchRow, ScenarioResult } from './report.js';

/**
 * Keep-alive torture: many clients, each on its own kept-alive HTTP/1.1 connection or h2 session,
 * sending sequential mixed traffic — GET, HEAD, POST, PUT; bodies of 0 B to 1 MiB both ways, by
 * Content-Length and chunked; 204 and 304 answers; answers the client aborts mid-body; an upstream
 * that closes keep-alive connections itself (`Connection: close`, and a second upstream that closes
 * idle connections after 20 ms). Every answer is checked byte for byte. Reports requests completed,
 * hung (no progress for 15 s), failed (anything unexpected) and aborted (by the client, on purpose).
 * Usage: node dist/bench/keepalive.js [--requests N] [--clients C] [--h2-clients H] [--out FILE]
 */

const REQUESTS = numberArgument('requests', 10_000);
const H1_CLIENTS = numberArgument('clients', 32);
const H2_CLIENTS = numberArgument('h2-clients', 8);
const HUNG_MS = 15_000;
const KiB = 1024;

/** What a correct answer to one planned request looks like. */
type Expectation = { kind: 'bytes'; length: number } | { kind: 'head'; length: number } | { kind: 'echo'; length: number } | { kind: 'empty' };

interface Planned {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT';
  path: string;
  body: Buffer | undefined;
  chunkedUpload: boolean;
  status: number;
  expect: Expectation;
  /** The client drops the exchange after the first body bytes (an expected failure). */
  abort: boolean;
}

type Outcome = { result: 'completed' | 'aborted' } | { result: 'hung' | 'failed'; why: string };

interface Tally {
  completed: number;
  aborted: number;
  hung: number;
  failed: number;
  examples: string[];
}

/** mulberry32: a small seeded generator, so a failing mix can be replayed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sizes around the edges that matter: empty, tiny, one TLS record (16 KiB) and just past it, up to 1 MiB. */
function size(random: () => number): number {
  const r = random();
  const between = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  if (r < 0.1) return 0;
  if (r < 0.3) return between(1, 100);
  if (r < 0.55) return between(101, 16 * KiB - 1);
  if (r < 0.7) return between(16_000, 17_500);
  if (r < 0.85) return between(17_501, 64 * KiB);
  if (r < 0.95) return between(64 * KiB + 1, 256 * KiB);
  return between(256 * KiB + 1, 1024 * KiB);
}

function plan(random: () => number): Planned {
  const r = random();
  const framing = random() < 0.5 ? 'length' : 'chunked';
  const close = random() < 0.03 ? '&close=1' : '';
  if (r < 0.35 || r >= 0.94) {
    const abort = r >= 0.94 && r < 0.97;
    const length = abort ? 64 * KiB + Math.floor(random() * 960 * KiB) : size(random);
    return { method: 'GET', path: `/mix?n=${length}&framing=${framing}${close}`, body: undefined, chunkedUpload: false, status: 200, expect: { kind: 'bytes', length }, abort };
  }
  if (r < 0.45) {
    const length = size(random);
    return { method: 'HEAD', path: `/mix?n=${length}&framing=${framing}${close}`, body: undefined, chunkedUpload: false, status: 200, expect: { kind: 'head', length }, abort: false };
  }
  if (r < 0.8) {
    const length = size(random);
    const offset = Math.floor(random() * (PATTERN_BYTES - length));
    return {
      method: r < 0.65 ? 'POST' : 'PUT',
      path: `/mix?offset=${offset}&framing=${framing}${close}`,
      body: PATTERN.subarray(offset, offset + length),
      chunkedUpload: random() < 0.5,
      status: 200,
      expect: { kind: 'echo', length },
      abort: false,
    };
  }
  const status = r < 0.87 ? 204 : 304;
  return { method: 'GET', path: `/mix?status=${status}${close}`, body: undefined, chunkedUpload: false, status, expect: { kind: 'empty' }, abort: false };
}

/** Why an answer is wrong, or undefined when it is right. */
function check(planned: Planned, status: number, headers: Record<string, string | string[] | undefined>, body: Buffer): string | undefined {
  if (status !== planned.status) return `status ${status}, expected ${planned.status}: ${body.subarray(0, 120).toString()}`;
  const { expect } = planned;
  switch (expect.kind) {
    case 'bytes':
      return body.equals(PATTERN.subarray(0, expect.length)) ? undefined : `body of ${body.length} bytes is not the ${expect.length} sent`;
    case 'head':
      if (body.length > 0) return `HEAD answer has a ${body.length}-byte body`;
      return headers['content-length'] === undefined || Number(headers['content-length']) === expect.length ? undefined : `HEAD content-length ${String(headers['content-length'])}`;
    case 'echo': {
      let echo: { received?: number; intact?: boolean } = {};
      try {
        echo = JSON.parse(body.toString()) as typeof echo;
      } catch {
        return `echo is not JSON: ${body.subarray(0, 120).toString()}`;
      }
      return echo.received === expect.length && echo.intact === true ? undefined : `upstream got ${echo.received} bytes (intact ${echo.intact}) of ${expect.length}`;
    }
    case 'empty':
      return body.length === 0 ? undefined : `${status} answer has a ${body.length}-byte body`;
  }
}

interface Endpoint {
  port: number;
  servername: string;
  host: string;
  ca: Buffer;
}

function h1Exchange(endpoint: Endpoint, agent: https.Agent, planned: Planned): Promise<Outcome> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { host: endpoint.host };
    if (planned.body) {
      if (planned.chunkedUpload) headers['transfer-encoding'] = 'chunked';
      else headers['content-length'] = planned.body.length;
    }
    let settled = false;
    const settle = (outcome: Outcome): void => {
      if (!settled) resolve(outcome);
      settled = true;
    };
    const req = https.request(
      { host: '127.0.0.1', port: endpoint.port, servername: endpoint.servername, ca: endpoint.ca, agent, method: planned.method, path: planned.path, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          if (planned.abort) {
            settle({ result: 'aborted' });
            req.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          const why = check(planned, res.statusCode!, res.headers, Buffer.concat(chunks));
          settle(why ? { result: 'failed', why } : { result: 'completed' });
        });
        res.on('error', (error) => settle({ result: 'failed', why: `response: ${error.message}` }));
      },
    );
    req.setTimeout(HUNG_MS, () => {
      settle({ result: 'hung', why: `no progress for ${HUNG_MS / 1000} s` });
      req.destroy();
    });
    req.on('error', (error) => settle({ result: 'failed', why: error.message }));
    writeBody(req, planned);
  });
}

function h2Exchange(endpoint: Endpoint, session: http2.ClientHttp2Session, planned: Planned): Promise<Outcome> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (outcome: Outcome): void => {
      if (!settled) resolve(outcome);
      settled = true;
    };
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({
        ':method': planned.method,
        ':path': planned.path,
        ':authority': endpoint.host,
        ...(planned.body && !planned.chunkedUpload ? { 'content-length': planned.body.length } : {}),
      });
    } catch (error) {
      settle({ result: 'failed', why: `request: ${(error as Error).message}` });
      return;
    }
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (head) => {
      status = Number(head[':status']);
      headers = head;
    });
    stream.on('data', (chunk: Buffer) => {
      if (planned.abort) {
        settle({ result: 'aborted' });
        stream.close(http2.constants.NGHTTP2_CANCEL);
        return;
      }
      chunks.push(chunk);
    });
    stream.on('end', () => {
      // A stream reset by the edge also ends: only a NO_ERROR close is a complete answer.
      stream.once('close', () => {
        if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) settle({ result: 'failed', why: `stream reset with code ${stream.rstCode}` });
        const why = check(planned, status, headers, Buffer.concat(chunks));
        settle(why ? { result: 'failed', why } : { result: 'completed' });
      });
    });
    stream.on('error', (error) => settle({ result: 'failed', why: error.message }));
    stream.setTimeout(HUNG_MS, () => {
      settle({ result: 'hung', why: `no progress for ${HUNG_MS / 1000} s` });
      stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    writeBody(stream, planned);
  });
}

/** The request body in three writes (so chunked uploads really are several chunks), or none. */
function writeBody(request: NodeJS.WritableStream, planned: Planned): void {
  const body = planned.body;
  if (!body || body.length === 0) {
    request.end();
    return;
  }
  const third = Math.ceil(body.length / 3);
  request.write(body.subarray(0, third));
  request.write(body.subarray(third, 2 * third));
  request.end(body.subarray(2 * third));
}

function record(tally: Tally, planned: Planned, outcome: Outcome): void {
  tally[outcome.result]++;
  if ((outcome.result === 'hung' || outcome.result === 'failed') && tally.examples.length < 10) {
    tally.examples.push(`${planned.method} ${planned.path}${planned.body ? ` (${planned.body.length}-byte ${planned.chunkedUpload ? 'chunked ' : ''}body)` : ''}: ${outcome.why}`);
  }
}

/** One HTTP/1.1 client: its own keep-alive agent (one connection, reused), `count` requests one after another. */
async function h1Client(endpoint: Endpoint, count: number, random: () => number, tally: Tally): Promise<void> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < count; i++) {
      const planned = plan(random);
      record(tally, planned, await h1Exchange(endpoint, agent, planned));
    }
  } finally {
    agent.destroy();
  }
}

/** One h2 client: one session for all its requests (a new one only when the old one died). */
async function h2Client(endpoint: Endpoint, count: number, random: () => number, tally: Tally): Promise<void> {
  const connect = (): http2.ClientHttp2Session => {
    const session = http2.connect(`https://127.0.0.1:${endpoint.port}`, { servername: endpoint.servername, ca: endpoint.ca, ALPNProtocols: ['h2'] });
    session.on('error', () => {});
    return session;
  };
  let session = connect();
  try {
    for (let i = 0; i < count; i++) {
      if (session.closed || session.destroyed) session = connect();
      const planned = plan(random);
      record(tally, planned, await h2Exchange(endpoint, session, planned));
    }
  } finally {
    session.close();
  }
}

/** All clients of one series at once, REQUESTS shared out between them; wall time included. */
async function runSeries(endpoints: Endpoint[], h2: boolean, seed: number): Promise<{ tally: Tally; seconds: number }> {
  const tally: Tally = { completed: 0, aborted: 0, hung: 0, failed: 0, examples: [] };
  const clients = H1_CLIENTS + (h2 ? H2_CLIENTS : 0);
  const started = Date.now();
  let reported = 0;
  const progress = setInterval(() => {
    const done = tally.completed + tally.aborted + tally.hung + tally.failed;
    if (done - reported >= REQUESTS / 10) {
      process.stderr.write(`${done}/${REQUESTS} requests, ${tally.hung} hung, ${tally.failed} failed\n`);
      reported = done;
    }
  }, 1000);
  await Promise.all(
    Array.from({ length: clients }, (_, index) => {
      const count = Math.floor(REQUESTS / clients) + (index < REQUESTS % clients ? 1 : 0);
      const endpoint = endpoints[index % endpoints.length]!;
      const random = seeded(seed + index);
      return index < H1_CLIENTS ? h1Client(endpoint, count, random, tally) : h2Client(endpoint, count, random, tally);
    }),
  );
  clearInterval(progress);
  return { tally, seconds: (Date.now() - started) / 1000 };
}

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const ca = fs.readFileSync(certs.caCert);
  const { port: enginePort, engine } = await startEngineProcess(certs, () => '{ workers: 2 }');
  const upstream = await startBenchUpstream(certs);
  const children = [engine, upstream.child];
  try {
    children.push(await startForwardAgent(certs, enginePort, upstream.http, 'ka'));
    children.push(await startForwardAgent(certs, enginePort, upstream.impatient, 'ka-impatient'));
    const tunnel = (label: string): Endpoint => ({ port: enginePort, servername: `${label}.t.localhost`, host: `${label}.t.localhost:${enginePort}`, ca });
    const series = {
      rivulet: await runSeries([tunnel('ka'), tunnel('ka-impatient')], true, 1),
      direct: await runSeries([{ port: upstream.https, servername: 'localhost', host: `localhost:${upstream.https}`, ca }], false, 1),
    };
    const row = (metric: string, unit: string, higherIsBetter: boolean, pick: (run: (typeof series)['rivulet']) => number): BenchRow => ({
      case: `${REQUESTS} mixed requests`,
      metric,
      unit,
      higherIsBetter,
      series: Object.fromEntries(Object.entries(series).map(([name, run]) => [name, summary([pick(run)])])),
    });
    const { tally } = series.rivulet;
    const result: ScenarioResult = {
      scenario: 'keepalive',
      title: 'Keep-alive torture: sequential mixed traffic on kept-alive connections',
      runs: 1,
      rows: [
        row('completed', 'requests', true, (run) => run.tally.completed),
        row('hung', 'requests', false, (run) => run.tally.hung),
        row('failed unexpectedly', 'requests', false, (run) => run.tally.failed),
        row('aborted by the client (on purpose)', 'requests', false, (run) => run.tally.aborted),
        row('throughput', 'req/s', true, (run) => (run.tally.completed + run.tally.aborted) / run.seconds),
      ],
      targets: [
        { target: 'keep-alive torture: 0 hung requests', measured: `${tally.hung} of ${REQUESTS}`, met: tally.hung === 0 },
        { target: 'keep-alive torture: 0 unexpected failures', measured: `${tally.failed} of ${REQUESTS}`, met: tally.failed === 0 },
      ],
      notes: [
        `${H1_CLIENTS} HTTP/1.1 clients (one kept-alive connection each) and ${H2_CLIENTS} h2 clients (one session each), half on an upstream that closes idle keep-alive connections after 20 ms; GET 35 %, HEAD 10 %, POST 20 %, PUT 15 %, 204/304 14 %, GETs aborted mid-body 3 %, Connection: close from the upstream 3 %; bodies 0 B–1 MiB, Content-Length or chunked, checked byte for byte. The direct series (HTTP/1.1 clients only) checks the generator itself.`,
        ...Object.entries(series).flatMap(([name, run]) => run.tally.examples.map((example) => `${name}: ${example}`)),
      ],
    };
    writeResult('keepalive', { ...result });
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

await main();
