import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { emptyTunnelProperties, type TunnelProperties } from '../src/protocol/messages.js';
import { apiRequest, schemaValidator } from './helpers/api-client.js';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { mintToken, openControlChannel, type RawConnection } from './helpers/rstrm-agent.js';

/** Event streams (docs/engine-api.md): SSE with curl and Node, WebSocket with ws, filters, ordering, slow subscribers. */
let t: TestEngine;
let port: number;
let token: string;
let validate: (schema: string, value: unknown) => void;
const agents: RawConnection[] = [];

before(async () => {
  t = await startTestEngine();
  port = t.engine.publicPort;
  token = await mintToken();
  validate = schemaValidator((await apiRequest(port, t.ca, '/api/openapi.json')).json() as { components: { schemas: Record<string, unknown> } });
});
after(async () => {
  for (const agent of agents) agent.close();
  await t.stop();
});

interface Event {
  id: string;
  type: string;
  created_at: string;
  object: Record<string, any>;
}

const params = (value: unknown): string => `params=${encodeURIComponent(JSON.stringify(value))}`;

/** `curl -N` on /api/sse; events are parsed from its stdout as they arrive. */
function curlSse(query: string, headers: string[] = []): { events: Event[]; raw: () => string; stop: () => void } {
  const child = spawn('curl', ['-sS', '-N', '--cacert', t.certs.caCert, ...headers.flatMap((header) => ['-H', header]), `https://localhost:${port}/api/sse?${query}`]);
  const events: Event[] = [];
  let text = '';
  let pending = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
    pending += chunk;
    let end: number;
    while ((end = pending.indexOf('\n\n')) >= 0) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      if (block.startsWith('data: ')) events.push(JSON.parse(block.slice(6)) as Event);
    }
  });
  return { events, raw: () => text, stop: () => child.kill() };
}

async function openTunnel(agent: RawConnection, overrides: Partial<TunnelProperties>): Promise<string> {
  agent.send({ type: 'open_tunnel_req', request_id: 'r', tunnel_properties: { ...emptyTunnelProperties(), ...overrides } });
  const reply = await agent.next('open_tunnel_rsp');
  assert.ok(!('error' in reply.result), JSON.stringify(reply.result));
  return String((reply.result as { tunnel_properties: TunnelProperties }).tunnel_properties.id);
}

function validateEvent(event: Event): void {
  validate('Event', event);
  assert.match(event.created_at, /Z$/);
  assert.ok(!JSON.stringify(event).includes('null'));
}

describe('SSE', () => {
  test('state.initial first, then client and tunnel events in registry order, as bare data lines', async () => {
    const { agent: existing } = await openControlChannel(port, t.ca, token);
    agents.push(existing);
    await openTunnel(existing, { name: 'before', publish: false });
    const sse = curlSse('', [`Authorization: Bearer ${token}`]);
    try {
      await waitFor(() => sse.events.length >= 1);
      const initial = sse.events[0]!;
      assert.equal(initial.type, 'state.initial');
      assert.ok(initial.object.tunnels.some((tunnel: { name: string }) => tunnel.name === 'before'));
      const { agent, clientId } = await openControlChannel(port, t.ca, token);
      const tunnelId = await openTunnel(agent, { name: 'during', publish: false });
      agent.close();
      await waitFor(() => sse.events.length >= 5);
      assert.deepEqual(
        sse.events.slice(1).map((event) => [event.type, event.object.id, event.object.status]),
        [
          ['client.created', clientId, 'online'],
          ['tunnel.created', tunnelId, 'online'],
          ['tunnel.deleted', tunnelId, 'offline'],
          ['client.deleted', clientId, 'offline'],
        ],
      );
      for (const event of sse.events) validateEvent(event);
      const ids = sse.events.map((event) => event.id);
      assert.deepEqual([...ids].sort(), ids, 'event ids increase');
      assert.ok(!/^event:|^id:|^retry:/m.test(sse.raw()), 'no event:, id: or retry: lines');
    } finally {
      sse.stop();
    }
  });

  test('filters apply to the snapshot and to later events; the query token is accepted here', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    agents.push(agent);
    await openTunnel(agent, { name: 'ssh-a', publish: false, labels: { service: 'ssh' } });
    const sse = curlSse(`rstream.token=${token}&${params({ tunnels: { labels: { service: 'ssh' } }, clients: { agent: 'nobody' } })}`);
    try {
      await waitFor(() => sse.events.length >= 1);
      assert.deepEqual(sse.events[0]!.object.tunnels.map((tunnel: { name: string }) => tunnel.name), ['ssh-a']);
      assert.deepEqual(sse.events[0]!.object.clients, []);
      await openTunnel(agent, { name: 'web-b', publish: false, labels: { service: 'web' } });
      await openTunnel(agent, { name: 'ssh-c', publish: false, labels: { service: 'ssh' } });
      await waitFor(() => sse.events.length >= 2);
      await sleep(200);
      assert.deepEqual(sse.events.slice(1).map((event) => event.object.name), ['ssh-c']);
    } finally {
      sse.stop();
    }
  });

  test('auth and params are checked before the stream starts: 401, 403, 400 as plain API errors', async () => {
    const none = await apiRequest(port, t.ca, '/api/sse');
    assert.equal(none.status, 401);
    assert.match(String(none.headers['content-type']), /application\/json/);
    const limited = await apiRequest(port, t.ca, '/api/sse', { token: await mintToken({ permissions: [] }) });
    assert.equal(limited.status, 403);
    const bad = await apiRequest(port, t.ca, `/api/sse?${params({ tunnels: { colour: 'red' } })}`, { token });
    assert.equal(bad.status, 400);
  });

  test('a subscriber that stops reading is cut off past 1 MiB; the others keep receiving', async () => {
    // A raw TLS client that stops reading after its request: the socket buffers fill, then its queue.
    const stalled = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: t.ca }, () => {
      stalled.write(`GET /api/sse HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      stalled.pause();
    });
    stalled.on('error', () => {});
    const healthy = curlSse('', [`Authorization: Bearer ${token}`]);
    try {
      await waitFor(() => healthy.events.length >= 1);
      // Each event carries ~60 KiB of labels; ~20 MB in all, far past what socket buffers and 1 MiB hold.
      const labels = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`k${i}`, 'v'.repeat(1000)]));
      let produced = 0;
      for (let round = 0; round < 15; round++) {
        const { agent: churn } = await openControlChannel(port, t.ca, token);
        // 10 at a time: the replies echo the labels, and a control channel may owe at most 1 MiB.
        for (let i = 0; i < 10; i++) {
          churn.send({ type: 'open_tunnel_req', request_id: String(i), tunnel_properties: { ...emptyTunnelProperties(), publish: false, labels } });
        }
        for (let i = 0; i < 10; i++) await churn.next('open_tunnel_rsp');
        churn.close();
        produced += 22; // the client and its 10 tunnels, created then deleted
        await sleep(100);
      }
      // The reading subscriber was not held back: it has every event.
      await waitFor(() => healthy.events.length >= produced + 1, 20_000);
      // The stalled one, reading again, finds its stream already ended, short of the events.
      let received = '';
      stalled.setEncoding('utf8');
      stalled.on('data', (chunk: string) => (received += chunk));
      const ended = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
      stalled.resume();
      await ended;
      const delivered = (received.match(/data: \{/g) ?? []).length;
      assert.ok(delivered < produced, `the stalled subscriber got ${delivered} of ${produced} events before it was cut`);
    } finally {
      healthy.stop();
      stalled.destroy();
    }
  });
});

describe('WebSocket', () => {
  test('one JSON text frame per event, state.initial first; pings answered; Bearer or query token', async () => {
    for (const auth of ['header', 'query'] as const) {
      const url = `wss://127.0.0.1:${port}/api/websocket${auth === 'query' ? `?rstream.token=${token}` : ''}`;
      const socket = new WebSocket(url, { ca: t.ca, servername: 'localhost', headers: { host: 'localhost', ...(auth === 'header' ? { authorization: `Bearer ${token}` } : {}) } } as WebSocket.ClientOptions);
      const frames: Array<{ text: string; binary: boolean }> = [];
      socket.on('message', (data, binary) => frames.push({ text: data.toString(), binary }));
      await new Promise<void>((resolve, reject) => {
        socket.once('open', resolve);
        socket.once('error', reject);
      });
      await waitFor(() => frames.length >= 1);
      const initial = JSON.parse(frames[0]!.text) as Event;
      assert.equal(initial.type, 'state.initial');
      assert.equal(frames[0]!.binary, false);
      validateEvent(initial);
      const pong = new Promise<void>((resolve) => socket.once('pong', () => resolve()));
      socket.ping();
      await pong;
      const { agent, clientId } = await openControlChannel(port, t.ca, token);
      await waitFor(() => frames.some((frame) => (JSON.parse(frame.text) as Event).object.id === clientId));
      agent.close();
      socket.close();
    }
  });

  test('engine shutdown closes WebSocket subscribers with code 1001', async () => {
    const own = await startTestEngine();
    const socket = new WebSocket(`wss://127.0.0.1:${own.engine.publicPort}/api/websocket`, { ca: own.ca, servername: 'localhost', headers: { host: 'localhost', authorization: `Bearer ${token}` } } as WebSocket.ClientOptions);
    await new Promise<void>((resolve, reject) => {
      socket.once('message', () => resolve());
      socket.once('error', reject);
    });
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
    await own.stop();
    assert.equal(await closed, 1001);
  });

  test('a bad token gets 401 before any upgrade', async () => {
    const socket = new WebSocket(`wss://127.0.0.1:${port}/api/websocket`, { ca: t.ca, servername: 'localhost', headers: { host: 'localhost', authorization: 'Bearer nope' } } as WebSocket.ClientOptions);
    const status = await new Promise<number>((resolve) => {
      socket.once('unexpected-response', (_req, res) => resolve(res.statusCode!));
      socket.once('error', () => {});
    });
    assert.equal(status, 401);
  });
});

describe('fan-out', () => {
  test('1,000 SSE subscribers all receive a tunnel.created within a bound', async () => {
    const subscribers = await Promise.all(Array.from({ length: 1000 }, () => openRawSse()));
    try {
      await waitFor(() => subscribers.every((subscriber) => subscriber.text().includes('state.initial')), 30_000);
      const { agent } = await openControlChannel(port, t.ca, token);
      agents.push(agent);
      const started = Date.now();
      const tunnelId = await openTunnel(agent, { name: 'fanout', publish: false });
      await waitFor(() => subscribers.every((subscriber) => subscriber.text().includes(tunnelId)), 20_000);
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 20_000, `${elapsed} ms`);
    } finally {
      for (const subscriber of subscribers) subscriber.socket.destroy();
    }
  });
});

/** A minimal SSE reader over one TLS socket (1,000 curl processes would not fit this machine). */
async function openRawSse(): Promise<{ socket: tls.TLSSocket; text: () => string }> {
  let text = '';
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: t.ca });
  socket.on('error', () => {});
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (text += chunk));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  socket.write(`GET /api/sse HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  return { socket, text: () => text };
}
