import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { curl, edgeRequest, edgeSession, h2Request } from './helpers/edge-client.js';
import type { RunningCli } from './helpers/process.js';
import { startForward, stopForwardsAndEngine } from './helpers/forward.js';
import { mintToken, openHttpTunnel } from './helpers/rstrm-agent.js';
import { serveForward } from './helpers/echo-agent.js';
import { listenUpstream, patternBytes, sha256, upstreamHandler, type SeenRequest } from './helpers/upstream-server.js';

/**
 * The HTTP tunnel edge (docs/http-edge.md) end to end: real clients (curl, Node's http/https/http2, ws)
 * against a real engine, `rivulet forward` agents, real upstream servers.
 */
let t: TestEngine;
let token: string;
let port: number;
const seen: SeenRequest[] = [];
let upstream: http.Server;
let upstreamPort: number;
const agents: RunningCli[] = [];

before(async () => {
  t = await startTestEngine({ timeouts: { stream_request_seconds: 3, http_idle_seconds: 2 } });
  port = t.engine.publicPort;
  token = await mintToken();
  upstream = http.createServer(upstreamHandler(seen));
  const wss = new WebSocketServer({
    server: upstream,
    verifyClient: (info: { req: http.IncomingMessage }) => info.req.url !== '/ws-denied',
  });
  wss.on('connection', (socket, req) => {
    socket.send(`hello ${req.headers['x-forwarded-for']}`);
    socket.on('message', (data, binary) => socket.send(data, { binary }));
  });
  upstreamPort = await listenUpstream(upstream);
  await forward(upstreamPort, ['--host', 'web']);
});
after(() => stopForwardsAndEngine(t, upstream, agents));

test('a tunnel answers on every worker as soon as its agent reads its OpenTunnelRsp: never a 404 in between', async () => {
  for (let round = 0; round < 20; round++) {
    const agent = await openHttpTunnel(port, t.ca, `fresh${round}`);
    serveForward(agent, port, t.ca, () => upstreamPort);
    try {
      // Fresh connections, so the kernel spreads them over the workers.
      const replies = await Promise.all(Array.from({ length: 4 }, () => edgeRequest(port, t.ca, `fresh${round}.t.localhost`, { path: '/echo', agent: false })));
      assert.deepEqual(replies.map((reply) => reply.status), [200, 200, 200, 200], `round ${round}`);
    } finally {
      agent.close();
    }
  }
});

/** `rivulet forward <port>` as a child process; resolves when its tunnel is live in the engine. */
async function forward(target: number, flags: string[]): Promise<RunningCli> {
  const agent = await startForward(t, token, target, flags);
  agents.push(agent);
  return agent;
}

const host = (label: string): string => `${label}.t.localhost`;
const url = (label: string, path = '/'): string => `https://${host(label)}:${port}${path}`;

describe('HTTP tunnels: requests and responses', () => {
  test('GET over HTTP/1.1 and h2 (curl): forwarded headers set, Host and hop-by-hop handled', async () => {
    for (const [flag, version] of [['--http1.1', '1.1'], ['--http2', '2']] as const) {
      seen.length = 0;
      const reply = await curl(t.certs.caCert, url('web', '/echo?q=1'), [flag, '-H', 'X-Forwarded-For: 10.9.8.7', '-H', 'Connection: keep-alive, X-Hop', '-H', 'X-Hop: 1', '-H', 'X-Forwarded-Proto: http', '-H', 'Cookie: a=1']);
      assert.equal(reply.status, 200, reply.body);
      assert.equal(reply.version, version);
      assert.equal(JSON.parse(reply.body).url, '/echo?q=1');
      const headers = seen[0]!.headers;
      assert.equal(headers.host, `${host('web')}:${port}`);
      assert.equal(headers['x-forwarded-for'], '10.9.8.7, 127.0.0.1');
      assert.equal(headers['x-forwarded-proto'], 'https');
      assert.equal(headers['x-forwarded-host'], `${host('web')}:${port}`);
      assert.equal(headers.cookie, 'a=1');
      if (version === '1.1') assert.equal(headers['x-hop'], undefined, 'a header named by Connection is hop-by-hop');
      assert.equal(headers.forwarded, undefined);
      assert.equal(headers.via, undefined);
    }
  });

  test('50 MiB up (POST) and 50 MiB down (GET) stream intact, over HTTP/1.1 and h2', async () => {
    const body = patternBytes(50 * 1024 * 1024);
    const up = await edgeRequest(port, t.ca, host('web'), { method: 'POST', path: '/echo', body });
    assert.equal(up.status, 200);
    assert.deepEqual([JSON.parse(up.body.toString()).length, JSON.parse(up.body.toString()).sha256], [body.length, sha256(body)]);
    const down = await edgeRequest(port, t.ca, host('web'), { path: `/bytes?n=${body.length}` });
    assert.equal(down.body.length, body.length);
    assert.equal(sha256(down.body), down.headers['x-sha256']);

    const session = edgeSession(port, t.ca, host('web'));
    try {
      const h2Up = await h2Request(session, host('web'), { method: 'POST', path: '/echo', body });
      assert.equal(JSON.parse(h2Up.body.toString()).sha256, sha256(body));
      const h2Down = await h2Request(session, host('web'), { path: `/bytes?n=${body.length}` });
      assert.equal(sha256(h2Down.body), h2Down.headers['x-sha256']);
    } finally {
      session.close();
    }
  });

  test('SSE: the first event arrives while the response is still open', async () => {
    const events: string[] = [];
    const done = new Promise<number>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, servername: host('web'), ca: t.ca, path: '/sse', headers: { host: host('web') } }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => events.push(chunk));
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end();
    });
    await waitFor(() => events.join('').includes('data: first'));
    assert.ok(!events.join('').includes('second'));
    await edgeRequest(port, t.ca, host('web'), { path: '/sse-release' });
    assert.equal(await done, 200);
    assert.match(events.join(''), /data: second/);
  });

  test('WebSocket: upgrade relayed, messages echo both ways', async () => {
    const socket = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca: t.ca, servername: host('web'), headers: { host: host('web') } } as WebSocket.ClientOptions);
    const messages: string[] = [];
    socket.on('message', (data) => messages.push(data.toString()));
    await new Promise<void>((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    socket.send('ping 1');
    await waitFor(() => messages.length >= 2);
    assert.deepEqual(messages, ['hello 127.0.0.1', 'ping 1']);
    socket.close();
  });

  test('WebSocket: an upgrade the upstream refuses is relayed as a normal response', async () => {
    const socket = new WebSocket(`wss://127.0.0.1:${port}/ws-denied`, { ca: t.ca, servername: host('web'), headers: { host: host('web') } } as WebSocket.ClientOptions);
    const status = await new Promise<number>((resolve, reject) => {
      socket.once('unexpected-response', (_req, res) => resolve(res.statusCode!));
      socket.once('open', () => reject(new Error('opened')));
      socket.once('error', () => {});
    });
    assert.equal(status, 401);
  });

  test('backpressure: a client that stops reading holds the upstream back; nothing is lost', async () => {
    const total = 256 * 1024 * 1024;
    let written = 0;
    const firehose = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': total });
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      const pump = (): void => {
        while (written < total) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const firehosePort = await listenUpstream(firehose);
    await forward(firehosePort, ['--host', 'firehose']);
    let length = 0;
    let pausedResponse: http.IncomingMessage | undefined;
    const ended = new Promise<void>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, servername: host('firehose'), ca: t.ca, headers: { host: host('firehose') } }, (res) => {
        res.once('data', (chunk: Buffer) => {
          length += chunk.length;
          res.pause();
          pausedResponse = res;
        });
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    await waitFor(() => pausedResponse !== undefined);
    await sleep(1500);
    // Socket buffers on three TCP hops, the relay window and stream high-water marks: tens of MiB at most.
    assert.ok(written < 96 * 1024 * 1024, `the upstream wrote ${written} bytes to a client that read ${length}`);
    pausedResponse!.on('data', (chunk: Buffer) => (length += chunk.length));
    pausedResponse!.resume();
    await ended;
    assert.equal(length, total);
    firehose.close();
  });

  test('100 concurrent keep-alive clients on one tunnel', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 100 });
    try {
      const replies = await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const results: number[] = [];
          for (let round = 0; round < 3; round++) {
            const reply = await edgeRequest(port, t.ca, host('web'), { path: `/echo?client=${i}&round=${round}`, agent });
            results.push(reply.status);
            assert.equal(JSON.parse(reply.body.toString()).url, `/echo?client=${i}&round=${round}`);
          }
          return results;
        }),
      );
      assert.deepEqual(replies.flat(), Array(300).fill(200));
    } finally {
      agent.destroy();
    }
  });
  test('rivulet forward: an upstream closing idle keep-alive connections leaves no dead pooled stream (GET and POST)', async () => {
    const impatient = http.createServer({ keepAliveTimeout: 100 }, upstreamHandler(seen));
    const impatientPort = await listenUpstream(impatient);
    try {
      await forward(impatientPort, ['--host', 'impatient-cli']);
      const client = new https.Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; i < 6; i++) {
        const post = i % 2 === 1;
        const reply = await Promise.race([
          edgeRequest(port, t.ca, host('impatient-cli'), { path: `/echo?i=${i}`, agent: client, method: post ? 'POST' : 'GET', body: post ? Buffer.alloc(1000, 1) : undefined }),
          sleep(5000).then(() => Promise.reject(new Error(`request ${i} hung on a dead pooled stream`))),
        ]);
        assert.equal(reply.status, 200, reply.body.toString());
        // Past the upstream's keep-alive timeout: it closes the idle connection, the agent ends the stream.
        await sleep(400);
      }
      client.destroy();
    } finally {
      impatient.closeAllConnections();
      impatient.close();
    }
  });
});

describe('HTTP tunnels: generated responses', () => {
  test('404 for a name with no tunnel, 421 for a foreign Host and for another host on an h2 connection', async () => {
    const missing = await curl(t.certs.caCert, url('nobody'));
    assert.deepEqual([missing.status, missing.error], [404, 'tunnel_not_found']);
    assert.match(missing.headers, /content-type: text\/plain; charset=utf-8/i);
    const json = await curl(t.certs.caCert, url('nobody'), ['-H', 'Accept: application/json']);
    assert.deepEqual(JSON.parse(json.body), { status: 404, error: 'tunnel_not_found', message: `no tunnel is live at ${host('nobody')}` });
    const foreign = await curl(t.certs.caCert, url('web'), ['-H', 'Host: example.com']);
    assert.deepEqual([foreign.status, foreign.error], [421, 'misdirected']);

    const session = edgeSession(port, t.ca, host('web'));
    try {
      const own = await h2Request(session, host('web'), { path: '/echo' });
      assert.equal(own.status, 200);
      const base = await h2Request(session, 'localhost', { path: '/echo' });
      assert.deepEqual([base.status, base.headers['x-rivulet-error']], [421, 'misdirected']);
      const other = await h2Request(session, host('nobody'), { path: '/echo' });
      assert.equal(other.status, 404, 'routing is per request: another tunnel host on the same connection');
    } finally {
      session.close();
    }
    const connect = await curl(t.certs.caCert, url('web'), ['--http1.1', '-X', 'CONNECT', '--request-target', 'example.com:443']);
    assert.deepEqual([connect.status, connect.error], [501, 'not_implemented']);
  });

  test('502 when the agent cannot reach its target', async () => {
    const closed = net.createServer();
    const deadPort = await listenUpstream(closed);
    closed.close();
    await forward(deadPort, ['--host', 'dead']);
    const refused = await curl(t.certs.caCert, url('dead'));
    assert.deepEqual([refused.status, refused.error], [502, 'agent_refused']);
  });

  test('403 from trusted_ips for a loopback address outside the list', async () => {
    await forward(upstreamPort, ['--host', 'guarded', '--trusted-ips', '10.0.0.0/8,::1/128']);
    const forbidden = await curl(t.certs.caCert, url('guarded'));
    assert.deepEqual([forbidden.status, forbidden.error], [403, 'forbidden_ip']);
  });

  test('token_auth: 401 without a token, 200 with one (header or query), and the upstream never sees it', async () => {
    await forward(upstreamPort, ['--host', 'locked', '--token-auth']);
    const none = await curl(t.certs.caCert, url('locked', '/echo'));
    assert.deepEqual([none.status, none.error], [401, 'unauthorized']);
    assert.match(none.headers, /www-authenticate: Bearer/i);
    const bad = await curl(t.certs.caCert, url('locked', '/echo'), ['-H', 'Authorization: Bearer not.a.token']);
    assert.equal(bad.status, 401);

    const token = await mintToken({ exp: Math.floor(Date.now() / 1000) + 600 });
    seen.length = 0;
    const viaHeader = await curl(t.certs.caCert, url('locked', '/echo?a=1'), ['-H', `Authorization: Bearer ${token}`]);
    assert.equal(viaHeader.status, 200, viaHeader.body);
    assert.equal(seen[0]!.headers.authorization, undefined);
    assert.equal(seen[0]!.url, '/echo?a=1');

    seen.length = 0;
    const viaQuery = await curl(t.certs.caCert, url('locked', `/echo?a=1&rstream.token=${token}&b=%20&rstream.token=x`), ['-H', 'Authorization: Basic dTpw']);
    assert.equal(viaQuery.status, 200, viaQuery.body);
    assert.equal(seen[0]!.url, '/echo?a=1&b=%20');
    assert.equal(seen[0]!.headers.authorization, 'Basic dTpw', 'a non-Bearer Authorization passes when the query held the proof');
    const onlyToken = await curl(t.certs.caCert, url('locked', `/echo?rstream.token=${token}`));
    assert.equal(onlyToken.status, 200);
    assert.equal(seen[1]!.url, '/echo');
    // A Bearer header is the proof when present: a malformed one fails even with a good query token.
    const malformed = await curl(t.certs.caCert, url('locked', `/echo?rstream.token=${token}`), ['-H', 'Authorization: Bearer a b']);
    assert.equal(malformed.status, 401);
    seen.length = 0;
    const encodedName = await curl(t.certs.caCert, url('locked', `/echo?rstream%2Etoken=${token}&x=1`));
    assert.equal(encodedName.status, 200);
    assert.equal(seen[0]!.url, '/echo?x=1', 'a percent-encoded parameter name is the same parameter, and removed');
  });

  test('a client that resets during an Upgrade or CONNECT does not take the worker down', async () => {
    for (const request of [
      `GET /ws HTTP/1.1\r\nHost: ${host('locked')}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n`,
    ]) {
      for (let i = 0; i < 10; i++) {
        const tcp = net.connect(port, '127.0.0.1');
        tcp.on('error', () => {});
        const socket = tls.connect({ socket: tcp, servername: host('locked'), ca: t.ca }, () => {
          socket.write(request);
          setTimeout(() => tcp.resetAndDestroy(), i);
        });
        socket.on('error', () => {});
      }
    }
    await sleep(500);
    const still = await curl(t.certs.caCert, url('web', '/echo'));
    assert.equal(still.status, 200);
  });
});

describe('HTTP tunnels: malformed and unusual requests', () => {
  test('431 for request headers over 16 KiB; an HTTP/1.0 request without Host is routed by SNI', async () => {
    for (const version of ['--http1.1', '--http2']) {
      const tooLarge = await curl(t.certs.caCert, url('web', '/echo'), [version, '-H', `X-Big: ${'a'.repeat(20 * 1024)}`]);
      assert.deepEqual([tooLarge.status, tooLarge.error], [431, 'headers_too_large'], version);
    }
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: host('web'), ca: t.ca }, () => socket.write('GET /echo HTTP/1.0\r\n\r\n'));
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1\.[01] 200/);
    assert.match(reply, /"url":"\/echo"/);
  });
});
