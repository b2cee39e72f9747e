/**
 * Reads the TLS ClientHello without terminating TLS (docs/architecture.md#a-worker): the server name and the
 * offered ALPN protocols, from bytes that may arrive split across reads and TLS records.
 */

export interface ClientHello {
  /** SNI host_name, lowercased with a trailing dot stripped; undefined when none was sent. */
  serverName: string | undefined;
  /** Offered ALPN protocol names in the client's order; undefined when no ALPN extension was sent. */
  alpnProtocols: string[] | undefined;
}

export type ClientHelloParse =
  | { status: 'incomplete' }
  | { status: 'complete'; hello: ClientHello }
  | { status: 'invalid'; reason: string };

/** The cap on how much we buffer before giving up on a ClientHello (docs/bounds.md). */
export const CLIENT_HELLO_MAX_BYTES = 16 * 1024;

const RECORD_HEADER = 5;
const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXTENSION_SERVER_NAME = 0;
const EXTENSION_ALPN = 16;
const SERVER_NAME_HOST = 0;

class Malformed extends Error {}

/** Parses what has arrived so far; call again with more bytes while it answers `incomplete`. */
export function parseClientHello(data: Buffer): ClientHelloParse {
  try {
    const handshake = reassembleHandshake(data);
    if (handshake === undefined) {
      return data.length >= CLIENT_HELLO_MAX_BYTES
        ? { status: 'invalid', reason: 'ClientHello larger than 16 KiB' }
        : { status: 'incomplete' };
    }
    return { status: 'complete', hello: parseHelloBody(handshake) };
  } catch (error) {
    return { status: 'invalid', reason: (error as Error).message };
  }
}

/** Concatenates handshake-record fragments until the whole ClientHello message is present. */
function reassembleHandshake(data: Buffer): Buffer | undefined {
  const fragments: Buffer[] = [];
  let collected = 0;
  let needed: number | undefined;
  let offset = 0;
  while (offset + RECORD_HEADER <= data.length) {
    const contentType = data[offset]!;
    const major = data[offset + 1]!;
    const recordLength = data.readUInt16BE(offset + 3);
    if (contentType !== CONTENT_HANDSHAKE || major !== 3) throw new Malformed('not a TLS handshake');
    if (recordLength === 0 || recordLength > 16384 + 2048) throw new Malformed('bad TLS record length');
    const available = Math.min(recordLength, data.length - offset - RECORD_HEADER);
    fragments.push(data.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + available));
    collected += available;
    if (needed === undefined && collected >= 4) {
      const head = Buffer.concat(fragments, collected);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) throw new Malformed('first handshake message is not a ClientHello');
      needed = 4 + head.readUIntBE(1, 3);
      if (needed > CLIENT_HELLO_MAX_BYTES) throw new Malformed('ClientHello larger than 16 KiB');
    }
    if (needed !== undefined && collected >= needed) return Buffer.concat(fragments, collected).subarray(4, needed);
    if (available < recordLength) return undefined;
    offset += RECORD_HEADER + recordLength;
  }
  // A partial record header: make sure what we have so far could still be TLS.
  if (offset < data.length && (data[offset] !== CONTENT_HANDSHAKE || (data.length > offset + 1 && data[offset + 1] !== 3))) {
    throw new Malformed('not a TLS handshake');
  }
  return undefined;
}

/** A bounds-checked reader over one buffer; running past the end means the hello is malformed. */
class Reader {
  constructor(
    private readonly buffer: Buffer,
    public offset = 0,
    private readonly end = buffer.length,
  ) {}

  get remaining(): number {
    return this.end - this.offset;
  }

  skip(count: number): void {
    this.need(count);
    this.offset += count;
  }

  u8(): number {
    this.need(1);
    return this.buffer[this.offset++]!;
  }

  u16(): number {
    this.need(2);
    const value = this.buffer.readUInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  /** A sub-reader over the next `length` bytes, which this reader then skips. */
  take(length: number): Reader {
    this.need(length);
    const sub = new Reader(this.buffer, this.offset, this.offset + length);
    this.offset += length;
    return sub;
  }

  bytes(length: number): Buffer {
    this.need(length);
    const out = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  private need(count: number): void {
    if (count > this.remaining) throw new Malformed('truncated ClientHello');
  }
}

function parseHelloBody(body: Buffer): ClientHello {
  const hello = new Reader(body);
  hello.skip(2 + 32); // legacy_version, random
  hello.skip(hello.u8()); // legacy_session_id
  hello.skip(hello.u16()); // cipher_suites
  hello.skip(hello.u8()); // legacy_compression_methods
  const result: ClientHello = { serverName: undefined, alpnProtocols: undefined };
  if (hello.remaining === 0) return result; // no extensions at all
  const extensions = hello.take(hello.u16());
  while (extensions.remaining > 0) {
    const type = extensions.u16();
    const data = extensions.take(extensions.u16());
    if (type === EXTENSION_SERVER_NAME) result.serverName = readServerName(data);
    else if (type === EXTENSION_ALPN) result.alpnProtocols = readAlpn(data);
  }
  return result;
}

function readServerName(data: Reader): string | undefined {
  const list = data.take(data.u16());
  while (list.remaining > 0) {
    const nameType = list.u8();
    const name = list.bytes(list.u16());
    if (nameType === SERVER_NAME_HOST) return name.toString('latin1').toLowerCase().replace(/\.$/, '');
  }
  return undefined;
}

function readAlpn(data: Reader): string[] {
  const list = data.take(data.u16());
  const protocols: string[] = [];
  while (list.remaining > 0) protocols.push(list.bytes(list.u8()).toString('latin1'));
  return protocols;
}
