import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { apiRequest } from './helpers/api-client.js';
import { edgeRequest } from './helpers/edge-client.js';
import type { TestEngine } from './helpers/engine.js';
import { publishTestTunnel, type PublishedTunnel } from './helpers/published-tunnel.js';
import { FORGED_TOKENS } from './helpers/forged-tokens.js';
import { RawConnection, mintToken, openControlChannel } from './helpers/rstrm-agent.js';
import type { SeenRequest } from './helpers/upstream-server.js';

/**
 * Forged and broken tokens against every surface that takes one: the control channel (error 1000), the
 * Engine API and its event streams (401), and a `token_auth` tunnel (401 with WWW-Authenticate). Each
 * token is refused everywhere, and a good token still works afterwards.
 */
let t: TestEngine;
let port: number;
let tunnel: PublishedTunnel;
let seen: SeenRequest[];
const GUARDED = 'guarded.t.localhost';

before(async () => {
  tunnel = await publishTestTunnel('guarded', { engine: { dataplane: { workers: 1 } }, tunnel: { token_auth: true } });
  ({ t, port, seen } = tunnel);
});
after(() => tunnel.stop());

describe('forged and broken tokens are refused on every surface', () => {
  for (const [name, make] of FORGED_TOKENS) {
    test(name, async () => {
      const token = await make();

      const agent = await RawConnection.connect(port, t.ca);
      agent.send({ type: 'open_control_channel_req', client_details: { token } });
      const reply = await agent.next('open_control_channel_rsp');
      assert.ok('error' in reply.result && reply.result.error.code === 1000, `control channel: ${JSON.stringify(reply.result)}`);
      assert.ok(!(reply.result.error.message ?? '').includes(token), 'the refusal does not echo the token');
      agent.close();

      const api = await apiRequest(port, t.ca, '/api/tunnels', { token });
      assert.equal(api.status, 401, `Engine API: ${api.text}`);
      assert.equal((api.json() as { error: string }).error, 'unauthorized');

      const sse = await apiRequest(port, t.ca, `/api/sse?rstream.token=${encodeURIComponent(token)}`);
      assert.equal(sse.status, 401, `event stream: ${sse.text}`);

      const before = seen.length;
      const edge = await edgeRequest(port, t.ca, GUARDED, { path: '/echo', headers: { authorization: `Bearer ${token}` } });
      assert.equal(edge.status, 401, `token_auth: ${edge.body.toString()}`);
      assert.equal(edge.headers['www-authenticate'], 'Bearer');
      assert.equal(seen.length, before, 'the upstream never saw it');
    });
  }

  test('a good token still passes everywhere', async () => {
    const token = await mintToken();
    const { agent } = await openControlChannel(port, t.ca, token);
    agent.close();
    assert.equal((await apiRequest(port, t.ca, '/api/tunnels', { token })).status, 200);
    const edge = await edgeRequest(port, t.ca, GUARDED, { path: '/echo', headers: { authorization: `Bearer ${token}` } });
    assert.equal(edge.status, 200, edge.body.toString());
  });
});
