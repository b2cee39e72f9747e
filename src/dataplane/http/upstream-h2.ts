import http2 from 'node:http2';
import { Duplex } from 'node:stream';

/**
 * The upstream speaks first in HTTP/2 (its SETTINGS), so bytes are usually already buffered in the
 * proxy connection's JS stream when the session starts. A session given a native socket would read
 * the descriptor directly and never see them; through a plain Duplex it reads the JS stream instead.
 */
function jsStream(stream: Duplex): Duplex {
  if (!('_handle' in stream)) return stream;
  return Duplex.from({ readable: stream, writable: stream });
}

/** Until the upstream's SETTINGS say otherwise (RFC 9113 recommends at least 100). */
const DEFAULT_MAX_CONCURRENT_STREAMS = 100;

/**
 * One HTTP/2 session to the upstream over one agent stream: h2c with prior knowledge, or h2 chosen by
 * ALPN under upstream TLS. It multiplexes requests up to the peer's MAX_CONCURRENT_STREAMS; the pool
 * opens another session past that.
 */
export class H2Upstream {
  readonly kind = 'h2';
  readonly session: http2.ClientHttp2Session;
  private active = 0;
  /** Set by the pool: called whenever a request finishes (room for another, or idle). */
  onStreamDone: (() => void) | undefined;

  constructor(
    readonly stream: Duplex,
    readonly scheme: 'http' | 'https',
  ) {
    this.session = http2.connect(`${scheme}://upstream`, { createConnection: () => jsStream(stream) });
    this.session.on('error', () => this.session.destroy());
    this.session.once('close', () => stream.destroy());
    stream.once('close', () => this.session.destroy());
  }

  get alive(): boolean {
    return !this.session.closed && !this.session.destroyed;
  }

  get idle(): boolean {
    return this.active === 0;
  }

  hasRoom(): boolean {
    const limit = this.session.remoteSettings.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS;
    return this.alive && this.active < Math.min(limit, DEFAULT_MAX_CONCURRENT_STREAMS * 10);
  }

  /**
   * One request on the session. `completed()` tells whether the response really ended: Node also
   * ends the readable side of a stream it destroys (a dead session, an RST_STREAM with an error code),
   * and that end must not reach the client as a complete response. A real end (END_STREAM, or the
   * stream closed with NO_ERROR) is pushed before the stream is destroyed; the teardown's from inside
   * the destroy.
   */
  request(headers: http2.OutgoingHttpHeaders, endStream: boolean): { stream: http2.ClientHttp2Stream; completed: () => boolean } {
    const request = this.session.request(headers, { endStream });
    let completed = false;
    const push = request.push;
    request.push = function (this: http2.ClientHttp2Stream, chunk: unknown, encoding?: BufferEncoding): boolean {
      if (chunk === null && !request.destroyed) completed = true;
      return push.call(this, chunk, encoding);
    };
    this.active++;
    request.once('close', () => {
      this.active--;
      this.onStreamDone?.();
    });
    return { stream: request, completed: () => completed };
  }

  close(): void {
    this.session.close();
  }
}
