import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { encodeFrame } from '../src/protocol/frame.js';
import { emptyTunnelProperties, type Message, type TunnelProperties } from '../src/protocol/messages.js';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { TEST_SECRET } from './helpers/fixtures.js';
import { RawConnection, mintToken, openControlChannel } from './helpers/rstrm-agent.js';

let t: TestEngine;
let port: number;
let token: string;
before(async () => {
  t = await startTestEngine({ dataplane: { workers: 2, max_tunnels_per_client: 30 } });
  port = t.engine.publicPort;
  token = await mintToken();
});
after(() => t.stop());

const props = (overrides: Partial<TunnelProperties> = {}): TunnelProperties => ({ ...emptyTunnelProperties(), ...overrides });

async function openTunnel(agent: RawConnection, overrides: Partial<TunnelProperties>, requestId = 'r') {
  agent.send({ type: 'open_tunnel_req', request_id: requestId, tunnel_properties: props(overrides) });
  return agent.next('open_tunnel_rsp');
}

describe('control channel open', () => {
  test('Ok carries a 24-hex client_id, no liveness unless offered, and is the first frame', async () => {
    const { agent, clientId, ok } = await openControlChannel(port, t.ca, token);
    assert.match(clientId, /^[0-9a-f]{24}$/);
    assert.equal(ok.liveness, undefined);
    assert.equal(ok.server_details?.agent, 'rivulet');
    await waitFor(() => t.engine.control.registry.clients.has(clientId));
    const client = t.engine.control.registry.clients.get(clientId)!;
    assert.equal(client.details.agent, 'test');
    assert.equal(client.details.protocol_version, '1.4.5');
    assert.equal(client.details.token, undefined, 'the token is not kept');
    assert.equal(client.identity.user_id, 'tester');
    agent.close();
    await waitFor(() => !t.engine.control.registry.clients.has(clientId));
  });

  const badTokens: Array<[string, () => Promise<string | undefined>]> = [
    ['missing', async () => undefined],
    ['malformed', async () => 'not-a-jwt'],
    ['alg none', async () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.`],
    ['HS384', () => mintToken({}, undefined, 'HS384')],
    ['expired', () => mintToken({ exp: Math.floor(Date.now() / 1000) - 120 })],
    ['not yet valid', () => mintToken({ nbf: Math.floor(Date.now() / 1000) + 120 })],
    ['wrong key', () => mintToken({}, 'another-secret-another-secret-another')],
    ['bad permissions claim', () => mintToken({ permissions: 'all' })],
    ['signature spelled with its unused bits set', async () => withVariantSignature(await mintToken())],
    ['exp of 1e309 (Infinity)', async () => signedRaw('{"type":"auth","sub":"tester","exp":1e309}')],
  ];
  for (const [name, make] of badTokens) {
    test(`a ${name} token gets error 1000, then close; a good token still works`, async () => {
      const agent = await RawConnection.connect(port, t.ca);
      agent.send({ type: 'open_control_channel_req', client_details: { token: await make() } });
      const reply = await agent.next('open_control_channel_rsp');
      assert.ok('error' in reply.result);
      assert.equal(reply.result.error.code, 1000);
      assert.match(reply.result.error.message ?? '', /^invalid token: /);
      await agent.closed;
      const good = await openControlChannel(port, t.ca, token);
      good.agent.close();
    });
  }

  test('the unused-bits variant of a valid signature is what the token test sends (same bytes, other text)', async () => {
    const [, , signature] = (await mintToken()).split('.') as [string, string, string];
    const variant = withVariantSignature(`x.y.${signature}`).split('.')[2]!;
    assert.notEqual(variant, signature);
    assert.ok(Buffer.from(variant, 'base64url').equals(Buffer.from(signature, 'base64url')));
  });

  test('an expired token within the 30 s leeway, and one without exp, are accepted', async () => {
    for (const claims of [{ exp: Math.floor(Date.now() / 1000) - 10 }, {}]) {
      const { agent } = await openControlChannel(port, t.ca, await mintToken(claims));
      agent.close();
    }
  });

  test('protocol_version: bad format → 2020, major ≠ 1 → 2030, absent is fine', async () => {
    for (const [version, code] of [['1.4', 2020], ['2.0.0', 2030]] as const) {
      const agent = await RawConnection.connect(port, t.ca);
      agent.send({ type: 'open_control_channel_req', client_details: { token, protocol_version: version } });
      const reply = await agent.next('open_control_channel_rsp');
      assert.ok('error' in reply.result && reply.result.error.code === code, JSON.stringify(reply.result));
      agent.close();
    }
    const agent = await RawConnection.connect(port, t.ca);
    agent.send({ type: 'open_control_channel_req', client_details: { token } });
    assert.ok('ok' in (await agent.next('open_control_channel_rsp')).result);
    agent.close();
  });
});

describe('liveness', () => {
  test('negotiated: interval echoed, T from the offer or derived, acks strictly increase', async () => {
    const derived = await openControlChannel(port, t.ca, token, { heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 0 });
    assert.deepEqual(derived.ok.liveness, { heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 15000 });
    derived.agent.close();
    const { agent, ok } = await openControlChannel(port, t.ca, token, { heartbeat_interval_ms: 2000, heartbeat_timeout_ms: 30000 });
    assert.deepEqual(ok.liveness, { heartbeat_interval_ms: 2000, heartbeat_timeout_ms: 30000 });
    agent.send({ type: 'heartbeat', sequence: 1, acknowledgement: 0 });
    assert.deepEqual(await agent.next('heartbeat'), { type: 'heartbeat', sequence: 0, acknowledgement: 1 });
    agent.send(
      { type: 'heartbeat', sequence: 1, acknowledgement: 0 },
      { type: 'heartbeat', sequence: 0, acknowledgement: 0 },
      { type: 'heartbeat', sequence: 3, acknowledgement: 0 },
    );
    assert.deepEqual(await agent.next('heartbeat'), { type: 'heartbeat', sequence: 0, acknowledgement: 3 });
    await sleep(200);
    assert.equal(agent.pending.filter((frame) => frame.type === 'heartbeat').length, 0, 'duplicates and 0 are not acked');
    agent.close();
  });

  test('an out-of-range interval means legacy mode: no liveness in Ok and the engine never sends a heartbeat', async () => {
    const { agent, ok } = await openControlChannel(port, t.ca, token, { heartbeat_interval_ms: 500, heartbeat_timeout_ms: 0 });
    assert.equal(ok.liveness, undefined);
    agent.send({ type: 'heartbeat', sequence: 0, acknowledgement: 0 }, { type: 'heartbeat', sequence: 5, acknowledgement: 0 });
    await sleep(1500);
    assert.equal(agent.pending.length, 0);
    assert.ok(!agent.socket.destroyed);
    agent.close();
  });

  test('negotiated silence beyond T + 1 s tears the channel down and withdraws its tunnels', async () => {
    const { agent, clientId } = await openControlChannel(port, t.ca, token, { heartbeat_interval_ms: 1000, heartbeat_timeout_ms: 1000 });
    const reply = await openTunnel(agent, { name: 'silent-one' });
    assert.ok('tunnel_properties' in reply.result);
    const tunnelId = reply.result.tunnel_properties.id!;
    await waitFor(() => t.engine.control.registry.tunnels.has(tunnelId));
    const started = Date.now();
    await agent.closed;
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 1500 && elapsed < 4000, `closed after ${elapsed} ms`);
    await waitFor(() => !t.engine.control.registry.clients.has(clientId) && !t.engine.control.registry.tunnels.has(tunnelId));
  });
});

describe('tunnels', () => {
  test('replies echo request_id (also empty) with id, type, creation_date, publish; published add hostname/host/port', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    const published = await openTunnel(agent, { labels: { env: 'dev' } }, 'req-1');
    assert.equal(published.request_id, 'req-1');
    assert.ok('tunnel_properties' in published.result);
    const p = published.result.tunnel_properties;
    assert.match(p.id!, /^[0-9a-f]{24}$/);
    assert.equal(p.type, 'bytestream');
    assert.equal(p.publish, true);
    assert.equal(p.protocol, 'http');
    assert.equal(p.http_version, 'http/1.1');
    assert.equal(p.upstream_tls, false);
    assert.ok(p.creation_date && Math.abs(p.creation_date.seconds - Date.now() / 1000) < 5);
    assert.match(p.hostname!, /^[a-z0-9]{10}\.t\.localhost$/);
    assert.equal(p.host, p.hostname);
    assert.equal(p.port, port);
    assert.deepEqual(p.labels, { env: 'dev' });

    const hidden = await openTunnel(agent, { publish: false, name: 'db-private' }, '');
    assert.equal(hidden.request_id, '');
    assert.ok('tunnel_properties' in hidden.result);
    const h = hidden.result.tunnel_properties;
    assert.equal(h.publish, false);
    for (const key of ['hostname', 'host', 'port', 'protocol', 'http_version'] as const) assert.equal(h[key], undefined, key);
    agent.close();
  });

  test('ten concurrent OpenTunnelReqs are each answered with their request_id', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    const ids = Array.from({ length: 10 }, (_, i) => `concurrent-${i}`);
    agent.send(...ids.map((id) => ({ type: 'open_tunnel_req' as const, request_id: id, tunnel_properties: props({ publish: false }) })));
    const replies = await Promise.all(ids.map(() => agent.next('open_tunnel_rsp')));
    assert.deepEqual(replies.map((reply) => reply.request_id).sort(), [...ids].sort());
    assert.ok(replies.every((reply) => 'tunnel_properties' in reply.result));
    agent.close();
  });

  const unavailable: Array<[Partial<TunnelProperties>, string]> = [
    [{ type: 'datagram' }, 'feature not available: type=datagram'],
    [{ protocol: 'quic' }, 'feature not available: protocol=quic'],
    [{ port: 8080 }, 'feature not available: port=8080'],
    [{ http_version: 'h3' }, 'feature not available: http_version=h3'],
    [{ rstream_auth: true }, 'feature not available: rstream_auth'],
    [{ challenge_mode: true }, 'feature not available: challenge_mode'],
    [{ geoip: ['FR'] }, 'feature not available: geo_ip'],
    [{ mtls_auth: true }, 'feature not available: mtls_auth'],
    [{ mtls_cacert_pem: 'pem' }, 'feature not available: mtls_auth'],
    [{ datagram_guaranteed_delivery: true }, 'feature not available: datagram_guaranteed_delivery'],
    [{ publish: false, upstream_tls: true }, 'feature not available: upstream_tls'],
  ];
  test('each 5000 trigger is refused naming the field; the same fields false/empty are accepted', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    for (const [overrides, message] of unavailable) {
      const reply = await openTunnel(agent, overrides);
      assert.deepEqual('error' in reply.result && reply.result.error, { code: 5000, message }, JSON.stringify(overrides));
    }
    const harmless = await openTunnel(agent, {
      publish: false,
      type: 'bytestream',
      port: 0,
      rstream_auth: false,
      challenge_mode: false,
      mtls_auth: false,
      mtls_cacert_pem: '',
      datagram_guaranteed_delivery: false,
      upstream_tls: false,
      token_auth: false,
      allow_cross_region_routing: true,
    });
    assert.ok('tunnel_properties' in harmless.result, JSON.stringify(harmless.result));
    assert.equal(harmless.result.tunnel_properties.allow_cross_region_routing, undefined, 'never echoed');
    agent.close();
  });

  test('inconsistent requests get 2000 naming the field', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    const cases: Array<[Partial<TunnelProperties>, RegExp]> = [
      [{ protocol: 'smtp' }, /invalid protocol "smtp"/],
      [{ http_version: 'h2' }, /use h2c, or upstream_tls/],
      [{ publish: false, token_auth: true }, /token_auth is not allowed on a private tunnel/],
      [{ publish: false, hostname: 'x' }, /hostname is not allowed on a private tunnel/],
      [{ tls_mode: 'passthrough' }, /tls_mode requires protocol tls/],
      [{ protocol: 'tls', tls_mode: 'passthrough', tls_alpns: ['h2'] }, /tls_alpns is not allowed with tls_mode passthrough/],
      [{ protocol: 'tls', tls_ciphers: ['NOT_A_CIPHER'] }, /unknown tls cipher/],
      [{ protocol: 'tls', token_auth: true }, /token_auth requires protocol http/],
      [{ trusted_ips: ['10.0.0.0/33'] }, /invalid trusted_ips entry/],
      [{ upstream_tls: true, http_use_tls: false }, /disagree/],
      [{ name: '-bad' }, /invalid name "-bad"/],
      [{ hostname: 'bad_label.example.com' }, /invalid hostname label "bad_label"/],
      [{ hostname: 'https://x.example.com' }, /invalid hostname/],
    ];
    for (const [overrides, message] of cases) {
      const reply = await openTunnel(agent, overrides);
      assert.ok('error' in reply.result, JSON.stringify(overrides));
      assert.equal(reply.result.error.code, 2000);
      assert.match(reply.result.error.message ?? '', message);
    }
    const tls = await openTunnel(agent, { protocol: 'tls', tls_ciphers: ['TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'], tls_min_version: 'tls1.3' });
    assert.ok('tunnel_properties' in tls.result);
    assert.equal(tls.result.tunnel_properties.tls_mode, 'terminated');
    agent.close();
  });

  test('hostname rules: kept, rewritten from a foreign name, unique across clients and case', async () => {
    const first = await openControlChannel(port, t.ca, token);
    const second = await openControlChannel(port, t.ca, token);
    const hostOf = async (agent: RawConnection, overrides: Partial<TunnelProperties>) => {
      const reply = await openTunnel(agent, overrides);
      return 'tunnel_properties' in reply.result ? reply.result.tunnel_properties.hostname : reply.result.error;
    };
    assert.equal(await hostOf(first.agent, { hostname: 'api.t.localhost' }), 'api.t.localhost');
    assert.equal(await hostOf(first.agent, { hostname: 'r1a2b3c4d-edge.t.example.com' }), 'r1a2b3c4d-edge.t.localhost');
    assert.equal(await hostOf(first.agent, { hostname: 'myapp' }), 'myapp.t.localhost');
    assert.equal(await hostOf(first.agent, { host: 'legacy.example.com:443' }), 'legacy.t.localhost');
    assert.deepEqual(await hostOf(second.agent, { hostname: 'API.t.localhost' }), {
      code: 2000,
      message: 'hostname "api.t.localhost" is already used by another live tunnel',
    });
    assert.equal(await hostOf(first.agent, { name: 'Shared-Name', publish: false }), undefined);
    const clash = await openTunnel(second.agent, { name: 'shared-name', publish: false });
    assert.ok('error' in clash.result && /name "shared-name" is already used/.test(clash.result.error.message ?? ''));
    first.agent.close();
    second.agent.close();
  });

  test('CloseTunnelReq → CloseTunnelRsp, the tunnel leaves the registry; an unknown id still gets a reply', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    const reply = await openTunnel(agent, { publish: false, name: 'closing-soon' });
    assert.ok('tunnel_properties' in reply.result);
    const id = reply.result.tunnel_properties.id!;
    await waitFor(() => t.engine.control.registry.tunnels.has(id));
    agent.send({ type: 'close_tunnel_req', tunnel_id: id });
    assert.deepEqual(await agent.next('close_tunnel_rsp'), { type: 'close_tunnel_rsp', tunnel_id: id });
    assert.ok(!t.engine.control.registry.tunnels.has(id));
    agent.send({ type: 'close_tunnel_req', tunnel_id: 'ffffffffffffffffffffffff' });
    assert.equal((await agent.next('close_tunnel_rsp')).tunnel_id, 'ffffffffffffffffffffffff');
    agent.close();
  });

  test('500 pipelined OpenTunnelReqs are all answered (the channel slows a flood instead of buffering it)', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    const ids = Array.from({ length: 500 }, (_, i) => `flood-${i}`);
    agent.send(...ids.map((id) => ({ type: 'open_tunnel_req' as const, request_id: id, tunnel_properties: props({ publish: false }) })));
    const answered = new Set<string>();
    for (let i = 0; i < ids.length; i++) answered.add((await agent.next('open_tunnel_rsp')).request_id);
    assert.equal(answered.size, 500);
    agent.close();
  });

  test('the per-client tunnel limit gives 7000', async () => {
    const { agent } = await openControlChannel(port, t.ca, token);
    for (let i = 0; i < 30; i++) assert.ok('tunnel_properties' in (await openTunnel(agent, { publish: false })).result);
    const over = await openTunnel(agent, { publish: false });
    assert.deepEqual('error' in over.result && over.result.error, { code: 7000, message: 'tunnel limit reached (30 per client)' });
    agent.close();
  });

  test('a read-only token opens a channel but gets 1000 on OpenTunnelReq', async () => {
    const { agent } = await openControlChannel(port, t.ca, await mintToken({ permissions: ['tunnels.resources.read-only'] }));
    const reply = await openTunnel(agent, {});
    assert.ok('error' in reply.result && reply.result.error.code === 1000);
    agent.close();
  });
});

describe('closing and bad input', () => {
  test('CloseControlChannelReq → Rsp, socket closed within 2 s, client and tunnels gone', async () => {
    const { agent, clientId } = await openControlChannel(port, t.ca, token);
    const reply = await openTunnel(agent, { publish: false });
    assert.ok('tunnel_properties' in reply.result);
    const tunnelId = reply.result.tunnel_properties.id!;
    await waitFor(() => t.engine.control.registry.tunnels.has(tunnelId));
    const started = Date.now();
    agent.send({ type: 'close_control_channel_req' });
    await agent.next('close_control_channel_rsp');
    assert.ok(!t.engine.control.registry.clients.has(clientId));
    assert.ok(!t.engine.control.registry.tunnels.has(tunnelId));
    await agent.closed;
    assert.ok(Date.now() - started < 2000);
  });

  test('an abrupt reset removes the client at once', async () => {
    const { agent, clientId } = await openControlChannel(port, t.ca, token);
    await waitFor(() => t.engine.control.registry.clients.has(clientId));
    agent.tcp.resetAndDestroy();
    await waitFor(() => !t.engine.control.registry.clients.has(clientId), 1000);
  });

  const garbage: Array<[string, Buffer]> = [
    ['zero length', Buffer.from([0, 0, 0, 0])],
    ['oversized', Buffer.from([0, 1, 0, 0])],
    ['ASCII', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
    ['undecodable protobuf', Buffer.from([0, 0, 0, 2, 0x0b, 0x00])],
  ];
  for (const [name, bytes] of garbage) {
    test(`a ${name} first frame closes that connection within 1 s; another agent is unaffected`, async () => {
      const healthy = await openControlChannel(port, t.ca, token, { heartbeat_interval_ms: 2000, heartbeat_timeout_ms: 30000 });
      const bad = await RawConnection.connect(port, t.ca);
      const started = Date.now();
      bad.socket.write(bytes);
      await bad.closed;
      assert.ok(Date.now() - started < 1000);
      assert.equal(bad.pending.length, 0, 'no reply');
      healthy.agent.send({ type: 'heartbeat', sequence: 1, acknowledgement: 0 });
      assert.equal((await healthy.agent.next('heartbeat')).acknowledgement, 1);
      healthy.agent.close();
    });
  }

  test('garbage on an open control channel tears it down', async () => {
    const { agent, clientId } = await openControlChannel(port, t.ca, token);
    agent.socket.write(Buffer.from([0, 0, 0, 0]));
    await agent.closed;
    await waitFor(() => !t.engine.control.registry.clients.has(clientId), 1000);
  });

  test('a connection that ends before its first frame is complete is closed at once, not after the 10 s first-frame wait', async () => {
    for (const sent of [Buffer.alloc(0), Buffer.from([0, 0, 0, 28, 0x0a])]) {
      const agent = await RawConnection.connect(port, t.ca);
      agent.socket.end(sent);
      const started = Date.now();
      await agent.closed;
      assert.ok(Date.now() - started < 1000, `${sent.length} bytes then an end: closed after ${Date.now() - started} ms`);
    }
  });

  test('a refused handshake with bytes after it is let go as soon as the peer closes, not after the 1 s grace for its end', async () => {
    const open = (): number => t.engine.counters.totals().connections_open;
    await waitFor(() => open() === 0);
    const refused: Message[] = [
      { type: 'open_control_channel_req', client_details: { token: 'not-a-jwt' } },
      { type: 'proxy_req', stream_id: '00' + 'f'.repeat(22), client_details: { token: 'secret' } },
      { type: 'stream_req', client_details: { token: 'not-a-jwt' }, tunnel_id_name: 'nowhere' },
    ];
    for (const handshake of refused) {
      const agent = await RawConnection.connect(port, t.ca);
      agent.socket.write(Buffer.concat([encodeFrame(handshake), Buffer.from('early payload')]));
      await agent.closed; // the reply, the engine's end, ours in answer
      const closedAt = Date.now();
      await waitFor(() => open() === 0);
      assert.ok(Date.now() - closedAt < 500, `${handshake.type}: the engine held the connection ${Date.now() - closedAt} ms after the peer closed`);
    }
  });

  test('a first frame of another type (CloseTunnelReq) closes the connection without a reply', async () => {
    const agent = await RawConnection.connect(port, t.ca);
    agent.send({ type: 'close_tunnel_req', tunnel_id: 'x' });
    await agent.closed;
    assert.equal(agent.pending.length, 0);
  });
});

/** The same token with the last signature character changed in bits that encode nothing (32 bytes → 43 characters, 2 bits spare). */
function withVariantSignature(token: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = token.at(-1)!;
  return token.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1];
}

/** An HS256 token over exactly this payload text (jose would normalise it). */
function signedRaw(payload: string): string {
  const input = `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${Buffer.from(payload).toString('base64url')}`;
  return `${input}.${crypto.createHmac('sha256', TEST_SECRET).update(input).digest('base64url')}`;
}
