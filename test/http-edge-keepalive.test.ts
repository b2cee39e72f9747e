import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';
import { workerOfStream } from '../src/dataplane/streams.js';
import { emptyTunnelProperties, type TunnelProperties } from '../src/protocol/messages.js';
import { serveForward } from './helpers/echo-agent.js';
import { edgeSession, h2Request, rawEdgeConnection, WireReader, type EdgeReply } from './helpers/edge-client.js';
import { startTestEngine, type TestEngine } from './helpers/engine.js';
import { mintToken, openControlChannel, type RawConnection } from './helpers/rstrm-agent.js';
import { listenUpstream, patternBytes, sha256, upstreamHandler, type SeenRequest } from './helpers/upstream-server.js';

/**
 * Requests on connections that clients keep and reuse, the way browsers and HTTP client libraries do:
 * sequential requests on one kept-alive HTTP/1.1 connection or one h2 session, large answers (more
 * than one TLS record) and request bodies, pipelined HTTP/1.1. Every request must be answered.
 */
const REQUEST_TIMEOUT_MS = 5000;
const ROUND = 50;

type Placement = 'same-worker' | 'relayed';

interface Setup {
  t: TestEngine;
  port: number;
  placement: { current: Placement };
  controls: RawConnection[];
  seen: SeenRequest[];
  servers: Array<http.Server | http2.Http2Server>;
}

/** An engine whose agent dials the affinity port of the asking worker (same-worker) or of the other one (relayed). */
async function setUp(workers: number): Promise<Setup> {
  let t: TestEngine | undefined;
  let portBase = 0;
  for (let attempt = 0; !t; attempt++) {
    portBase = 20_000 + Math.floor(Math.random() * 20_000);
    try {
      t = await startTestEngine({ dataplane: { workers, affinity: { enabled: true, port_base: portBase } } });
    } catch (error) {
      if (attempt >= 4) throw error;
    }
  }
  const port = t.engine.publicPort;
  const seen: SeenRequest[] = [];
  const h1 = http.createServer(upstreamHandler(seen));
  const h2c = http2.createServer(upstreamHandler(seen) as never);
  const h1Port = await listenUpstream(h1);
  const h2cPort = await listenUpstream(h2c as never);
  const placement = { current: 'same-worker' as Placement };
  const controls: RawConnection[] = [];
  const token = await mintToken();
  for (const [hostname, overrides, target] of [
    ['ka-h1', {}, h1Port],
    ['ka-h2c', { http_version: 'h2c' }, h2cPort],
  ] as Array<[string, Partial<TunnelProperties>, number]>) {
    const { agent: control } = await openControlChannel(port, t.ca, token);
    controls.push(control);
    control.send({ type: 'open_tunnel_req', request_id: hostname, tunnel_properties: { ...emptyTunnelProperties(), protocol: 'http', hostname, ...overrides } });
    const reply = await control.next('open_tunnel_rsp');
    assert.ok(!('error' in reply.result), JSON.stringify(reply.result));
    serveForward(
      control,
      port,
      t.ca,
      () => target,
      (request) => {
        const asking = workerOfStream(request.stream_id, workers)!;
        return portBase + (placement.current === 'same-worker' ? asking : (asking + 1) % workers);
      },
    );
  }
  return { t, port, placement, controls, seen, servers: [h1, h2c] };
}

async function tearDown(setup: Setup): Promise<void> {
  for (const control of setup.controls) control.close();
  for (const server of setup.servers) {
    if ('closeAllConnections' in server) server.closeAllConnections();
    server.close();
  }
  await setup.t.stop();
}

/** One HTTP/1.1 request on `agent` with a deadline; resolves with the reply and whether the socket was reused. */
function h1Request(
  setup: Setup,
  agent: https.Agent,
  hostname: string,
  options: { method: string; path: string; body?: Buffer },
): Promise<EdgeReply & { reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: setup.port, servername: hostname, ca: setup.t.ca, agent, method: options.method, path: options.path, headers: { host: hostname } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), reused: req.reusedSocket }));
        res.on('error', reject);
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`${options.method} ${options.path} got no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

function withDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} got no answer within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Request i of a round: GETs of 50,000-byte answers alternating with POSTs of 30,000-byte bodies. */
function requestOf(i: number): { method: string; path: string; body?: Buffer } {
  return i % 2 === 0 ? { method: 'GET', path: `/bytes?n=${50_000 + i}` } : { method: 'POST', path: `/echo?i=${i}`, body: patternBytes(30_000 + i) };
}

function assertAnswered(i: number, reply: EdgeReply): void {
  assert.equal(reply.status, 200, `request ${i}: ${reply.body.toString().slice(0, 200)}`);
  if (i % 2 === 0) {
    assert.equal(reply.body.length, 50_000 + i, `request ${i}: body length`);
    assert.equal(sha256(reply.body), reply.headers['x-sha256'], `request ${i}: body bytes`);
  } else {
    const echo = JSON.parse(reply.body.toString()) as { length: number; sha256: string };
    assert.deepEqual([echo.length, echo.sha256], [30_000 + i, sha256(patternBytes(30_000 + i))], `request ${i}: upstream got the whole body`);
  }
}

async function sequentialRound(setup: Setup, downstream: 'h1' | 'h2', hostname: string): Promise<void> {
  const seenBefore = setup.seen.length;
  const relayedBefore = setup.t.engine.counters.totals().streams_relayed;
  if (downstream === 'h1') {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      let reused = 0;
      for (let i = 0; i < ROUND; i++) {
        const reply = await h1Request(setup, agent, hostname, requestOf(i));
        assertAnswered(i, reply);
        if (reply.reused) reused++;
      }
      assert.equal(reused, ROUND - 1, 'every request after the first reused the one connection');
    } finally {
      agent.destroy();
    }
  } else {
    const session = edgeSession(setup.port, setup.t.ca, hostname);
    try {
      for (let i = 0; i < ROUND; i++) {
        const { method, path, body } = requestOf(i);
        assertAnswered(i, await withDeadline(h2Request(session, hostname, { method, path, body }), `${method} ${path}`));
      }
    } finally {
      session.close();
    }
  }
  assert.equal(setup.seen.length - seenBefore, ROUND, 'the upstream saw every request once');
  const relayed = setup.t.engine.counters.totals().streams_relayed - relayedBefore;
  if (setup.placement.current === 'same-worker') assert.equal(relayed, 0, 'no stream relayed');
}

/** Mixed sizes, both directions: answers of 0 B to 200 KB, request bodies of 10 B to 70 KB. */
const PIPELINED: Array<{ method: string; path: string; body?: Buffer }> = [
  { method: 'GET', path: '/bytes?n=100' },
  { method: 'GET', path: '/bytes?n=50000' },
  { method: 'POST', path: '/echo?p=2', body: patternBytes(10) },
  { method: 'GET', path: '/bytes?n=0' },
  { method: 'POST', path: '/echo?p=4', body: patternBytes(70_000) },
  { method: 'GET', path: '/bytes?n=200000' },
  { method: 'HEAD', path: '/bytes?n=5000' },
  { method: 'GET', path: '/bytes?n=17000' },
  { method: 'POST', path: '/echo?p=8', body: patternBytes(20_000) },
  { method: 'GET', path: '/bytes?n=1' },
];

/** Writes every request of PIPELINED in one go on one TLS connection and reads the answers off the wire. */
async function pipelined(setup: Setup, hostname: string): Promise<Array<{ status: number; headers: Map<string, string>; body: Buffer }>> {
  const socket = await rawEdgeConnection(setup.port, setup.t.ca, hostname);
  try {
    const wire = PIPELINED.map(({ method, path, body }) =>
      Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\nhost: ${hostname}\r\ncontent-length: ${body?.length ?? 0}\r\n\r\n`), body ?? Buffer.alloc(0)]),
    );
    socket.write(Buffer.concat(wire));
    const reader = new WireReader(socket);
    const answers = [];
    for (const request of PIPELINED) answers.push(await withDeadline(reader.response(request.method === 'HEAD'), `pipelined ${request.method} ${request.path}`));
    return answers;
  } finally {
    socket.destroy();
  }
}

for (const workers of [1, 2]) {
  describe(`kept-alive downstream connections, ${workers} worker(s)`, () => {
    let setup: Setup;
    before(async () => {
      setup = await setUp(workers);
    });
    after(() => tearDown(setup));

    const placements: Placement[] = workers === 1 ? ['same-worker'] : ['same-worker', 'relayed'];
    for (const placement of placements) {
      for (const upstream of ['h1', 'h2c'] as const) {
        for (const downstream of ['h1', 'h2'] as const) {
          test(`${ROUND} sequential GET 50 KB / POST 30 KB, ${downstream} downstream, ${upstream} upstream, ${placement}`, async () => {
            setup.placement.current = placement;
            await sequentialRound(setup, downstream, `ka-${upstream}.t.localhost`);
          });
        }
        test(`10 pipelined HTTP/1.1 requests of mixed sizes on one connection get 10 answers in order, ${upstream} upstream, ${placement}`, async () => {
          setup.placement.current = placement;
          const answers = await pipelined(setup, `ka-${upstream}.t.localhost`);
          for (const [i, request] of PIPELINED.entries()) {
            const answer = answers[i]!;
            assert.equal(answer.status, 200, `answer ${i}`);
            if (request.method === 'POST') {
              const echo = JSON.parse(answer.body.toString()) as { url: string; length: number };
              assert.deepEqual([echo.url, echo.length], [request.path, request.body!.length], `answer ${i} is to request ${i}`);
            } else if (request.method === 'GET') {
              assert.equal(answer.body.length, Number(request.path.split('=')[1]), `answer ${i} is to request ${i}`);
              assert.equal(sha256(answer.body), answer.headers.get('x-sha256'), `answer ${i}: body bytes`);
            }
          }
        });
      }
    }
  });
}
