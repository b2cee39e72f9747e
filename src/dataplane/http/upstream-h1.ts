import type { Duplex } from 'node:stream';
import { BodyTracker, parseResponseHead, fieldTokens, fieldValue, responseFraming, type Field, type Framing, type ResponseHead } from './h1-wire.js';

/** An upstream response head larger than this is not HTTP the edge will relay. */
const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
/**
 * Taken off the upstream's `Keep-Alive: timeout=N` hint: a stream idle for nearly that long could be
 * closed by the upstream while a request is on its way, and a request with a body cannot be retried.
 */
const KEEP_ALIVE_MARGIN_MS = 1000;

/** Why an exchange failed; `beforeResponse` failures may get a generated 502 (or a retry). */
export type UpstreamFailure = { beforeResponse: boolean; reason: 'upstream_closed' | 'bad_upstream_response'; detail: string };

/** Where one upstream response goes (an HTTP/1.1 downstream connection, or an h2 stream). */
export interface ResponseSink {
  /** A 1xx other than 101, as received (an HTTP/1.1 downstream relays it as is). */
  interim(head: ResponseHead, raw: Buffer): void;
  /** The final head. Afterwards `wantsPayload` says how body bytes are delivered. */
  head(head: ResponseHead, framing: Framing): void;
  /** true: `body` gets the de-chunked payload; false: the bytes as framed on the wire. */
  readonly wantsPayload: boolean;
  /** Body bytes; false asks the upstream to pause until `resume()`. */
  body(bytes: Buffer): boolean;
  /** Everything read from the upstream so far was handed over: anything held back goes out now. */
  flush?(): void;
  end(): void;
  fail(failure: UpstreamFailure): void;
  /** A 101 to an upgrade request: the stream is the sink's now, `rest` the bytes after the head. */
  upgraded?(head: ResponseHead, raw: Buffer, rest: Buffer): void;
}

const enum Phase {
  Idle,
  Head,
  Body,
  Upgraded,
  Dead,
}

/**
 * One HTTP/1.1 connection to the upstream over one agent stream (docs/http-edge.md#decisions): one exchange at a
 * time, the response head parsed here, its body followed by its framing and handed on as it arrives.
 * Reusable after a complete exchange whose response was framed by length or chunks and did not say
 * `Connection: close`.
 */
export class H1Upstream {
  readonly kind = 'h1';
  /** Set by the pool: called when a finished exchange left the stream reusable. */
  onReusable: (() => void) | undefined;
  private phase = Phase.Idle;
  private sink: ResponseSink | undefined;
  private method = 'GET';
  private upgrade = false;
  private buffered: Buffer | undefined;
  private tracker: BodyTracker | undefined;
  private keepAlive = true;
  /** How long the upstream keeps this connection idle (its Keep-Alive hint, less the margin); undefined: no hint. */
  private idleLimitMs: number | undefined;
  /** Epoch ms until which the stream may carry another request. */
  private reusableUntil = Infinity;
  private requestDone = true;
  private responseDone = true;
  private readonly deliver = (data: Buffer): void => {
    if (!this.sink!.body(data)) this.stream.pause();
  };

  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onEnd());
    stream.on('close', () => this.onClose());
    stream.on('error', () => stream.destroy());
    stream.resume(); // proxy connections arrive paused (rstrm-session.ts)
  }

  /** Usable for another request: idle, open both ways. */
  get alive(): boolean {
    return this.phase === Phase.Idle && !this.stream.destroyed && this.stream.writable && !this.stream.readableEnded;
  }

  /** Idle past what the upstream said it keeps an idle connection for. */
  get pastKeepAlive(): boolean {
    return this.reusableUntil !== Infinity && Date.now() >= this.reusableUntil;
  }

  /**
   * Starts an exchange: `head` is the serialized request head (latin1 text), with the first body bytes
   * if any. `requestComplete`: nothing more will be written (else call `requestEnded()` after the body).
   */
  begin(head: Buffer | string, options: { method: string; upgrade: boolean; requestComplete: boolean }, sink: ResponseSink): void {
    this.phase = Phase.Head;
    this.sink = sink;
    this.method = options.method;
    this.upgrade = options.upgrade;
    this.keepAlive = true;
    this.requestDone = options.requestComplete;
    this.responseDone = false;
    this.stream.write(head, 'latin1');
    // The previous exchange may have ended with the stream paused by a full downstream.
    this.stream.resume();
  }

  /** More request body bytes; false when the stream is full (wait for its 'drain'). */
  write(bytes: Buffer | string): boolean {
    return this.stream.write(bytes);
  }

  requestEnded(): void {
    this.requestDone = true;
    if (this.responseDone) this.finish();
  }

  resume(): void {
    if (this.phase === Phase.Head || this.phase === Phase.Body) this.stream.resume();
  }

  /** The downstream left: this exchange will not complete, and the stream is not reusable. */
  abandon(): void {
    this.sink = undefined;
    this.close();
  }

  close(): void {
    this.phase = Phase.Dead;
    this.stream.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.phase === Phase.Upgraded) return;
    if (this.phase === Phase.Idle || this.phase === Phase.Dead) {
      this.close(); // bytes nobody asked for: this stream's framing can no longer be trusted
      return;
    }
    let bytes = chunk;
    let offset = 0;
    if (this.phase === Phase.Head) {
      bytes = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
      this.buffered = undefined;
      for (;;) {
        const parsed = parseResponseHead(offset === 0 ? bytes : bytes.subarray(offset), MAX_RESPONSE_HEAD_BYTES);
        if (parsed === 'incomplete') {
          this.buffered = bytes.subarray(offset);
          return;
        }
        if ('error' in parsed) {
          this.fail({ beforeResponse: true, reason: 'bad_upstream_response', detail: `response ${parsed.error}: ${parsed.detail}` });
          return;
        }
        const { head, size } = parsed;
        const raw = bytes.subarray(offset, offset + size);
        offset += size;
        if (head.status === 101 && this.upgrade && this.sink?.upgraded) {
          this.phase = Phase.Upgraded;
          this.stream.removeAllListeners('data');
          this.stream.pause();
          this.sink.upgraded(head, raw, bytes.subarray(offset));
          return;
        }
        if (head.status >= 100 && head.status < 200) {
          if (head.status === 101) {
            this.fail({ beforeResponse: true, reason: 'bad_upstream_response', detail: 'a 101 to a request that asked for no upgrade' });
            return;
          }
          this.sink?.interim(head, raw);
          continue;
        }
        const framing = responseFraming(head, this.method);
        if ('error' in framing) {
          this.fail({ beforeResponse: true, reason: 'bad_upstream_response', detail: framing.error });
          return;
        }
        this.keepAlive = head.minor === 1 && framing.kind !== 'close' && !fieldTokens(head.fields, 'connection').has('close');
        this.idleLimitMs = keepAliveHintMs(head.fields);
        this.tracker = new BodyTracker(framing);
        this.phase = Phase.Body;
        this.sink?.head(head, framing);
        break;
      }
    }
    const sink = this.sink;
    this.onBody(bytes, offset);
    sink?.flush?.();
  }

  private onBody(bytes: Buffer, offset: number): void {
    const tracker = this.tracker!;
    const sink = this.sink;
    if (!tracker.done && offset < bytes.length) {
      const wantsPayload = sink?.wantsPayload === true;
      const taken = tracker.take(bytes, offset, wantsPayload ? this.deliver : undefined);
      if (taken instanceof Error) {
        this.fail({ beforeResponse: false, reason: 'bad_upstream_response', detail: taken.message });
        return;
      }
      if (!wantsPayload && sink && taken > 0) {
        const raw = offset === 0 && taken === bytes.length ? bytes : bytes.subarray(offset, offset + taken);
        if (!sink.body(raw)) this.stream.pause();
      }
      offset += taken;
    }
    if (!tracker.done) return;
    if (offset < bytes.length) this.keepAlive = false; // bytes past the response: nothing to pair them with
    // Answered before the whole request went out: the rest of that request would reach the next exchange.
    if (!this.requestDone) this.keepAlive = false;
    this.responseDone = true;
    this.phase = Phase.Idle;
    this.sink = undefined;
    sink?.end();
    if (this.requestDone) this.finish();
  }

  /** Both directions of the exchange are over: reuse the stream, or close it. */
  private finish(): void {
    if (this.phase !== Phase.Idle) return;
    const idleLimit = this.idleLimitMs;
    if (this.keepAlive && this.alive && (idleLimit === undefined || idleLimit > 0)) {
      this.reusableUntil = idleLimit === undefined ? Infinity : Date.now() + idleLimit;
      this.onReusable?.();
    } else this.close();
  }

  private onEnd(): void {
    if (this.phase === Phase.Body && this.tracker?.framing.kind === 'close') {
      const sink = this.sink;
      this.phase = Phase.Dead;
      this.sink = undefined;
      sink?.end();
      this.stream.destroy();
      return;
    }
    if (this.phase === Phase.Head || this.phase === Phase.Body) {
      this.fail({ beforeResponse: this.phase === Phase.Head, reason: 'upstream_closed', detail: 'the upstream closed before a full response' });
      return;
    }
    // Proxy connections are half-open: an idle stream the agent ended can carry no response.
    if (this.phase !== Phase.Upgraded) this.close();
  }

  private onClose(): void {
    if (this.phase === Phase.Head || this.phase === Phase.Body) {
      this.fail({ beforeResponse: this.phase === Phase.Head, reason: 'upstream_closed', detail: 'the upstream closed before a full response' });
    }
    this.phase = Phase.Dead;
  }

  private fail(failure: UpstreamFailure): void {
    const sink = this.sink;
    this.sink = undefined;
    this.phase = Phase.Dead;
    this.stream.destroy();
    sink?.fail(failure);
  }
}

/** The `timeout=` of a Keep-Alive field, in ms less the margin; undefined when the response gives none. */
function keepAliveHintMs(fields: readonly Field[]): number | undefined {
  const value = fieldValue(fields, 'keep-alive');
  if (value === undefined) return undefined;
  const seconds = /(?:^|[\s,;])timeout\s*=\s*(\d{1,9})/i.exec(value)?.[1];
  return seconds === undefined ? undefined : Number(seconds) * 1000 - KEEP_ALIVE_MARGIN_MS;
}
