import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { captureClientHello } from './helpers/client-hello.js';
import { handshake, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';

let t: TestEngine;
let port: number;
before(async () => {
  t = await startTestEngine();
  port = t.engine.publicPort;
});
after(() => t.stop());

/** How the counter totals moved through `action`, once the workers recorded the end of its connections. */
async function totalsAfter(action: () => Promise<unknown>) {
  const before = t.engine.counters.totals();
  await action();
  await waitFor(() => t.engine.counters.totals().connections_open === before.connections_open);
  const now = t.engine.counters.totals();
  return Object.fromEntries(Object.keys(now).map((key) => [key, now[key as keyof typeof now] - before[key as keyof typeof before]]));
}

describe('dispatch by SNI and ALPN', () => {
  test('base host + rstrm/1 negotiates rstrm/1 (agent class)', async () => {
    const delta = await totalsAfter(async () => {
      const { socket, alpn } = await handshake(port, { servername: 'localhost', ALPNProtocols: ['rstrm/1'], ca: t.ca });
      assert.equal(alpn, 'rstrm/1');
      socket.destroy();
    });
    assert.equal(delta.accepted_agent, 1);
  });

  test('base host + http/1.1 reaches the Engine API server in the main thread', async () => {
    const response = await new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, servername: 'localhost', path: '/api/nothing-here', ca: t.ca }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
        })
        .on('error', reject);
    });
    assert.equal(response.status, 404);
    assert.equal(response.type, 'application/json; charset=utf-8');
    assert.equal(JSON.parse(response.body).error, 'not_found');
  });

  test('no SNI and no ALPN is the Engine API class over HTTP/1.1', async () => {
    const delta = await totalsAfter(async () => {
      const { socket, alpn } = await handshake(port, { ca: t.ca, servername: '', checkServerIdentity: () => undefined });
      assert.equal(alpn, false);
      socket.destroy();
    });
    assert.equal(delta.accepted_api, 1);
  });

  test('an h2-only offer on the base host fails the handshake (alpn)', async () => {
    const delta = await totalsAfter(async () => {
      await assert.rejects(handshake(port, { servername: 'localhost', ALPNProtocols: ['h2'], ca: t.ca }), /no application protocol/i);
    });
    assert.equal(delta.handshake_failures_alpn, 1);
  });

  test('a tunnel name negotiates h2 > http/1.1 and never rstrm/1', async () => {
    const delta = await totalsAfter(async () => {
      const h2 = await handshake(port, { servername: 'abc.t.localhost', ALPNProtocols: ['http/1.1', 'h2'], ca: t.ca });
      assert.equal(h2.alpn, 'h2');
      h2.socket.destroy();
      const h1 = await handshake(port, { servername: 'abc.t.localhost', ALPNProtocols: ['http/1.1'], ca: t.ca });
      assert.equal(h1.alpn, 'http/1.1');
      h1.socket.destroy();
      await assert.rejects(handshake(port, { servername: 'abc.t.localhost', ALPNProtocols: ['rstrm/1'], ca: t.ca }));
    });
    assert.equal(delta.accepted_edge, 2);
    assert.equal(delta.handshake_failures_alpn, 1);
  });

  for (const name of ['other.example.com', 'a.b.t.localhost', 'x.localhost', 't.localhost']) {
    test(`unknown server name ${name} is refused before any TLS reply`, async () => {
      const delta = await totalsAfter(async () => {
        const received = await new Promise<number>((resolve) => {
          let bytes = 0;
          const socket = net.connect(port, '127.0.0.1', async () => {
            socket.write(await captureClientHello({ servername: name, ALPNProtocols: ['http/1.1'] }));
          });
          socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
          socket.on('error', () => {});
          socket.on('close', () => resolve(bytes));
        });
        assert.equal(received, 0, 'not a byte of ServerHello');
      });
      assert.equal(delta.handshake_failures_unknown_sni, 1);
      assert.equal(delta.accepted_api! + delta.accepted_edge! + delta.accepted_agent!, 0);
    });
  }

  test('non-TLS bytes are closed and counted as a protocol failure', async () => {
    const delta = await totalsAfter(
      () =>
        new Promise<void>((resolve) => {
          const socket = net.connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
          socket.on('error', () => {});
          socket.on('close', () => resolve());
        }),
    );
    assert.equal(delta.handshake_failures_protocol, 1);
  });
});

test('a client that ends its side mid-handshake is closed at once (not after the 10 s handshake wait), a failed handshake', async () => {
  const hello = await captureClientHello({ servername: 'localhost', ALPNProtocols: ['rstrm/1'] });
  // The end in the same segment as the ClientHello, or after the engine's ServerHello.
  for (const endWithHello of [true, false]) {
    let elapsed = 0;
    const delta = await totalsAfter(
      () =>
        new Promise<void>((resolve) => {
          const started = Date.now();
          const socket = net.connect(port, '127.0.0.1', () => (endWithHello ? socket.end(hello) : socket.write(hello)));
          socket.on('error', () => {});
          socket.once('data', () => socket.end());
          socket.resume();
          socket.on('close', () => resolve(void (elapsed = Date.now() - started)));
        }),
    );
    assert.ok(elapsed < 1000, `closed after ${elapsed} ms`);
    assert.equal(delta.handshake_failures_other, 1);
    assert.equal(delta.connections_open, 0);
  }
});

test('200 TLS connections are spread over more than one worker thread', async () => {
  const before = [0, 1].map((worker) => t.engine.counters.row(worker).accepted_api);
  for (let batch = 0; batch < 4; batch++) {
    const sessions = await Promise.all(
      Array.from({ length: 50 }, () => handshake(port, { servername: 'localhost', ALPNProtocols: ['http/1.1'], ca: t.ca })),
    );
    for (const session of sessions) session.socket.destroy();
  }
  const acceptedSince = (worker: number): number => t.engine.counters.row(worker).accepted_api - before[worker]!;
  await waitFor(() => acceptedSince(0) + acceptedSince(1) >= 200);
  const perWorker = [0, 1].map(acceptedSince);
  process.stdout.write(`# accept distribution over 2 workers: ${perWorker.join(' / ')}\n`);
  assert.equal(perWorker[0]! + perWorker[1]!, 200);
  assert.ok(perWorker.every((count) => count > 0), `every worker accepted some: ${perWorker.join(' / ')}`);
});
