import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { edgeSession, rawEdgeConnection, WireReader } from './helpers/edge-client.js';
import { sleep, type TestEngine } from './helpers/engine.js';
import { publishTestTunnel, type PublishedTunnel } from './helpers/published-tunnel.js';
import type { SeenRequest } from './helpers/upstream-server.js';

/**
 * Request smuggling and malformed heads at the HTTP edge: each request is refused with the right
 * status before any byte of it reaches the upstream, or reaches it as exactly what the edge parsed.
 * The upstream is Node's HTTP server with a tap on its sockets, so the test sees the raw bytes too.
 */
const HOST = 'strict.t.localhost';
let t: TestEngine;
let port: number;
let tunnel: PublishedTunnel;
let seen: SeenRequest[];
const received: Buffer[] = [];
const receivedBytes = (): number => received.reduce((total, chunk) => total + chunk.length, 0);

before(async () => {
  tunnel = await publishTestTunnel('strict', { engine: { dataplane: { workers: 1 } } });
  ({ t, port, seen } = tunnel);
  tunnel.upstream.on('connection', (socket) => socket.on('data', (chunk: Buffer) => received.push(chunk)));
});
after(() => tunnel.stop());

interface WireAnswer {
  status: number;
  headers: Map<string, string>;
  body: string;
  /** What reached the upstream meanwhile. */
  upstreamBytes: number;
}

/** Sends `wire` as it is on a new connection and reads one answer. */
async function send(wire: string | Buffer): Promise<WireAnswer> {
  const before = receivedBytes();
  const socket = await rawEdgeConnection(port, t.ca, HOST);
  try {
    const reader = new WireReader(socket);
    socket.write(wire);
    const answer = await reader.response(false);
    await sleep(50); // anything the edge forwarded would have arrived by now
    return { status: answer.status, headers: answer.headers, body: answer.body.toString(), upstreamBytes: receivedBytes() - before };
  } finally {
    socket.destroy();
  }
}

/** Asserts the edge answered `status` with its own reason token and forwarded nothing. */
function refused(answer: WireAnswer, status: number, reason: string): void {
  assert.equal(answer.status, status, answer.body);
  assert.equal(answer.headers.get('x-rivulet-error'), reason);
  assert.equal(answer.upstreamBytes, 0, 'nothing reached the upstream');
}

const head = (lines: string[]): string => `${lines.join('\r\n')}\r\n\r\n`;

describe('HTTP/1.1 framing that two parsers could read differently is refused', () => {
  const cases: Array<[string, string]> = [
    ['Content-Length with Transfer-Encoding', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5', 'Transfer-Encoding: chunked']) + '0\r\n\r\n'],
    ['two differing Content-Length fields', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5', 'Content-Length: 6']) + 'hello!'],
    ['a Content-Length list with differing values', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5, 6']) + 'hello!'],
    ['a Content-Length that is not digits', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Content-Length: +5']) + 'hello'],
    ['Transfer-Encoding: xchunked', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: xchunked']) + '0\r\n\r\n'],
    ['Transfer-Encoding: chunked, identity', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked, identity']) + '0\r\n\r\n'],
    ['Transfer-Encoding in two fields', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked']) + '0\r\n\r\n'],
    ['Transfer-Encoding with a space before the colon', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding : chunked']) + '0\r\n\r\n'],
    ['Transfer-Encoding on HTTP/1.0', head(['POST /echo HTTP/1.0', `Host: ${HOST}`, 'Transfer-Encoding: chunked']) + '0\r\n\r\n'],
    ['a field line folded onto the next (obs-fold)', head(['GET /echo HTTP/1.1', `Host: ${HOST}`, 'X-Folded: a', ' b'])],
    ['lines ending in a bare LF', `GET /echo HTTP/1.1\nHost: ${HOST}\n\n`],
    ['a field value with NUL', head(['GET /echo HTTP/1.1', `Host: ${HOST}`, 'X-Bad: a\0b'])],
    ['a field value with a bare CR', head(['GET /echo HTTP/1.1', `Host: ${HOST}`, 'X-Bad: a\rb'])],
    ['two Host fields', head(['GET /echo HTTP/1.1', `Host: ${HOST}`, `Host: ${HOST}`])],
    ['a Host with userinfo', head(['GET /echo HTTP/1.1', `Host: user@${HOST}`])],
    ['HTTP/1.1 with no Host', head(['GET /echo HTTP/1.1'])],
    ['a target that is not origin-form', head(['GET echo HTTP/1.1', `Host: ${HOST}`])],
    ['an asterisk-form target on GET', head(['GET * HTTP/1.1', `Host: ${HOST}`])],
    ['a malformed chunk size', head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked']) + 'zz\r\nhello\r\n0\r\n\r\n'],
  ];
  for (const [name, wire] of cases) {
    test(`${name} → 400`, async () => {
      const answer = await send(wire);
      assert.equal(answer.status, 400, answer.body);
      assert.equal(answer.headers.get('x-rivulet-error'), 'bad_request');
      // A chunked body the edge began to relay may have reached the upstream in part, never a request
      // of its own: everything the upstream parsed is one request at most, the one the edge framed.
      if (!name.startsWith('a malformed chunk size')) assert.equal(answer.upstreamBytes, 0, 'nothing reached the upstream');
    });
  }
});

describe('what reaches the upstream is what the edge parsed', () => {
  test('the same Content-Length twice is one Content-Length upstream', async () => {
    const count = seen.length;
    const answer = await send(head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5', 'Content-Length: 5']) + 'hello');
    assert.equal(answer.status, 200, answer.body);
    assert.equal(JSON.parse(answer.body).length, 5);
    assert.equal(seen.length, count + 1);
    assert.equal(seen.at(-1)!.headers['content-length'], '5');
  });

  test('Transfer-Encoding with a tab before its value is chunked, and the body arrives whole', async () => {
    const answer = await send(head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding:\tchunked']) + '5\r\nhello\r\n0\r\n\r\n');
    assert.equal(answer.status, 200, answer.body);
    assert.equal(JSON.parse(answer.body).length, 5);
  });

  test('an absolute-form target naming the tunnel goes upstream in origin-form, with its authority as Host', async () => {
    const answer = await send(head([`GET https://${HOST}/echo?q=1 HTTP/1.1`, 'Host: other.t.localhost']));
    assert.equal(answer.status, 200, answer.body);
    assert.equal(seen.at(-1)!.url, '/echo?q=1');
    assert.equal(seen.at(-1)!.headers.host, HOST);
    assert.equal(seen.at(-1)!.headers['x-forwarded-host'], HOST);
  });

  test('an absolute-form target naming another host → 421, whatever Host says', async () => {
    refused(await send(head(['GET http://evil.example.com/abs HTTP/1.1', `Host: ${HOST}`])), 421, 'misdirected');
  });

  test('OPTIONS * is forwarded as it is', async () => {
    const answer = await send(head(['OPTIONS * HTTP/1.1', `Host: ${HOST}`]));
    assert.equal(answer.status, 200, answer.body);
    assert.equal(seen.at(-1)!.method, 'OPTIONS');
    assert.equal(seen.at(-1)!.url, '*');
  });

  for (const [framing, body] of [
    ['Content-Length: 5', 'hello'],
    ['Transfer-Encoding: chunked', '5\r\nhello\r\n0\r\n\r\n'],
  ] as const) {
    test(`an Upgrade other than websocket with a body (${framing.split(':')[0]}) is a plain request with its body, no Upgrade`, async () => {
      const answer = await send(head(['POST /echo HTTP/1.1', `Host: ${HOST}`, 'Connection: Upgrade', 'Upgrade: h2c', framing]) + body);
      assert.equal(answer.status, 200, answer.body);
      assert.equal(JSON.parse(answer.body).length, 5);
      assert.equal(seen.at(-1)!.headers.upgrade, undefined);
    });
  }
});

describe('heads past the limit', () => {
  test('a 1 MiB URL → 414 after the first 16 KiB, nothing forwarded', async () => {
    refused(await send(`GET /${'a'.repeat(1024 * 1024)} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`), 414, 'uri_too_long');
  });

  test('100,000 header fields → 431, nothing forwarded', async () => {
    const fields = Array.from({ length: 100_000 }, (_, index) => `x-${index}: ${index}`);
    refused(await send(head(['GET /echo HTTP/1.1', `Host: ${HOST}`, ...fields])), 431, 'headers_too_large');
  });
});

describe('HTTP/2 requests that cannot become an HTTP/1.1 request line', () => {
  const h2Answer = (session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status: number; reason: string | undefined }> =>
    new Promise((resolve, reject) => {
      const stream = session.request(headers, { endStream: true });
      stream.on('response', (response) => {
        stream.resume();
        stream.on('end', () => resolve({ status: Number(response[':status']), reason: response['x-rivulet-error'] as string | undefined }));
      });
      stream.on('error', reject);
    });

  test('a :path with a byte outside visible ASCII → 400, nothing forwarded', async () => {
    const session = edgeSession(port, t.ca, HOST);
    try {
      const before = receivedBytes();
      const answer = await h2Answer(session, { ':path': '/caf\u00e9', ':authority': HOST });
      assert.deepEqual(answer, { status: 400, reason: 'bad_request' });
      await sleep(50);
      assert.equal(receivedBytes(), before);
    } finally {
      session.close();
    }
  });

  test('a Host that differs from :authority → 400, nothing forwarded', async () => {
    const session = edgeSession(port, t.ca, HOST);
    try {
      const before = receivedBytes();
      const answer = await h2Answer(session, { ':path': '/echo', ':authority': HOST, host: 'other.t.localhost' });
      assert.deepEqual(answer, { status: 400, reason: 'bad_request' });
      await sleep(50);
      assert.equal(receivedBytes(), before);
    } finally {
      session.close();
    }
  });
});
