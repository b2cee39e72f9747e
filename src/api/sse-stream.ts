import type { ApiRequest } from './engine-api.js';
import type { HttpResponse } from './uws.js';

/**
 * uWS 20.30 loses a write that does not fit in its 16 KiB cork buffer when flushing that buffer hits
 * backpressure (the chunk header goes out without its data: malformed chunked encoding). Every write
 * here is therefore its own cork, at most this many bytes; an SSE event may span HTTP chunks.
 */
const MAX_WRITE_BYTES = 16 * 1024 - 64;

/** How soon a refused SSE stream tries again by itself (see SseStream.send). */
const SSE_RETRY_MS = 50;

/**
 * One SSE response. When uWS cannot send a write at once it keeps the rest and later pieces wait here
 * until onWritable; past the allowance (set by the first write: what the stream may have queued beyond
 * it) the stream is cut. With an onWritable handler registered, uWS drains its own buffer only through
 * our writes, so the handler always writes (an SSE comment line when nothing waits).
 */
export class SseStream {
  private readonly waiting: Buffer[] = [];
  private waitingBytes = 0;
  /** Bytes handed to uWS since it last accepted a write: they may all sit in its buffer. */
  private unconfirmedBytes = 0;
  private allowance: number | undefined;
  private backpressured = false;
  private retry: NodeJS.Timeout | undefined;
  private open = true;

  /**
   * Answers `request` with an SSE head and returns the stream. The head is its own cork: the first
   * event (a snapshot) may be large, and each write must be its own cork (see MAX_WRITE_BYTES).
   */
  static open(res: HttpResponse, request: ApiRequest, allowanceAfter: (firstWriteBytes: number) => number, onGone: () => void): SseStream {
    const stream = new SseStream(res, allowanceAfter, onGone);
    request.answered(200);
    res.cork(() => {
      res
        .writeStatus('200 OK')
        .writeHeader('content-type', 'text/event-stream')
        .writeHeader('cache-control', 'no-cache')
        .writeHeader('x-accel-buffering', 'no')
        .writeHeader('access-control-allow-origin', '*');
    });
    return stream;
  }

  private constructor(
    private readonly res: HttpResponse,
    private readonly allowanceAfter: (firstWriteBytes: number) => number,
    private readonly onGone: () => void,
  ) {
    res.onAborted(() => this.gone());
    res.onWritable(() => this.drain());
  }

  /** false once the stream is cut (too slow) or gone. */
  write(bytes: Buffer): boolean {
    if (!this.open) return false;
    this.allowance ??= this.allowanceAfter(bytes.length);
    for (let offset = 0; offset < bytes.length; offset += MAX_WRITE_BYTES) {
      const piece = bytes.subarray(offset, offset + MAX_WRITE_BYTES);
      if (this.backpressured) {
        this.waiting.push(piece);
        this.waitingBytes += piece.length;
      } else this.send(piece);
    }
    if (this.waitingBytes + this.unconfirmedBytes <= this.allowance) return true;
    this.res.close();
    this.gone();
    return false;
  }

  close(): void {
    if (!this.open) return;
    this.res.cork(() => this.res.end());
    this.gone();
  }

  private drain(): boolean {
    if (!this.open) return true;
    this.backpressured = false;
    if (this.waiting.length === 0) this.waiting.push(Buffer.from(':\n\n'));
    while (this.waiting.length > 0 && !this.backpressured) {
      const piece = this.waiting.shift()!;
      this.waitingBytes -= piece.length;
      this.send(piece);
    }
    return !this.backpressured;
  }

  private send(piece: Buffer): void {
    this.res.cork(() => {
      this.backpressured = !this.res.write(piece);
    });
    this.unconfirmedBytes = this.backpressured ? this.unconfirmedBytes + piece.length : 0;
    if (this.unconfirmedBytes > (this.allowance ?? Infinity)) {
      this.res.close();
      this.gone();
      return;
    }
    // uWS can report a refusal for a write it then sends whole, and no writable event follows; so a
    // refused stream also retries on its own. A stalled reader gains at most one piece per retry.
    if (this.backpressured) this.retry ??= setTimeout(() => {
      this.retry = undefined;
      if (this.backpressured) this.drain();
    }, SSE_RETRY_MS);
  }

  private gone(): void {
    if (!this.open) return;
    this.open = false;
    clearTimeout(this.retry);
    this.onGone();
  }
}
