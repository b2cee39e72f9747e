import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { edgeRequest } from './helpers/edge-client.js';
import { sleep, waitFor, type TestEngine } from './helpers/engine.js';
import { publishTestTunnel, type PublishedTunnel } from './helpers/published-tunnel.js';

/**
 * Slow and silent clients on the TLS listener (slowloris): connections that trickle a request head one
 * byte a second, and connections that never send a ClientHello, do not keep a normal request from being
 * served within a second, and each is closed at its bound (the request-head timeout, shortened here to
 * 3 s; the ClientHello timeout of 10 s).
 */
const HOST = 'steady.t.localhost';
const HEAD_SECONDS = 3;
const CLIENT_HELLO_SECONDS = 10;
const TRICKLING = 1000;
const SILENT = 2000;
let t: TestEngine;
let port: number;
let tunnel: PublishedTunnel;

before(async () => {
  tunnel = await publishTestTunnel('steady', { engine: { dataplane: { workers: 2 }, timeouts: { http_request_head_seconds: HEAD_SECONDS } } });
  ({ t, port } = tunnel);
});
after(() => tunnel.stop());

interface Watched {
  socket: net.Socket;
  /** When the bound started counting: connect (silent) or the first head byte (trickling). */
  since: number;
  closedAt: number | undefined;
}

function watch(socket: net.Socket, since: number): Watched {
  const watched: Watched = { socket, since, closedAt: undefined };
  socket.on('error', () => {});
  socket.once('close', () => (watched.closedAt = Date.now()));
  return watched;
}

function tcpConnect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function tlsConnect(): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: HOST, ca: t.ca, ALPNProtocols: ['http/1.1'] });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

test(`${TRICKLING} connections trickling a head and ${SILENT} silent ones: normal requests served within 1 s, each slow one closed at its bound`, async () => {
  const silent: Watched[] = [];
  // In batches, so the listener's accept backlog never drops a SYN (a retried SYN would start the clock late).
  for (let batch = 0; batch < SILENT / 200; batch++) {
    const sockets = await Promise.all(Array.from({ length: 200 }, tcpConnect));
    for (const socket of sockets) silent.push(watch(socket, Date.now()));
  }
  const trickling: Array<Watched & { sent: number }> = [];
  const head = Buffer.from(`GET /echo HTTP/1.1\r\nHost: ${HOST}\r\nX-Slow: ${'s'.repeat(200)}\r\n\r\n`);
  for (let batch = 0; batch < TRICKLING / 100; batch++) {
    const sockets = await Promise.all(Array.from({ length: 100 }, tlsConnect));
    for (const socket of sockets) {
      socket.write(head.subarray(0, 1));
      trickling.push(Object.assign(watch(socket, Date.now()), { sent: 1 }));
    }
  }
  const trickle = setInterval(() => {
    for (const slow of trickling) {
      if (slow.closedAt === undefined && slow.sent < head.length) slow.socket.write(head.subarray(slow.sent, ++slow.sent));
    }
  }, 1000);
  try {
    const latencies: number[] = [];
    for (let request = 0; request < 5; request++) {
      const started = Date.now();
      const reply = await edgeRequest(port, t.ca, HOST, { path: '/echo', agent: new https.Agent() });
      latencies.push(Date.now() - started);
      assert.equal(reply.status, 200, reply.body.toString());
      await sleep(400);
    }
    assert.ok(Math.max(...latencies) < 1000, `normal requests took ${latencies.join(', ')} ms`);

    await waitFor(() => trickling.every((slow) => slow.closedAt !== undefined), (HEAD_SECONDS + 5) * 1000).catch((error: Error) => {
      throw new Error(`${error.message}: ${trickling.filter((slow) => slow.closedAt === undefined).length} trickling connections still open`);
    });
    const headAges = trickling.map((slow) => (slow.closedAt! - slow.since) / 1000);
    assert.ok(Math.min(...headAges) >= HEAD_SECONDS - 0.1, `a trickling head was closed after ${Math.min(...headAges)} s`);
    assert.ok(Math.max(...headAges) < HEAD_SECONDS + 3, `a trickling head lived ${Math.max(...headAges)} s`);

    await waitFor(() => silent.every((quiet) => quiet.closedAt !== undefined), (CLIENT_HELLO_SECONDS + 5) * 1000).catch((error: Error) => {
      throw new Error(`${error.message}: ${silent.filter((quiet) => quiet.closedAt === undefined).length} silent connections still open`);
    });
    const helloAges = silent.map((quiet) => (quiet.closedAt! - quiet.since) / 1000);
    assert.ok(Math.min(...helloAges) >= CLIENT_HELLO_SECONDS - 0.1, `a silent connection was closed after ${Math.min(...helloAges)} s`);
    assert.ok(Math.max(...helloAges) < CLIENT_HELLO_SECONDS + 3, `a silent connection lived ${Math.max(...helloAges)} s`);
  } finally {
    clearInterval(trickle);
    for (const connection of [...silent, ...trickling]) connection.socket.destroy();
  }
});
