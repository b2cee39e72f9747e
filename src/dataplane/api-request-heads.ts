import { Transform, type TransformCallback } from 'node:stream';
import { MAX_HEADER_BYTES } from './http/h1-connection.js';
import { BodyTracker, carriesBody, fieldTokens, parseRequestHead, requestFraming } from './http/h1-wire.js';

/**
 * Field lines per request head the Engine API's HTTP server handles (uWS 20.30 stops answering past
 * 50; it counts the request line too). Browsers send about twenty.
 */
const MAX_API_FIELDS = 48;

/**
 * The Engine API's requests on their way from a worker to the main thread's uWS server, each head
 * handed on whole, in one chunk. The uWS build that runs on Node 20 answers nothing to a head of more
 * than 4 KiB that arrives in more than one read (a long token does that); whole, it takes up to the
 * edge's 16 KiB. A head past that limit, with too many fields, or that cannot be framed gets its
 * answer here (`refuse`) and nothing more is passed. Bodies pass by their framing; after an upgrade
 * request (the WebSocket event stream) everything passes as it comes.
 */
export class ApiRequestHeads extends Transform {
  private pending: Buffer | undefined;
  private body: BodyTracker | undefined;
  private passThrough = false;
  private refused = false;

  constructor(private readonly refuse: (answer: Buffer) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.refused) {
      done();
      return;
    }
    if (this.passThrough) {
      done(null, chunk);
      return;
    }
    let bytes = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    while (bytes.length > 0) {
      if (this.body) {
        const taken = this.body.take(bytes, 0);
        if (taken instanceof Error) return this.answer(400, 'malformed request body', done);
        if (taken > 0) this.push(bytes.subarray(0, taken));
        bytes = bytes.subarray(taken);
        if (!this.body.done) break;
        this.body = undefined;
        continue;
      }
      const parsed = parseRequestHead(bytes, MAX_HEADER_BYTES);
      if (parsed === 'incomplete') {
        this.pending = bytes;
        break;
      }
      if ('error' in parsed) {
        return parsed.error === 'too_large' ? this.answer(431, 'request headers exceed 16 KiB', done) : this.answer(400, `malformed request: ${parsed.detail}`, done);
      }
      if (parsed.head.fields.length > MAX_API_FIELDS) return this.answer(431, `more than ${MAX_API_FIELDS} header fields`, done);
      const framing = requestFraming(parsed.head);
      if ('error' in framing) return this.answer(400, `malformed request: ${framing.error}`, done);
      this.push(bytes.subarray(0, parsed.size));
      bytes = bytes.subarray(parsed.size);
      if (fieldTokens(parsed.head.fields, 'connection').has('upgrade')) {
        this.passThrough = true;
        if (bytes.length > 0) this.push(bytes);
        break;
      }
      if (carriesBody(framing)) this.body = new BodyTracker(framing);
    }
    done();
  }

  /** The API's error shape, then nothing more from this connection. */
  private answer(status: 400 | 431, message: string, done: TransformCallback): void {
    this.refused = true;
    this.pending = undefined;
    const body = JSON.stringify({ error: 'bad_request', message });
    const reason = status === 400 ? 'Bad Request' : 'Request Header Fields Too Large';
    this.refuse(
      Buffer.from(
        `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\naccess-control-allow-origin: *\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      ),
    );
    done();
  }
}
