import http2 from 'node:http2';
import type { Duplex } from 'node:stream';

/** Until the upstream's SETTINGS say otherwise (RFC 9113 recommends at least 100). */
const DEFAULT_MAX_CONCURRENT_STREAMS = 100;

/**
 * One HTTP/2 session to the upstream over one agent stream: h2c with prior knowledge, or h2 chosen by
 * ALPN under upstream TLS. It multiplexes requests up to the peer's MAX_CONCURRENT_STREAMS; the pool
 * opens another session past that (engine.md §12.6).
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
    stream.resume(); // it arrives paused; the session takes it over synchronously, before any byte can be read
    this.session = http2.connect(`${scheme}://upstream`, { createConnection: () => stream });
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

  request(headers: http2.OutgoingHttpHeaders, endStream: boolean): http2.ClientHttp2Stream {
    const request = this.session.request(headers, { endStream });
    this.active++;
    request.once('close', () => {
      this.active--;
      this.onStreamDone?.();
    });
    return request;
  }

  close(): void {
    this.session.close();
  }
}
