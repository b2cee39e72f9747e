import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import type { TunnelRoute } from '../../control/thread-messages.js';
import type { CounterRow, HandshakeFailureReason } from '../../metrics/counters.js';
import { handshakeFailureReason } from '../handshake-failure.js';
import type { Dataplane } from '../dataplane.js';
import { tunnelLabel } from '../dispatch.js';
import { endSoon } from '../splice.js';
import type { WorkerCertificates } from '../worker-certificates.js';
import { proxyRequest, type ForwardPlan } from './exchange.js';
import { isWebSocketUpgrade } from './forwarded-headers.js';
import { sendGenerated, rawGenerated, statusOf, type EdgeError, type EdgeRequest, type EdgeResponse } from './generated-response.js';
import { countResponse, countWhenDone } from './response-metrics.js';
import { EdgeTokenAuth } from './token-auth.js';
import { TunnelUpstreams } from './upstream-pool.js';
import { relayWebSocket } from './websocket-relay.js';

const HANDSHAKE_TIMEOUT_MS = 10_000;
/** engine.md §12.1: request headers within 60 s, 16 KiB of them at most (431 past that). */
const HEADERS_TIMEOUT_MS = 60_000;
const MAX_HEADER_BYTES = 16 * 1024;

export interface HttpEdgeOptions {
  dataplane: Dataplane;
  engineHost: string;
  certificates: WorkerCertificates;
  ticketKeys: Buffer;
  counters: CounterRow;
  /** A TLS handshake on a `*.t.` connection failed: counted like the listener's other failures. */
  handshakeFailed: (reason: HandshakeFailureReason) => void;
}

/**
 * The HTTP tunnel edge of one worker (engine.md §12): TLS with the engine certificate, ALPN h2 over
 * http/1.1, Node's HTTP/2 and HTTP/1.1 servers behind one request handler; each request routed by its
 * own Host / :authority, checked (trusted_ips, token_auth) and proxied through the tunnel's pool of
 * upstream streams.
 */
export class HttpEdge {
  private readonly server: http2.Http2SecureServer;
  private readonly pools = new Map<string, TunnelUpstreams>();
  private readonly tokenAuth: EdgeTokenAuth;
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  private draining = false;

  constructor(private readonly options: HttpEdgeOptions) {
    const { certificates, dataplane } = options;
    this.tokenAuth = new EdgeTokenAuth(dataplane.settings.tokenSecret);
    this.server = http2.createSecureServer(
      {
        allowHTTP1: true,
        // Every handshake takes the current certificate (rotation without restart, design.md).
        SNICallback: (_name, done) => void certificates.forHandshake().then((context) => done(null, context), done),
        ticketKeys: options.ticketKeys,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        // Larger header lists than the 16 KiB limit still arrive, so they get a 431 instead of a reset.
        settings: { enableConnectProtocol: false, maxHeaderListSize: 4 * MAX_HEADER_BYTES },
      },
      (req, res) => void this.onRequest(req, res),
    );
    Object.assign(this.server, {
      keepAliveTimeout: dataplane.settings.httpIdleMs,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: 0, // no total request timeout (engine.md §12.9): uploads and streams may run long
      maxHeaderSize: MAX_HEADER_BYTES,
    });
    this.server.on('secureConnection', () => options.counters.add('accepted_edge'));
    this.server.on('tlsClientError', (error: NodeJS.ErrnoException) => options.handshakeFailed(handshakeFailureReason(error)));
    this.server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(error, socket));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void this.onUpgrade(req, socket, head));
    // HTTP/1.1 CONNECT never reaches 'request'; h2 CONNECT does, and gets the same 501 there.
    this.server.on('connect', (req: http.IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy());
      const res = detachedResponse(req, socket);
      countWhenDone(options.counters, res);
      sendGenerated(req, res, { reason: 'not_implemented', message: 'CONNECT is not supported' });
    });
    this.server.on('session', (session: http2.ServerHttp2Session) => this.trackSession(session));
    // The HTTP/1.1 side checks header timeouts and idle connections on a timer set up at 'listening';
    // connections arrive from the worker's own listener, so this server never listens itself.
    this.server.emit('listening');
    dataplane.onPoolPressure((tunnelId) => this.pools.get(tunnelId)?.releaseIdle());
    dataplane.onRouteRemoved((tunnelId) => {
      this.pools.get(tunnelId)?.close();
      this.pools.delete(tunnelId);
    });
  }

  /** A raw connection whose ClientHello named a `*.t.` host that is not a TLS tunnel. */
  accept(socket: net.Socket): void {
    this.server.emit('connection', socket);
  }

  /** Shutdown: new requests get 503, idle keep-alive connections close, h2 sessions get GOAWAY. */
  drain(): void {
    this.draining = true;
    this.server.close();
    for (const session of this.h2Sessions) session.close();
    for (const pool of this.pools.values()) pool.close();
  }

  private async onRequest(req: EdgeRequest, res: EdgeResponse): Promise<void> {
    countWhenDone(this.options.counters, res);
    if (this.draining) {
      if (res.req.httpVersionMajor === 1) res.setHeader('connection', 'close');
      sendGenerated(req, res, { reason: 'shutting_down', message: 'the engine is shutting down' });
      return;
    }
    if (req.method === 'CONNECT') {
      sendGenerated(req, res, { reason: 'not_implemented', message: 'CONNECT is not supported' });
      return;
    }
    // HTTP/1.1's parser enforces the 16 KiB itself (431 from onClientError); h2 headers are counted here.
    if (req.httpVersionMajor === 2 && headerListSize(req.rawHeaders) > MAX_HEADER_BYTES) {
      sendGenerated(req, res, { reason: 'headers_too_large', message: 'request headers exceed 16 KiB' });
      return;
    }
    const admitted = await this.admit(req, res);
    if (!admitted) return;
    await proxyRequest(admitted.pool, req, res, admitted.plan);
  }

  /** An HTTP/1.1 Upgrade: WebSockets are relayed; other tokens are dropped and the request proxied normally. */
  private async onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Node's HTTP server takes its error listener off a socket it hands over at an Upgrade.
    socket.on('error', () => socket.destroy());
    (socket as net.Socket).setTimeout(0);
    const res = detachedResponse(req, socket);
    countWhenDone(this.options.counters, res);
    if (this.draining) {
      sendGenerated(req, res, { reason: 'shutting_down', message: 'the engine is shutting down' });
      return;
    }
    const admitted = await this.admit(req, res);
    if (!admitted) return;
    if (isWebSocketUpgrade(req.headers)) await relayWebSocket(admitted.pool, req, res, socket, head, admitted.plan, this.options.counters);
    // The parser let go of this connection at the Upgrade: any body is not read (see docs/http-edge.md).
    else await proxyRequest(admitted.pool, req, res, { ...admitted.plan, bodyless: true });
  }

  /** engine.md §12.2 steps 1–3: route by host, trusted_ips, token_auth; the generated response on refusal. */
  private async admit(req: EdgeRequest, res: EdgeResponse): Promise<{ pool: TunnelUpstreams; plan: ForwardPlan } | undefined> {
    const authority = requestAuthority(req);
    if (authority === undefined) {
      sendGenerated(req, res, { reason: 'bad_request', message: 'the request names no host' });
      return undefined;
    }
    const host = authority.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
    const route = tunnelLabel(host, this.options.engineHost) === undefined ? undefined : this.options.dataplane.routeForHostname(host);
    const refusal = this.refusal(host, route);
    if (refusal) {
      sendGenerated(req, res, refusal);
      return undefined;
    }
    const peerAddress = req.socket.remoteAddress;
    if (!this.options.dataplane.admits(route!, peerAddress)) {
      this.options.counters.add('access_denied_trusted_ips');
      sendGenerated(req, res, { reason: 'forbidden_ip', message: 'your address is not allowed to reach this tunnel' });
      return undefined;
    }
    let path = req.url ?? '/';
    let dropAuthorization = false;
    if (route!.properties.token_auth) {
      const check = await this.tokenAuth.check(req.headers, path);
      if (!check.ok) {
        this.options.counters.add('access_denied_token_auth');
        sendGenerated(req, res, { reason: 'unauthorized', message: `token required: ${check.reason}` }, { 'www-authenticate': 'Bearer' });
        return undefined;
      }
      ({ path, dropAuthorization } = check);
      // The tunnel may have gone while the token was checked.
      if (this.options.dataplane.routeForHostname(host) !== route) {
        sendGenerated(req, res, { reason: 'tunnel_not_found', message: `no tunnel is live at ${host}` });
        return undefined;
      }
    }
    return {
      pool: this.poolOf(route!),
      plan: { authority, path, peerAddress, dropAuthorization, bodyless: hasNoBody(req) },
    };
  }

  /** engine.md §6.4, tunnel-edge class: 421 for names this edge does not serve over HTTP, 404 for no tunnel. */
  private refusal(host: string, route: TunnelRoute | undefined): { reason: 'misdirected' | 'tunnel_not_found'; message: string } | undefined {
    if (tunnelLabel(host, this.options.engineHost) === undefined) return { reason: 'misdirected', message: `${host} is not served on this connection` };
    if (!route) return { reason: 'tunnel_not_found', message: `no tunnel is live at ${host}` };
    if (route.properties.protocol !== 'http') return { reason: 'misdirected', message: `${host} is a TLS tunnel, not an HTTP one` };
    return undefined;
  }

  private poolOf(route: TunnelRoute): TunnelUpstreams {
    let pool = this.pools.get(route.tunnel_id);
    if (!pool) {
      pool = new TunnelUpstreams(this.options.dataplane, route);
      this.pools.set(route.tunnel_id, pool);
    }
    return pool;
  }

  /** Parser-level failures on HTTP/1.1 get their generated response; TLS failures were counted already. */
  private onClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
    // A response already under way on this connection (pipelining) must not get error bytes mid-body.
    const responding = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
    if (!error.code?.startsWith('HPE_') || !socket.writable || responding) {
      socket.destroy();
      return;
    }
    const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
    const refusal: EdgeError = tooLarge ? { reason: 'headers_too_large', message: 'request headers exceed 16 KiB' } : { reason: 'bad_request', message: 'malformed request' };
    countResponse(this.options.counters, statusOf(refusal.reason), 'edge');
    socket.end(rawGenerated(refusal));
    endSoon(socket);
  }

  /** engine.md §12.1: an h2 session with no open streams for http_idle_seconds gets GOAWAY. */
  private trackSession(session: http2.ServerHttp2Session): void {
    this.h2Sessions.add(session);
    let open = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    const idleMs = this.options.dataplane.settings.httpIdleMs;
    const armIdle = (): void => {
      idleTimer = setTimeout(() => session.close(), idleMs);
    };
    armIdle();
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      open++;
      clearTimeout(idleTimer);
      stream.once('close', () => {
        if (--open === 0 && !session.closed) armIdle();
      });
    });
    session.once('close', () => {
      clearTimeout(idleTimer);
      this.h2Sessions.delete(session);
    });
  }
}

/** A response on a connection the HTTP/1.1 parser let go of (Upgrade, CONNECT): the last one on it. */
function detachedResponse(req: http.IncomingMessage, socket: Duplex): http.ServerResponse {
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as net.Socket);
  res.once('finish', () => endSoon(socket));
  return res;
}

/** RFC 9113 §6.5.2's SETTINGS_MAX_HEADER_LIST_SIZE measure: name and value octets plus 32 per field. */
function headerListSize(rawHeaders: readonly string[]): number {
  let size = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) size += rawHeaders[i]!.length + rawHeaders[i + 1]!.length + 32;
  return size;
}

/** Host (HTTP/1.x) or :authority (h2); an HTTP/1.0 request without Host falls back to the SNI. */
function requestAuthority(req: EdgeRequest): string | undefined {
  const authority = req.headers[':authority'] ?? req.headers.host;
  if (typeof authority === 'string' && authority !== '') return authority;
  if (req.httpVersion === '1.0') return (req.socket as tls.TLSSocket).servername || undefined;
  return undefined;
}

function hasNoBody(req: EdgeRequest): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined && length !== '0') return false;
  if ('stream' in req) return req.stream.endAfterHeaders;
  return req.headers['transfer-encoding'] === undefined;
}
