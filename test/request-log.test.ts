import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { LOGGED_TUNNELS, REQUEST_LOG_DEPTH, RequestLog, RequestLogLine } from '../src/dataplane/http/request-log.js';
import type { LoggedRequestJson } from '../src/api/request-log.js';
import { apiRequest } from './helpers/api-client.js';
import { edgeRequest, edgeSession, h2Request } from './helpers/edge-client.js';
import { startTestEngine, type TestEngine } from './helpers/engine.js';
import { startForward, stopForwardsAndEngine } from './helpers/forward.js';
import type { RunningCli } from './helpers/process.js';
import { mintToken } from './helpers/rstrm-agent.js';
import { listenUpstream, upstreamHandler } from './helpers/upstream-server.js';

/** The opt-in request log (docs/engine-api.md#request-log): kept by each worker, read through the Engine API. */

describe('a worker\'s request log', () => {
  const line = (path: string): RequestLogLine => new RequestLogLine('GET', path, '::ffff:10.0.0.7');

  test('keeps the last requests of each live tunnel, oldest first, without query strings', () => {
    const log = new RequestLog();
    log.tunnelAdded(1);
    for (let i = 0; i < REQUEST_LOG_DEPTH + 30; i++) {
      const request = line(`/item/${i}?rstream.token=secret&x=${i}`);
      request.responded(i % 2 ? 404 : 200, 'upstream');
      log.record(1, request, false);
    }
    const kept = log.requests(1);
    assert.equal(kept.length, REQUEST_LOG_DEPTH);
    assert.deepEqual(kept.map((entry) => entry.path), Array.from({ length: REQUEST_LOG_DEPTH }, (_, i) => `/item/${i + 30}`));
    assert.equal(kept[0]!.client_ip, '10.0.0.7');
    assert.equal(kept[1]!.status, 404);
    assert.ok(!JSON.stringify(kept).includes('secret'));
  });

  test('a request that ends after its tunnel went is not kept; past the tunnel bound the least recently logged tunnel gives way', () => {
    const log = new RequestLog();
    log.record(5, line('/never'), false);
    assert.deepEqual(log.requests(5), [], 'no such tunnel here');
    for (let slot = 0; slot <= LOGGED_TUNNELS; slot++) log.tunnelAdded(slot);
    for (let slot = 0; slot < LOGGED_TUNNELS; slot++) log.record(slot, line(`/${slot}`), false);
    log.record(0, line('/again'), false); // tunnel 0 is now the most recent, tunnel 1 the least
    log.record(LOGGED_TUNNELS, line('/newest'), false);
    assert.equal(log.requests(1).length, 0, 'the least recently logged tunnel gave way');
    assert.deepEqual(log.requests(0).map((entry) => entry.path), ['/0', '/again']);
    assert.equal(log.requests(LOGGED_TUNNELS).length, 1);
    log.tunnelRemoved(0);
    log.record(0, line('/late'), false);
    assert.deepEqual(log.requests(0), []);
  });

  test('paths: absolute-form targets lose their scheme and host, long paths are cut', () => {
    assert.equal(line('http://example.com/a/b?c').finish(false).path, '/a/b');
    assert.equal(line('https://example.com').finish(false).path, '/');
    const long = line(`/${'x'.repeat(1000)}`).finish(false).path;
    assert.equal(long, `/${'x'.repeat(255)}…`);
  });
});

describe('GET /rivulet/v1/tunnels/{id}/requests (2 workers, request log on)', () => {
  let t: TestEngine;
  let token: string;
  let upstream: http.Server;
  const agents: RunningCli[] = [];
  const apiAgent = new https.Agent({ keepAlive: true, maxSockets: 1 });

  before(async () => {
    t = await startTestEngine({ dataplane: { workers: 2 }, dashboard: { request_log: 'on' } });
    token = await mintToken();
    upstream = http.createServer(upstreamHandler([]));
    await listenUpstream(upstream);
  });
  after(async () => {
    apiAgent.destroy();
    await stopForwardsAndEngine(t, upstream, agents);
  });

  const port = (): number => t.engine.publicPort;

  async function forward(flags: string[]): Promise<RunningCli & { tunnelId: string }> {
    const agent = await startForward(t, token, (upstream.address() as net.AddressInfo).port, flags);
    agents.push(agent);
    return agent;
  }

  async function requestLog(id: string): Promise<{ tunnel_id: string; enabled: boolean; requests: LoggedRequestJson[]; text: string }> {
    const reply = await apiRequest(port(), t.ca, `/rivulet/v1/tunnels/${encodeURIComponent(id)}/requests`, { token, agent: apiAgent });
    assert.equal(reply.status, 200, reply.text);
    return { ...(reply.json() as { tunnel_id: string; enabled: boolean; requests: LoggedRequestJson[] }), text: reply.text };
  }

  /** The log once it holds `count` requests (a line is kept when its response ends, a moment after the client has it). */
  async function logOf(id: string, count: number): Promise<{ requests: LoggedRequestJson[]; text: string }> {
    let log = await requestLog(id);
    const deadline = Date.now() + 5000;
    while (log.requests.length < count && Date.now() < deadline) log = await requestLog(id);
    return log;
  }

  test('h1 and h2 requests, the edge\'s own refusals and a client that left: each once, newest first, queries never kept', async () => {
    const { tunnelId } = await forward(['--host', 'logged', '--token-auth']);
    const keptAlive = new https.Agent({ keepAlive: true, maxSockets: 2 });
    const session = edgeSession(port(), t.ca, 'logged.t.localhost');
    const auth = { authorization: `Bearer ${token}` };
    try {
      const body = crypto.randomBytes(20_000);
      const h1 = await Promise.all([
        ...Array.from({ length: 5 }, (_, i) => edgeRequest(port(), t.ca, 'logged.t.localhost', { path: `/bytes?n=${1000 * (i + 1)}&secret=s3cr3t`, headers: auth, agent: keptAlive })),
        edgeRequest(port(), t.ca, 'logged.t.localhost', { path: '/echo', method: 'POST', body, headers: auth, agent: keptAlive }),
        edgeRequest(port(), t.ca, 'logged.t.localhost', { path: '/denied?rstream.token=not-a-token', agent: keptAlive }),
      ]);
      assert.deepEqual(h1.map((reply) => reply.status), [200, 200, 200, 200, 200, 200, 401]);
      const h2 = await Promise.all(Array.from({ length: 3 }, () => h2Request(session, 'logged.t.localhost', { path: '/bytes?n=7000', headers: auth })));
      assert.deepEqual(h2.map((reply) => reply.status), [200, 200, 200]);
      // A client that cancels an endless response after its first event (RST_STREAM).
      await new Promise<void>((resolve) => {
        const stream = session.request({ ':path': '/sse?x=1', ':authority': 'logged.t.localhost', ...auth });
        stream.on('error', () => {});
        stream.once('data', () => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          resolve();
        });
        stream.end();
      });
    } finally {
      keptAlive.destroy();
      session.close();
    }
    const { requests, text } = await logOf(tunnelId, 11);
    assert.equal(requests.length, 11, text);
    assert.ok(!text.includes('?') && !text.includes('s3cr3t') && !text.includes('not-a-token'), 'no query string is kept');
    const times = requests.map((entry) => Date.parse(entry.time));
    assert.deepEqual(times, [...times].sort((a, b) => b - a), 'newest first');
    const byPath = (path: string): LoggedRequestJson[] => requests.filter((entry) => entry.path === path);
    assert.deepEqual(byPath('/bytes').map((entry) => entry.bytes).sort((a, b) => a - b), [1000, 2000, 3000, 4000, 5000, 7000, 7000, 7000]);
    assert.ok(byPath('/bytes').every((entry) => entry.status === 200 && entry.origin === 'upstream' && !entry.aborted && entry.method === 'GET'));
    const [posted] = byPath('/echo');
    assert.equal(posted!.method, 'POST');
    const [denied] = byPath('/denied');
    assert.deepEqual([denied!.status, denied!.origin, denied!.bytes > 0, denied!.aborted], [401, 'edge', true, false]);
    const [left] = byPath('/sse');
    assert.deepEqual([left!.status, left!.aborted, left!.bytes], [200, true, 'data: first\n\n'.length]);
    for (const entry of requests) {
      assert.equal(entry.client_ip, '127.0.0.1');
      assert.ok([0, 1].includes(entry.worker));
      assert.ok(entry.duration_ms >= 0 && entry.duration_ms < 10_000, `${entry.duration_ms} ms`);
      assert.ok(Math.abs(Date.parse(entry.time) - Date.now()) < 60_000);
    }
  });

  test('the last 200 requests of each worker: one kept-alive connection sends 230, the oldest 30 are gone', async () => {
    const { tunnelId } = await forward(['--host', 'busy']);
    const oneConnection = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 230; i++) {
        const reply = await edgeRequest(port(), t.ca, 'busy.t.localhost', { path: `/n/${i}`, agent: oneConnection });
        assert.equal(reply.status, 200);
      }
    } finally {
      oneConnection.destroy();
    }
    const { requests } = await logOf(tunnelId, 200);
    assert.equal(requests.length, 200);
    assert.equal(new Set(requests.map((entry) => entry.worker)).size, 1, 'one connection, one worker');
    assert.deepEqual(requests.map((entry) => entry.path), Array.from({ length: 200 }, (_, i) => `/n/${229 - i}`));
  });

  test('a tunnel that is gone, an unknown id and a bad token get the API\'s errors', async () => {
    const agent = await forward(['--host', 'brief']);
    const replied = await edgeRequest(port(), t.ca, 'brief.t.localhost', { path: '/echo', agent: false });
    assert.equal(replied.status, 200);
    assert.equal((await logOf(agent.tunnelId, 1)).requests.length, 1);
    agent.child.kill('SIGTERM');
    await agent.exited;
    const gone = await apiRequest(port(), t.ca, `/rivulet/v1/tunnels/${agent.tunnelId}/requests`, { token, agent: apiAgent });
    assert.equal(gone.status, 404);
    assert.equal((gone.json() as { error: string }).error, 'not_found');
    const refused = await apiRequest(port(), t.ca, `/rivulet/v1/tunnels/${agent.tunnelId}/requests`, { token: 'nope', agent: apiAgent });
    assert.equal(refused.status, 401);
    const document = await apiRequest(port(), t.ca, '/api/openapi.json', { agent: apiAgent });
    assert.ok(!document.text.includes('/requests'), 'not in the CE OpenAPI document');
  });
});

describe('the request log off (the default)', () => {
  let t: TestEngine;
  let upstream: http.Server;
  let agent: RunningCli & { tunnelId: string };

  before(async () => {
    t = await startTestEngine();
    upstream = http.createServer(upstreamHandler([]));
    await listenUpstream(upstream);
    agent = await startForward(t, await mintToken(), (upstream.address() as net.AddressInfo).port, ['--host', 'unlogged']);
  });
  after(() => stopForwardsAndEngine(t, upstream, [agent]));

  test('the answer says it is off and holds nothing, after traffic too', async () => {
    const reply = await edgeRequest(t.engine.publicPort, t.ca, 'unlogged.t.localhost', { path: '/echo?x=1', agent: false });
    assert.equal(reply.status, 200);
    const log = await apiRequest(t.engine.publicPort, t.ca, `/rivulet/v1/tunnels/${agent.tunnelId}/requests`, { token: await mintToken() });
    assert.equal(log.status, 200);
    assert.deepEqual(log.json(), { tunnel_id: agent.tunnelId, enabled: false, requests: [] });
  });
});
