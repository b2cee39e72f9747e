import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { emptyTunnelProperties, type TunnelProperties } from '../src/protocol/messages.js';
import { apiRequest, schemaValidator } from './helpers/api-client.js';
import { rawEdgeConnection, WireReader } from './helpers/edge-client.js';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { mintToken, openControlChannel, type RawConnection } from './helpers/rstrm-agent.js';

/** The Engine API's request/response endpoints (docs/engine-api.md) against a real engine. */
let t: TestEngine;
let port: number;
let token: string;
let validate: (schema: string, value: unknown) => void;
let agent: RawConnection;
let clientId: string;
const tunnelIds: string[] = [];

const props = (overrides: Partial<TunnelProperties>): TunnelProperties => ({ ...emptyTunnelProperties(), ...overrides });

before(async () => {
  t = await startTestEngine();
  port = t.engine.publicPort;
  token = await mintToken();
  const document = (await apiRequest(port, t.ca, '/api/openapi.json')).json() as { components: { schemas: Record<string, unknown> } };
  validate = schemaValidator(document);
  ({ agent, clientId } = await openControlChannel(port, t.ca, token));
  const tunnels: Array<Partial<TunnelProperties>> = [
    { name: 'web', labels: { env: 'prod', team: 'a' }, hostname: 'Web', protocol: 'http' },
    { name: 'db', publish: false, labels: { env: 'dev' } },
    { name: 'secure', protocol: 'tls', hostname: 'secure', labels: { env: 'prod' } },
  ];
  for (const [index, overrides] of tunnels.entries()) {
    agent.send({ type: 'open_tunnel_req', request_id: String(index), tunnel_properties: props(overrides) });
    const reply = await agent.next('open_tunnel_rsp');
    assert.ok(!('error' in reply.result), JSON.stringify(reply.result));
    tunnelIds.push(String((reply.result as { tunnel_properties: TunnelProperties }).tunnel_properties.id));
  }
  await waitFor(() => tunnelIds.every((id) => t.engine.control.registry.tunnels.has(id)));
});
after(async () => {
  agent.close();
  await t.stop();
});

const get = (path: string, options: { token?: string; method?: string; headers?: Record<string, string>; agent?: https.Agent } = {}) => apiRequest(port, t.ca, path, options);
const params = (value: unknown): string => `params=${encodeURIComponent(JSON.stringify(value))}`;

describe('OpenAPI document', () => {
  test('served without auth, a valid OpenAPI 3.1 document with the documented media type and title', async () => {
    const reply = await get('/api/openapi.json');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'application/vnd.oai.openapi+json;version=3.1');
    assert.equal(reply.headers['access-control-allow-origin'], '*');
    const document = reply.json() as Record<string, any>;
    const result = await new Validator().validate(document);
    assert.deepEqual(result, { valid: true });
    assert.equal(document.openapi, '3.1.0');
    assert.equal(document.info.title, 'rstream Engine API');
    assert.equal(document.servers[0].variables.engine.default, `localhost:${port}`);
    for (const path of ['/api/openapi.json', '/api/auth', '/api/clients', '/api/clients/{id}', '/api/tunnels', '/api/tunnels/{id}', '/api/sse', '/api/websocket']) {
      assert.ok(document.paths[path], path);
    }
    assert.deepEqual(document.paths['/api/openapi.json'].get.security, []);
    assert.deepEqual(document.paths['/api/tunnels'].get['x-rstream-permissions'], ['tunnels.resources.read-only']);
    for (const name of ['Client', 'Tunnel', 'Event', 'ClientFilter', 'TunnelFilter', 'ListClientsParams', 'ListTunnelsParams', 'WatchParams']) {
      assert.ok(document.components.schemas[name], name);
    }
  });
});

describe('auth', () => {
  test('/api/auth: the identity of a valid token; 401 with WWW-Authenticate otherwise', async () => {
    const ok = await get('/api/auth', { token });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json(), { user_id: 'tester', permissions: null });
    const none = await get('/api/auth');
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    assert.deepEqual(none.json(), { error: 'unauthorized', message: 'missing token' });
    const expired = await get('/api/auth', { token: await mintToken({ exp: Math.floor(Date.now() / 1000) - 120 }) });
    assert.deepEqual([expired.status, (expired.json() as { message: string }).message], [401, 'expired']);
  });

  test('lists take the Bearer header only; a query token gets 401', async () => {
    const reply = await get(`/api/tunnels?rstream.token=${token}`);
    assert.equal(reply.status, 401);
  });

  test('a token whose permissions lack tunnels.resources.read-only gets 403 on lists, 200 on /api/auth', async () => {
    const limited = await mintToken({ permissions: ['tunnels.tunnels.create-delete'] });
    const list = await get('/api/tunnels', { token: limited });
    assert.equal(list.status, 403);
    assert.equal((list.json() as { error: string }).error, 'forbidden');
    assert.equal((await get('/api/auth', { token: limited })).status, 200);
    const reader = await mintToken({ permissions: ['tunnels.resources.read-only'] });
    assert.equal((await get('/api/clients', { token: reader })).status, 200);
  });
});

describe('clients and tunnels', () => {
  test('lists: objects in the Engine API shape, oldest first, optional fields omitted', async () => {
    const clients = (await get('/api/clients', { token })).json() as Array<Record<string, unknown>>;
    const client = clients.find((entry) => entry.id === clientId)!;
    assert.deepEqual(client, {
      id: clientId,
      status: 'online',
      user_id: 'tester',
      workspace_id: 'default',
      project_id: 'default',
      agent: 'test',
      protocol_version: '1.4.5',
    });
    for (const entry of clients) validate('Client', entry);
    const tunnels = (await get('/api/tunnels', { token })).json() as Array<Record<string, unknown>>;
    assert.deepEqual(tunnels.map((tunnel) => tunnel.name), ['web', 'db', 'secure']);
    for (const tunnel of tunnels) {
      validate('Tunnel', tunnel);
      assert.match(String(tunnel.creation_date), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(!JSON.stringify(tunnel).includes('null'));
    }
    const web = tunnels[0]!;
    assert.equal(web.hostname, 'web.t.localhost');
    assert.equal(web.port, port);
    assert.equal(web.http_version, 'http/1.1');
    assert.equal(web.geo_ip, undefined, 'empty lists are omitted');
    const db = tunnels[1]!;
    assert.equal(db.publish, false);
    assert.equal(db.hostname, undefined);
    assert.equal(db.trusted_ips, undefined);
  });

  test('get by id (percent-decoded); 404 for an unknown id', async () => {
    const one = await get(`/api/tunnels/${encodeURIComponent(tunnelIds[2]!)}`, { token });
    assert.equal((one.json() as { name: string }).name, 'secure');
    const client = await get(`/api/clients/${clientId}`, { token });
    assert.equal((client.json() as { id: string }).id, clientId);
    const missing = await get('/api/tunnels/0123456789abcdef01234567', { token });
    assert.equal(missing.status, 404);
    assert.equal((missing.json() as { error: string }).error, 'not_found');
  });

  test('filters: labels (null = any), case-insensitive hostname, publish boolean, oneof, limit', async () => {
    const names = async (value: unknown): Promise<string[]> => {
      const reply = await get(`/api/tunnels?${params(value)}`, { token });
      assert.equal(reply.status, 200, reply.text);
      return (reply.json() as Array<{ name: string }>).map((tunnel) => tunnel.name);
    };
    assert.deepEqual(await names({ filters: { labels: { env: 'prod' } } }), ['web', 'secure']);
    assert.deepEqual(await names({ filters: { labels: { team: null } } }), ['web']);
    assert.deepEqual(await names({ filters: { hostname: 'WEB.t.LOCALHOST' } }), ['web']);
    assert.deepEqual(await names({ filters: { publish: false } }), ['db']);
    assert.deepEqual(await names({ filters: { name: { oneof: ['db', 'secure'] } } }), ['db', 'secure']);
    assert.deepEqual(await names({ filters: { protocol: 'http' } }), ['web']);
    assert.deepEqual(await names({ filters: { status: 'offline' } }), []);
    assert.deepEqual(await names({ limit: 1, filters: { labels: { env: 'prod' } } }), ['web']);
    const clients = await get(`/api/clients?${params({ filters: { agent: 'test', user_id: 'tester' } })}`, { token });
    assert.deepEqual((clients.json() as Array<{ id: string }>).map((client) => client.id), [clientId]);
  });

  test('bad params: 400 naming the problem', async () => {
    const cases: Array<[string, RegExp]> = [
      ['params=%7Bnot-json', /params: not valid JSON/],
      ['params=%7B%22limit%22%3A1%7D%E0%A4%A', /params: not valid percent-encoding/],
      ['params=%zz', /params: not valid percent-encoding/],
      [params({ limit: 0 }), /params\.limit: must be an integer >= 1/],
      [params({ filters: { colour: 'red' } }), /params\.filters\.colour: unknown key/],
      [params({ filters: { publish: 'yes' } }), /params\.filters\.publish: must be a boolean/],
      [params({ filters: { name: { regex: '.*' } } }), /operator "regex" is not supported/],
      [params({ sort: 'name' }), /params\.sort: unknown key/],
    ];
    for (const [query, message] of cases) {
      const reply = await get(`/api/tunnels?${query}`, { token });
      assert.equal(reply.status, 400, query);
      assert.equal((reply.json() as { error: string }).error, 'bad_request');
      assert.match((reply.json() as { message: string }).message, message);
    }
  });
});

describe('HTTP rules', () => {
  test('CORS preflight, 405 with Allow, HEAD without a body, 404 outside /api/, 421 for a foreign Host', async () => {
    const preflight = await get('/api/tunnels', { method: 'OPTIONS' });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-methods'], 'GET, OPTIONS');
    assert.equal(preflight.headers['access-control-allow-headers'], 'Authorization, Content-Type');
    assert.equal(preflight.headers['access-control-max-age'], '600');
    const post = await get('/api/tunnels', { method: 'POST', token });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD, OPTIONS');
    const head = await get('/api/tunnels', { method: 'HEAD', token });
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    assert.equal(Number(head.headers['content-length']), Buffer.byteLength((await get('/api/tunnels', { token })).text));
    // The connection serves the next request after a HEAD.
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1, ca: t.ca });
    try {
      const first = await get('/api/tunnels', { method: 'HEAD', token, agent: keepAlive });
      const second = await get('/api/tunnels', { token, agent: keepAlive });
      assert.deepEqual([first.status, second.status, second.reused], [200, 200, true]);
    } finally {
      keepAlive.destroy();
    }
    assert.equal((await get('/.well-known/rstream/engine')).status, 404);
    const foreign = await get('/api/openapi.json', { headers: { host: 'example.com' } });
    assert.equal(foreign.status, 421);
    const literal = await get('/api/openapi.json', { headers: { host: `127.0.0.1:${port}` } });
    assert.equal(literal.status, 200);
  });
});

describe('request heads of every size and shape', () => {
  /** A GET /api/tunnels head with the token and `extra` field lines. */
  const apiHead = (bearer: string, extra: string[] = []): string =>
    [`GET /api/tunnels HTTP/1.1`, `Host: localhost:${port}`, `Authorization: Bearer ${bearer}`, ...extra, '', ''].join('\r\n');

  test('heads of 6.5 KB (a long token) arriving in pieces are answered, ten in a row on one connection', async () => {
    const longToken = await mintToken({ pad: 'x'.repeat(4700) });
    assert.ok(longToken.length > 6000 && longToken.length < 8000, `${longToken.length} bytes`);
    const socket = await rawEdgeConnection(port, t.ca, 'localhost');
    try {
      const reader = new WireReader(socket);
      for (let request = 0; request < 10; request++) {
        const wire = Buffer.from(apiHead(longToken));
        for (const piece of [wire.subarray(0, 1000), wire.subarray(1000, 5000), wire.subarray(5000)]) {
          socket.write(piece);
          await sleep(5); // each piece its own TLS record and read
        }
        const answer = await reader.response(false);
        assert.equal(answer.status, 200, answer.body.toString());
        assert.equal((JSON.parse(answer.body.toString()) as unknown[]).length, tunnelIds.length);
      }
    } finally {
      socket.destroy();
    }
  });

  for (const [name, extra, status] of [
    ['20 KB of header fields', [`x-pad: ${'p'.repeat(20_000)}`], 431],
    ['60 header fields', Array.from({ length: 60 }, (_, index) => `x-field-${index}: ${index}`), 431],
    ['a field line without a colon', ['not a field'], 400],
  ] as const) {
    test(`${name} → ${status} with the API's error body, then the connection closes`, async () => {
      const socket = await rawEdgeConnection(port, t.ca, 'localhost');
      try {
        const reader = new WireReader(socket);
        socket.write(apiHead(token, [...extra]));
        const answer = await reader.response(false);
        assert.equal(answer.status, status);
        assert.equal((JSON.parse(answer.body.toString()) as { error: string }).error, 'bad_request');
        await new Promise((resolve) => socket.once('close', resolve));
      } finally {
        socket.destroy();
      }
    });
  }
});
