import tls from 'node:tls';
import { Wakeups } from './wakeups.js';

/**
 * A raw HTTP/2 client for tests: it writes exactly the frames a test builds (so it can send what no
 * HTTP/2 library would) and reads the server's frames one by one. HPACK is the minimum an attack needs:
 * indexed references and literal fields, never Huffman-coded.
 */

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  CONTINUATION: 0x9,
} as const;

export const Flags = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

/** Setting identifiers a test may send. */
export const Setting = { INITIAL_WINDOW_SIZE: 0x4 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_BYTES = 9;

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

export function settingsFrame(entries: Array<[id: number, value: number]> = []): Buffer {
  const payload = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

const settingsAck = (): Buffer => frame(FrameType.SETTINGS, Flags.ACK, 0);

export function pingFrame(opaque: bigint): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeBigUInt64BE(opaque);
  return frame(FrameType.PING, 0, 0, payload);
}

export function headersFrame(streamId: number, block: Buffer, options: { endStream: boolean; endHeaders: boolean }): Buffer {
  return frame(FrameType.HEADERS, (options.endStream ? Flags.END_STREAM : 0) | (options.endHeaders ? Flags.END_HEADERS : 0), streamId, block);
}

export function continuationFrame(streamId: number, block: Buffer, endHeaders: boolean): Buffer {
  return frame(FrameType.CONTINUATION, endHeaders ? Flags.END_HEADERS : 0, streamId, block);
}

export function dataFrame(streamId: number, payload: Buffer, endStream: boolean): Buffer {
  return frame(FrameType.DATA, endStream ? Flags.END_STREAM : 0, streamId, payload);
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FrameType.RST_STREAM, 0, streamId, payload);
}

// HPACK (RFC 7541) ---------------------------------------------------------------------------------

/** HPACK static-table indexes used here. */
export const StaticIndex = { AUTHORITY: 1, METHOD_GET: 2, METHOD_POST: 3, PATH: 4, SCHEME_HTTPS: 7 } as const;
/** The first dynamic-table index: the newest entry inserted. */
export const FIRST_DYNAMIC_INDEX = 62;

/** An HPACK integer with an N-bit prefix; `pattern` holds the bits above the prefix in the first byte. */
function hpackInteger(value: number, prefixBits: number, pattern: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([pattern | value]);
  const bytes = [pattern | max];
  for (value -= max; value >= 128; value = Math.floor(value / 128)) bytes.push((value % 128) | 0x80);
  bytes.push(value);
  return Buffer.from(bytes);
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([hpackInteger(bytes.length, 7, 0x00), bytes]);
}

/** A reference to a static- or dynamic-table entry (name and value). */
export const indexedField = (index: number): Buffer => hpackInteger(index, 7, 0x80);

/** A literal field, not indexed, whose name is a table entry. */
function literalWithIndexedName(nameIndex: number, value: string): Buffer {
  return Buffer.concat([hpackInteger(nameIndex, 4, 0x00), hpackString(value)]);
}

/** A literal field with a literal name; `remember` inserts it in the server's dynamic table. */
export function literalField(name: string, value: string, remember = false): Buffer {
  return Buffer.concat([Buffer.from([remember ? 0x40 : 0x00]), hpackString(name), hpackString(value)]);
}

/** The header block of a request for `https://<authority><path>` (`method`: its static-table index). */
export function requestBlock(authority: string, path: string, method: number = StaticIndex.METHOD_GET): Buffer {
  return Buffer.concat([
    indexedField(method),
    indexedField(StaticIndex.SCHEME_HTTPS),
    literalWithIndexedName(StaticIndex.PATH, path),
    literalWithIndexedName(StaticIndex.AUTHORITY, authority),
  ]);
}

// The connection ------------------------------------------------------------------------------------

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export interface Goaway {
  lastStreamId: number;
  code: number;
}

export function goawayOf(goaway: Frame): Goaway {
  return { lastStreamId: goaway.payload.readUInt32BE(0) & 0x7fffffff, code: goaway.payload.readUInt32BE(4) };
}

export function rstCodeOf(rst: Frame): number {
  return rst.payload.readUInt32BE(0);
}

/**
 * One TLS connection speaking raw HTTP/2 (ALPN h2). It reads everything the server sends and parses it
 * into frames, unless paused; `write` resolves once the bytes left, or rejects once the server cut.
 */
export class RawH2Connection {
  /** The frames received, but for acknowledgements (a flood's answers are counted, not kept). */
  readonly frames: Frame[] = [];
  /** Resolves when the socket closes, for any reason. */
  readonly closed: Promise<void>;
  /** How many frames of each type were received, acknowledgements included. */
  private readonly received = new Map<number, number>();
  private isClosed = false;
  private buffered: Buffer = Buffer.alloc(0);
  private readonly wakeups = new Wakeups();

  private constructor(readonly socket: tls.TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
      this.parse();
      this.wakeups.wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wakeups.wake();
        resolve();
      }),
    );
  }

  /**
   * Connects, sends the client preface and an empty SETTINGS, and acknowledges the server's (unless
   * `acknowledge` is false: until then the server's limits are not in force).
   */
  static async open(port: number, ca: Buffer, servername: string, { acknowledge = true } = {}): Promise<RawH2Connection> {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, ALPNProtocols: ['h2'] });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    if (socket.alpnProtocol !== 'h2') throw new Error(`the server chose ${String(socket.alpnProtocol)}, not h2`);
    const connection = new RawH2Connection(socket);
    await connection.write(Buffer.concat([PREFACE, settingsFrame()]));
    await connection.next((f) => f.type === FrameType.SETTINGS && (f.flags & Flags.ACK) === 0);
    if (acknowledge) await connection.write(settingsAck());
    return connection;
  }

  /** Writes `bytes`; resolves once the socket took them, rejects when the connection is gone. */
  write(bytes: Buffer): Promise<void> {
    if (this.isClosed || this.socket.destroyed) return Promise.reject(new Error('the connection is closed'));
    return new Promise((resolve, reject) => this.socket.write(bytes, (error) => (error ? reject(error) : resolve())));
  }

  /** The first frame received that matches, waiting for it; rejects on close or after `timeoutMs`. */
  async next(matches: (frame: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(matches);
      if (found) return found;
      if (this.isClosed) throw new Error('the connection closed before the frame arrived');
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`no such frame within ${timeoutMs} ms`);
      await this.wakeups.wait(remaining);
    }
  }

  /** Frames of `type` received so far, acknowledgements included. */
  count(type: number): number {
    return this.received.get(type) ?? 0;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private parse(): void {
    while (this.buffered.length >= FRAME_HEADER_BYTES) {
      const length = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < FRAME_HEADER_BYTES + length) return;
      const type = this.buffered.readUInt8(3);
      const flags = this.buffered.readUInt8(4);
      this.received.set(type, this.count(type) + 1);
      const acknowledgement = (type === FrameType.SETTINGS || type === FrameType.PING) && (flags & Flags.ACK) !== 0;
      if (!acknowledgement) {
        this.frames.push({
          type,
          flags,
          streamId: this.buffered.readUInt32BE(5) & 0x7fffffff,
          payload: Buffer.from(this.buffered.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length)),
        });
      }
      this.buffered = this.buffered.subarray(FRAME_HEADER_BYTES + length);
    }
  }


}
