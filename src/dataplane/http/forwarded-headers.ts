import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { ipv4FromMapped } from '../../net/ip.js';
import { fieldTokens, fieldValue, type Field } from './h1-wire.js';

/** Headers that describe one hop, never forwarded in either direction (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'http2-settings']);
/** Set by the edge from what it saw; incoming values are replaced (X-Forwarded-For is appended to). */
const FORWARDED = new Set(['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

export interface UpstreamHeaderOptions {
  /** The downstream Host / :authority exactly as received. */
  authority: string;
  /** The downstream TCP peer. */
  peerAddress: string | undefined;
  /** h1 upstreams get Host and joined cookies; h2 upstreams get :authority (set by the caller) and crumbs. */
  upstream: 'h1' | 'h2';
  /** A WebSocket upgrade keeps Connection: Upgrade and Upgrade. */
  websocket: boolean;
  /** token_auth consumed a Bearer header: it does not go upstream. */
  dropAuthorization: boolean;
}

/** The request headers sent upstream: hop-by-hop removed, X-Forwarded-* set, the rest unchanged. */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, options: UpstreamHeaderOptions): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  const listed = connectionTokens(incoming.connection);
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || name.startsWith(':') || FORWARDED.has(name)) continue;
    if (HOP_BY_HOP.has(name) || listed.has(name)) continue;
    if (name === 'authorization' && options.dropAuthorization) continue;
    headers[name] = name === 'cookie' && Array.isArray(value) && options.upstream === 'h1' ? value.join('; ') : value;
  }
  if (options.upstream === 'h1') headers.host = options.authority;
  else if (/\btrailers\b/i.test(String(incoming.te ?? ''))) headers.te = 'trailers';
  if (options.websocket) {
    headers.connection = 'Upgrade';
    headers.upgrade = incoming.upgrade;
  }
  const client = plainAddress(options.peerAddress);
  const previous = incoming['x-forwarded-for'];
  headers['x-forwarded-for'] = previous ? `${Array.isArray(previous) ? previous.join(', ') : previous}, ${client}` : client;
  headers['x-forwarded-proto'] = 'https';
  headers['x-forwarded-host'] = options.authority;
  return headers;
}

/**
 * The same rules over an HTTP/1.1 head's fields, serialized: the request's own fields in their order
 * and spelling, then Host and the X-Forwarded-* fields. `websocket` keeps a WebSocket's Connection and
 * Upgrade; `framing` is the Transfer-Encoding / Content-Length line the edge frames the body with.
 */
export function upstreamRequestLines(
  fields: readonly Field[],
  plan: Pick<UpstreamHeaderOptions, 'authority' | 'peerAddress' | 'dropAuthorization'>,
  websocket: boolean,
  framing: string,
): string {
  const listed = fieldTokens(fields, 'connection');
  let lines = '';
  let previousFor: string | undefined;
  for (const field of fields) {
    const name = field.lower;
    if (name === 'x-forwarded-for') previousFor = previousFor === undefined ? field.value : `${previousFor}, ${field.value}`;
    if (FORWARDED.has(name) || HOP_BY_HOP.has(name) || listed.has(name) || name === 'content-length') continue;
    if (name === 'authorization' && plan.dropAuthorization) continue;
    lines += `${field.name}: ${field.value}\r\n`;
  }
  if (websocket) lines += `connection: Upgrade\r\nupgrade: ${fieldValue(fields, 'upgrade') ?? 'websocket'}\r\n`;
  const client = plainAddress(plan.peerAddress);
  return (
    `${lines}host: ${plan.authority}\r\n${framing}` +
    `x-forwarded-for: ${previousFor === undefined ? client : `${previousFor}, ${client}`}\r\n` +
    `x-forwarded-proto: https\r\nx-forwarded-host: ${plan.authority}\r\n`
  );
}

/**
 * An HTTP/1.1 response's fields minus hop-by-hop ones, serialized. Transfer-Encoding is the edge's to
 * write; Content-Length is kept only where it still describes the body (`keepLength`).
 */
export function downstreamResponseLines(fields: readonly Field[], keepLength: boolean): string {
  const listed = fieldTokens(fields, 'connection');
  let lines = '';
  for (const field of fields) {
    if (HOP_BY_HOP.has(field.lower) || listed.has(field.lower) || (!keepLength && field.lower === 'content-length')) continue;
    lines += `${field.name}: ${field.value}\r\n`;
  }
  return lines;
}

/** HTTP/1.1 fields as Node's header object (repeated fields joined, Set-Cookie and Cookie as lists). */
export function headersOfFields(fields: readonly Field[]): IncomingHttpHeaders {
  const headers: Record<string, string | string[]> = {};
  for (const { lower, value } of fields) {
    const previous = headers[lower];
    if (previous === undefined) headers[lower] = lower === 'set-cookie' || lower === 'cookie' ? [value] : value;
    else if (Array.isArray(previous)) previous.push(value);
    else headers[lower] = `${previous}, ${value}`;
  }
  return headers;
}

/** An h2 response's headers as HTTP/1.1 fields (pseudo-headers dropped, lists one field per value). */
export function fieldsOfH2(headers: IncomingHttpHeaders): Field[] {
  const fields: Field[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':')) continue;
    for (const item of Array.isArray(value) ? value : [value]) fields.push({ name, lower: name, value: String(item) });
  }
  return fields;
}

/** The response headers sent downstream: everything but hop-by-hop headers and pseudo-headers. */
export function downstreamResponseHeaders(incoming: IncomingHttpHeaders): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  const listed = connectionTokens(incoming.connection);
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || name.startsWith(':') || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    headers[name] = value;
  }
  return headers;
}

/** Whether a downstream h1 request asks for a WebSocket (Connection lists `upgrade`, Upgrade is `websocket`). */
export function isWebSocketUpgrade(headers: IncomingHttpHeaders): boolean {
  return connectionTokens(headers.connection).has('upgrade') && String(headers.upgrade ?? '').toLowerCase() === 'websocket';
}

let lastAddress: string | undefined;
let lastPlain = '';

/** IPv4-mapped IPv6 is written as IPv4. Remembers the last answer: one client sends many requests. */
export function plainAddress(address: string | undefined): string {
  if (!address) return '';
  if (address !== lastAddress) {
    lastAddress = address;
    lastPlain = ipv4FromMapped(address) ?? address;
  }
  return lastPlain;
}

function connectionTokens(value: string | string[] | undefined): Set<string> {
  if (!value) return new Set();
  const text = Array.isArray(value) ? value.join(',') : value;
  return new Set(
    text
      .toLowerCase()
      .split(',')
      .map((token) => token.trim())
      .filter((token) => token !== ''),
  );
}
