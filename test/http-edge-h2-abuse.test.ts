import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, test, type TestContext } from 'node:test';
import { eachProxyConnReq, openProxyConnection, serveForward } from './helpers/echo-agent.js';
import { edgeSession, h2Request } from './helpers/edge-client.js';
import { sleep, startTestEngine, type TestEngine } from './helpers/engine.js';
import {
  continuationFrame,
  dataFrame,
  FIRST_DYNAMIC_INDEX,
  FrameType,
  goawayOf,
  headersFrame,
  indexedField,
  literalField,
  pingFrame,
  RawH2Connection,
  requestBlock,
  rstCodeOf,
  rstStreamFrame,
  Setting,
  settingsFrame,
  StaticIndex,
  type Goaway,
} from './helpers/h2-frames.js';
import { openHttpTunnel, type RawConnection } from './helpers/rstrm-agent.js';
import { listenUpstream, upstreamHandler, type SeenRequest } from './helpers/upstream-server.js';

/**
 * h2 clients that abuse the protocol against the HTTP edge: what each costs the agent and the upstream,
 * and how the edge ends the abusive connection. The flood tests speak raw frames (h2-frames.ts); the
 * engine runs in this process, so its memory is this process's.
 */
const HOST = 'resets.t.localhost';
/** The tunnel the raw-frame attacks aim at; its agent answers at once. */
const ABUSE_HOST = 'abuse.t.localhost';
/**
 * The tunnel of the too-many-streams attacks: the streams the edge asks for them arrive after the
 * attacker is gone and wait in the pool, where each would carry one request of a later rapid reset.
 */
const CROWD_HOST = 'crowd.t.localhost';
/** How long the test agent takes to answer a ProxyConnReq, as a remote agent would. */
const AGENT_DELAY_MS = 300;
let t: TestEngine;
let port: number;
let control: RawConnection;
let abuseControl: RawConnection;
let crowdControl: RawConnection;
let upstream: http.Server;
let bystander: http2.ClientHttp2Session;
let proxyConnReqs = 0;
/** Streams the edge asked of the agents of the raw-frame attacks' tunnels. */
let attackStreams = 0;
const seen: SeenRequest[] = [];
/** Requests of the attacks (their paths start with /attack) that reached the upstream. */
const attackRequests = (): number => seen.filter((request) => request.url.startsWith('/attack')).length;

before(async () => {
  t = await startTestEngine({ dataplane: { workers: 1 } });
  port = t.engine.publicPort;
  upstream = http.createServer(upstreamHandler(seen));
  const upstreamPort = await listenUpstream(upstream);
  const countedUpstream = (): number => {
    attackStreams++;
    return upstreamPort;
  };
  abuseControl = await openHttpTunnel(port, t.ca, 'abuse');
  serveForward(abuseControl, port, t.ca, countedUpstream);
  crowdControl = await openHttpTunnel(port, t.ca, 'crowd');
  serveForward(crowdControl, port, t.ca, countedUpstream);
  bystander = edgeSession(port, t.ca, ABUSE_HOST);
  assert.equal((await h2Request(bystander, ABUSE_HOST, { path: '/echo' })).status, 200);
  control = await openHttpTunnel(port, t.ca, 'resets');
  eachProxyConnReq(control, (request) => {
    proxyConnReqs++;
    setTimeout(() => {
      const target = net.connect({ host: '127.0.0.1', port: upstreamPort });
      target.on('error', () => {});
      void openProxyConnection(control, request, port, t.ca, { zeroRtt: true, order: 'js' })
        .then(({ socket }) => {
          socket.pipe(target);
          target.pipe(socket);
          socket.once('close', () => target.destroy());
          target.once('close', () => socket.destroy());
        })
        .catch(() => target.destroy());
    }, AGENT_DELAY_MS);
  });
});
after(async () => {
  bystander.close();
  abuseControl.close();
  crowdControl.close();
  control.close();
  upstream.closeAllConnections();
  upstream.close();
  await t.stop();
});

test('rapid reset: 500 requests, each cancelled once the edge has it, ten live at a time, cost the agent a few streams per round trip, not one per request', async () => {
  const session = edgeSession(port, t.ca, HOST);
  session.on('error', () => {});
  try {
    const before = proxyConnReqs;
    const started = Date.now();
    for (let request = 0; request < 500; request++) {
      const stream = session.request({ ':method': 'GET', ':path': `/echo?reset=${request}`, ':authority': HOST });
      stream.on('error', () => {});
      setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 5);
      if (request % 10 === 9) await sleep(20); // at most ten of them live at a time
    }
    const roundTrips = Math.ceil((Date.now() - started) / AGENT_DELAY_MS) + 1;
    await sleep(AGENT_DELAY_MS * 3);
    const opened = proxyConnReqs - before;
    // A request that finds no idle stream asks for one, unless one asked for is still on its way; so at
    // most the ten live requests wait on opens at a time, and each open takes an agent round trip. (Each
    // stream that arrives is taken by a live request and dies with it when that request is reset: an
    // HTTP/1.1 exchange cut in the middle cannot be reused.) How many rounds fit in the loop depends on
    // how busy the machine is, so the bound is counted in rounds, and stays far below one per request.
    assert.ok(opened <= 10 * roundTrips && opened < 250, `${opened} streams asked of the agent for 500 cancelled requests in ${roundTrips} agent round trips`);
    // The tunnel still serves, on the streams those requests left behind.
    const reply = await h2Request(session, HOST, { path: '/echo' });
    assert.equal(reply.status, 200, reply.body.toString());
  } finally {
    session.close();
  }
});

/** How long the edge may take to cut an abusive connection. */
const CUT_DEADLINE_MS = 2000;
/** How long a well-behaved client's request may take while another connection attacks. */
const BYSTANDER_DEADLINE_MS = 1000;
/** What an attack may add to the process's resident memory (the engine's workers share it). */
const RSS_GROWTH_LIMIT = 48 * 1024 * 1024;

interface AttackOutcome {
  connection: RawH2Connection;
  /** From the first byte of the attack to the close of its socket (Infinity: still open at the deadline). */
  closedAfterMs: number;
  goaways: Goaway[];
  rssGrowth: number;
  /** CPU time of this process (attacker, engine and its workers) until the close or the deadline. */
  cpuMs: number;
  /** Requests of the attack that reached the upstream. */
  upstreamRequests: number;
  /** Streams the edge asked of the agent meanwhile. */
  agentStreams: number;
  /** How long a well-behaved client's request took during the attack. */
  bystanderMs: number;
}

/**
 * Sends `wire` on a fresh raw h2 connection in one write (without reading meanwhile, if `read` is
 * false) and waits, up to CUT_DEADLINE_MS, for the edge to close it. A well-behaved client on another
 * connection makes a request during the attack and another after it; both must be answered promptly.
 */
async function attack(wire: Buffer, options: { host?: string; read?: boolean; acknowledge?: boolean } = {}): Promise<AttackOutcome> {
  const connection = await RawH2Connection.open(port, t.ca, options.host ?? ABUSE_HOST, { acknowledge: options.acknowledge ?? true });
  const upstreamBefore = attackRequests();
  const agentStreamsBefore = attackStreams;
  const rssBefore = process.memoryUsage().rss;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  if (options.read === false) connection.socket.pause();
  const during = bystanderRequest();
  // The edge may cut the connection before it took every byte.
  await connection.write(wire).catch(() => undefined);
  connection.socket.resume();
  const closed = await Promise.race([connection.closed.then(() => true), sleep(CUT_DEADLINE_MS).then(() => false)]);
  const closedAfterMs = closed ? performance.now() - started : Infinity;
  const cpu = process.cpuUsage(cpuBefore);
  const rssGrowth = process.memoryUsage().rss - rssBefore;
  const bystanderMs = await during;
  await bystanderRequest();
  await sleep(100); // a request the edge forwarded would have reached the upstream by now
  connection.destroy();
  const goaways = connection.frames.filter((frame) => frame.type === FrameType.GOAWAY).map(goawayOf);
  return {
    connection,
    closedAfterMs,
    goaways,
    rssGrowth,
    cpuMs: (cpu.user + cpu.system) / 1000,
    upstreamRequests: attackRequests() - upstreamBefore,
    agentStreams: attackStreams - agentStreamsBefore,
    bystanderMs,
  };
}

/** A well-behaved client's request on its own connection; how long it took. */
async function bystanderRequest(): Promise<number> {
  const started = performance.now();
  const reply = await h2Request(bystander, ABUSE_HOST, { path: '/echo' });
  const elapsed = performance.now() - started;
  assert.equal(reply.status, 200, reply.body.toString());
  assert.ok(elapsed < BYSTANDER_DEADLINE_MS, `a well-behaved client waited ${Math.round(elapsed)} ms during an attack`);
  return elapsed;
}

/** The figures of an attack, in the test's output. */
function report(context: TestContext, outcome: AttackOutcome, extra: Record<string, number> = {}): void {
  const figures = {
    closedAfterMs: Math.round(outcome.closedAfterMs),
    goaways: outcome.goaways.map((goaway) => `${goaway.code}@${goaway.lastStreamId}`).join(',') || 'none',
    rssGrowthMiB: (outcome.rssGrowth / 2 ** 20).toFixed(1),
    cpuMs: Math.round(outcome.cpuMs),
    upstreamRequests: outcome.upstreamRequests,
    agentStreams: outcome.agentStreams,
    bystanderMs: Math.round(outcome.bystanderMs),
    ...extra,
  };
  context.diagnostic(Object.entries(figures).map(([name, value]) => `${name}=${value}`).join(' '));
}

function assertBounded(outcome: AttackOutcome, what: string): void {
  assert.ok(outcome.closedAfterMs < CUT_DEADLINE_MS, `${what}: the connection was still open after ${CUT_DEADLINE_MS} ms`);
  assert.ok(outcome.rssGrowth < RSS_GROWTH_LIMIT, `${what}: resident memory grew by ${(outcome.rssGrowth / 2 ** 20).toFixed(1)} MiB`);
}

/**
 * The edge said why it closed: every GOAWAY has one of `codes`, and there is one unless `mayBeLost`
 * (Node destroys the session from inside its read there, and its GOAWAY is lost when a write is under way).
 */
function assertGoaway(outcome: AttackOutcome, codes: number[], { mayBeLost = false } = {}): void {
  if (!mayBeLost) assert.ok(outcome.goaways.length > 0, 'no GOAWAY before the close');
  for (const goaway of outcome.goaways) assert.ok(codes.includes(goaway.code), `GOAWAY with code ${goaway.code}`);
}

/** The edge's flood budgets (h2-flood-guard.ts): frames or early-closed streams it takes at once. */
const FLOOD_BURST = 500;
/** Past its budget the edge still handles what is left of the read under way (64 KiB at most). */
const framesInOneRead = (frame: Buffer): number => Math.ceil(65536 / frame.length);

const times = (count: number, make: (i: number) => Buffer): Buffer => Buffer.concat(Array.from({ length: count }, (_, i) => make(i)));

/** The header block of a request of the attack. */
const attackBlock = (path: string, method: number = StaticIndex.METHOD_GET, host = ABUSE_HOST): Buffer => requestBlock(host, `/attack/${path}`, method);

/** A whole GET of the attack (no body) on stream `id`. */
const attackRequest = (id: number, path: string, host = ABUSE_HOST): Buffer =>
  headersFrame(id, attackBlock(path, StaticIndex.METHOD_GET, host), { endStream: true, endHeaders: true });

/** The id of a client's `i`th stream. */
const streamId = (i: number): number => 1 + 2 * i;

test('SETTINGS flood: 5,000 SETTINGS frames, acknowledgements unread, get GOAWAY ENHANCE_YOUR_CALM', async (context) => {
  // Four entries a frame: fewer than 1,000 frames a TLS record, so nghttp2's own limit on queued
  // acknowledgements (GOAWAY INTERNAL_ERROR past 1,000 in one read) does not trip first.
  const settings = settingsFrame(Array.from({ length: 4 }, () => [Setting.INITIAL_WINDOW_SIZE, 65535]));
  const outcome = await attack(times(5000, () => settings), { read: false });
  const acknowledged = outcome.connection.count(FrameType.SETTINGS) - 1; // the server's own SETTINGS
  report(context, outcome, { acknowledged });
  assertBounded(outcome, 'SETTINGS flood');
  // On Node 24 the connection is cut at the same budget, but its GOAWAY does not get out before the close.
  assertGoaway(outcome, [http2.constants.NGHTTP2_ENHANCE_YOUR_CALM], { mayBeLost: !process.versions.node.startsWith('20.') });
  assert.ok(acknowledged <= FLOOD_BURST + framesInOneRead(settings), `the edge acknowledged ${acknowledged} SETTINGS frames before the cut`);
  assert.equal(outcome.upstreamRequests, 0);
});

test('PING flood: 20,000 PING frames get GOAWAY ENHANCE_YOUR_CALM', async (context) => {
  const outcome = await attack(times(20_000, (i) => pingFrame(BigInt(i))));
  const answered = outcome.connection.count(FrameType.PING);
  report(context, outcome, { answered });
  assertBounded(outcome, 'PING flood');
  assertGoaway(outcome, [http2.constants.NGHTTP2_ENHANCE_YOUR_CALM]);
  assert.ok(answered <= FLOOD_BURST + framesInOneRead(pingFrame(0n)), `the edge answered ${answered} PINGs before the cut`);
  assert.equal(outcome.upstreamRequests, 0);
});

test("empty DATA flood: 20,000 empty DATA frames on an open request close the connection (Node's 1,000 invalid frames)", async (context) => {
  const open = headersFrame(1, attackBlock('empty-data', StaticIndex.METHOD_POST), { endStream: false, endHeaders: true });
  const outcome = await attack(Buffer.concat([open, times(20_000, () => dataFrame(1, Buffer.alloc(0), false))]));
  report(context, outcome);
  assertBounded(outcome, 'empty DATA flood');
  assertGoaway(outcome, [http2.constants.NGHTTP2_INTERNAL_ERROR], { mayBeLost: true });
  assert.ok(outcome.upstreamRequests <= 1, `${outcome.upstreamRequests} requests reached the upstream`);
});

test('CONTINUATION flood: a header block that never ends closes the connection at its ninth CONTINUATION frame', async (context) => {
  const start = headersFrame(1, attackBlock('continuation'), { endStream: true, endHeaders: false });
  const filler = times(10_000, (i) => continuationFrame(1, literalField(`x-filler-${i}`, 'f'.repeat(64)), false));
  const outcome = await attack(Buffer.concat([start, filler]));
  report(context, outcome);
  assertBounded(outcome, 'CONTINUATION flood');
  assertGoaway(outcome, [http2.constants.NGHTTP2_INTERNAL_ERROR], { mayBeLost: true });
  assert.equal(outcome.upstreamRequests, 0);
});

test('HPACK bomb: a 4 KB table entry referenced 16,000 times a request (64 MB decoded) is refused per stream; the connection still serves', async (context) => {
  const entry = literalField('x-bomb', 'b'.repeat(4000), true);
  const references = times(16_000, () => indexedField(FIRST_DYNAMIC_INDEX));
  const bombs = times(100, (i) => {
    // The first block inserts the entry (its references fill what the frame has left).
    const block = Buffer.concat(i === 0 ? [attackBlock('hpack'), entry, references.subarray(0, 12_000)] : [attackBlock('hpack'), references]);
    return headersFrame(streamId(i), block, { endStream: true, endHeaders: true });
  });
  const AFTER_BOMBS = streamId(100);
  const request = headersFrame(AFTER_BOMBS, requestBlock(ABUSE_HOST, '/echo?after-bombs'), { endStream: true, endHeaders: true });
  const outcome = await attack(Buffer.concat([bombs, request]));
  report(context, outcome, { resets: outcome.connection.count(FrameType.RST_STREAM) });
  // Node stops each header list at the advertised 64 KiB and resets its stream.
  assert.equal(outcome.closedAfterMs, Infinity, 'the edge closed the connection');
  assert.ok(outcome.rssGrowth < RSS_GROWTH_LIMIT, `resident memory grew by ${(outcome.rssGrowth / 2 ** 20).toFixed(1)} MiB`);
  const resets = outcome.connection.frames.filter((frame) => frame.type === FrameType.RST_STREAM);
  assert.deepEqual(
    resets.map((reset) => reset.streamId),
    Array.from({ length: 100 }, (_, i) => streamId(i)),
  );
  for (const reset of resets) assert.notEqual(rstCodeOf(reset), http2.constants.NGHTTP2_NO_ERROR);
  assert.equal(outcome.upstreamRequests, 0);
  // The dynamic table stayed in step: the request after the bombs is answered.
  const answered = outcome.connection.frames.filter((frame) => frame.type === FrameType.HEADERS).map((frame) => frame.streamId);
  assert.deepEqual(answered, [AFTER_BOMBS]);
});

test('more streams than advertised: 150 at once after the SETTINGS acknowledgement close the connection', async (context) => {
  const outcome = await attack(
    times(150, (i) => attackRequest(streamId(i), `streams?i=${i}`, CROWD_HOST)),
    { host: CROWD_HOST },
  );
  report(context, outcome);
  assertBounded(outcome, 'too many streams');
  // nghttp2 takes the 101st stream for a connection error; Node destroys the session from inside its read.
  assertGoaway(outcome, [http2.constants.NGHTTP2_PROTOCOL_ERROR, http2.constants.NGHTTP2_INTERNAL_ERROR], { mayBeLost: true });
  assert.ok(outcome.upstreamRequests <= 100, `${outcome.upstreamRequests} requests reached the upstream`);
});

test('more streams than advertised before the SETTINGS acknowledgement: REFUSED_STREAM for each one past 100, the connection stays', async (context) => {
  const outcome = await attack(
    times(150, (i) => attackRequest(streamId(i), `streams?i=${i}`, CROWD_HOST)),
    { host: CROWD_HOST, acknowledge: false },
  );
  report(context, outcome, { refused: outcome.connection.count(FrameType.RST_STREAM) });
  assert.equal(outcome.closedAfterMs, Infinity, 'the edge closed the connection');
  const refused = outcome.connection.frames.filter((frame) => frame.type === FrameType.RST_STREAM);
  assert.deepEqual(
    refused.map((frame) => [frame.streamId, rstCodeOf(frame)]),
    Array.from({ length: 50 }, (_, i) => [streamId(100 + i), http2.constants.NGHTTP2_REFUSED_STREAM]),
  );
  assert.equal(outcome.upstreamRequests, 100);
});

test('rapid reset with raw frames: 20,000 HEADERS + RST_STREAM pairs get GOAWAY ENHANCE_YOUR_CALM and cost the upstream a few requests', async (context) => {
  const outcome = await attack(
    times(20_000, (i) => Buffer.concat([attackRequest(streamId(i), `reset?i=${i}`), rstStreamFrame(streamId(i), http2.constants.NGHTTP2_CANCEL)])),
  );
  const streams = outcome.goaways.length > 0 ? (outcome.goaways[0]!.lastStreamId + 1) / 2 : 0;
  report(context, outcome, { streams });
  assertBounded(outcome, 'rapid reset');
  // On Node 20 the edge's budget cuts it before nghttp2's own limit (GOAWAY INTERNAL_ERROR after 1,000
  // resets, the connection left open); Node 24's nghttp2 closes it itself first (INTERNAL_ERROR, ~200 streams).
  assertGoaway(outcome, [http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, http2.constants.NGHTTP2_INTERNAL_ERROR]);
  assert.ok(streams < 1000, `the edge took ${streams} streams before the cut`);
  // A request that finds an idle upstream stream is sent before its reset is read; the others wait for
  // a stream and leave first.
  assert.ok(outcome.upstreamRequests <= 10, `${outcome.upstreamRequests} requests reached the upstream`);
  assert.ok(outcome.agentStreams <= 10, `${outcome.agentStreams} streams asked of the agent`);
});
