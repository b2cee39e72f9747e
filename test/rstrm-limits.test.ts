import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { emptyTunnelProperties } from '../src/protocol/messages.js';
import { serveEcho } from './helpers/echo-agent.js';
import { startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { RawConnection, mintToken, openControlChannel } from './helpers/rstrm-agent.js';

let t: TestEngine;
let token: string;
before(async () => {
  t = await startTestEngine({ dataplane: { workers: 2, max_streams_per_tunnel: 2 }, tls: { enabled: true, listen_addr: '[::]:0' } });
  token = await mintToken();
});
after(() => t.stop());

async function dial(host: string, target: string): Promise<{ dialer: RawConnection; code: number | undefined }> {
  const dialer = await RawConnection.connect(t.engine.publicPort, t.ca, { host });
  dialer.send({ type: 'stream_req', client_details: { token }, tunnel_id_name: target, zero_rtt: false });
  const reply = await dialer.next('stream_rsp');
  dialer.raw();
  return { dialer, code: 'error' in reply.result ? reply.result.error.code : undefined };
}

async function waitForTunnelNamed(name: string): Promise<{ id: string }> {
  const find = () => [...t.engine.control.registry.tunnels.values()].find((tunnel) => tunnel.properties.name === name);
  await waitFor(() => find() !== undefined);
  return find()!;
}

test('max_streams_per_tunnel: pending + active streams past the limit get 7000; a freed stream makes room', async () => {
  const { agent } = await openControlChannel(t.engine.publicPort, t.ca, token);
  agent.send({ type: 'open_tunnel_req', request_id: '', tunnel_properties: { ...emptyTunnelProperties(), publish: false, name: 'limited' } });
  await agent.next('open_tunnel_rsp');
  const tunnelId = (await waitForTunnelNamed('limited')).id;
  serveEcho(agent, t.engine.publicPort, t.ca, { zeroRtt: false, order: 'js' });
  const first = await dial('127.0.0.1', 'limited');
  const second = await dial('127.0.0.1', 'limited');
  assert.deepEqual([first.code, second.code], [undefined, undefined]);
  const third = await dial('127.0.0.1', 'limited');
  assert.equal(third.code, 7000);
  first.dialer.close();
  await waitFor(() => t.engine.control.streamsCounted(tunnelId) === 1);
  const fourth = await dial('127.0.0.1', 'limited');
  assert.equal(fourth.code, undefined);
  for (const { dialer } of [second, third, fourth]) dialer.close();
  agent.close();
});

test('source_ip on a dual-stack listener: 127.0.0.1 is fixed32 0x7f000001, ::1 is 16 bytes', async () => {
  const { agent } = await openControlChannel(t.engine.publicPort, t.ca, token);
  agent.send({ type: 'open_tunnel_req', request_id: '', tunnel_properties: { ...emptyTunnelProperties(), publish: false, name: 'whoami' } });
  await agent.next('open_tunnel_rsp');
  await waitForTunnelNamed('whoami');
  for (const [host, expected] of [
    ['127.0.0.1', { v4: 0x7f000001 }],
    ['::1', { v6: Buffer.from('00000000000000000000000000000001', 'hex') }],
  ] as const) {
    const dialer = await RawConnection.connect(t.engine.publicPort, t.ca, { host });
    dialer.send({ type: 'stream_req', client_details: { token }, tunnel_id_name: 'whoami', zero_rtt: true });
    const request = await agent.next('proxy_conn_req');
    assert.deepEqual(request.source_ip, expected, host);
    agent.send({ type: 'proxy_conn_rsp', stream_id: request.stream_id, error: { code: 6000 } });
    dialer.close();
  }
  agent.close();
});

test('a connection that sends no first frame is closed after 10 s', async () => {
  const idle = await RawConnection.connect(t.engine.publicPort, t.ca, { host: '127.0.0.1' });
  const started = Date.now();
  await idle.closed;
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 9500 && elapsed < 12_000, `closed after ${elapsed} ms`);
});
