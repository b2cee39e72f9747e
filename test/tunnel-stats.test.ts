import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { TunnelStatsReader, TunnelStatsWriter, createTunnelTables } from '../src/threads/tunnel-stats.js';
import type { TunnelStatsJson } from '../src/api/traffic-stats.js';
import { apiRequest } from './helpers/api-client.js';
import { edgeRequest, edgeSession, h2Request } from './helpers/edge-client.js';
import { startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { startForward } from './helpers/forward.js';
import type { RunningCli } from './helpers/process.js';
import { mintToken } from './helpers/rstrm-agent.js';
import { listenUpstream, upstreamHandler, type SeenRequest } from './helpers/upstream-server.js';

/**
 * Per-tunnel traffic (docs/engine-api.md#tunnel-traffic): counted by every worker in one shared row per
 * tunnel, read by `GET /rivulet/v1/tunnels/stats`.
 */

describe('the shared per-tunnel rows', () => {
  test('two threads adding to the same rows: every addition counted, rows apart, a cleared row reads zero', async () => {
    const tables = createTunnelTables();
    const ROUNDS = 20_000;
    // Another thread with the module as a worker loads it, adding to rows 7 and 8.
    const source = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(${JSON.stringify(new URL('../src/threads/tunnel-stats.js', import.meta.url).href)}).then(({ TunnelStatsWriter }) => {
        const writer = new TunnelStatsWriter(workerData);
        for (let i = 0; i < ${ROUNDS}; i++) { writer.response(7, 200); writer.response(7, 503); writer.bytes(7, 3, 5); writer.response(8, 404); }
        parentPort.postMessage('done');
      });
    `;
    const run = (): Promise<void> =>
      new Promise((resolve, reject) => {
        const worker = new Worker(source, { eval: true, workerData: tables.tunnelStats });
        worker.once('message', () => resolve());
        worker.once('error', reject);
      });
    const here = new TunnelStatsWriter(tables.tunnelStats);
    await Promise.all([run(), run(), (async () => {
      for (let i = 0; i < ROUNDS; i++) here.response(7, 101);
    })()]);
    const reader = new TunnelStatsReader(tables.tunnelStats);
    const seven = reader.read(7);
    assert.deepEqual(
      [seven.responses_1xx, seven.responses_2xx, seven.responses_3xx, seven.responses_4xx, seven.responses_5xx, seven.bytes_in, seven.bytes_out],
      [ROUNDS, 2 * ROUNDS, 0, 0, 2 * ROUNDS, 6 * ROUNDS, 10 * ROUNDS],
    );
    assert.ok(Math.abs(seven.last_activity_ms - Date.now()) < 60_000);
    assert.equal(reader.read(8).responses_4xx, 2 * ROUNDS);
    assert.equal(reader.read(6).responses_2xx + reader.read(9).responses_4xx, 0, 'neighbouring rows untouched');
    reader.clear(7);
    assert.deepEqual(Object.values(reader.read(7)), Array(8).fill(0));
  });
});

describe('GET /rivulet/v1/tunnels/stats (2 workers)', () => {
  let t: TestEngine;
  let token: string;
  let upstream: http.Server;
  let echo: net.Server;
  const seen: SeenRequest[] = [];
  const agents: RunningCli[] = [];
  /** One connection for every stats request, kept alive, as a dashboard polling it keeps one. */
  const keptAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });

  before(async () => {
    t = await startTestEngine({ dataplane: { workers: 2 } });
    token = await mintToken();
    upstream = http.createServer(upstreamHandler(seen));
    await listenUpstream(upstream);
    echo = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    keptAlive.destroy();
    for (const agent of agents) {
      agent.child.kill('SIGTERM');
      await agent.exited;
    }
    upstream.closeAllConnections();
    upstream.close();
    echo.close();
    await t.stop();
  });

  const port = (): number => t.engine.publicPort;

  /** `rivulet forward` to `target`; its tunnel id. */
  async function forward(target: net.Server, flags: string[]): Promise<string> {
    const agent = await startForward(t, token, (target.address() as net.AddressInfo).port, flags);
    agents.push(agent);
    return agent.tunnelId;
  }

  /** The stats of tunnel `id` once `settled` holds for them (figures land when a response or stream ends), or after 5 s. */
  async function statsOnce(id: string, settled: (tunnel: TunnelStatsJson) => boolean): Promise<{ all: Map<string, TunnelStatsJson>; tunnel: TunnelStatsJson }> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const all = await stats();
      const tunnel = all.get(id)!;
      if (settled(tunnel) || Date.now() > deadline) return { all, tunnel };
    }
  }

  async function stats(): Promise<Map<string, TunnelStatsJson>> {
    const reply = await apiRequest(port(), t.ca, '/rivulet/v1/tunnels/stats', { token, agent: keptAlive });
    assert.equal(reply.status, 200, reply.text);
    const body = reply.json() as { time: string; tunnels: TunnelStatsJson[] };
    assert.ok(Math.abs(Date.parse(body.time) - Date.now()) < 60_000);
    return new Map(body.tunnels.map((tunnel) => [tunnel.id, tunnel]));
  }

  test('HTTP: every response counted once by status class, over kept-alive h1, fresh h1 and h2 connections', async () => {
    const id = await forward(upstream, ['--host', 'counted']);
    const guarded = await forward(upstream, ['--host', 'guarded', '--token-auth']);
    const before = await stats();
    assert.deepEqual(before.get(id)!.requests, { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 });
    assert.equal(before.get(id)!.last_activity, null);
    const body = crypto.randomBytes(10_000);
    const keptAlive = new https.Agent({ keepAlive: true, maxSockets: 4 });
    const session = edgeSession(port(), t.ca, 'counted.t.localhost');
    try {
      const replies = await Promise.all([
        ...Array.from({ length: 30 }, () => edgeRequest(port(), t.ca, 'counted.t.localhost', { path: '/echo', method: 'POST', body, agent: keptAlive })),
        ...Array.from({ length: 10 }, () => edgeRequest(port(), t.ca, 'counted.t.localhost', { path: '/echo', agent: new https.Agent() })),
        ...Array.from({ length: 20 }, () => h2Request(session, 'counted.t.localhost', { path: '/bytes?n=5000' })),
        ...Array.from({ length: 7 }, () => edgeRequest(port(), t.ca, 'guarded.t.localhost', { path: '/echo', agent: keptAlive })),
      ]);
      assert.deepEqual(replies.map((reply) => reply.status), [...Array(60).fill(200), ...Array(7).fill(401)]);
    } finally {
      keptAlive.destroy();
      session.close();
    }
    // Responses are counted when they end, which the client may see a moment before the edge does;
    // bytes of streams still open (pooled) within a second.
    const bodies = { in: 30 * body.length, out: 20 * 5000 };
    const { all, tunnel } = await statsOnce(id, (figures) => figures.requests['2xx'] >= 60 && figures.bytes_in > bodies.in && figures.bytes_out > bodies.out);
    assert.deepEqual(tunnel.requests, { '1xx': 0, '2xx': 60, '3xx': 0, '4xx': 0, '5xx': 0 });
    assert.deepEqual(all.get(guarded)!.requests, { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 7, '5xx': 0 });
    // Heads and framing on top of the bodies: bounded, not exact (the edge rewrites request heads).
    assert.ok(tunnel.bytes_in > bodies.in && tunnel.bytes_in < bodies.in + 60 * 2048, `${tunnel.bytes_in} bytes in`);
    assert.ok(tunnel.bytes_out > bodies.out && tunnel.bytes_out < bodies.out + 60 * 2048 + 40 * 1000, `${tunnel.bytes_out} bytes out`);
    assert.ok(tunnel.last_activity !== null && Math.abs(Date.parse(tunnel.last_activity) - Date.now()) < 60_000);
    assert.ok(tunnel.streams >= 1, `${tunnel.streams} streams open (pooled)`);
  });

  test('TLS: bytes in and out exactly what the clients sent and got, whichever worker the agent reached (relayed streams too)', async () => {
    const id = await forward(echo, ['--tls', '--host', 'bytes']);
    const relayedBefore = t.engine.counters.totals().streams_relayed;
    const SIZES = [1, 1000, 65_536, 300_000, 17, 4096, 100_000, 2, 50_000, 12_345];
    for (const size of SIZES) {
      const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const connecting = tls.connect({ host: '127.0.0.1', port: port(), servername: 'bytes.t.localhost', ca: t.ca });
        connecting.once('secureConnect', () => resolve(connecting));
        connecting.once('error', reject);
      });
      const payload = crypto.randomBytes(size);
      let received = 0;
      const echoed = new Promise<void>((resolve) =>
        socket.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received >= size) resolve();
        }),
      );
      socket.write(payload);
      await echoed;
      const closed = new Promise((resolve) => socket.once('close', resolve));
      socket.end();
      await closed;
    }
    const total = SIZES.reduce((sum, size) => sum + size, 0);
    // Bytes are counted when a stream closes (and once a second while it lives).
    const { tunnel } = await statsOnce(id, (figures) => figures.bytes_in >= total && figures.bytes_out >= total && figures.streams === 0);
    assert.deepEqual([tunnel.bytes_in, tunnel.bytes_out, tunnel.streams], [total, total, 0]);
    assert.deepEqual(tunnel.requests, { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 }, 'a TLS tunnel answers no HTTP');
    assert.ok(t.engine.counters.totals().streams_relayed > relayedBefore, 'some streams were relayed between the workers');
  });

  /**
   * `GET /rivulet/v1/stats/stream` with the token in the query (as a browser's EventSource sends it), on
   * the kept-alive connection the stats polls used, as a page that polled and then subscribes would;
   * events as they arrive.
   */
  function watchStats(): { events: Array<{ type: string; data: { time: string; tunnels: TunnelStatsJson[]; removed?: string[] } }>; reused: () => boolean; stop: () => void } {
    const events: Array<{ type: string; data: { time: string; tunnels: TunnelStatsJson[]; removed?: string[] } }> = [];
    const req = https.get(
      { host: '127.0.0.1', port: port(), servername: 'localhost', ca: t.ca, path: `/rivulet/v1/stats/stream?rstream.token=${encodeURIComponent(token)}`, headers: { host: 'localhost' }, agent: keptAlive },
      (res) => {
        assert.equal(res.headers['content-type'], 'text/event-stream');
        let pending = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          pending += chunk;
          for (let end = pending.indexOf('\n\n'); end >= 0; end = pending.indexOf('\n\n')) {
            const lines = pending.slice(0, end).split('\n');
            pending = pending.slice(end + 2);
            const type = lines.find((line) => line.startsWith('event: '))?.slice(7) ?? 'message';
            const data = lines.find((line) => line.startsWith('data: '));
            if (data) events.push({ type, data: JSON.parse(data.slice(6)) });
          }
        });
      },
    );
    req.on('error', () => {});
    return { events, reused: () => req.reusedSocket, stop: () => req.destroy() };
  }

  test('the stats stream: every tunnel once, then each second the tunnels whose figures moved, and those gone', async () => {
    const agent = await startForward(t, token, (upstream.address() as net.AddressInfo).port, ['--host', 'streamed']);
    const quiet = await forward(upstream, ['--host', 'quiet']);
    await stats(); // the page polled first: its connection is kept alive for the stream
    const watch = watchStats();
    const visitor = new https.Agent({ keepAlive: true, maxSockets: 2 });
    try {
      await waitFor(() => watch.events.length >= 1, 10_000);
      assert.ok(watch.reused(), 'the stream went out on the polls\' kept-alive connection');
      const [snapshot] = watch.events;
      assert.equal(snapshot!.type, 'snapshot');
      assert.ok(snapshot!.data.tunnels.some((tunnel) => tunnel.id === agent.tunnelId));
      assert.ok(snapshot!.data.tunnels.some((tunnel) => tunnel.id === quiet));
      // Let one tick pass, so the next moves are ours.
      await waitFor(() => watch.events.some((event) => event.type === 'stats'), 10_000);
      const replies = await Promise.all(Array.from({ length: 5 }, () => edgeRequest(port(), t.ca, 'streamed.t.localhost', { path: '/echo', agent: visitor })));
      assert.deepEqual(replies.map((reply) => reply.status), [200, 200, 200, 200, 200]);
      const moved = (): TunnelStatsJson | undefined =>
        watch.events.filter((event) => event.type === 'stats').flatMap((event) => event.data.tunnels).findLast((tunnel) => tunnel.id === agent.tunnelId && tunnel.requests['2xx'] >= 5);
      await waitFor(() => moved() !== undefined, 10_000);
      assert.equal(moved()!.requests['2xx'], 5);
      const ticks = watch.events.filter((event) => event.type === 'stats');
      assert.ok(ticks.every((event) => !event.data.tunnels.some((tunnel) => tunnel.id === quiet) || event === ticks[0]), 'a quiet tunnel is not sent again');
      agent.child.kill('SIGTERM');
      await agent.exited;
      await waitFor(() => watch.events.some((event) => event.data.removed?.includes(agent.tunnelId)), 10_000);
    } finally {
      watch.stop();
      visitor.destroy();
    }
  });

  test('a bad token gets the API error; the route is outside /api/ and the OpenAPI document', async () => {
    const refused = await apiRequest(port(), t.ca, '/rivulet/v1/tunnels/stats', { token: 'nope', agent: keptAlive });
    assert.equal(refused.status, 401);
    assert.equal((refused.json() as { error: string }).error, 'unauthorized');
    const document = await apiRequest(port(), t.ca, '/api/openapi.json', { agent: keptAlive });
    assert.ok(!document.text.includes('/rivulet/v1/'));
    assert.ok(document.reused, 'a refusal keeps the connection');
    const missing = await apiRequest(port(), t.ca, '/rivulet/v1/nothing', { token, agent: keptAlive });
    assert.equal(missing.status, 404);
  });
});
