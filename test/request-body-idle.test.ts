import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { edgeSession, rawEdgeConnection, WireReader } from './helpers/edge-client.js';
import { sleep, type TestEngine } from './helpers/engine.js';
import { publishTestTunnel, type PublishedTunnel } from './helpers/published-tunnel.js';
import { digestBody, patternBytes, sha256 } from './helpers/upstream-server.js';

/**
 * timeouts.http_request_body_idle_seconds (2 s here): a request body that stops arriving gets 408 and
 * its connection or stream closed, the upstream exchange abandoned; a body that trickles without a
 * long pause, or one the edge itself holds back because the upstream reads slowly, is relayed whole.
 */
const HOST = 'uploads.t.localhost';
const BODY_IDLE_SECONDS = 2;
let t: TestEngine;
let port: number;
let tunnel: PublishedTunnel;
/** Requests whose body the upstream read to its end, by path. */
const completed: string[] = [];

/** `/stall?ms=M` reads nothing of the body for M ms (the edge must hold the client back meanwhile). */
function stallingUpstream(req: http.IncomingMessage, res: http.ServerResponse): void {
  const stall = Number(new URL(req.url!, 'http://upstream').searchParams.get('ms') ?? 0);
  req.pause();
  setTimeout(() => {
    digestBody(req, (length, sha256) => {
      completed.push(req.url!);
      res.end(JSON.stringify({ length, sha256 }));
    });
    req.resume();
  }, stall);
}

before(async () => {
  tunnel = await publishTestTunnel('uploads', {
    engine: { dataplane: { workers: 1 }, timeouts: { http_request_body_idle_seconds: BODY_IDLE_SECONDS } },
    handler: stallingUpstream,
  });
  ({ t, port } = tunnel);
});
after(() => tunnel.stop());

describe('HTTP/1.1', () => {
  test('a body that stops arriving: 408 request_timeout at the bound, the connection closed, the upstream never sees its end', async () => {
    const socket = await rawEdgeConnection(port, t.ca, HOST);
    const reader = new WireReader(socket);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const started = Date.now();
    socket.write(`POST /silent HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(100)}`);
    const reply = await reader.response(false);
    const seconds = (Date.now() - started) / 1000;
    assert.equal(reply.status, 408);
    assert.equal(reply.headers.get('x-rivulet-error'), 'request_timeout');
    assert.equal(reply.headers.get('connection'), 'close');
    assert.ok(seconds >= BODY_IDLE_SECONDS - 0.1 && seconds < BODY_IDLE_SECONDS + 2, `answered after ${seconds} s`);
    await closed;
    assert.ok(!completed.includes('/silent'));
  });

  test('a body trickling for longer than the bound, never silent that long, is relayed whole', async () => {
    const socket = await rawEdgeConnection(port, t.ca, HOST);
    const reader = new WireReader(socket);
    const body = patternBytes(8);
    socket.write(`POST /trickle HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${body.length}\r\n\r\n`);
    for (let at = 0; at < body.length; at++) {
      socket.write(body.subarray(at, at + 1));
      await sleep(500); // 4 s in all, twice the bound
    }
    const reply = await reader.response(false);
    assert.equal(reply.status, 200, reply.body.toString());
    assert.deepEqual(JSON.parse(reply.body.toString()), { length: body.length, sha256: sha256(body) });
    socket.destroy();
  });

  test('a client held back by an upstream that reads nothing for twice the bound is not timed out', async () => {
    const socket = await rawEdgeConnection(port, t.ca, HOST);
    const reader = new WireReader(socket);
    const body = patternBytes(16 * 1024 * 1024);
    socket.write(`POST /stall?ms=${BODY_IDLE_SECONDS * 2000} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body);
    const reply = await reader.response(false);
    assert.equal(reply.status, 200, reply.body.toString());
    assert.deepEqual(JSON.parse(reply.body.toString()), { length: body.length, sha256: sha256(body) });
    socket.destroy();
  });
});

describe('HTTP/2', () => {
  test('a stream whose body stops arriving: 408 at the bound; the session serves on', async () => {
    const session = edgeSession(port, t.ca, HOST);
    try {
      const started = Date.now();
      const stream = session.request({ ':method': 'POST', ':path': '/silent-h2', ':authority': HOST, 'content-length': '1000' });
      stream.write('x'.repeat(100));
      const [status, reason] = await new Promise<[number, string]>((resolve, reject) => {
        stream.once('response', (headers) => resolve([Number(headers[':status']), String(headers['x-rivulet-error'])]));
        stream.once('error', reject);
      });
      const seconds = (Date.now() - started) / 1000;
      assert.equal(status, 408);
      assert.equal(reason, 'request_timeout');
      assert.ok(seconds >= BODY_IDLE_SECONDS - 0.1 && seconds < BODY_IDLE_SECONDS + 2, `answered after ${seconds} s`);
      assert.ok(!completed.includes('/silent-h2'));

      const body = patternBytes(64 * 1024);
      const next = session.request({ ':method': 'POST', ':path': '/after', ':authority': HOST });
      next.end(body);
      const chunks: Buffer[] = [];
      next.on('data', (chunk: Buffer) => chunks.push(chunk));
      await new Promise((resolve) => next.once('end', resolve));
      assert.deepEqual(JSON.parse(Buffer.concat(chunks).toString()), { length: body.length, sha256: sha256(body) });
    } finally {
      session.close();
    }
  });
});
