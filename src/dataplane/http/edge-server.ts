import http2 from 'node:http2';
import type net from 'node:net';
import type tls from 'node:tls';
import type { TunnelRoute } from '../../threads/messages.js';
import type { CounterRow, HandshakeFailureReason } from '../../threads/counters.js';
import { handshakeFailureReason } from '../handshake-failure.js';
import type { Dataplane } from '../dataplane.js';
import { tunnelLabel } from '../dispatch.js';
import type { WorkerCertificates } from '../worker-certificates.js';
import { proxyRequest, type ExchangeLimits, type ForwardPlan } from './exchange.js';
import { sendGenerated, type EdgeError, type EdgeRequest, type EdgeResponse } from './generated-response.js';
import { H1Connection, MAX_HEADER_BYTES, type H1Edge } from './h1-connection.js';
import type { Admission, AdmissionRequest } from './h1-exchange.js';
import { guardAgainstFloods } from './h2-flood-guard.js';
import { logWhenDone, RequestLogLine, type RequestLog } from './request-log.js';
import { ResponseCounts } from './response-metrics.js';
import { EdgeTokenAuth } from './token-auth.js';
import { TunnelUpstreams } from './upstream-pool.js';
import { UpstreamChoice } from './upstream-choice.js';

const HANDSHAKE_TIMEOUT_MS = 10_000;
/** How often HTTP/1.1 connections are checked against their idle or header deadline. */
const SWEEP_INTERVAL_MS = 1000;
/**
 * SETTINGS_MAX_CONCURRENT_STREAMS of a downstream h2 session (Node's default is unlimited): each
 * open stream may hold an upstream stream, so one client connection must not hold thousands.
 */
const MAX_CONCURRENT_STREAMS = 100;
/** Authorities whose host is remembered; past this many (a client inventing names), the memo starts over. */
const HOST_MEMO_LIMIT = 1024;

interface AuthorityHost {
  host: string;
  /** Whether the host has the shape `<label>.t.<engine host>`. */
  tunnelName: boolean;
}

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
 * The HTTP tunnel edge of one worker (docs/http-edge.md). A client that offers h2 gets Node's HTTP/2
 * server (TLS with the engine certificate); any other client gets HTTP/1.1 on a TLS session the worker
 * terminated itself, served by the edge's own connection handler (h1-connection.ts). Both route each
 * request by its own Host / :authority, check it (trusted_ips, token_auth) here, and proxy it through
 * the tunnel's pool of upstream streams.
 */
export class HttpEdge implements H1Edge {
  private readonly h2Server: http2.Http2SecureServer;
  private readonly pools = new Map<string, TunnelUpstreams>();
  private readonly tokenAuth: EdgeTokenAuth;
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  private readonly h1Connections = new Set<H1Connection>();
  private readonly hostsByAuthority = new Map<string, AuthorityHost>();
  private sweeper: NodeJS.Timeout | undefined;
  draining = false;
  readonly counters: CounterRow;
  readonly responses: ResponseCounts;
  readonly requestLog: RequestLog | undefined;
  readonly idleMs: number;
  readonly requestHeadMs: number;
  readonly limits: ExchangeLimits;
  readonly keepAliveLine: string;

  constructor(private readonly options: HttpEdgeOptions) {
    const { certificates, dataplane } = options;
    this.counters = options.counters;
    this.responses = new ResponseCounts(options.counters, dataplane.traffic);
    this.requestLog = dataplane.requestLog;
    this.idleMs = dataplane.settings.httpIdleMs;
    this.requestHeadMs = dataplane.settings.httpRequestHeadMs;
    this.limits = { responseMs: dataplane.settings.httpResponseMs, bodyIdleMs: dataplane.settings.httpRequestBodyIdleMs };
    this.keepAliveLine = `keep-alive: timeout=${Math.max(1, Math.floor(this.idleMs / 1000))}\r\n`;
    this.tokenAuth = new EdgeTokenAuth(dataplane.settings.tokenSecret);
    this.h2Server = http2.createSecureServer(
      {
        // Every handshake takes the current certificate (rotation without restart, docs/operations.md#rotate-certificates).
        SNICallback: (_name, done) => void certificates.forHandshake().then((context) => done(null, context), done),
        ticketKeys: options.ticketKeys,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        // Larger header lists than the 16 KiB limit still arrive, so they get a 431 instead of a reset.
        settings: { enableConnectProtocol: false, maxHeaderListSize: 4 * MAX_HEADER_BYTES, maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
      },
      (req, res) => void this.onRequest(req, res),
    );
    this.h2Server.on('secureConnection', () => options.counters.add('accepted_edge'));
    this.h2Server.on('tlsClientError', (error: NodeJS.ErrnoException) => options.handshakeFailed(handshakeFailureReason(error)));
    this.h2Server.on('session', (session: http2.ServerHttp2Session) => this.trackSession(session));
    dataplane.onAdopt((route, proxyEnd, release) => {
      if (this.draining || route.properties.protocol !== 'http') return false;
      void this.poolOf(route).adoptStream(proxyEnd, release);
      return true;
    });
    dataplane.onRouteRemoved((tunnelId) => {
      this.pools.get(tunnelId)?.close();
      this.pools.delete(tunnelId);
    });
  }

  /** A raw `*.t.` connection whose client offers h2: Node's HTTP/2 server does TLS and the rest. */
  acceptH2(socket: net.Socket): void {
    this.h2Server.emit('connection', socket);
  }

  /** An HTTP/1.1 connection on a TLS session the worker terminated. */
  acceptH1(session: tls.TLSSocket, raw: net.Socket): void {
    this.h1Connections.add(new H1Connection(session, raw.remoteAddress, this));
    this.sweeper ??= setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  forget(connection: H1Connection): void {
    this.h1Connections.delete(connection);
    if (this.h1Connections.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Shutdown: new requests get 503, idle connections close, h2 sessions get GOAWAY. */
  drain(): void {
    this.draining = true;
    this.h2Server.close();
    for (const session of this.h2Sessions) session.close();
    for (const connection of [...this.h1Connections]) connection.drain();
    for (const pool of this.pools.values()) pool.close();
  }

  /**
   * Admission: route by host, trusted_ips, token_auth (the members of an endpoint pool share them), then
   * the member that serves the request.
   */
  admit(request: AdmissionRequest): Admission {
    const { authority } = request;
    if (authority === undefined || authority === '') return { ok: false, error: { reason: 'bad_request', message: 'the request names no host' } };
    const { host, tunnelName } = this.hostOf(authority);
    const group = tunnelName ? this.options.dataplane.groupForHostname(host) : undefined;
    const route = group?.first;
    const refusal = this.refusal(host, tunnelName, route);
    if (refusal) return { ok: false, error: refusal };
    if (!this.options.dataplane.admits(route!, request.peerAddress)) {
      this.counters.add('access_denied_trusted_ips');
      return { ok: false, error: { reason: 'forbidden_ip', message: 'your address is not allowed to reach this tunnel' }, slot: route!.slot };
    }
    let plan: ForwardPlan = { authority, path: request.path, peerAddress: request.peerAddress, dropAuthorization: false };
    if (route!.properties.token_auth) {
      const check = this.tokenAuth.check({ authorization: request.authorization }, request.path);
      if (!check.ok) {
        this.counters.add('access_denied_token_auth');
        this.options.dataplane.log.debug({ tunnel_id: route!.tunnel_id, reason: check.reason }, 'token_auth refused a request');
        const challenge = { 'www-authenticate': 'Bearer' };
        return { ok: false, error: { reason: 'unauthorized', message: `token required: ${check.reason}` }, extraHeaders: challenge, slot: route!.slot };
      }
      plan = { ...plan, path: check.path, dropAuthorization: check.dropAuthorization };
    }
    return { ok: true, choice: new UpstreamChoice(group!, group!.choose()!, this.poolOfRoute, this.counters), plan };
  }

  private async onRequest(req: EdgeRequest, res: EdgeResponse): Promise<void> {
    // The tunnel the request reached: a refusal's, or the member serving it (which a failover changes).
    let refusedSlot: number | undefined;
    let choice: UpstreamChoice | undefined;
    const tunnelSlot = (): number | undefined => choice?.slot ?? refusedSlot;
    this.responses.whenDone(res, tunnelSlot);
    const logLine = this.requestLog && new RequestLogLine(req.method, req.url ?? '/', req.socket.remoteAddress);
    if (logLine) logWhenDone(this.requestLog!, res, logLine, tunnelSlot);
    if (this.draining) {
      sendGenerated(req, res, { reason: 'shutting_down', message: 'the engine is shutting down' });
      return;
    }
    if (req.method === 'CONNECT') {
      sendGenerated(req, res, { reason: 'not_implemented', message: 'CONNECT is not supported' });
      return;
    }
    if ((req.url ?? '').length > MAX_HEADER_BYTES) {
      sendGenerated(req, res, { reason: 'uri_too_long', message: 'the request target exceeds 16 KiB' });
      return;
    }
    if (headerListSize(req.rawHeaders) > MAX_HEADER_BYTES) {
      sendGenerated(req, res, { reason: 'headers_too_large', message: 'request headers exceed 16 KiB' });
      return;
    }
    const problem = h2RequestProblem(req);
    if (problem) {
      sendGenerated(req, res, { reason: 'bad_request', message: `malformed request: ${problem}` });
      return;
    }
    const admission = this.admit({
      authority: req.headers[':authority'] ?? req.headers.host,
      path: req.url ?? '/',
      authorization: req.headers.authorization,
      peerAddress: req.socket.remoteAddress,
    });
    if (!admission.ok) {
      refusedSlot = admission.slot;
      sendGenerated(req, res, admission.error, admission.extraHeaders);
      return;
    }
    choice = admission.choice;
    try {
      await proxyRequest(choice, req, res, admission.plan, this.limits, logLine);
    } finally {
      choice.done();
    }
  }

  /** The host an authority names (lowercase, no port, no final dot), remembered: a client sends the same one on every request. */
  private hostOf(authority: string): AuthorityHost {
    let known = this.hostsByAuthority.get(authority);
    if (known === undefined) {
      if (this.hostsByAuthority.size >= HOST_MEMO_LIMIT) this.hostsByAuthority.clear();
      const host = authority.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
      known = { host, tunnelName: tunnelLabel(host, this.options.engineHost) !== undefined };
      this.hostsByAuthority.set(authority, known);
    }
    return known;
  }

  /** 421 for names this edge does not serve over HTTP, 404 for no tunnel. */
  private refusal(host: string, tunnelName: boolean, route: TunnelRoute | undefined): EdgeError | undefined {
    if (!tunnelName) return { reason: 'misdirected', message: `${host} is not served on this connection` };
    if (!route) return { reason: 'tunnel_not_found', message: `no tunnel is live at ${host}` };
    if (route.properties.protocol !== 'http') return { reason: 'misdirected', message: `${host} is a TLS tunnel, not an HTTP one` };
    return undefined;
  }

  private readonly poolOfRoute = (route: TunnelRoute): TunnelUpstreams => this.poolOf(route);

  private poolOf(route: TunnelRoute): TunnelUpstreams {
    let pool = this.pools.get(route.tunnel_id);
    if (!pool) {
      pool = new TunnelUpstreams(this.options.dataplane, route);
      this.pools.set(route.tunnel_id, pool);
    }
    return pool;
  }

  /** Expires HTTP/1.1 connections past their deadline (idle, request head, or response head). */
  private sweep(): void {
    const now = Date.now();
    for (const connection of this.h1Connections) {
      if (connection.deadline !== 0 && connection.deadline < now) connection.expire();
    }
  }

  /** An h2 session with no open streams for http_idle_seconds gets GOAWAY. */
  private trackSession(session: http2.ServerHttp2Session): void {
    this.h2Sessions.add(session);
    guardAgainstFloods(session);
    let open = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      idleTimer = setTimeout(() => session.close(), this.idleMs);
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

/** RFC 9113 §6.5.2's SETTINGS_MAX_HEADER_LIST_SIZE measure: name and value octets plus 32 per field. */
function headerListSize(rawHeaders: readonly string[]): number {
  let size = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) size += rawHeaders[i]!.length + rawHeaders[i + 1]!.length + 32;
  return size;
}

const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

/**
 * RFC 9113 §8.3.1: an h2 request the edge will not route, and why. Its path goes into an HTTP/1.1
 * request line as it is, so it must be one: visible ASCII, origin-form (or `*` for OPTIONS).
 */
function h2RequestProblem(req: EdgeRequest): string | undefined {
  const path = req.url ?? '';
  if (!VISIBLE_ASCII.test(path)) return ':path is not visible ASCII';
  if (!path.startsWith('/') && !(path === '*' && req.method === 'OPTIONS')) return ':path is not origin-form';
  const { host } = req.headers;
  const authority = req.headers[':authority'];
  if (host !== undefined && authority !== undefined && host !== authority) return 'Host differs from :authority';
  return undefined;
}
