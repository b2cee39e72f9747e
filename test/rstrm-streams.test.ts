import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { emptyTunnelProperties, type TunnelProperties } from '../src/protocol/messages.js';
import { encodeFrame } from '../src/protocol/frame.js';
import { workerOfStream } from '../src/dataplane/streams.js';
import { openProxyConnection, serveEcho } from './helpers/echo-agent.js';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { RawConnection, mintToken, openControlChannel } from './helpers/rstrm-agent.js';

const PORT_BASE = 20000 + Math.floor(Math.random() * 20000);
let t: TestEngine;
let port: number;
let token: string;
before(async () => {
  t = await startTestEngine({
    dataplane: { workers: 2, affinity: { enabled: true, port_base: PORT_BASE } },
    timeouts: { stream_request_seconds: 2 },
  });
  port = t.engine.publicPort;
  token = await mintToken();
});
after(() => t.stop());

async function tunnelOn(agent: RawConnection, overrides: Partial<TunnelProperties>): Promise<string> {
  agent.send({ type: 'open_tunnel_req', request_id: 'x', tunnel_properties: { ...emptyTunnelProperties(), ...overrides } });
  const reply = await agent.next('open_tunnel_rsp');
  assert.ok('tunnel_properties' in reply.result, JSON.stringify(reply.result));
  const id = reply.result.tunnel_properties.id!;
  await waitFor(() => t.engine.control.registry.tunnels.has(id));
  return id;
}

/** A private dial; with zero_rtt false, resolves after StreamRsp (returned). */
async function dial(target: string, zeroRtt: boolean, dialToken = token) {
  const dialer = await RawConnection.connect(port, t.ca);
  dialer.send({ type: 'stream_req', client_details: { token: dialToken }, tunnel_id_name: target, zero_rtt: zeroRtt });
  if (zeroRtt) {
    dialer.raw();
    return { dialer, reply: undefined };
  }
  const reply = await dialer.next('stream_rsp');
  dialer.raw();
  return { dialer, reply };
}

async function roundTrip(dialer: RawConnection, size: number): Promise<void> {
  const payload = crypto.randomBytes(size);
  dialer.socket.write(payload);
  const echoed = await dialer.readPayload(size);
  assert.equal(echoed.length, size);
  assert.ok(echoed.equals(payload), 'the payload came back intact');
}

describe('private dial', () => {
  let agent: RawConnection;
  let echo: ReturnType<typeof serveEcho>;
  let tunnelId: string;
  let placement: 'same-worker' | 'cross-worker' = 'same-worker';
  const relayedBefore = (): number => t.engine.counters.totals().streams_relayed;

  before(async () => {
    ({ agent } = await openControlChannel(port, t.ca, token));
    tunnelId = await tunnelOn(agent, { publish: false, name: 'Echo-DB', protocol: 'tls' });
    // Affinity ports pin the proxy connection: the advertised one (same worker) or the other one (relayed).
    echo = serveEcho(agent, port, t.ca, {
      zeroRtt: false,
      order: 'go',
      portFor: (request) => {
        const owner = workerOfStream(request.stream_id, 2)!;
        return PORT_BASE + (placement === 'same-worker' ? owner : 1 - owner);
      },
    });
  });
  after(() => agent.close());

  for (const zeroRtt of [false, true]) {
    for (const where of ['same-worker', 'cross-worker'] as const) {
      test(`1 MiB round-trips, zero_rtt ${zeroRtt}, ${where} (JS or Go ordering)`, async () => {
        placement = where;
        echo.options.zeroRtt = zeroRtt;
        echo.options.order = zeroRtt ? 'js' : 'go';
        const relayed = relayedBefore();
        const relayedBytesBefore = t.engine.counters.totals().relay_bytes;
        const { dialer, reply } = await dial(zeroRtt ? tunnelId : 'echo-db', zeroRtt);
        await roundTrip(dialer, 1024 * 1024);
        const request = echo.requests.at(-1)!;
        assert.equal(request.tunnel_id, tunnelId);
        assert.match(request.stream_id, /^[0-9a-f]{24}$/);
        assert.match(request.secret!, /^[0-9a-f]{64}$/);
        assert.deepEqual(request.source_ip, { v4: 0x7f000001 });
        assert.equal(request.proxy_endpoint, `localhost:${PORT_BASE + workerOfStream(request.stream_id, 2)!}`);
        if (reply) assert.deepEqual(reply.result, { stream_id: request.stream_id });
        assert.equal(t.engine.counters.totals().streams_relayed - relayed, where === 'cross-worker' ? 1 : 0);
        const relayedBytes = t.engine.counters.totals().relay_bytes - relayedBytesBefore;
        if (where === 'cross-worker') assert.ok(relayedBytes >= 2 * 1024 * 1024, `both directions relayed (${relayedBytes} bytes)`);
        else assert.equal(relayedBytes, 0);
        dialer.close();
      });
    }
  }
});

describe('stream failures', () => {
  let agent: RawConnection;
  let tunnelId: string;
  before(async () => {
    ({ agent } = await openControlChannel(port, t.ca, token));
    tunnelId = await tunnelOn(agent, { publish: false, name: 'quiet' });
  });
  after(() => agent.close());

  test('ProxyConnRsp with an error → StreamRsp 6000 at once', async () => {
    const started = Date.now();
    const dialing = dial(tunnelId, false);
    const request = await agent.next('proxy_conn_req');
    agent.send({ type: 'proxy_conn_rsp', stream_id: request.stream_id, error: { code: 6000, message: 'upstream dial failed: ECONNREFUSED' } });
    const { reply, dialer } = await dialing;
    assert.deepEqual(reply!.result, { error: { code: 6000, message: 'agent refused the stream: upstream dial failed: ECONNREFUSED' } });
    assert.ok(Date.now() - started < 1000);
    await dialer.closed;
  });

  test('no ProxyReq before stream_request_seconds → StreamRsp 6000; a late ProxyReq then gets 4000', async () => {
    const started = Date.now();
    const dialing = dial(tunnelId, false);
    const request = await agent.next('proxy_conn_req');
    const { reply } = await dialing;
    const elapsed = Date.now() - started;
    assert.ok('error' in reply!.result && reply!.result.error.code === 6000);
    assert.ok(elapsed >= 1900 && elapsed < 3500, `after ${elapsed} ms`);
    await assert.rejects(openProxyConnection(agent, request, port, t.ca, { zeroRtt: false, order: 'js' }), { code: 4000 });
  });

  test('a wrong secret gets 1000 and the stream stays pending; a reused stream id gets 4000', async () => {
    const dialing = dial(tunnelId, false);
    const request = await agent.next('proxy_conn_req');
    await assert.rejects(
      openProxyConnection(agent, { ...request, secret: '0'.repeat(64) }, port, t.ca, { zeroRtt: false, order: 'js' }),
      { code: 1000 },
    );
    const { socket } = await openProxyConnection(agent, request, port, t.ca, { zeroRtt: false, order: 'js' });
    socket.pipe(socket);
    const { dialer, reply } = await dialing;
    assert.ok('stream_id' in reply!.result);
    await roundTrip(dialer, 1000);
    await assert.rejects(openProxyConnection(agent, request, port, t.ca, { zeroRtt: false, order: 'js' }), { code: 4000 });
    const unknown = await openProxyConnection(agent, { ...request, stream_id: 'ff' + '0'.repeat(22) }, port, t.ca, { zeroRtt: true, order: 'js' });
    await new Promise((resolve) => unknown.socket.once('end', resolve)); // closed by the engine without a reply
    unknown.socket.destroy();
    dialer.close();
  });

  for (const where of ['same-worker', 'cross-worker'] as const) {
    test(`a second ProxyReq for a live ${where} stream gets 4000 on either worker and leaves that stream flowing`, async () => {
      const dialing = dial(tunnelId, false);
      const request = await agent.next('proxy_conn_req');
      const owner = workerOfStream(request.stream_id, 2)!;
      const { socket } = await openProxyConnection(agent, request, PORT_BASE + (where === 'same-worker' ? owner : 1 - owner), t.ca, { zeroRtt: false, order: 'js' });
      socket.pipe(socket);
      const { dialer } = await dialing;
      await roundTrip(dialer, 1000);
      for (const worker of [owner, 1 - owner]) {
        await assert.rejects(openProxyConnection(agent, request, PORT_BASE + worker, t.ca, { zeroRtt: false, order: 'js' }), { code: 4000 });
        await sleep(50); // a wrongly torn-down stream would be gone by now
        await roundTrip(dialer, 1000);
      }
      dialer.close();
    });
  }

  test('unknown names, published targets and tokens without the stream permission are refused', async () => {
    const { agent: owner } = await openControlChannel(port, t.ca, token);
    await tunnelOn(owner, { name: 'public-web' });
    for (const [target, dialToken, code] of [
      ['no-such-tunnel', token, 3000],
      ['public-web', token, 3000],
      ['quiet', await mintToken({ permissions: ['tunnels.resources.read-only'] }), 1000],
      ['', token, 2000],
    ] as const) {
      const { reply, dialer } = await dial(target, false, dialToken);
      assert.ok('error' in reply!.result, target);
      assert.equal(reply!.result.error.code, code, target);
      await dialer.closed;
    }
    owner.close();
  });

  test('the owner disconnecting fails its pending streams at once', async () => {
    const { agent: owner } = await openControlChannel(port, t.ca, token);
    const id = await tunnelOn(owner, { publish: false });
    const dialing = dial(id, false);
    await owner.next('proxy_conn_req');
    const started = Date.now();
    owner.close();
    const { reply } = await dialing;
    assert.deepEqual(reply!.result, { error: { code: 6000, message: 'tunnel owner disconnected' } });
    assert.ok(Date.now() - started < 1000);
  });
});

describe('stream behaviour', () => {
  test('zero-RTT payload sent with ProxyReq and with StreamReq is delivered, and half-close works', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    const id = await tunnelOn(agent, { publish: false });
    const dialer = await RawConnection.connect(port, t.ca);
    // The dialer's first bytes travel in the same write as its StreamReq.
    dialer.socket.write(
      Buffer.concat([
        encodeFrame({ type: 'stream_req', client_details: { token }, tunnel_id_name: id, zero_rtt: true }),
        Buffer.from('hello '),
      ]),
    );
    dialer.raw();
    dialer.socket.end('world'); // half-close: nothing more from the dialer
    const request = await agent.next('proxy_conn_req');
    const { socket } = await openProxyConnection(agent, request, port, t.ca, { zeroRtt: true, order: 'js', early: Buffer.from('greeting:') });
    let upstreamGot = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (upstreamGot += chunk));
    await new Promise((resolve) => socket.once('end', resolve));
    assert.equal(upstreamGot, 'hello world');
    socket.end(`reply to ${upstreamGot}`); // the upstream still answers after the dialer's end
    const received = await dialer.readPayload('greeting:reply to hello world'.length);
    assert.equal(received.toString(), 'greeting:reply to hello world');
    await dialer.closed;
    agent.close();
  });

  test('streams established before a tunnel closes keep flowing', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    const id = await tunnelOn(agent, { publish: false });
    serveEcho(agent, port, t.ca, { zeroRtt: false, order: 'go' });
    const { dialer } = await dial(id, false);
    await roundTrip(dialer, 10_000);
    agent.send({ type: 'close_tunnel_req', tunnel_id: id });
    await agent.next('close_tunnel_rsp');
    await roundTrip(dialer, 10_000);
    const { reply } = await dial(id, false);
    assert.ok('error' in reply!.result && reply!.result.error.code === 3000, 'new dials see it gone');
    dialer.close();
    agent.close();
  });

  test('200 concurrent private streams on one tunnel', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    const id = await tunnelOn(agent, { publish: false });
    serveEcho(agent, port, t.ca, { zeroRtt: true, order: 'js' });
    const dialers = await Promise.all(Array.from({ length: 200 }, () => dial(id, false)));
    await Promise.all(dialers.map(({ dialer }) => roundTrip(dialer, 32 * 1024)));
    for (const { dialer } of dialers) dialer.close();
    agent.close();
  });

  test('graceful shutdown sends an unsolicited CloseTunnelRsp for every tunnel before closing', async () => {
    const own = await startTestEngine({ dataplane: { workers: 2 } });
    try {
      const { agent } = await openControlChannel(own.engine.publicPort, own.ca, token);
      const ids = [];
      for (let i = 0; i < 3; i++) {
        agent.send({ type: 'open_tunnel_req', request_id: String(i), tunnel_properties: { ...emptyTunnelProperties(), publish: false } });
        const reply = await agent.next('open_tunnel_rsp');
        assert.ok('tunnel_properties' in reply.result);
        ids.push(reply.result.tunnel_properties.id!);
      }
      const stopping = own.engine.shutdown(1000);
      const closed = [await agent.next('close_tunnel_rsp'), await agent.next('close_tunnel_rsp'), await agent.next('close_tunnel_rsp')];
      assert.deepEqual(closed.map((m) => m.tunnel_id).sort(), [...ids].sort());
      await agent.closed;
      await stopping;
    } finally {
      await own.stop();
    }
  });
});
