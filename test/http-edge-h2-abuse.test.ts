import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { eachProxyConnReq, openProxyConnection } from './helpers/echo-agent.js';
import { edgeSession, h2Request } from './helpers/edge-client.js';
import { sleep, startTestEngine, type TestEngine } from './helpers/engine.js';
import { openHttpTunnel, type RawConnection } from './helpers/rstrm-agent.js';
import { listenUpstream, upstreamHandler, type SeenRequest } from './helpers/upstream-server.js';

/**
 * h2 clients that abuse the protocol against the HTTP edge: what each costs the agent and the upstream.
 */
const HOST = 'resets.t.localhost';
/** How long the test agent takes to answer a ProxyConnReq, as a remote agent would. */
const AGENT_DELAY_MS = 300;
let t: TestEngine;
let port: number;
let control: RawConnection;
let upstream: http.Server;
let proxyConnReqs = 0;

before(async () => {
  t = await startTestEngine({ dataplane: { workers: 1 } });
  port = t.engine.publicPort;
  const seen: SeenRequest[] = [];
  upstream = http.createServer(upstreamHandler(seen));
  const upstreamPort = await listenUpstream(upstream);
  control = await openHttpTunnel(port, t.ca, 'resets');
  eachProxyConnReq(control, (request) => {
    proxyConnReqs++;
    setTimeout(() => {
      const target = net.connect({ host: '127.0.0.1', port: upstreamPort });
      target.on('error', () => {});
      void openProxyConnection(control, request, port, t.ca, { zeroRtt: true, order: 'js' })
        .then(({ socket }) => {
          socket.pipe(target);
          target.pipe(socket);
          socket.once('close', () => target.destroy());
          target.once('close', () => socket.destroy());
        })
        .catch(() => target.destroy());
    }, AGENT_DELAY_MS);
  });
});
after(async () => {
  control.close();
  upstream.closeAllConnections();
  upstream.close();
  await t.stop();
});

test('rapid reset: 500 requests, each cancelled once the edge has it, ten live at a time, cost the agent at most one stream in ten', async () => {
  const session = edgeSession(port, t.ca, HOST);
  session.on('error', () => {});
  try {
    const before = proxyConnReqs;
    for (let request = 0; request < 500; request++) {
      const stream = session.request({ ':method': 'GET', ':path': `/echo?reset=${request}`, ':authority': HOST });
      stream.on('error', () => {});
      setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 5);
      if (request % 10 === 9) await sleep(20); // at most ten of them live at a time
    }
    await sleep(AGENT_DELAY_MS * 3);
    const opened = proxyConnReqs - before;
    // Each stream that arrives is taken by a live request and dies with it when that request is reset
    // (an HTTP/1.1 exchange cut in the middle cannot be reused): a few per agent round trip.
    assert.ok(opened <= 50, `${opened} streams asked of the agent for 500 cancelled requests`);
    // The tunnel still serves, on the streams those requests left behind.
    const reply = await h2Request(session, HOST, { path: '/echo' });
    assert.equal(reply.status, 200, reply.body.toString());
  } finally {
    session.close();
  }
});
