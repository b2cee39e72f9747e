import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { apiRequest } from './helpers/api-client.js';
import { serveForward } from './helpers/echo-agent.js';
import { edgeRequest } from './helpers/edge-client.js';
import { startTestEngine, type TestEngine } from './helpers/engine.js';
import { TEST_SECRET } from './helpers/fixtures.js';
import { RawConnection, mintToken, openControlChannel, openHttpTunnel } from './helpers/rstrm-agent.js';
import { listenUpstream, upstreamHandler, type SeenRequest } from './helpers/upstream-server.js';

/**
 * Forged and broken tokens against every surface that takes one: the control channel (error 1000), the
 * Engine API and its event streams (401), and a `token_auth` tunnel (401 with WWW-Authenticate). Each
 * token is refused everywhere, and a good token still works afterwards.
 */
let t: TestEngine;
let port: number;
let control: RawConnection;
let upstream: http.Server;
const seen: SeenRequest[] = [];
const GUARDED = 'guarded.t.localhost';

before(async () => {
  t = await startTestEngine({ dataplane: { workers: 1 } });
  port = t.engine.publicPort;
  upstream = http.createServer(upstreamHandler(seen));
  const upstreamPort = await listenUpstream(upstream);
  control = await openHttpTunnel(port, t.ca, 'guarded', { token_auth: true });
  serveForward(control, port, t.ca, () => upstreamPort);
});
after(async () => {
  control.close();
  upstream.closeAllConnections();
  upstream.close();
  await t.stop();
});

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A token over exactly these header and payload texts, signed with HS256 and `secret` (whatever the header says). */
function signed(header: unknown, payload: unknown, secret = TEST_SECRET): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const now = (): number => Math.floor(Date.now() / 1000);
const claims = { type: 'auth', sub: 'attacker' };

const FORGED: Array<[string, () => Promise<string>]> = [
  ['alg none, no signature', async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`],
  ['HS512 header', async () => signed({ alg: 'HS512' }, claims)],
  ['RS256 header (algorithm confusion)', async () => signed({ alg: 'RS256' }, claims)],
  ['ES256 header', async () => signed({ alg: 'ES256' }, claims)],
  ['signed with another engine’s secret', async () => signed({ alg: 'HS256' }, claims, 'another-engine-secret-another-engine-secret')],
  ['expired', async () => signed({ alg: 'HS256' }, { ...claims, exp: now() - 120 })],
  ['nbf in the future', async () => signed({ alg: 'HS256' }, { ...claims, nbf: now() + 120 })],
  ['exp of 1e309', async () => signed({ alg: 'HS256' }, `{"type":"auth","sub":"attacker","exp":1e309}`)],
  ['exp as a string', async () => signed({ alg: 'HS256' }, { ...claims, exp: String(now() + 600) })],
  ['permissions of the wrong type', async () => signed({ alg: 'HS256' }, { ...claims, permissions: 'tunnels.resources.read-only' })],
  ['malformed base64url', async () => `${b64({ alg: 'HS256' })}.${b64(claims)}*!.${'A'.repeat(43)}`],
  ['a signature spelled with its unused bits set', async () => {
    const good = await mintToken();
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    return good.slice(0, -1) + alphabet[alphabet.indexOf(good.at(-1)!) ^ 1];
  }],
  ['a payload that is not JSON', async () => signed({ alg: 'HS256' }, 'not json')],
  ['9 KiB of claims (over the 8 KiB token limit)', async () => signed({ alg: 'HS256' }, { ...claims, pad: 'x'.repeat(9 * 1024) })],
  ['two segments', async () => `${b64({ alg: 'HS256' })}.${b64(claims)}`],
];

describe('forged and broken tokens are refused on every surface', () => {
  for (const [name, make] of FORGED) {
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
