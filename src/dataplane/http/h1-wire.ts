/**
 * HTTP/1.1 on the wire, as the edge reads and writes it (RFC 9112): request and response heads parsed
 * strictly from bytes, the framing of a message body decided once, and chunked bodies tracked byte by
 * byte so they can be relayed exactly as received (no re-chunking) while the edge still knows where
 * each message ends. Nothing here allocates per body byte.
 */

/** One header field: its name as sent (relayed unchanged), lowercased (for lookups), and its value. */
export interface Field {
  name: string;
  lower: string;
  value: string;
}

export interface RequestHead {
  method: string;
  target: string;
  /** HTTP/1.<minor> */
  minor: 0 | 1;
  fields: Field[];
}

export interface ResponseHead {
  minor: 0 | 1;
  status: number;
  reason: string;
  fields: Field[];
}

/** How a message body is delimited. `close`: by the end of the connection (responses only). */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

export type HeadError = { error: 'too_large' | 'malformed'; detail: string };
export type Parsed<T> = { head: T; size: number } | 'incomplete' | HeadError;

const CRLFCRLF = Buffer.from('\r\n\r\n');
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+) HTTP\/1\.([01])$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;

const NOT_TOKEN = 0;
const TOKEN = 1;
const TOKEN_UPPER = 2;
/** Field-name characters (RFC 9110 token) by ASCII code; uppercase letters marked so lowercasing is skipped when there are none. */
const TOKEN_CHARS = (() => {
  const table = new Uint8Array(128);
  for (const char of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") table[char.charCodeAt(0)] = TOKEN;
  for (let code = 0x41; code <= 0x5a; code++) table[code] = TOKEN_UPPER;
  return table;
})();

export function parseRequestHead(buffer: Buffer, limit: number): Parsed<RequestHead> {
  const text = headText(buffer, limit);
  if (typeof text === 'string' || 'error' in text) return text;
  const lineEnd = startLineEnd(text.head);
  const start = REQUEST_LINE.exec(text.head.slice(0, lineEnd));
  if (!start) return malformed('request line');
  const fields = parseFields(text.head, lineEnd);
  if (!Array.isArray(fields)) return fields;
  return { head: { method: start[1]!, target: start[2]!, minor: start[3] === '1' ? 1 : 0, fields }, size: text.size };
}

export function parseResponseHead(buffer: Buffer, limit: number): Parsed<ResponseHead> {
  const text = headText(buffer, limit);
  if (typeof text === 'string' || 'error' in text) return text;
  const lineEnd = startLineEnd(text.head);
  const start = STATUS_LINE.exec(text.head.slice(0, lineEnd));
  if (!start) return malformed('status line');
  const fields = parseFields(text.head, lineEnd);
  if (!Array.isArray(fields)) return fields;
  return { head: { minor: start[1] === '1' ? 1 : 0, status: Number(start[2]), reason: start[3] ?? '', fields }, size: text.size };
}

/** The head as one latin1 string without its final CRLF CRLF, and its size in bytes on the wire. */
function headText(buffer: Buffer, limit: number): { head: string; size: number } | 'incomplete' | HeadError {
  // RFC 9112 §2.2: empty lines before the start line are ignored.
  let start = 0;
  while (buffer.length >= start + 2 && buffer[start] === 13 && buffer[start + 1] === 10) start += 2;
  const end = buffer.indexOf(CRLFCRLF, start);
  if (end < 0) {
    if (buffer.length - start > limit) return { error: 'too_large', detail: 'head' };
    // A head that ends its lines with a bare LF would otherwise wait for a CRLF CRLF that never comes.
    const lf = buffer.indexOf(10, start);
    if (lf >= 0 && (lf === start || buffer[lf - 1] !== 13)) return malformed('bare LF');
    return 'incomplete';
  }
  if (end + 4 - start > limit) return { error: 'too_large', detail: 'head' };
  return { head: buffer.toString('latin1', start, end), size: end + 4 };
}

function startLineEnd(head: string): number {
  const end = head.indexOf('\r\n');
  return end < 0 ? head.length : end;
}

/**
 * The field lines after the start line (which ends at `from`), in one pass over the head: a token
 * name, a colon with no whitespace before it (no obs-fold: RFC 9112 §5), and a value of visible
 * characters, spaces, tabs and obs-text (no CR, LF, NUL or other controls) with its outer spaces and
 * tabs trimmed.
 */
function parseFields(head: string, from: number): Field[] | HeadError {
  const fields: Field[] = [];
  let lineStart = from + 2;
  for (let line = 1; lineStart < head.length; line++) {
    let lineEnd = head.indexOf('\r\n', lineStart);
    if (lineEnd < 0) lineEnd = head.length;
    let at = lineStart;
    let upper = false;
    for (; at < lineEnd; at++) {
      const code = head.charCodeAt(at);
      const kind = code < 128 ? TOKEN_CHARS[code]! : NOT_TOKEN;
      if (kind === NOT_TOKEN) break;
      if (kind === TOKEN_UPPER) upper = true;
    }
    if (at === lineStart || at === lineEnd || head.charCodeAt(at) !== 0x3a) return malformed(`field line ${line}`);
    const name = head.slice(lineStart, at);
    let valueStart = at + 1;
    let valueEnd = lineEnd;
    for (let index = valueStart; index < lineEnd; index++) {
      const code = head.charCodeAt(index);
      if ((code < 0x20 && code !== 0x09) || code === 0x7f) return malformed(`value of ${name}`);
    }
    while (valueStart < valueEnd && isBlank(head.charCodeAt(valueStart))) valueStart++;
    while (valueEnd > valueStart && isBlank(head.charCodeAt(valueEnd - 1))) valueEnd--;
    fields.push({ name, lower: upper ? name.toLowerCase() : name, value: head.slice(valueStart, valueEnd) });
    lineStart = lineEnd + 2;
  }
  return fields;
}

function isBlank(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

function malformed(detail: string): HeadError {
  return { error: 'malformed', detail };
}

/** The first value of a field, or undefined. */
export function fieldValue(fields: readonly Field[], lower: string): string | undefined {
  for (const field of fields) if (field.lower === lower) return field.value;
  return undefined;
}

const NO_TOKENS: ReadonlySet<string> = new Set();

/** Comma-separated tokens of every `lower` field, lowercased (a shared empty set when there is none). */
export function fieldTokens(fields: readonly Field[], lower: string): ReadonlySet<string> {
  let tokens: Set<string> | undefined;
  for (const field of fields) {
    if (field.lower !== lower) continue;
    for (const token of field.value.split(',')) {
      const trimmed = token.trim().toLowerCase();
      if (trimmed !== '') (tokens ??= new Set()).add(trimmed);
    }
  }
  return tokens ?? NO_TOKENS;
}

/** Where a request goes: the path sent upstream (origin-form) and the authority it names (undefined: none). */
export interface RequestTarget {
  path: string;
  authority: string | undefined;
}

const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)$/i;
/** A Host value: reg-name or IP literal and an optional port (RFC 3986 characters; no userinfo, no path). */
const HOST_VALUE = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\])(?::\d*)?$/;

/**
 * RFC 9112 §3.2–3.3: exactly one valid Host field (none is a 400 the edge gives when it routes), and a
 * target in origin-form, asterisk-form (OPTIONS only) or absolute-form, whose authority then replaces
 * Host (RFC 9112 §3.2.2) and whose path and query are what the upstream gets.
 */
export function requestTarget(head: RequestHead): RequestTarget | { error: string } {
  let host: string | undefined;
  for (const field of head.fields) {
    if (field.lower !== 'host') continue;
    if (host !== undefined) return { error: 'more than one Host' };
    host = field.value;
  }
  if (host !== undefined && !HOST_VALUE.test(host)) return { error: 'invalid Host' };
  const { target } = head;
  if (target.startsWith('/')) return { path: target, authority: host };
  if (target === '*') return head.method === 'OPTIONS' ? { path: target, authority: host } : { error: 'asterisk-form target' };
  const absolute = ABSOLUTE_FORM.exec(target);
  if (!absolute) return { error: 'request target' };
  const [, authority, rest] = absolute as unknown as [string, string, string];
  if (authority === '' || !HOST_VALUE.test(authority)) return { error: 'authority of the target' };
  return { path: rest.startsWith('/') ? rest : `/${rest}`, authority };
}

/**
 * RFC 9112 §6.3 for a request, strictly: Transfer-Encoding with Content-Length, a transfer coding
 * other than exactly `chunked`, Transfer-Encoding on HTTP/1.0, differing or malformed Content-Length
 * values are all refused (each is a way to make two parsers disagree on where a request ends).
 */
export function requestFraming(head: RequestHead): Framing | { error: string } {
  const codings = head.fields.filter((field) => field.lower === 'transfer-encoding').map((field) => field.value);
  const length = contentLength(head.fields);
  if (typeof length === 'object') return length;
  if (codings.length > 0) {
    if (length !== undefined) return { error: 'Content-Length with Transfer-Encoding' };
    if (head.minor === 0) return { error: 'Transfer-Encoding on HTTP/1.0' };
    const transferEncoding = codings.join(',');
    if (transferEncoding.trim().toLowerCase() !== 'chunked') return { error: `transfer coding "${transferEncoding}"` };
    return { kind: 'chunked' };
  }
  // An explicit `Content-Length: 0` is kept (length 0), so the upstream sees it as sent.
  return length === undefined ? { kind: 'none' } : { kind: 'length', length };
}

/** Whether a message with this framing has body bytes to read. */
export function carriesBody(framing: Framing): boolean {
  return framing.kind === 'chunked' || framing.kind === 'close' || (framing.kind === 'length' && framing.length > 0);
}

/** RFC 9112 §6.3 for a response to `method`; differing Content-Length values are an error. */
export function responseFraming(head: ResponseHead, method: string): Framing | { error: string } {
  if (method === 'HEAD' || head.status < 200 || head.status === 204 || head.status === 304) return { kind: 'none' };
  const codings = fieldTokens(head.fields, 'transfer-encoding');
  if (codings.size > 0) return [...codings].at(-1) === 'chunked' && head.minor === 1 ? { kind: 'chunked' } : { kind: 'close' };
  const length = contentLength(head.fields);
  if (typeof length === 'object') return length;
  if (length === undefined) return { kind: 'close' };
  return length === 0 ? { kind: 'none' } : { kind: 'length', length };
}

/** The Content-Length of a head: every value (repeated fields, comma lists) must be the same digits. */
function contentLength(fields: readonly Field[]): number | undefined | { error: string } {
  let length: number | undefined;
  for (const field of fields) {
    if (field.lower !== 'content-length') continue;
    for (const item of field.value.includes(',') ? field.value.split(',') : [field.value]) {
      const value = digitsValue(item.trim());
      if (value < 0) return { error: 'malformed Content-Length' };
      if (length !== undefined && length !== value) return { error: 'differing Content-Length values' };
      length = value;
    }
  }
  return length;
}

/** The value of 1 to 15 decimal digits, or -1. */
function digitsValue(text: string): number {
  if (text.length === 0 || text.length > 15) return -1;
  let value = 0;
  for (let index = 0; index < text.length; index++) {
    const digit = text.charCodeAt(index) - 0x30;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

const enum Chunk {
  Size,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  FinalLf,
  Done,
}

/** Longest chunk-size line (size, extensions) and trailer section accepted. */
const CHUNK_LINE_LIMIT = 4096;
const TRAILER_LIMIT = 16 * 1024;

/**
 * Follows a chunked body through any split of its bytes (RFC 9112 §7.1): where it ends, and which
 * bytes are data. Sizes up to 13 hex digits; extensions and trailers are kept in the relayed bytes
 * but bounded.
 */
export class ChunkedScanner {
  private state = Chunk.Size;
  private size = 0;
  private digits = 0;
  private lineBytes = 0;
  private trailerBytes = 0;

  get done(): boolean {
    return this.state === Chunk.Done;
  }

  /**
   * Scans `bytes` from `offset`; returns how many belong to this body (up to its end), or an Error.
   * `onData`, when given, receives each run of data bytes (the de-chunked payload).
   */
  scan(bytes: Buffer, offset: number, onData?: (data: Buffer) => void): number | Error {
    let at = offset;
    while (at < bytes.length && this.state !== Chunk.Done) {
      if (this.state === Chunk.Data) {
        const take = Math.min(this.size, bytes.length - at);
        if (onData) onData(bytes.subarray(at, at + take));
        this.size -= take;
        at += take;
        if (this.size === 0) this.state = Chunk.DataCr;
        continue;
      }
      const byte = bytes[at++]!;
      switch (this.state) {
        case Chunk.Size: {
          const digit = hexValue(byte);
          if (digit >= 0) {
            if (++this.digits > 13) return new Error('chunk size too large');
            this.size = this.size * 16 + digit;
          } else if (this.digits > 0 && (byte === 0x3b || byte === 0x20 || byte === 0x09)) {
            this.state = Chunk.Extension;
            this.lineBytes = 0;
          } else if (this.digits > 0 && byte === 13) this.state = Chunk.SizeLf;
          else return new Error('malformed chunk size');
          break;
        }
        case Chunk.Extension:
          if (byte === 13) this.state = Chunk.SizeLf;
          else if ((byte < 0x20 && byte !== 0x09) || byte === 0x7f || ++this.lineBytes > CHUNK_LINE_LIMIT) return new Error('malformed chunk extension');
          break;
        case Chunk.SizeLf:
          if (byte !== 10) return new Error('chunk size line without CRLF');
          if (this.size === 0) this.state = Chunk.TrailerStart;
          else this.state = Chunk.Data;
          this.digits = 0;
          break;
        case Chunk.DataCr:
          if (byte !== 13) return new Error('chunk data longer than its size');
          this.state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (byte !== 10) return new Error('chunk data without CRLF');
          this.state = Chunk.Size;
          break;
        case Chunk.TrailerStart:
          if (byte === 13) this.state = Chunk.FinalLf;
          else if (byte === 10) return new Error('bare LF in trailers');
          else this.state = Chunk.Trailer;
          if (++this.trailerBytes > TRAILER_LIMIT) return new Error('trailers too large');
          break;
        case Chunk.Trailer:
          if (byte === 13) this.state = Chunk.TrailerLf;
          else if (byte === 10 || byte === 0) return new Error('malformed trailer');
          if (++this.trailerBytes > TRAILER_LIMIT) return new Error('trailers too large');
          break;
        case Chunk.TrailerLf:
          if (byte !== 10) return new Error('trailer without CRLF');
          this.state = Chunk.TrailerStart;
          break;
        case Chunk.FinalLf:
          if (byte !== 10) return new Error('last chunk without CRLF');
          this.state = Chunk.Done;
          break;
      }
    }
    return at - offset;
  }
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * Where one message body ends in a byte stream, whatever its framing: `take` returns how many bytes
 * of `bytes` (from `offset`) belong to it; `done` once it is complete. `onData` gets the payload.
 */
export class BodyTracker {
  private remaining: number;
  private readonly chunked: ChunkedScanner | undefined;

  constructor(readonly framing: Framing) {
    this.remaining = framing.kind === 'length' ? framing.length : 0;
    this.chunked = framing.kind === 'chunked' ? new ChunkedScanner() : undefined;
  }

  get done(): boolean {
    if (this.chunked) return this.chunked.done;
    return this.framing.kind === 'none' || (this.framing.kind === 'length' && this.remaining === 0);
  }

  take(bytes: Buffer, offset: number, onData?: (data: Buffer) => void): number | Error {
    if (this.chunked) return this.chunked.scan(bytes, offset, onData);
    if (this.framing.kind === 'close') {
      if (onData && bytes.length > offset) onData(offset === 0 ? bytes : bytes.subarray(offset));
      return bytes.length - offset;
    }
    const take = Math.min(this.remaining, bytes.length - offset);
    if (onData && take > 0) onData(offset === 0 && take === bytes.length ? bytes : bytes.subarray(offset, offset + take));
    this.remaining -= take;
    return take;
  }
}

/** One chunk of a chunked body we frame ourselves. */
export function chunkOf(data: Buffer): Buffer[] {
  return [Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1'), data, CRLF];
}

export const CRLF = Buffer.from('\r\n');
export const LAST_CHUNK = Buffer.from('0\r\n\r\n');
