import type tls from 'node:tls';
import { endSoon } from '../../net/splice.js';
import { H1Exchange, type ExchangeConnection, type ExchangeEdge } from './h1-exchange.js';
import { parseRequestHead, requestFraming } from './h1-wire.js';
import { rawGenerated, statusOf, type EdgeError } from './generated-response.js';

/** 16 KiB of request line and headers at most (431 past that). */
export const MAX_HEADER_BYTES = 16 * 1024;
/**
 * An idle connection closes this long after the advertised Keep-Alive timeout, so a client that
 * reuses it just before that timeout does not meet a connection closing under it.
 */
const IDLE_GRACE_MS = 1000;
/** Bytes of pipelined requests held while a response is in flight before the connection stops reading. */
const PIPELINE_LIMIT = 64 * 1024;

/** What an HTTP/1.1 connection needs from the edge it belongs to, beyond what its exchanges need. */
export interface H1Edge extends ExchangeEdge {
  readonly idleMs: number;
  /** timeouts.http_request_head_seconds in ms (60 s by default). */
  readonly requestHeadMs: number;
  forget(connection: H1Connection): void;
}

/**
 * One HTTP/1.1 connection of the HTTP tunnel edge, on a TLS session the worker terminated itself:
 * request heads parsed here, one request at a time (a pipelined request waits, in order, until the
 * response before it is complete), each handed to an H1Exchange that relays it to the tunnel. Its
 * deadline (idle between requests, a head not yet complete, a response head late) is checked by the
 * edge's sweeper.
 */
export class H1Connection implements ExchangeConnection {
  /**
   * Epoch ms past which the edge's sweeper expires this connection: idle, or a request head not yet
   * complete (the connection closes), or a request sent upstream whose response head is late (504);
   * 0 while a response is flowing.
   */
  deadline: number;
  /** Unparsed bytes from the client: the start of the next request(s). */
  private pending: Buffer | undefined;
  private exchange: H1Exchange | undefined;
  /** No further request is read: the connection closes after this response. */
  private closing = false;
  /** The client ended its side: requests already received are answered, then the connection ends. */
  private clientEnded = false;
  private detached = false;

  constructor(
    readonly socket: tls.TLSSocket,
    readonly peerAddress: string | undefined,
    private readonly edge: H1Edge,
  ) {
    this.deadline = Date.now() + edge.idleMs + IDLE_GRACE_MS;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.exchange?.downstreamDrained());
  }

  /** Called by the sweeper past the deadline. */
  expire(): void {
    if (this.exchange) this.exchange.timedOut();
    else this.socket.destroy();
  }

  /** The request body is being read: the client must send some of it within the body-idle bound. */
  awaitBody(): void {
    this.deadline = Date.now() + this.edge.limits.bodyIdleMs;
  }

  /** The edge stopped reading the client (the upstream is full): its silence is not its own. */
  heldBack(): void {
    this.deadline = 0;
  }

  /** The request is all sent upstream: its response head is due within the response timeout. */
  awaitResponse(): void {
    this.deadline = Date.now() + this.edge.limits.responseMs;
  }

  /**
   * The response head arrived: no deadline while its body flows (there is no total request timeout),
   * unless the request body is still being read (an early response), which keeps its idle bound.
   */
  responseStarted(): void {
    if (!this.exchange?.readingBody) this.deadline = 0;
  }

  /** Shutdown: an idle connection closes now, a busy one after its response. */
  drain(): void {
    this.closing = true;
    if (this.exchange === undefined) endSoon(this.socket);
  }

  /**
   * The bytes not yet parsed, taken by the exchange that starts reading its request body from them;
   * the connection reads on (it stopped when those bytes passed the pipelining limit).
   */
  takePending(): Buffer | undefined {
    const pending = this.pending;
    this.pending = undefined;
    this.socket.resume();
    return pending;
  }

  /** Bytes after the request body: the next request. */
  putBack(bytes: Buffer | undefined): void {
    if (!bytes || bytes.length === 0) return;
    this.pending = this.pending ? Buffer.concat([bytes, this.pending]) : bytes;
    if (this.pending.length > PIPELINE_LIMIT) this.socket.pause();
  }

  /**
   * The exchange is over. `keepAlive`: the connection can carry the next request; otherwise it is
   * ended once the response is flushed.
   */
  exchangeDone(keepAlive: boolean): void {
    this.exchange = undefined;
    if (!keepAlive || this.closing || this.socket.destroyed) {
      endSoon(this.socket);
      return;
    }
    this.deadline = Date.now() + this.edge.idleMs + IDLE_GRACE_MS;
    this.socket.resume();
    this.parseNext();
    if (this.clientEnded && this.exchange === undefined) endSoon(this.socket);
  }

  /** The socket is an upgraded connection's now (WebSocket): no more HTTP on it, and no timeouts. */
  detach(): void {
    this.exchange = undefined;
    this.detached = true;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('drain');
    this.edge.forget(this);
  }

  private onData(chunk: Buffer): void {
    const exchange = this.exchange;
    if (exchange?.readingBody) {
      this.awaitBody();
      this.putBack(exchange.feedBody(chunk));
      return;
    }
    if (this.closing) return; // no further request will be read: nothing to keep
    if (this.pending === undefined && this.exchange === undefined) this.deadline = Date.now() + this.edge.requestHeadMs;
    this.pending = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    if (this.exchange) {
      if (this.pending.length > PIPELINE_LIMIT) this.socket.pause();
      return;
    }
    this.parseNext();
  }

  private parseNext(): void {
    const bytes = this.pending;
    if (this.exchange || !bytes || this.closing) return;
    const parsed = parseRequestHead(bytes, MAX_HEADER_BYTES);
    if (parsed === 'incomplete') return;
    if ('error' in parsed) {
      if (parsed.error === 'malformed') this.refuse({ reason: 'bad_request', message: `malformed request: ${parsed.detail}` });
      // A request line that alone fills the limit is a URL too long, not too many headers.
      else if (bytes.indexOf('\r\n') < 0 || bytes.indexOf('\r\n') >= MAX_HEADER_BYTES) this.refuse({ reason: 'uri_too_long', message: 'the request line exceeds 16 KiB' });
      else this.refuse({ reason: 'headers_too_large', message: 'request headers exceed 16 KiB' });
      return;
    }
    const { head, size } = parsed;
    const framing = requestFraming(head);
    if ('error' in framing) {
      this.refuse({ reason: 'bad_request', message: `malformed request: ${framing.error}` });
      return;
    }
    this.pending = size < bytes.length ? bytes.subarray(size) : undefined;
    this.deadline = 0;
    this.exchange = new H1Exchange(this, this.edge, head, framing);
    this.exchange.start();
  }

  /** A request that cannot be parsed: its answer, then the connection closes (its framing is unknown). */
  private refuse(error: EdgeError): void {
    this.closing = true;
    this.pending = undefined;
    this.edge.responses.count(statusOf(error.reason), 'edge', undefined);
    this.socket.write(rawGenerated(error, { close: true }));
    endSoon(this.socket);
  }

  private onEnd(): void {
    if (this.detached) return; // an upgraded connection's half-close is relayed by its splice
    // Half-open: a client that ended its side after a request still gets the answer.
    this.clientEnded = true;
    if (this.exchange === undefined) endSoon(this.socket);
  }

  private onClose(): void {
    this.closing = true;
    this.edge.forget(this);
    const exchange = this.exchange;
    this.exchange = undefined;
    exchange?.downstreamGone();
  }
}
