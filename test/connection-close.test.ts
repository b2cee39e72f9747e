import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { serveForward } from './helpers/echo-agent.js';
import { edgeRequest, edgeSession, h2Request } from './helpers/edge-client.js';
import { startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { mintToken, openHttpTunnel, type RawConnection } from './helpers/rstrm-agent.js';
import { listenUpstream, upstreamHandler } from './helpers/upstream-server.js';

/**
 * A client that closes its side (a browser leaving, with or without TLS close_notify) frees its
 * connection at once rather than sitting in CLOSE-WAIT until an idle bound; and shutdown does not wait
 * for idle keep-alive connections or connected agents.
 */
const HOST = 'closing.t.localhost';
let t: TestEngine;
let port: number;
let control: RawConnection;
let upstream: http.Server;
let token: string;

before(async () => {
  t = await startTestEngine({ dataplane: { workers: 1 } });
  port = t.engine.publicPort;
  upstream = http.createServer(upstreamHandler([]));
  const upstreamPort = await listenUpstream(upstream);
  control = await openHttpTunnel(port, t.ca, 'closing');
  serveForward(control, port, t.ca, () => upstreamPort);
  token = await mintToken();
  await edgeRequest(port, t.ca, HOST, { path: '/echo', agent: new https.Agent() }); // the tunnel's stream is pooled
});
after(async () => {
  control.close();
  upstream.closeAllConnections();
  upstream.close();
  await t.stop();
});

const openConnections = (): number => t.engine.counters.totals().connections_open;

/** One request on a fresh TLS connection, answered and left open; `closeNotify` false: only TCP's FIN. */
async function answeredConnection(servername: string): Promise<{ tls: tls.TLSSocket; tcp: net.Socket }> {
  const tcp = net.connect({ host: '127.0.0.1', port });
  const session = tls.connect({ socket: tcp, servername, ca: t.ca, ALPNProtocols: ['http/1.1'] });
  session.on('error', () => {});
  await new Promise((resolve) => session.once('secureConnect', resolve));
  const path = servername === 'localhost' ? '/api/tunnels' : '/echo';
  session.write(`GET ${path} HTTP/1.1\r\nHost: ${servername}\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  await new Promise((resolve) => session.once('data', resolve));
  return { tls: session, tcp };
}

for (const [surface, servername] of [['published HTTP/1.1', HOST], ['Engine API', 'localhost']] as const) {
  for (const closeNotify of [true, false]) {
    test(`${surface}: a client's ${closeNotify ? 'close_notify and FIN' : 'bare FIN'} frees the connection within a second`, async () => {
      const { tls: session, tcp } = await answeredConnection(servername);
      const withIt = openConnections();
      if (closeNotify) session.end();
      else tcp.end();
      await waitFor(() => openConnections() <= withIt - 1, 1000);
      session.destroy();
    });
  }
}

test('h2: a client that closes its session frees the connection within a second', async () => {
  const session = edgeSession(port, t.ca, HOST);
  assert.equal((await h2Request(session, HOST, { path: '/echo' })).status, 200);
  const withIt = openConnections();
  session.close();
  await waitFor(() => openConnections() <= withIt - 1, 1000);
});

test('shutdown with idle keep-alive connections (HTTP/1.1 and h2) and a connected agent takes well under a second', async () => {
  const own = await startTestEngine({ dataplane: { workers: 2 } });
  const ownPort = own.engine.publicPort;
  const ownUpstream = http.createServer(upstreamHandler([]));
  const ownUpstreamPort = await listenUpstream(ownUpstream);
  const agent = await openHttpTunnel(ownPort, own.ca, 'closing');
  serveForward(agent, ownPort, own.ca, () => ownUpstreamPort);
  const keepAlive = new https.Agent({ keepAlive: true });
  const session = edgeSession(ownPort, own.ca, HOST);
  try {
    assert.equal((await edgeRequest(ownPort, own.ca, HOST, { path: '/echo', agent: keepAlive })).status, 200);
    assert.equal((await h2Request(session, HOST, { path: '/echo' })).status, 200);
    const started = Date.now();
    await own.engine.shutdown(10_000);
    const took = Date.now() - started;
    assert.ok(took < 1000, `shutdown took ${took} ms`);
  } finally {
    keepAlive.destroy();
    session.destroy();
    agent.close();
    ownUpstream.closeAllConnections();
    ownUpstream.close();
  }
});
