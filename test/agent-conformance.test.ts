import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { before, test } from 'node:test';
import { ControlClient } from '../src/agent/control-client.js';
import { StreamForwarder } from '../src/agent/stream-forwarder.js';
import { FrameDecoder, encodeFrame } from '../src/protocol/frame.js';
import type { Message, MessageOf } from '../src/protocol/messages.js';
import { devCertificates } from './helpers/fixtures.js';
import type { DevCertificateFiles } from '../src/certs/dev-ca.js';
import { EngineRefusal } from '../src/errors.js';

/**
 * The agent against a scripted engine: a real TLS server speaking rstrm/1 whose replies each test
 * chooses, to check what the agent refuses.
 */
let certs: DevCertificateFiles;
before(async () => {
  certs = await devCertificates();
});

interface ScriptedEngine {
  port: number;
  /** Messages the agent sent, per connection. */
  received: Message[][];
  close(): void;
}

async function scriptedEngine(
  onMessage: (message: Message, reply: (message: Message) => void, connection: number) => void,
): Promise<ScriptedEngine> {
  const received: Message[][] = [];
  const server = tls.createServer(
    { cert: fs.readFileSync(certs.cert), key: fs.readFileSync(certs.key), ALPNProtocols: ['rstrm/1'] },
    (socket) => {
      const index = received.push([]) - 1;
      const decoder = new FrameDecoder();
      let payload = false; // after a ProxyReq the bytes are stream payload, not frames
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        if (payload) return;
        decoder.push(chunk);
        for (let message = decoder.next(); message && !payload; message = decoder.next()) {
          received[index]!.push(message);
          payload = message.type === 'proxy_req';
          onMessage(message, (reply) => socket.write(encodeFrame(reply)), index);
        }
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, received, close: () => server.close() };
}

const endpoint = (port: number) => ({ host: '127.0.0.1', port, caPem: fs.readFileSync(certs.caCert, 'utf8') });
const noHandlers = { onProxyConnReq: () => {}, onTunnelClosed: () => {} };
const ok = (liveness?: { heartbeat_interval_ms: number; heartbeat_timeout_ms: number }): Message => ({
  type: 'open_control_channel_rsp',
  result: { ok: { client_id: 'c'.repeat(24), ...(liveness ? { liveness } : {}) } },
});

test('the agent offers liveness 5000 and refuses a wrong echo or an out-of-range timeout', async () => {
  for (const liveness of [
    { heartbeat_interval_ms: 4000, heartbeat_timeout_ms: 15000 },
    { heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 4000 },
    { heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 900001 },
  ]) {
    const engine = await scriptedEngine((message, reply) => {
      if (message.type === 'open_control_channel_req') reply(ok(liveness));
    });
    await assert.rejects(ControlClient.open(endpoint(engine.port), 'token', noHandlers), /liveness .* is not acceptable/);
    const open = engine.received[0]![0] as MessageOf<'open_control_channel_req'>;
    assert.deepEqual(open.liveness, { heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 0 });
    assert.equal(open.client_details?.agent, 'rivulet');
    assert.equal(open.client_details?.protocol_version, '1.4.5');
    engine.close();
  }
});

test('an empty client_id and an error reply are refused', async () => {
  const empty = await scriptedEngine((message, reply) => {
    if (message.type === 'open_control_channel_req') reply({ type: 'open_control_channel_rsp', result: { ok: { client_id: '' } } });
  });
  await assert.rejects(ControlClient.open(endpoint(empty.port), 'token', noHandlers), /empty client_id/);
  empty.close();
  const refusing = await scriptedEngine((message, reply) => {
    if (message.type === 'open_control_channel_req') reply({ type: 'open_control_channel_rsp', result: { error: { code: 1000, message: 'invalid token: expired' } } });
  });
  await assert.rejects(ControlClient.open(endpoint(refusing.port), 'token', noHandlers), (error: EngineRefusal) => error.rstrm.code === 1000 && error.code === 'RIVULET_ENGINE_REFUSED');
  refusing.close();
});

test('negotiated mode: sequences 1, 2, 3… and a bad acknowledgement ends the channel', async () => {
  const engine = await scriptedEngine((message, reply) => {
    if (message.type === 'open_control_channel_req') reply(ok({ heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 15000 }));
    if (message.type === 'heartbeat' && message.sequence === 1) reply({ type: 'heartbeat', sequence: 0, acknowledgement: 1 });
    if (message.type === 'heartbeat' && message.sequence === 2) reply({ type: 'heartbeat', sequence: 0, acknowledgement: 7 });
  });
  const { client } = await ControlClient.open(endpoint(engine.port), 'token', noHandlers);
  const reason = await client.closed;
  assert.match(reason.message, /bad heartbeat acknowledgement 7/);
  const sequences = engine.received[0]!.filter((m) => m.type === 'heartbeat').map((m) => (m as MessageOf<'heartbeat'>).sequence);
  assert.deepEqual(sequences, [1, 2]);
  engine.close();
});

test('legacy mode: a non-empty heartbeat from the engine is fatal', async () => {
  const engine = await scriptedEngine((message, reply) => {
    if (message.type === 'open_control_channel_req') {
      reply(ok());
      reply({ type: 'heartbeat', sequence: 0, acknowledgement: 1 });
    }
  });
  const { client } = await ControlClient.open(endpoint(engine.port), 'token', noHandlers);
  assert.match((await client.closed).message, /unexpected heartbeat/);
  engine.close();
});

test('ProxyConnReq: unknown tunnel → 4000; proxy_endpoint is dialed with the secret as ProxyReq token', async () => {
  const upstream = net.createServer((socket) => socket.end('from upstream'));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const proxyHits: Array<MessageOf<'proxy_req'>> = [];
  const proxyTarget = await scriptedEngine((message) => {
    if (message.type === 'proxy_req') proxyHits.push(message);
  });
  let forwarder: StreamForwarder | undefined;
  const engine = await scriptedEngine((message, reply) => {
    if (message.type === 'open_control_channel_req') {
      reply(ok());
      reply({ type: 'proxy_conn_req', tunnel_id: 'unknown', stream_id: 'a'.repeat(24), secret: 's'.repeat(64) });
      reply({
        type: 'proxy_conn_req',
        tunnel_id: 'mine',
        stream_id: 'b'.repeat(24),
        secret: 'f'.repeat(64),
        source_ip: { v4: 0x7f000001 },
        proxy_endpoint: `127.0.0.1:${proxyTarget.port}`,
      });
    }
  });
  const sources: string[] = [];
  const { client } = await ControlClient.open(endpoint(engine.port), 'token', {
    onProxyConnReq: (request) => forwarder!.handle(request),
    onTunnelClosed: () => {},
  });
  forwarder = new StreamForwarder({
    client,
    engine: endpoint(engine.port),
    token: 'token',
    target: { host: '127.0.0.1', port: (upstream.address() as net.AddressInfo).port },
    knowsTunnel: (id) => id === 'mine',
    onConnection: (source) => sources.push(source),
    onTargetFailure: () => {},
  });
  const deadline = Date.now() + 5000;
  while ((proxyHits.length === 0 || engine.received[0]!.filter((m) => m.type === 'proxy_conn_rsp').length < 2) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const replies = engine.received[0]!.filter((m) => m.type === 'proxy_conn_rsp') as Array<MessageOf<'proxy_conn_rsp'>>;
  assert.deepEqual(replies.find((m) => m.stream_id === 'a'.repeat(24))?.error?.code, 4000);
  assert.equal(replies.find((m) => m.stream_id === 'b'.repeat(24))?.error, undefined);
  assert.equal(proxyHits[0]?.stream_id, 'b'.repeat(24));
  assert.equal(proxyHits[0]?.client_details?.token, 'f'.repeat(64));
  assert.equal(proxyHits[0]?.zero_rtt, true);
  assert.deepEqual(sources, ['127.0.0.1']);
  client.close([]).catch(() => undefined);
  engine.close();
  proxyTarget.close();
  upstream.close();
});
