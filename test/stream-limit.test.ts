import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import WebSocket, { WebSocketServer } from 'ws';
import { StreamLimit } from '../src/dataplane/stream-setup.js';
import { StreamSlots, createStreamSlotBuffer } from '../src/threads/stream-slots.js';
import { curl, edgeRequest } from './helpers/edge-client.js';
import { startTestEngine, type TestEngine } from './helpers/engine.js';
import { startForward, stopForwardsAndEngine } from './helpers/forward.js';
import type { RunningCli } from './helpers/process.js';
import { mintToken } from './helpers/rstrm-agent.js';
import { listenUpstream, upstreamHandler } from './helpers/upstream-server.js';

/**
 * max_streams_per_tunnel across threads (docs/http-edge.md#decisions): waiting for room is woken by a
 * release on any thread, waiters are served oldest first, and idle pooled streams give their slots
 * to whoever waits, on any worker.
 */

const SLOT = 0;
const tunnel = { slot: SLOT };
/** Long enough that a test passing only by the wait's own timeout would time out first. */
const NEVER_MS = 120_000;

/** Another thread holding streams of slot 0 (and waiting for room) with the same modules as a worker. */
class SlotThread {
  private readonly worker: Worker;
  private readonly replies: Array<(value: unknown) => void> = [];

  constructor(buffer: SharedArrayBuffer, limit: number) {
    const modules = { slots: new URL('../src/threads/stream-slots.js', import.meta.url).href, setup: new URL('../src/dataplane/stream-setup.js', import.meta.url).href };
    this.worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       Promise.all([import(workerData.modules.slots), import(workerData.modules.setup)]).then(([{ StreamSlots }, { StreamLimit }]) => {
         const slots = new StreamSlots(workerData.buffer);
         const limit = new StreamLimit(slots, { maxStreamsPerTunnel: workerData.limit, streamRequestMs: ${NEVER_MS} });
         parentPort.on('message', async ({ op, ms }) => {
           if (op === 'acquire') parentPort.postMessage(slots.tryAcquire(${SLOT}, workerData.limit));
           if (op === 'release') parentPort.postMessage(slots.release(${SLOT}) ?? true);
           if (op === 'wait') {
             const release = await limit.waitForRoom({ slot: ${SLOT} }, ms, 0).room;
             release?.();
             parentPort.postMessage(release !== undefined);
           }
         });
         parentPort.postMessage('ready');
       });`,
      { eval: true, workerData: { buffer, limit, modules } },
    );
    this.worker.on('message', (message) => this.replies.shift()?.(message));
  }

  ready(): Promise<unknown> {
    return new Promise((resolve) => this.replies.push(resolve));
  }

  call(op: 'acquire' | 'release' | 'wait', ms = 0): Promise<unknown> {
    return new Promise((resolve) => {
      this.replies.push(resolve);
      this.worker.postMessage({ op, ms });
    });
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}

/** `promise`, or a failure if it has not settled within `ms` (the wake it waits for never came). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe('the stream limit across threads', () => {
  test('a request waiting at the limit is woken by a release on another thread, oldest first; a cancelled one leaves', async () => {
    const buffer = createStreamSlotBuffer();
    const slots = new StreamSlots(buffer);
    const limit = new StreamLimit(slots, { maxStreamsPerTunnel: 2, streamRequestMs: NEVER_MS });
    const other = new SlotThread(buffer, 2);
    await other.ready();
    try {
      assert.deepEqual([await other.call('acquire'), await other.call('acquire'), await other.call('acquire')], [true, true, false]);
      const served: string[] = [];
      const waits = (['a', 'b', 'c'] as const).map((name) => {
        const wait = limit.waitForRoom(tunnel, NEVER_MS, 0);
        return { ...wait, room: wait.room.then((release) => (served.push(name), release)) };
      });
      const [a, b, c] = waits.map((wait) => wait.room);
      assert.equal(slots.waitingCount(SLOT), 3);
      await other.call('release');
      const releaseA = await within(a!, 10_000, 'first waiter');
      await nextTurn();
      assert.deepEqual(served, ['a'], 'one release, one waiter served');
      await other.call('release');
      const releaseB = await within(b!, 10_000, 'second waiter');
      assert.deepEqual(served, ['a', 'b']);
      waits[2]!.cancel();
      assert.equal(await c, undefined);
      assert.equal(slots.waitingCount(SLOT), 0);
      assert.equal(slots.streamCount(SLOT), 2);
      releaseA!();
      releaseA!(); // twice is harmless
      releaseB!();
      assert.equal(slots.streamCount(SLOT), 0);
    } finally {
      await other.stop();
    }
  });

  test('a wait that finds no room ends at its deadline and leaves no waiter behind', async () => {
    const buffer = createStreamSlotBuffer();
    const slots = new StreamSlots(buffer);
    const limit = new StreamLimit(slots, { maxStreamsPerTunnel: 1, streamRequestMs: NEVER_MS });
    const held = limit.count(tunnel);
    assert.ok(held);
    assert.equal(limit.count(tunnel), undefined);
    assert.equal(await limit.waitForRoom(tunnel, 100, 0).room, undefined);
    assert.equal(slots.waitingCount(SLOT), 0);
    held();
    const next = await limit.waitForRoom(tunnel, 100, 0).room;
    assert.ok(next, 'room again once released');
  });

  test('a wait that gives its own worker time first claims streams elsewhere only once that time is up', async () => {
    const buffer = createStreamSlotBuffer();
    const slots = new StreamSlots(buffer);
    const limit = new StreamLimit(slots, { maxStreamsPerTunnel: 1, streamRequestMs: NEVER_MS });
    const held = limit.count(tunnel)!;
    const arrivals = limit.arrivals(tunnel);
    const started = Date.now();
    const wait = limit.waitForRoom(tunnel, NEVER_MS, 200);
    assert.equal(limit.arrivals(tunnel), arrivals + 1, 'idle pools hear of it at once');
    assert.equal(limit.roomWanted(tunnel), false);
    assert.equal(await within(limit.arrivedSince(tunnel, arrivals + 1, NEVER_MS), 10_000, 'starving'), 1);
    assert.ok(Date.now() - started >= 190, `starving after ${Date.now() - started} ms`);
    assert.equal(limit.roomWanted(tunnel), true);
    held();
    assert.ok(await within(wait.room, 10_000, 'room'));
    assert.equal(limit.roomWanted(tunnel), false);
  });

  test('a request that starts waiting on another thread reaches a watcher here (idle pools watch this)', async () => {
    const buffer = createStreamSlotBuffer();
    const limit = new StreamLimit(new StreamSlots(buffer), { maxStreamsPerTunnel: 1, streamRequestMs: NEVER_MS });
    const held = limit.count(tunnel)!;
    const other = new SlotThread(buffer, 1);
    await other.ready();
    try {
      const seen = limit.arrivals(tunnel);
      const arrived = limit.arrivedSince(tunnel, seen, NEVER_MS);
      assert.equal(limit.roomWanted(tunnel), false);
      const waited = other.call('wait', 10_000);
      assert.equal(await within(arrived, 10_000, 'arrival'), 1);
      assert.equal(limit.roomWanted(tunnel), true);
      held(); // what an idle pool does when it hears of a waiter
      assert.equal(await within(waited, 10_000, 'the waiter on the other thread'), true);
      assert.equal(limit.roomWanted(tunnel), false);
    } finally {
      await other.stop();
    }
  });
});

describe('the stream limit at the HTTP edge (2 workers, 4 streams per tunnel, idle pooled streams kept 60 s)', () => {
  let t: TestEngine;
  let upstream: http.Server;
  let agent: RunningCli;
  const host = 'limited.t.localhost';

  before(async () => {
    t = await startTestEngine({
      dataplane: { workers: 2, max_streams_per_tunnel: 4 },
      timeouts: { stream_request_seconds: 3, http_idle_seconds: 60 },
    });
    upstream = http.createServer(upstreamHandler([]));
    new WebSocketServer({ server: upstream }).on('connection', (socket) => socket.on('message', (data, binary) => socket.send(data, { binary })));
    agent = await startForward(t, await mintToken(), await listenUpstream(upstream), ['--host', 'limited']);
  });
  after(() => stopForwardsAndEngine(t, upstream, [agent]));

  test('WebSockets get the slots of idle pooled streams (on either worker) long before http_idle_seconds; the limit still holds', async () => {
    // Four clients at once: four streams, then idle in the pools of whichever workers they reached.
    const clients = Array.from({ length: 4 }, () => new https.Agent({ keepAlive: true, maxSockets: 1 }));
    const replies = await Promise.all(clients.map((client) => edgeRequest(t.engine.publicPort, t.ca, host, { path: '/slow?ms=300', agent: client })));
    assert.deepEqual(replies.map((reply) => reply.status), [200, 200, 200, 200]);
    // Each WebSocket needs a stream of its own; only a slot given back by an idle stream can make room.
    const sockets: WebSocket[] = [];
    try {
      for (let index = 0; index < 4; index++) {
        const socket = new WebSocket(`wss://127.0.0.1:${t.engine.publicPort}/ws`, { ca: t.ca, servername: host, headers: { host } } as WebSocket.ClientOptions);
        socket.on('error', () => {});
        sockets.push(socket);
        await within(new Promise((resolve, reject) => socket.once('open', resolve).once('unexpected-response', (_, res) => reject(new Error(`HTTP ${res.statusCode}`)))), 10_000, `WebSocket ${index}`);
        socket.send(`ping ${index}`);
        const echo = await new Promise<string>((resolve) => socket.once('message', (data) => resolve(String(data))));
        assert.equal(echo, `ping ${index}`);
      }
      // Four WebSockets hold all four streams: a request now waits stream_request_seconds, then 503.
      const refused = await curl(t.certs.caCert, `https://${host}:${t.engine.publicPort}/echo`);
      assert.deepEqual([refused.status, refused.error], [503, 'capacity']);
    } finally {
      for (const socket of sockets) socket.terminate();
      for (const client of clients) client.destroy();
    }
  });

  test('sixteen keep-alive clients share four streams: every request is answered', async () => {
    const clients = Array.from({ length: 16 }, () => new https.Agent({ keepAlive: true, maxSockets: 1 }));
    try {
      const statuses = await Promise.all(
        clients.map(async (client, index) => {
          const seen: number[] = [];
          for (let request = 0; request < 8; request++) {
            const reply = await edgeRequest(t.engine.publicPort, t.ca, host, { path: `/slow?ms=20&c=${index}`, agent: client });
            seen.push(reply.status);
          }
          return seen;
        }),
      );
      assert.deepEqual(statuses.flat(), Array(128).fill(200));
    } finally {
      for (const client of clients) client.destroy();
    }
  });
});
