import http from 'node:http';
import http2 from 'node:http2';
import type tls from 'node:tls';
import { splice } from '../../net/splice.js';
import type { ExchangeLimits, ForwardPlan } from './exchange.js';
import { downstreamResponseLines, fieldsOfH2, headersOfFields, upstreamRequestHeaders, upstreamRequestLines } from './forwarded-headers.js';
import { rawGenerated, statusOf, type EdgeError } from './generated-response.js';
import { BodyTracker, carriesBody, chunkOf, fieldTokens, fieldValue, LAST_CHUNK, requestTarget, type Field, type Framing, type RequestHead, type ResponseHead } from './h1-wire.js';
import { RequestLogLine, type RequestLog } from './request-log.js';
import type { ResponseCounts } from './response-metrics.js';
import type { ResponseOrigin } from '../../threads/counters.js';
import { H1Upstream, type ResponseSink, type UpstreamFailure } from './upstream-h1.js';
import type { H2Upstream } from './upstream-h2.js';
import type { TunnelUpstreams, Upstream } from './upstream-pool.js';
import type { UpstreamChoice } from './upstream-choice.js';

/** What the edge's checks need from a request (route, trusted_ips, token_auth). */
export interface AdmissionRequest {
  /** Host / :authority as received (undefined: none). */
  authority: string | undefined;
  path: string;
  authorization: string | undefined;
  peerAddress: string | undefined;
}

/** A refusal names the tunnel's slot when the request reached one (trusted_ips, token_auth): it counts in that tunnel's traffic. */
export type Admission =
  | { ok: true; choice: UpstreamChoice; plan: ForwardPlan }
  | { ok: false; error: EdgeError; extraHeaders?: Record<string, string>; slot?: number };

/** What an exchange needs from the edge it runs on. */
export interface ExchangeEdge {
  readonly responses: ResponseCounts;
  /** Each tunnel's recent requests, while `dashboard.request_log` is on. */
  readonly requestLog: RequestLog | undefined;
  /** The response-head and request-body bounds. */
  readonly limits: ExchangeLimits;
  /** `Keep-Alive: timeout=<idle seconds>` as a head line: clients close idle connections before the edge does. */
  readonly keepAliveLine: string;
  readonly draining: boolean;
  admit(request: AdmissionRequest): Admission;
}

/** What an exchange needs from the connection it answers on (H1Connection): its bytes, and its deadline by phase. */
export interface ExchangeConnection {
  readonly socket: tls.TLSSocket;
  readonly peerAddress: string | undefined;
  takePending(): Buffer | undefined;
  putBack(bytes: Buffer | undefined): void;
  awaitBody(): void;
  heldBack(): void;
  awaitResponse(): void;
  responseStarted(): void;
  exchangeDone(keepAlive: boolean): void;
  detach(): void;
}

/** Methods retried once on a fresh stream when a reused idle one fails before any response byte. */
const RETRIABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Response fields of a 101 that belong to one hop only; Connection and Upgrade are the handshake itself. */
const NOT_RELAYED_ON_101 = new Set(['keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'http2-settings']);
/** Above this, the response head and a body piece go out as two writes rather than one copied buffer. */
const COALESCE_LIMIT = 16 * 1024;

/**
 * One request on an HTTP/1.1 connection of the edge, start to finish (docs/http-edge.md):
 * admission, an upstream stream from the tunnel's pool, the request head rewritten and its body
 * relayed by its own framing (an h1 upstream gets the body bytes exactly as received; an h2 upstream
 * its payload), the response head rewritten and its body relayed by its framing (chunked bodies pass
 * through as they are; bodies the upstream delimits by closing are chunked for HTTP/1.1 clients).
 * Backpressure both ways: a full side pauses the other. A cut response is never completed.
 */
export class H1Exchange implements ResponseSink {
  /** The connection's bytes go to `feedBody` until the request body is complete. */
  readingBody = false;
  wantsPayload = false;
  private readonly tracker: BodyTracker;
  /** Whether the connection can carry another request after this one. */
  private keepAlive: boolean;
  private plan: ForwardPlan | undefined;
  /** The upstream pool of the member serving the request. */
  private choice: UpstreamChoice | undefined;
  private upstream: H1Upstream | undefined;
  private h2Stream: http2.ClientHttp2Stream | undefined;
  /** Request body payload towards an h2 upstream. */
  private payloadTarget: ((data: Buffer) => void) | undefined;
  private reused = false;
  /** The slot of the tunnel that refused the request at admission, if one did. */
  private refusedSlot: number | undefined;
  private retried = false;
  /** The response head, until the first body bytes (or the end of this turn) take it out. */
  private pendingHead: string | undefined;
  private headSent = false;
  private chunkEncode = false;
  private finished = false;
  private gone = false;
  /** The client is paused until the upstream drains. */
  private holding = false;
  private cancelled: AbortController | undefined;
  /** This request's request-log line until it is recorded (none while the log is off). */
  private logLine: RequestLogLine | undefined;

  constructor(
    private readonly connection: ExchangeConnection,
    private readonly edge: ExchangeEdge,
    private readonly request: RequestHead,
    framing: Framing,
  ) {
    if (edge.requestLog) this.logLine = new RequestLogLine(request.method, request.target, connection.peerAddress);
    this.tracker = new BodyTracker(framing);
    this.keepAlive = request.minor === 1 && !fieldTokens(request.fields, 'connection').has('close');
  }

  start(): void {
    const { request } = this;
    if (request.method === 'CONNECT') {
      this.refuse({ reason: 'not_implemented', message: 'CONNECT is not supported' });
      return;
    }
    if (this.edge.draining) {
      this.keepAlive = false;
      this.refuse({ reason: 'shutting_down', message: 'the engine is shutting down' });
      return;
    }
    const target = requestTarget(request);
    if ('error' in target) {
      this.refuse({ reason: 'bad_request', message: `malformed request: ${target.error}` });
      return;
    }
    // An HTTP/1.0 request without Host is routed by the SNI.
    const authority = target.authority || (request.minor === 0 ? this.connection.socket.servername || undefined : undefined);
    this.admitted(
      this.edge.admit({
        authority,
        path: target.path,
        authorization: fieldValue(request.fields, 'authorization'),
        peerAddress: this.connection.peerAddress,
      }),
    );
  }

  /** Request body bytes from the connection; returns what follows the body (the next request). */
  feedBody(chunk: Buffer): Buffer | undefined {
    const taken = this.tracker.take(chunk, 0, this.payloadTarget);
    if (taken instanceof Error) {
      this.badBody();
      return undefined;
    }
    if (!this.payloadTarget && taken > 0 && !this.upstream!.write(taken === chunk.length ? chunk : chunk.subarray(0, taken))) {
      this.holdDownstream(this.upstream!.stream);
    }
    if (this.tracker.done) this.bodyComplete();
    return taken < chunk.length ? chunk.subarray(taken) : undefined;
  }

  downstreamDrained(): void {
    this.upstream?.resume();
    this.h2Stream?.resume();
  }

  /** The client left: the upstream exchange is abandoned (never reused). */
  downstreamGone(): void {
    this.over(true);
    this.gone = true;
    this.readingBody = false;
    this.cancelled?.abort();
    this.upstream?.abandon();
    this.h2Stream?.close(http2.constants.NGHTTP2_CANCEL);
  }

  private admitted(admission: Admission): void {
    if (!admission.ok) {
      this.refusedSlot = admission.slot;
      this.refuse(admission.error, admission.extraHeaders);
      return;
    }
    this.choice = admission.choice;
    this.plan = admission.plan;
    if (!carriesBody(this.tracker.framing) && isWebSocket(this.request.fields)) {
      void this.relayWebSocket(admission.choice);
      return;
    }
    const pooled = admission.choice.pool.takePooled();
    if (pooled) this.send(pooled, true);
    else void this.leaseAndSend(admission.choice.pool, false);
  }

  /** The slot of the tunnel the request reached (the member serving it, once admitted). */
  private get tunnelSlot(): number | undefined {
    return this.choice?.slot ?? this.refusedSlot;
  }

  /** A stream from `pool`; when the member fails to give one, the next member's (an endpoint pool). */
  private async leaseAndSend(pool: TunnelUpstreams, fresh: boolean): Promise<void> {
    this.cancelled ??= new AbortController();
    const lease = await pool.lease(this.plan!.peerAddress, this.cancelled.signal, fresh);
    if (this.gone) {
      if (lease.ok) pool.giveBack(lease.upstream);
      return;
    }
    if (lease.ok) {
      this.send(lease.upstream, lease.reused);
      return;
    }
    const next = this.choice!.next(lease.error.reason);
    if (next) void this.leaseAndSend(next, false);
    else this.refuse(lease.error);
  }

  private send(upstream: Upstream, reused: boolean): void {
    this.reused = reused;
    if (upstream.kind === 'h1') this.sendH1(upstream);
    else this.sendH2(upstream);
  }

  private sendH1(upstream: H1Upstream): void {
    const { request, tracker } = this;
    const framing = tracker.framing;
    const framingLine =
      framing.kind === 'length' ? `content-length: ${framing.length}\r\n` : framing.kind === 'chunked' ? 'transfer-encoding: chunked\r\n' : '';
    const head = `${request.method} ${this.plan!.path} HTTP/1.1\r\n${upstreamRequestLines(request.fields, this.plan!, false, framingLine)}\r\n`;
    let first: Buffer | string = head;
    const bytes = this.connection.takePending();
    let rest = bytes;
    if (bytes && !tracker.done) {
      const taken = tracker.take(bytes, 0);
      if (taken instanceof Error) {
        this.badBody();
        return;
      }
      first = withHead(head, bytes.subarray(0, taken));
      rest = taken < bytes.length ? bytes.subarray(taken) : undefined;
    }
    this.connection.putBack(rest);
    this.upstream = upstream;
    this.readingBody = !tracker.done;
    upstream.begin(first, { method: request.method, upgrade: false, requestComplete: tracker.done }, this);
    if (tracker.done) this.connection.awaitResponse();
    else this.connection.awaitBody();
  }

  private sendH2(upstream: H2Upstream): void {
    const { request, tracker } = this;
    const headers: http2.OutgoingHttpHeaders = {
      ...upstreamRequestHeaders(headersOfFields(request.fields), { ...this.plan!, upstream: 'h2', websocket: false }),
      ':method': request.method,
      ':path': this.plan!.path,
      ':authority': this.plan!.authority,
      ':scheme': upstream.scheme,
    };
    let opened: ReturnType<H2Upstream['request']>;
    try {
      opened = upstream.request(headers, tracker.done);
    } catch (error) {
      this.fail({ beforeResponse: true, reason: 'upstream_closed', detail: (error as Error).message });
      return;
    }
    const { stream, completed } = opened;
    this.h2Stream = stream;
    this.wantsPayload = true;
    let responded = false;
    stream.on('response', (headers) => {
      responded = true;
      const status = Number(headers[':status']);
      const length = headers['content-length'];
      const framing: Framing =
        request.method === 'HEAD' || status === 204 || status === 304
          ? { kind: 'none' }
          : length !== undefined
            ? { kind: 'length', length: Number(length) }
            : { kind: 'close' };
      this.head({ minor: 1, status, reason: http.STATUS_CODES[status] ?? '', fields: fieldsOfH2(headers) }, framing);
      // The body comes in later events: the head waits for none of it beyond this turn.
      process.nextTick(() => this.flushHead());
      // Only now: Node's client can emit data before the 'response' it queued on the next tick.
      stream.on('data', (data: Buffer) => {
        if (!this.body(data)) stream.pause();
      });
    });
    stream.on('end', () => {
      if (completed()) this.end();
      else this.fail({ beforeResponse: !responded, reason: 'upstream_closed', detail: 'the upstream stream was reset' });
    });
    stream.on('close', () => {
      if (!this.finished) this.fail({ beforeResponse: !responded, reason: 'upstream_closed', detail: `upstream stream closed (code ${stream.rstCode})` });
    });
    stream.on('error', () => {});
    if (tracker.done) {
      this.connection.awaitResponse();
      return;
    }
    this.payloadTarget = (data) => {
      if (!stream.write(data)) this.holdDownstream(stream);
    };
    const bytes = this.connection.takePending();
    this.readingBody = true;
    this.connection.awaitBody();
    if (bytes) this.connection.putBack(this.feedBody(bytes));
  }

  /** A WebSocket upgrade: its own stream, the 101 relayed, then raw bytes both ways. */
  private async relayWebSocket(choice: UpstreamChoice): Promise<void> {
    this.keepAlive = false; // a refused upgrade is answered, then the connection closes
    this.cancelled = new AbortController();
    let dedicated = await choice.pool.dedicated(this.plan!.peerAddress, this.cancelled.signal);
    while (!dedicated.ok && !this.gone && choice.next(dedicated.error.reason)) {
      dedicated = await choice.pool.dedicated(this.plan!.peerAddress, this.cancelled.signal);
    }
    if (this.gone) {
      if (dedicated.ok) dedicated.stream.destroy();
      return;
    }
    if (!dedicated.ok) {
      this.refuse(dedicated.error);
      return;
    }
    const upstream = new H1Upstream(dedicated.stream);
    upstream.onReusable = () => upstream.close(); // never pooled
    this.upstream = upstream;
    const head = `${this.request.method} ${this.plan!.path} HTTP/1.1\r\n${upstreamRequestLines(this.request.fields, this.plan!, true, '')}\r\n`;
    upstream.begin(head, { method: this.request.method, upgrade: true, requestComplete: true }, this);
    this.connection.awaitResponse();
  }

  upgraded(head: ResponseHead, _raw: Buffer, rest: Buffer): void {
    const stream = this.upstream!.stream;
    this.upstream = undefined;
    this.finished = true;
    const { socket } = this.connection;
    this.counted(101, 'upstream');
    this.logged(false);
    // A WebSocket keeps its member busy until it closes.
    const choice = this.choice;
    this.connection.socket.once('close', () => choice?.done());
    let text = `HTTP/1.1 ${head.status} ${head.reason}\r\n`;
    for (const field of head.fields) if (!NOT_RELAYED_ON_101.has(field.lower)) text += `${field.name}: ${field.value}\r\n`;
    socket.write(`${text}\r\n`);
    if (rest.length > 0) socket.write(rest);
    const early = this.connection.takePending();
    this.connection.detach();
    if (early) stream.write(early);
    if (socket.destroyed) stream.destroy();
    else splice(socket, stream);
  }

  interim(_head: ResponseHead, raw: Buffer): void {
    if (!this.gone && this.request.minor === 1) this.connection.socket.write(raw);
  }

  head(head: ResponseHead, framing: Framing): void {
    if (this.gone) return;
    const http11 = this.request.minor === 1;
    let framingLine = '';
    // Content-Length is relayed only when it is the framing (or describes a HEAD/304 answer).
    const keepLength = framing.kind === 'length' || framing.kind === 'none';
    if (framing.kind === 'chunked') {
      if (http11) framingLine = 'transfer-encoding: chunked\r\n';
      else {
        this.wantsPayload = true;
        this.keepAlive = false;
      }
    } else if (framing.kind === 'close') {
      if (http11) {
        framingLine = 'transfer-encoding: chunked\r\n';
        this.wantsPayload = true;
        this.chunkEncode = true;
      } else this.keepAlive = false;
    }
    framingLine += this.keepAlive ? this.edge.keepAliveLine : 'connection: close\r\n';
    const lines = downstreamResponseLines(head.fields, keepLength);
    this.pendingHead = `HTTP/1.1 ${head.status} ${head.reason}\r\n${lines}${framingLine}\r\n`;
    this.counted(head.status, 'upstream');
    this.connection.responseStarted();
  }

  body(bytes: Buffer): boolean {
    if (this.gone) return true;
    if (this.logLine) this.logLine.bytes += bytes.length;
    const { socket } = this.connection;
    const pieces = this.chunkEncode ? chunkOf(bytes) : [bytes];
    const head = this.pendingHead;
    this.pendingHead = undefined;
    this.headSent = true;
    if (head !== undefined) {
      if (bytes.length <= COALESCE_LIMIT) return socket.write(withHead(head, ...pieces));
      socket.write(head, 'latin1');
    }
    return socket.write(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces));
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    const { upstream, h2Stream } = this;
    this.upstream = undefined;
    this.h2Stream = undefined;
    if (this.gone) return;
    this.flushHead();
    if (this.chunkEncode) this.connection.socket.write(LAST_CHUNK);
    this.over(false);
    if (this.readingBody) {
      // The upstream answered before the request body ended: the rest of it goes nowhere, and the
      // connection cannot tell where the next request starts.
      this.readingBody = false;
      this.keepAlive = false;
      upstream?.requestEnded();
      h2Stream?.close(http2.constants.NGHTTP2_CANCEL);
    }
    this.connection.exchangeDone(this.keepAlive);
  }

  fail(failure: UpstreamFailure): void {
    if (this.finished) return;
    this.upstream = undefined;
    this.h2Stream = undefined;
    if (this.gone) {
      this.finished = true;
      return;
    }
    if (!this.headSent && failure.beforeResponse) {
      this.pendingHead = undefined;
      const repeatable = !carriesBody(this.tracker.framing) && RETRIABLE_METHODS.has(this.request.method);
      // A reused stream may have been closed by the upstream while idle: once more, on a fresh one.
      if (repeatable && this.reused && !this.retried) {
        this.retried = true;
        void this.leaseAndSend(this.choice!.pool, true);
        return;
      }
      // The member may be going away (an endpoint pool): the request goes to another one.
      const next = repeatable && failure.reason === 'upstream_closed' ? this.choice!.next() : undefined;
      if (next) {
        void this.leaseAndSend(next, false);
        return;
      }
      this.finished = true;
      this.refuse({
        reason: failure.reason,
        message: failure.reason === 'bad_upstream_response' ? 'the upstream sent a response that is not HTTP' : 'the upstream closed before a full response',
      });
      return;
    }
    // After the head there is nothing left to say: the client must see a cut, not an end.
    this.finished = true;
    this.over(true);
    this.connection.socket.destroy();
  }

  /** The end of an upstream read: a head still held (no body bytes came with it) goes out now, as SSE and long polls need. */
  flush(): void {
    this.flushHead();
  }

  private flushHead(): void {
    const head = this.pendingHead;
    if (head === undefined || this.gone) return;
    this.pendingHead = undefined;
    this.headSent = true;
    this.connection.socket.write(head, 'latin1');
  }

  /** The connection's deadline passed: the request body went silent, or the response head is late. */
  timedOut(): void {
    if (this.readingBody) this.bodyTimedOut();
    else this.responseTimedOut();
  }

  /**
   * No request body byte within timeouts.http_request_body_idle_seconds while the edge was reading:
   * 408 (or a cut, once a response has begun), the upstream exchange abandoned, the connection closed.
   */
  private bodyTimedOut(): void {
    this.failRequest({ reason: 'request_timeout', message: `the request body sent nothing for ${this.edge.limits.bodyIdleMs / 1000} s` });
  }

  /** No response head within timeouts.http_response_seconds: 504, and the upstream exchange is abandoned. */
  private responseTimedOut(): void {
    if (this.finished || this.headSent || this.pendingHead !== undefined) return;
    this.failRequest({ reason: 'upstream_timeout', message: `the upstream sent no response within ${this.edge.limits.responseMs / 1000} s` });
  }

  /** The request body is all relayed. */
  private bodyComplete(): void {
    this.readingBody = false;
    if (!this.headSent && this.pendingHead === undefined) this.connection.awaitResponse();
    else this.connection.responseStarted();
    this.payloadTarget = undefined;
    if (this.upstream) this.upstream.requestEnded();
    else this.h2Stream?.end();
  }

  /** A chunked request body that breaks its framing: the upstream got a truncated body; the connection closes. */
  private badBody(): void {
    this.failRequest({ reason: 'bad_request', message: 'malformed request body' });
  }

  /**
   * The request cannot go on: the upstream exchange is abandoned (it saw a partial request) and the
   * connection closes after the edge's answer, or at once when a response has already begun.
   */
  private failRequest(error: EdgeError): void {
    this.readingBody = false;
    this.keepAlive = false;
    this.payloadTarget = undefined;
    this.upstream?.abandon();
    this.h2Stream?.close(http2.constants.NGHTTP2_CANCEL);
    this.upstream = undefined;
    this.h2Stream = undefined;
    if (this.headSent || this.pendingHead !== undefined) {
      this.finished = true;
      this.over(true);
      this.connection.socket.destroy();
    } else this.refuse(error);
  }

  /** The upstream side is full: stop reading the client until it drains. */
  private holdDownstream(upstream: NodeJS.EventEmitter): void {
    if (this.holding) return;
    this.holding = true;
    const { socket } = this.connection;
    socket.pause();
    this.connection.heldBack();
    upstream.once('drain', () => {
      this.holding = false;
      if (this.gone) return;
      socket.resume();
      if (this.readingBody) this.connection.awaitBody();
    });
  }

  /**
   * The edge's own answer. The connection stays open only when nothing of the request is left
   * unread (its body would otherwise be taken for the next request).
   */
  private refuse(error: EdgeError, extraHeaders?: Record<string, string>): void {
    this.finished = true;
    const keepAlive = this.keepAlive && !carriesBody(this.tracker.framing);
    this.counted(statusOf(error.reason), 'edge');
    const answer = rawGenerated(error, {
      accept: fieldValue(this.request.fields, 'accept'),
      head: this.request.method === 'HEAD',
      close: !keepAlive,
      extraHeaders,
      keepAliveLine: keepAlive ? this.edge.keepAliveLine : '',
    });
    this.connection.socket.write(answer);
    if (this.logLine) this.logLine.bytes = Buffer.byteLength(answer) - answer.indexOf('\r\n\r\n') - 4;
    this.over(false);
    this.connection.exchangeDone(keepAlive);
  }

  /** A response head sent downstream: counted, and noted on the log line. */
  private counted(status: number, origin: ResponseOrigin): void {
    this.edge.responses.count(status, origin, this.tunnelSlot);
    this.logLine?.responded(status, origin);
  }

  /** The request is over (`aborted`: cut, or the client left): its member's active count goes down. */
  private over(aborted: boolean): void {
    this.choice?.done();
    this.logged(aborted);
  }

  /** The request's log line is recorded, once, if it reached a tunnel. */
  private logged(aborted: boolean): void {
    const line = this.logLine;
    if (line === undefined) return;
    this.logLine = undefined;
    const slot = this.tunnelSlot;
    if (slot !== undefined) this.edge.requestLog!.record(slot, line, aborted);
  }
}

/** A serialized head and the body bytes that follow it, as one buffer (one TLS record for a small answer). */
function withHead(head: string, ...pieces: Buffer[]): Buffer {
  let length = head.length;
  for (const piece of pieces) length += piece.length;
  const out = Buffer.allocUnsafe(length);
  let at = out.write(head, 'latin1');
  for (const piece of pieces) at += piece.copy(out, at);
  return out;
}

/** Connection lists `upgrade` and Upgrade is `websocket`. */
function isWebSocket(fields: readonly Field[]): boolean {
  return fieldTokens(fields, 'connection').has('upgrade') && fieldValue(fields, 'upgrade')?.toLowerCase() === 'websocket';
}
