import http from 'node:http';
import type { MessageOf, TunnelProperties } from '../../src/protocol/messages.js';
import { serveForward } from './echo-agent.js';
import { startTestEngine, type TestEngine } from './engine.js';
import { openHttpTunnel, type RawConnection } from './rstrm-agent.js';
import { listenUpstream, upstreamHandler, type SeenRequest } from './upstream-server.js';

/** An engine with one published HTTP tunnel, served by a forwarding test agent and a real upstream. */
export interface PublishedTunnel {
  t: TestEngine;
  /** The engine's public (TLS) port. */
  port: number;
  /** `<label>.t.localhost`. */
  host: string;
  control: RawConnection;
  upstream: http.Server;
  /** What the upstream saw, when it runs the standard test handler. */
  seen: SeenRequest[];
  stop(): Promise<void>;
}

export async function publishTestTunnel(
  label: string,
  options: {
    engine?: Record<string, Record<string, unknown>>;
    tunnel?: Partial<TunnelProperties>;
    /** The upstream's handler (default: the standard test handler, recording into `seen`). */
    handler?: http.RequestListener;
    /** Which engine port the agent opens each proxy connection on (default: the public port). */
    proxyPort?: (request: MessageOf<'proxy_conn_req'>) => number;
  } = {},
): Promise<PublishedTunnel> {
  const t = await startTestEngine(options.engine);
  const port = t.engine.publicPort;
  const seen: SeenRequest[] = [];
  const upstream = http.createServer(options.handler ?? upstreamHandler(seen));
  const upstreamPort = await listenUpstream(upstream);
  const control = await openHttpTunnel(port, t.ca, label, options.tunnel);
  serveForward(control, port, t.ca, () => upstreamPort, options.proxyPort);
  return {
    t,
    port,
    host: `${label}.t.localhost`,
    control,
    upstream,
    seen,
    async stop() {
      control.close();
      upstream.closeAllConnections();
      upstream.close();
      await t.stop();
    },
  };
}
