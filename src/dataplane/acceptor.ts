import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../log.js';
import type { ConnectionCensus, CounterRow, DispatchKind, HandshakeFailureReason } from '../threads/counters.js';
import type { Dataplane } from './dataplane.js';
import { ALPN_RSTRM, classifyConnection } from './dispatch.js';
import { peekClientHello } from './peek.js';
import { serveRstrm } from './rstrm-session.js';
import { spliceToApi } from './api-connection.js';
import { handshakeFailureReason } from './handshake-failure.js';
import { HttpEdge } from './http/edge-server.js';
import { serveTlsTunnel, tlsPolicyOf } from './tls-tunnel.js';
import type { TlsPolicy, WorkerCertificates } from './worker-certificates.js';
import type { TunnelRoute } from '../threads/messages.js';
import type { RouteGroup } from './route-group.js';

/** The ClientHello must arrive within 10 s; the rest of the handshake gets as long (docs/bounds.md). */
const CLIENT_HELLO_TIMEOUT_MS = 10_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Past max_connections a connection must show an agent's ClientHello this fast to be admitted. */
const AGENTS_ONLY_CLIENT_HELLO_TIMEOUT_MS = 1_000;

type Admission = 'any' | 'agents-only' | 'none';

/** Connections past `max_connections` kept for agents (control channels, proxy connections, dials). */
export function agentReserve(limit: number): number {
  return Math.max(64, Math.ceil(limit / 10));
}

export interface AcceptorOptions {
  engineHost: string;
  apiSocketPath: string;
  counters: CounterRow;
  /** Every worker's open connections, for `dataplane.max_connections`. */
  census: ConnectionCensus;
  certificates: WorkerCertificates;
  ticketKeys: Buffer;
  dataplane: Dataplane;
  log: Logger;
}

/**
 * Everything a worker does with a connection from the TLS listener: peek the ClientHello, dispatch
 * by SNI and ALPN, terminate TLS with the current certificate, hand the session to its handler; and
 * on shutdown, refuse new work and drain the rest.
 */
export class ConnectionAcceptor {
  private readonly open = new Set<net.Socket>();
  private draining = false;
  private drained: (() => void) | undefined;
  private readonly httpEdge: HttpEdge;
  private apiSocketPath: string;

  constructor(private readonly options: AcceptorOptions) {
    this.apiSocketPath = options.apiSocketPath;
    this.httpEdge = new HttpEdge({
      dataplane: options.dataplane,
      engineHost: options.engineHost,
      certificates: options.certificates,
      ticketKeys: options.ticketKeys,
      counters: options.counters,
      handshakeFailed: (reason) => options.counters.add(`handshake_failures_${reason}`),
    });
  }

  readonly accept = (socket: net.Socket): void => {
    const admission = this.admission();
    if (this.track(socket, admission)) void this.dispatch(socket, admission === 'agents-only');
  };

  /** A connection on this worker's affinity port: TLS with `rstrm/1`, proxy connections only. */
  readonly acceptAffinity = (socket: net.Socket): void => {
    if (this.track(socket, this.admission('affinity'))) void this.terminate(socket, 'agent', [ALPN_RSTRM], { proxyOnly: true });
  };

  /**
   * What `dataplane.max_connections` lets a new connection do. Below the limit, anything. Past it,
   * the agents' connections still get a reserve: their proxy connections carry requests the engine has
   * already accepted, so refusing them would fail the held connections too. A connection in that band
   * is admitted only once its ClientHello shows an agent; past the reserve, nothing is. Silent
   * connections can fill that band for a second at a time, so the affinity ports, which only agents
   * dial, have a second reserve of their own beyond it.
   */
  private admission(listener: 'public' | 'affinity' = 'public'): Admission {
    const limit = this.options.dataplane.settings.maxConnections;
    if (limit === 0) return 'any';
    const open = this.options.census.openConnections();
    if (open < limit) return 'any';
    const reserve = agentReserve(limit);
    if (listener === 'affinity') return open < limit + 2 * reserve ? 'any' : 'none';
    return open < limit + reserve ? 'agents-only' : 'none';
  }

  /**
   * Counts and remembers a new connection; false (and closed) while draining or when the limit admits
   * nothing. Refusing at accept, before any TLS work, is what keeps an overloaded engine serving the
   * connections it holds: a refused connection costs one accept and one reset.
   */
  private track(socket: net.Socket, admission: Admission): boolean {
    const { counters } = this.options;
    if (this.draining) {
      socket.destroy();
      return false;
    }
    if (admission === 'none') {
      this.refuseOverLimit(socket);
      return false;
    }
    this.open.add(socket);
    counters.add('connections_open', 1);
    socket.on('error', () => {}); // every path below ends in destroy(); errors are counted there
    socket.once('close', () => {
      this.open.delete(socket);
      counters.add('connections_open', -1);
      counters.addPair('bytes_received', socket.bytesRead, 'bytes_sent', socket.bytesWritten);
      if (this.open.size === 0) this.drained?.();
    });
    return true;
  }

  private refuseOverLimit(socket: net.Socket): void {
    this.options.counters.add('connections_refused_max_connections');
    socket.resetAndDestroy();
  }

  apiSocketMoved(socketPath: string): void {
    this.apiSocketPath = socketPath;
  }

  /** Stops dispatching: connections still reading their ClientHello are dropped from now on. */
  stopDispatching(): void {
    this.draining = true;
  }

  /** Waits for open connections to finish until `deadline` (epoch ms); returns how many were cut. */
  async drain(deadline: number): Promise<number> {
    this.stopDispatching();
    this.httpEdge.drain();
    if (this.open.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const cut = this.open.size;
    for (const socket of this.open) socket.destroy();
    return cut;
  }

  private async dispatch(socket: net.Socket, agentsOnly: boolean): Promise<void> {
    const { engineHost } = this.options;
    const peek = await peekClientHello(socket, agentsOnly ? AGENTS_ONLY_CLIENT_HELLO_TIMEOUT_MS : CLIENT_HELLO_TIMEOUT_MS);
    if (peek.status !== 'complete') {
      if (agentsOnly && peek.status === 'timeout') this.refuseOverLimit(socket);
      else if (peek.status === 'timeout') this.failHandshake(socket, 'timeout');
      else if (peek.status === 'invalid') this.failHandshake(socket, 'protocol');
      else socket.destroy();
      return;
    }
    const route = classifyConnection(peek.hello, engineHost);
    if (agentsOnly && route.kind !== 'agent') {
      this.refuseOverLimit(socket);
      return;
    }
    if (route.kind === 'refuse') {
      this.options.log.debug({ sni: peek.hello.serverName }, 'refused connection for an unknown server name');
      this.failHandshake(socket, route.reason);
      return;
    }
    if (route.kind === 'edge') {
      const tunnels = this.options.dataplane.groupForHostname(peek.hello.serverName!);
      if (tunnels?.first?.properties.protocol === 'tls') await this.serveTlsTunnel(socket, tunnels, tunnels.first);
      else if (this.draining) socket.destroy();
      // h2 preferred when offered, else HTTP/1.1 on the edge's own connection handler.
      else if (peek.hello.alpnProtocols?.includes('h2')) this.httpEdge.acceptH2(socket);
      else await this.terminate(socket, 'edge', ['http/1.1'], { proxyOnly: false, then: (session) => this.httpEdge.acceptH1(session, socket) });
      return;
    }
    await this.terminate(socket, route.kind, route.alpn, { proxyOnly: false });
  }

  /**
   * TLS tunnels: trusted_ips before anything else, then passthrough or termination with the tunnel's
   * policy (`tunnel`: any of the group's members, which share them).
   */
  private async serveTlsTunnel(socket: net.Socket, tunnels: RouteGroup, tunnel: TunnelRoute): Promise<void> {
    const { dataplane, counters } = this.options;
    if (!dataplane.admits(tunnel, socket.remoteAddress)) {
      counters.add('access_denied_trusted_ips');
      dataplane.log.debug({ tunnel_id: tunnel.tunnel_id }, 'peer not in trusted_ips; closed before the handshake');
      socket.destroy();
      return;
    }
    if (tunnel.properties.tls_mode === 'passthrough') {
      counters.add('accepted_edge');
      await serveTlsTunnel(dataplane, tunnels, tunnel.properties, socket, socket.remoteAddress);
      return;
    }
    await this.terminate(socket, 'edge', tunnel.properties.tls_alpns, {
      proxyOnly: false,
      policy: tlsPolicyOf(tunnel),
      then: (session) => void serveTlsTunnel(dataplane, tunnels, tunnel.properties, session, socket.remoteAddress, session.alpnProtocol || false),
    });
  }

  /** Terminates TLS with the current certificate and hands the session to the class's handler. */
  private async terminate(
    socket: net.Socket,
    kind: DispatchKind,
    alpn: readonly string[],
    options: { proxyOnly: boolean; policy?: TlsPolicy; then?: (session: tls.TLSSocket) => void },
  ): Promise<void> {
    const { certificates } = this.options;
    const defaultContext = await certificates.forHandshake();
    const secureContext = options.policy ? certificates.contextFor(options.policy) : defaultContext;
    if (this.draining || socket.destroyed) {
      socket.destroy();
      return;
    }
    const session = new tls.TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: [...alpn] });
    let settled = false;
    const settle = (failure?: HandshakeFailureReason): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.off('error', onHandshakeError);
      session.off('close', onCloseBeforeSecure);
      session.off('end', onCloseBeforeSecure);
      socket.off('end', onCloseBeforeSecure);
      if (failure) this.failHandshake(socket, failure);
    };
    const onHandshakeError = (error: NodeJS.ErrnoException): void => settle(handshakeFailureReason(error));
    const onCloseBeforeSecure = (): void => settle('other');
    const timer = setTimeout(() => settle('timeout'), HANDSHAKE_TIMEOUT_MS);
    session.once('error', onHandshakeError);
    session.once('close', onCloseBeforeSecure);
    // Half-open sockets: a peer that ends its side mid-handshake is not closed for us, and cannot finish.
    // Its end reaches the session, or, when it came with the ClientHello, the TCP socket the hello was read from.
    session.once('end', onCloseBeforeSecure);
    socket.once('end', onCloseBeforeSecure);
    session.once('secure', () => {
      settle();
      this.options.counters.add(`accepted_${kind}`);
      session.on('error', () => session.destroy());
      if (options.then) options.then(session);
      else this.handle(kind, session, socket, options.proxyOnly);
    });
  }

  private handle(kind: DispatchKind, session: tls.TLSSocket, raw: net.Socket, proxyOnly: boolean): void {
    switch (kind) {
      case 'api':
        spliceToApi(session, this.apiSocketPath);
        return;
      case 'agent':
        serveRstrm(this.options.dataplane, { session, raw, peerAddress: raw.remoteAddress, proxyOnly });
        return;
    }
  }

  private failHandshake(socket: net.Socket, reason: HandshakeFailureReason): void {
    this.options.counters.add(`handshake_failures_${reason}`);
    socket.destroy();
  }
}
