import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { emptyTunnelProperties } from '../src/protocol/messages.js';
import { serveEcho } from './helpers/echo-agent.js';
import { startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { RawConnection, mintToken, openControlChannel } from './helpers/rstrm-agent.js';

/**
 * A private dial is authorised by the worker that receives its StreamReq, from the token and its own
 * route table, in a fixed order: token, permission, datagram channel, target, a live private tunnel.
 */

let t: TestEngine;
let token: string;
before(async () => {
  t = await startTestEngine({ dataplane: { workers: 2 } });
  token = await mintToken();
  const { agent } = await openControlChannel(t.engine.publicPort, t.ca, token);
  agent.send({ type: 'open_tunnel_req', request_id: 'p', tunnel_properties: { ...emptyTunnelProperties(), publish: false, name: 'Private-DB' } });
  agent.send({ type: 'open_tunnel_req', request_id: 'w', tunnel_properties: { ...emptyTunnelProperties(), publish: true, name: 'public-web', protocol: 'http' } });
  await agent.next('open_tunnel_rsp');
  await agent.next('open_tunnel_rsp');
  await waitFor(() => t.engine.control.registry.tunnels.size === 2);
  serveEcho(agent, t.engine.publicPort, t.ca, { zeroRtt: false, order: 'js' });
});
after(() => t.stop());

async function dial(fields: { token?: string; target: string; datagram?: boolean }): Promise<{ code?: number; message?: string }> {
  const dialer = await RawConnection.connect(t.engine.publicPort, t.ca);
  dialer.send({
    type: 'stream_req',
    client_details: { token: fields.token ?? token },
    tunnel_id_name: fields.target,
    zero_rtt: false,
    datagram_channel: fields.datagram === true,
  });
  const reply = await dialer.next('stream_rsp');
  dialer.close();
  return 'error' in reply.result ? { code: reply.result.error.code, message: reply.result.error.message } : {};
}

test('each refusal, in order, with its code', async () => {
  const noStreams = await mintToken({ permissions: ['tunnels.tunnels.create-delete'] });
  const cases: Array<[string, Parameters<typeof dial>[0], number, RegExp]> = [
    ['bad signature, before anything else', { token: await mintToken({}, 'another-secret-another-secret-another-secret'), target: '', datagram: true }, 1000, /^invalid token: bad signature$/],
    ['missing permission, before the datagram check', { token: noStreams, target: 'private-db', datagram: true }, 1000, /^permission denied: tunnels\.streams\.create-delete required$/],
    ['datagram channel, before the target', { target: '', datagram: true }, 5000, /^feature not available: datagram_channel$/],
    ['no target', { target: '' }, 2000, /^tunnel_id_name is required$/],
    ['unknown tunnel', { target: 'nowhere' }, 3000, /^tunnel "nowhere" not found$/],
    ['a published tunnel cannot be dialed', { target: 'public-web' }, 3000, /^tunnel "public-web" not found$/],
  ];
  for (const [name, fields, code, message] of cases) {
    const reply = await dial(fields);
    assert.equal(reply.code, code, name);
    assert.match(reply.message ?? '', message, name);
  }
});

test('the private tunnel is dialed by its id, or by its name in any case', async () => {
  const id = [...t.engine.control.registry.tunnels.values()].find((tunnel) => tunnel.properties.name === 'Private-DB')!.id;
  for (const target of [id, 'private-db', 'PRIVATE-DB', 'Private-DB', id, 'private-db']) {
    assert.deepEqual(await dial({ target }), {}, target);
  }
});
