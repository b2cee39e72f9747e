import { ProtoReader, ProtoWriter, WireType } from './wire.js';
import { DecodeError } from '../errors.js';

/**
 * Every rstrm/1 message (docs/protocol.md; schema in rstrm.proto), as TypeScript types, and their
 * codec: PAYLOADS gives each message its oneof field number, a writer and a reader. Wrapper types map
 * to `T | undefined` so "absent" and "present with the default value" stay different; proto3 scalars
 * use their default for absent.
 *
 * Why hand-written: the schema is small and fixed, the per-stream handshake messages sit on the
 * connection set-up path, and a direct codec keeps wrapper presence, fixed32 addresses and unknown
 * fields under our control with no runtime schema loading. protobufjs checks it against the .proto
 * in the tests; bench/codec.ts compares their speed.
 */

export const ErrorCode = {
  Unspecified: 0,
  Unauthorized: 1000,
  InvalidRequest: 2000,
  ProtocolVersionMissing: 2010,
  ProtocolVersionInvalid: 2020,
  ProtocolVersionIncompatible: 2030,
  TunnelNotFound: 3000,
  InvalidStream: 4000,
  FeatureNotAvailable: 5000,
  ServiceUnavailable: 6000,
  CapacityExhausted: 7000,
  Internal: 9000,
} as const;

/** An open enum: decoders keep codes they do not know. */
export interface RstrmError {
  code: number;
  message?: string;
}

export interface ClientDetails {
  agent?: string;
  channel?: string;
  version?: string;
  os?: string;
  arch?: string;
  token?: string;
  protocol_version?: string;
}

export interface ServerDetails {
  agent?: string;
  channel?: string;
  version?: string;
  plan?: string;
  provider?: string;
  region?: string;
  update?: string;
}

export type IpAddress = { v4: number } | { v6: Buffer };

export interface ControlChannelLiveness {
  heartbeat_interval_ms: number;
  heartbeat_timeout_ms: number;
}

export interface Timestamp {
  seconds: number;
  nanos: number;
}

export interface TunnelProperties {
  id?: string;
  creation_date?: Timestamp;
  name?: string;
  type?: string;
  publish?: boolean;
  protocol?: string;
  labels: Record<string, string>;
  geoip: string[];
  trusted_ips: string[];
  host?: string;
  tls_mode?: string;
  tls_alpns: string[];
  tls_min_version?: string;
  tls_ciphers: string[];
  mtls_auth?: boolean;
  mtls_cacert_pem?: string;
  http_version?: string;
  http_use_tls?: boolean;
  token_auth?: boolean;
  rstream_auth?: boolean;
  challenge_mode?: boolean;
  hostname?: string;
  port?: number;
  upstream_tls?: boolean;
  datagram_guaranteed_delivery?: boolean;
  allow_cross_region_routing?: boolean;
}

export type Message =
  | { type: 'open_control_channel_req'; client_details?: ClientDetails; liveness?: ControlChannelLiveness }
  | {
      type: 'open_control_channel_rsp';
      result:
        | { ok: { client_id: string; server_details?: ServerDetails; liveness?: ControlChannelLiveness } }
        | { error: RstrmError };
    }
  | { type: 'close_control_channel_req' }
  | { type: 'close_control_channel_rsp' }
  | { type: 'open_tunnel_req'; request_id: string; tunnel_properties?: TunnelProperties }
  | {
      type: 'open_tunnel_rsp';
      request_id: string;
      result: { tunnel_properties: TunnelProperties } | { error: RstrmError };
    }
  | { type: 'close_tunnel_req'; tunnel_id: string }
  | { type: 'close_tunnel_rsp'; tunnel_id: string }
  | {
      type: 'proxy_conn_req';
      tunnel_id: string;
      stream_id: string;
      secret?: string;
      source_ip?: IpAddress;
      proxy_endpoint?: string;
    }
  | { type: 'proxy_conn_rsp'; stream_id: string; error?: RstrmError }
  | { type: 'proxy_req'; client_details?: ClientDetails; stream_id: string; zero_rtt?: boolean }
  | { type: 'proxy_rsp'; error?: RstrmError }
  | {
      type: 'stream_req';
      client_details?: ClientDetails;
      tunnel_id_name: string;
      zero_rtt?: boolean;
      datagram_channel?: boolean;
    }
  | { type: 'stream_rsp'; result: { stream_id: string } | { error: RstrmError } }
  | { type: 'heartbeat'; sequence: number; acknowledgement: number }
  | { type: 'server_message'; message: string }
  | { type: 'datagram_channel_close'; stream_id: string; error?: RstrmError }
  /** A Message whose payload is a field this codec does not know (a newer peer). */
  | { type: 'unknown' };

export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

type PayloadType = Exclude<MessageType, 'unknown'>;
type ControlChannelOk = Extract<MessageOf<'open_control_channel_rsp'>['result'], { ok: unknown }>['ok'];

/** One `Message.payload` member: its oneof field number, and how its body is written and read. */
interface PayloadCodec<T extends PayloadType> {
  field: number;
  write(w: ProtoWriter, m: MessageOf<T>): void;
  read(r: ProtoReader): MessageOf<T>;
}

const LD = WireType.LengthDelimited;
const VARINT = WireType.Varint;

export function encodeMessage(message: Message): Buffer {
  if (message.type === 'unknown') throw new Error('cannot encode an unknown message');
  const codec = payloadCodec(message.type);
  const writer = new ProtoWriter();
  writer.message(codec.field, (w) => codec.write(w, message));
  return writer.finish();
}

/** Decodes one `Message`; throws DecodeError naming what could not be read. */
export function decodeMessage(body: Buffer): Message {
  let message: Message = { type: 'unknown' };
  new ProtoReader(body).fields((field, wireType, reader) => {
    const read = READER_BY_FIELD.get(field);
    if (!read || wireType !== LD) return false;
    // A oneof seen twice keeps the last one, as protobuf does.
    message = read(reader.message());
    return true;
  });
  return message;
}

function payloadCodec<T extends PayloadType>(type: T): PayloadCodec<T> {
  return PAYLOADS[type];
}

/** The `Message.payload` oneof, in rstrm.proto's order. */
const PAYLOADS: { [T in PayloadType]: PayloadCodec<T> } = {
  open_control_channel_req: {
    field: 1,
    write(w, { client_details, liveness }) {
      if (client_details) w.message(1, (d) => writeClientDetails(d, client_details));
      if (liveness) w.message(2, (l) => writeLiveness(l, liveness));
    },
    read(r) {
      const m: MessageOf<'open_control_channel_req'> = { type: 'open_control_channel_req' };
      r.fields((f, wt, x) => {
        if (f === 1 && wt === LD) m.client_details = readClientDetails(x.message());
        else if (f === 2 && wt === LD) m.liveness = readLiveness(x.message());
        else return false;
        return true;
      });
      return m;
    },
  },
  open_control_channel_rsp: {
    field: 2,
    write(w, { result }) {
      if ('ok' in result) w.message(1, (o) => writeOk(o, result.ok));
      else w.message(2, (e) => writeError(e, result.error));
    },
    read(r) {
      let result: MessageOf<'open_control_channel_rsp'>['result'] | undefined;
      r.fields((f, wt, x) => {
        if (f === 1 && wt === LD) result = { ok: readOk(x.message()) };
        else if (f === 2 && wt === LD) result = { error: readError(x.message()) };
        else return false;
        return true;
      });
      if (!result) throw new DecodeError('OpenControlChannelRsp without ok or error');
      return { type: 'open_control_channel_rsp', result };
    },
  },
  close_control_channel_req: {
    field: 3,
    write: () => {},
    read(r) {
      readNothing(r);
      return { type: 'close_control_channel_req' };
    },
  },
  close_control_channel_rsp: {
    field: 4,
    write: () => {},
    read(r) {
      readNothing(r);
      return { type: 'close_control_channel_rsp' };
    },
  },
  open_tunnel_req: {
    field: 5,
    write(w, { request_id, tunnel_properties }) {
      w.string(1, request_id);
      if (tunnel_properties) w.message(2, (p) => writeTunnelProperties(p, tunnel_properties));
    },
    read(r) {
      const m: MessageOf<'open_tunnel_req'> = { type: 'open_tunnel_req', request_id: '' };
      r.fields((f, wt, x) => {
        if (f === 1 && wt === LD) m.request_id = x.string();
        else if (f === 2 && wt === LD) m.tunnel_properties = readTunnelProperties(x.message());
        else return false;
        return true;
      });
      return m;
    },
  },
  open_tunnel_rsp: {
    field: 6,
    write(w, { request_id, result }) {
      w.string(1, request_id);
      if ('tunnel_properties' in result) w.message(2, (p) => writeTunnelProperties(p, result.tunnel_properties));
      else w.message(3, (e) => writeError(e, result.error));
    },
    read(r) {
      let requestId = '';
      let result: MessageOf<'open_tunnel_rsp'>['result'] | undefined;
      r.fields((f, wt, x) => {
        if (f === 1 && wt === LD) requestId = x.string();
        else if (f === 2 && wt === LD) result = { tunnel_properties: readTunnelProperties(x.message()) };
        else if (f === 3 && wt === LD) result = { error: readError(x.message()) };
        else return false;
        return true;
      });
      if (!result) throw new DecodeError('OpenTunnelRsp without tunnel_properties or error');
      return { type: 'open_tunnel_rsp', request_id: requestId, result };
    },
  },
  close_tunnel_req: {
    field: 7,
    write: (w, m) => w.string(1, m.tunnel_id),
    read: (r) => ({ type: 'close_tunnel_req', tunnel_id: readStringValue(r) }),
  },
  close_tunnel_rsp: {
    field: 8,
    write: (w, m) => w.string(1, m.tunnel_id),
    read: (r) => ({ type: 'close_tunnel_rsp', tunnel_id: readStringValue(r) }),
  },
  proxy_conn_req: {
    field: 9,
    write(w, m) {
      w.string(1, m.tunnel_id).string(2, m.stream_id).stringValue(3, m.secret);
      const ip = m.source_ip;
      if (ip) w.message(4, (a) => ('v4' in ip ? a.fixed32(1, ip.v4) : a.rawBytes(2, ip.v6)));
      w.stringValue(5, m.proxy_endpoint);
    },
    read(r) {
      const m: MessageOf<'proxy_conn_req'> = { type: 'proxy_conn_req', tunnel_id: '', stream_id: '' };
      r.fields((f, wt, x) => {
        if (wt !== LD) return false;
        if (f === 1) m.tunnel_id = x.string();
        else if (f === 2) m.stream_id = x.string();
        else if (f === 3) m.secret = readStringValue(x.message());
        else if (f === 4) {
          // An IpAddress with neither v4 nor v6 says nothing: no key rather than one set to undefined.
          const address = readIpAddress(x.message());
          if (address) m.source_ip = address;
        } else if (f === 5) m.proxy_endpoint = readStringValue(x.message());
        else return false;
        return true;
      });
      return m;
    },
  },
  proxy_conn_rsp: {
    field: 10,
    write: writeStreamIdAndError,
    read: (r) => ({ type: 'proxy_conn_rsp', ...readStreamIdAndError(r) }),
  },
  proxy_req: {
    field: 11,
    write(w, { client_details, stream_id, zero_rtt }) {
      if (client_details) w.message(1, (d) => writeClientDetails(d, client_details));
      w.string(2, stream_id).boolValue(3, zero_rtt);
    },
    read(r) {
      const m: MessageOf<'proxy_req'> = { type: 'proxy_req', stream_id: '' };
      r.fields((f, wt, x) => {
        if (f === 1 && wt === LD) m.client_details = readClientDetails(x.message());
        else if (f === 2 && wt === LD) m.stream_id = x.string();
        else if (f === 3 && wt === LD) m.zero_rtt = readBoolValue(x.message());
        else return false;
        return true;
      });
      return m;
    },
  },
  proxy_rsp: {
    field: 12,
    write(w, { error }) {
      if (error) w.message(1, (e) => writeError(e, error));
    },
    read(r) {
      const m: MessageOf<'proxy_rsp'> = { type: 'proxy_rsp' };
      r.fields((f, wt, x) => (f === 1 && wt === LD ? ((m.error = readError(x.message())), true) : false));
      return m;
    },
  },
  stream_req: {
    field: 13,
    write(w, { client_details, tunnel_id_name, zero_rtt, datagram_channel }) {
      if (client_details) w.message(1, (d) => writeClientDetails(d, client_details));
      w.string(2, tunnel_id_name).boolValue(3, zero_rtt).boolValue(4, datagram_channel);
    },
    read(r) {
      const m: MessageOf<'stream_req'> = { type: 'stream_req', tunnel_id_name: '' };
      r.fields((f, wt, x) => {
        if (wt !== LD) return false;
        if (f === 1) m.client_details = readClientDetails(x.message());
        else if (f === 2) m.tunnel_id_name = x.string();
        else if (f === 3) m.zero_rtt = readBoolValue(x.message());
        else if (f === 4) m.datagram_channel = readBoolValue(x.message());
        else return false;
        return true;
      });
      return m;
    },
  },
  stream_rsp: {
    field: 14,
    write(w, { result }) {
      // Written even when empty, unlike a plain string field: which oneof member was chosen must survive.
      if ('stream_id' in result) w.rawBytes(1, Buffer.from(result.stream_id, 'utf8'));
      else w.message(2, (e) => writeError(e, result.error));
    },
    read(r) {
      let result: MessageOf<'stream_rsp'>['result'] | undefined;
      r.fields((f, wt, x) => {
        if (f === 1 && wt === LD) result = { stream_id: x.string() };
        else if (f === 2 && wt === LD) result = { error: readError(x.message()) };
        else return false;
        return true;
      });
      if (!result) throw new DecodeError('StreamRsp without stream_id or error');
      return { type: 'stream_rsp', result };
    },
  },
  heartbeat: {
    field: 15,
    write: (w, m) => w.uint(1, m.sequence).uint(2, m.acknowledgement),
    read(r) {
      const m: MessageOf<'heartbeat'> = { type: 'heartbeat', sequence: 0, acknowledgement: 0 };
      r.fields((f, wt, x) => {
        if (f === 1 && wt === VARINT) m.sequence = x.varint();
        else if (f === 2 && wt === VARINT) m.acknowledgement = x.varint();
        else return false;
        return true;
      });
      return m;
    },
  },
  server_message: {
    field: 16,
    write: (w, m) => w.string(1, m.message),
    read: (r) => ({ type: 'server_message', message: readStringValue(r) }),
  },
  datagram_channel_close: {
    field: 17,
    write: writeStreamIdAndError,
    read: (r) => ({ type: 'datagram_channel_close', ...readStreamIdAndError(r) }),
  },
};

const READER_BY_FIELD = new Map<number, (r: ProtoReader) => Message>(Object.values(PAYLOADS).map(({ field, read }) => [field, read]));

// ---------------------------------------------------------------------------------------------
// Embedded messages, written then read

/** ProxyConnRsp and DatagramChannelClose: a stream id and an optional error. */
function writeStreamIdAndError(w: ProtoWriter, { stream_id, error }: { stream_id: string; error?: RstrmError }): void {
  w.string(1, stream_id);
  if (error) w.message(2, (e) => writeError(e, error));
}

function readStreamIdAndError(r: ProtoReader): { stream_id: string; error?: RstrmError } {
  const m: { stream_id: string; error?: RstrmError } = { stream_id: '' };
  r.fields((f, wt, x) => {
    if (f === 1 && wt === LD) m.stream_id = x.string();
    else if (f === 2 && wt === LD) m.error = readError(x.message());
    else return false;
    return true;
  });
  return m;
}

/** A message with no fields still has its unknown ones skipped, and a malformed body refused. */
function readNothing(r: ProtoReader): void {
  r.fields(() => false);
}

/** google.protobuf.StringValue; also the wire shape of CloseTunnelReq/Rsp and ServerMessage (one string, field 1). */
function readStringValue(r: ProtoReader): string {
  let value = '';
  r.fields((f, wt, x) => (f === 1 && wt === LD ? ((value = x.string()), true) : false));
  return value;
}

function readBoolValue(r: ProtoReader): boolean {
  let value = false;
  r.fields((f, wt, x) => (f === 1 && wt === VARINT ? ((value = x.varint() !== 0), true) : false));
  return value;
}

function readUInt32Value(r: ProtoReader): number {
  let value = 0;
  r.fields((f, wt, x) => (f === 1 && wt === VARINT ? ((value = x.varint() % 2 ** 32), true) : false));
  return value;
}

const CLIENT_DETAILS_KEYS = ['agent', 'channel', 'version', 'os', 'arch', 'token', 'protocol_version'] as const;
const SERVER_DETAILS_KEYS = ['agent', 'channel', 'version', 'plan', 'provider', 'region', 'update'] as const;

function writeClientDetails(w: ProtoWriter, d: ClientDetails): void {
  writeStringValueFields(w, CLIENT_DETAILS_KEYS, d);
}

function readClientDetails(r: ProtoReader): ClientDetails {
  return readStringValueFields(r, CLIENT_DETAILS_KEYS);
}

function writeServerDetails(w: ProtoWriter, d: ServerDetails): void {
  writeStringValueFields(w, SERVER_DETAILS_KEYS, d);
}

function readServerDetails(r: ProtoReader): ServerDetails {
  return readStringValueFields(r, SERVER_DETAILS_KEYS);
}

/** A message whose fields 1…n are all StringValues named by `keys`. */
function writeStringValueFields<K extends string>(w: ProtoWriter, keys: readonly K[], values: Partial<Record<K, string>>): void {
  keys.forEach((key, index) => w.stringValue(index + 1, values[key]));
}

function readStringValueFields<K extends string>(r: ProtoReader, keys: readonly K[]): Partial<Record<K, string>> {
  const out: Partial<Record<K, string>> = {};
  r.fields((f, wt, x) => {
    const key = keys[f - 1];
    if (!key || wt !== LD) return false;
    out[key] = readStringValue(x.message());
    return true;
  });
  return out;
}

function writeOk(w: ProtoWriter, { client_id, server_details, liveness }: ControlChannelOk): void {
  w.string(1, client_id);
  if (server_details) w.message(2, (d) => writeServerDetails(d, server_details));
  if (liveness) w.message(3, (l) => writeLiveness(l, liveness));
}

function readOk(r: ProtoReader): ControlChannelOk {
  const ok: ControlChannelOk = { client_id: '' };
  r.fields((f, wt, x) => {
    if (f === 1 && wt === LD) ok.client_id = x.string();
    else if (f === 2 && wt === LD) ok.server_details = readServerDetails(x.message());
    else if (f === 3 && wt === LD) ok.liveness = readLiveness(x.message());
    else return false;
    return true;
  });
  return ok;
}

function writeLiveness(w: ProtoWriter, l: ControlChannelLiveness): void {
  w.uint(1, l.heartbeat_interval_ms).uint(2, l.heartbeat_timeout_ms);
}

function readLiveness(r: ProtoReader): ControlChannelLiveness {
  const l: ControlChannelLiveness = { heartbeat_interval_ms: 0, heartbeat_timeout_ms: 0 };
  r.fields((f, wt, x) => {
    if (f === 1 && wt === VARINT) l.heartbeat_interval_ms = x.varint() % 2 ** 32;
    else if (f === 2 && wt === VARINT) l.heartbeat_timeout_ms = x.varint() % 2 ** 32;
    else return false;
    return true;
  });
  return l;
}

function writeError(w: ProtoWriter, e: RstrmError): void {
  if (e.code !== 0) w.tag(1, WireType.Varint).varint(e.code);
  w.stringValue(2, e.message);
}

function readError(r: ProtoReader): RstrmError {
  const e: RstrmError = { code: 0 };
  r.fields((f, wt, x) => {
    if (f === 1 && wt === VARINT) e.code = x.int32();
    else if (f === 2 && wt === LD) e.message = readStringValue(x.message());
    else return false;
    return true;
  });
  return e;
}

function readIpAddress(r: ProtoReader): IpAddress | undefined {
  let address: IpAddress | undefined;
  r.fields((f, wt, x) => {
    if (f === 1 && wt === WireType.Fixed32) address = { v4: x.fixed32() };
    else if (f === 2 && wt === LD) address = { v6: Buffer.from(x.bytes()) };
    else return false;
    return true;
  });
  return address;
}

function readTimestamp(r: ProtoReader): Timestamp {
  const t: Timestamp = { seconds: 0, nanos: 0 };
  r.fields((f, wt, x) => {
    if (f === 1 && wt === VARINT) t.seconds = x.int64();
    else if (f === 2 && wt === VARINT) t.nanos = x.int32();
    else return false;
    return true;
  });
  return t;
}

// ---------------------------------------------------------------------------------------------
// TunnelProperties

export function emptyTunnelProperties(): TunnelProperties {
  return { labels: {}, geoip: [], trusted_ips: [], tls_alpns: [], tls_ciphers: [] };
}

function writeTunnelProperties(w: ProtoWriter, p: TunnelProperties): void {
  w.stringValue(1, p.id);
  if (p.creation_date) {
    const { seconds, nanos } = p.creation_date;
    w.message(2, (t) => t.uint(1, seconds).uint(2, nanos));
  }
  w.stringValue(3, p.name).stringValue(4, p.type).boolValue(5, p.publish).stringValue(6, p.protocol);
  for (const [key, value] of Object.entries(p.labels)) w.message(7, (e) => e.string(1, key).string(2, value));
  for (const item of p.geoip) w.rawBytes(8, Buffer.from(item, 'utf8'));
  for (const item of p.trusted_ips) w.rawBytes(9, Buffer.from(item, 'utf8'));
  w.stringValue(10, p.host).stringValue(11, p.tls_mode);
  for (const item of p.tls_alpns) w.rawBytes(12, Buffer.from(item, 'utf8'));
  w.stringValue(13, p.tls_min_version);
  for (const item of p.tls_ciphers) w.rawBytes(14, Buffer.from(item, 'utf8'));
  w.boolValue(15, p.mtls_auth)
    .stringValue(16, p.mtls_cacert_pem)
    .stringValue(17, p.http_version)
    .boolValue(18, p.http_use_tls)
    .boolValue(19, p.token_auth)
    .boolValue(20, p.rstream_auth)
    .boolValue(21, p.challenge_mode)
    .stringValue(22, p.hostname)
    .uint32Value(23, p.port)
    .boolValue(24, p.upstream_tls)
    .boolValue(25, p.datagram_guaranteed_delivery)
    .boolValue(26, p.allow_cross_region_routing);
}

const STRING_VALUE_FIELDS: Partial<Record<number, keyof TunnelProperties>> = {
  1: 'id', 3: 'name', 4: 'type', 6: 'protocol', 10: 'host', 11: 'tls_mode', 13: 'tls_min_version',
  16: 'mtls_cacert_pem', 17: 'http_version', 22: 'hostname',
};
const BOOL_VALUE_FIELDS: Partial<Record<number, keyof TunnelProperties>> = {
  5: 'publish', 15: 'mtls_auth', 18: 'http_use_tls', 19: 'token_auth', 20: 'rstream_auth', 21: 'challenge_mode',
  24: 'upstream_tls', 25: 'datagram_guaranteed_delivery', 26: 'allow_cross_region_routing',
};
const REPEATED_STRING_FIELDS: Partial<Record<number, 'geoip' | 'trusted_ips' | 'tls_alpns' | 'tls_ciphers'>> = {
  8: 'geoip', 9: 'trusted_ips', 12: 'tls_alpns', 14: 'tls_ciphers',
};

function readTunnelProperties(r: ProtoReader): TunnelProperties {
  const p = emptyTunnelProperties();
  const fields = p as unknown as Record<string, unknown>;
  r.fields((f, wt, x) => {
    if (wt !== LD) return false;
    const stringKey = STRING_VALUE_FIELDS[f];
    const boolKey = BOOL_VALUE_FIELDS[f];
    const listKey = REPEATED_STRING_FIELDS[f];
    if (stringKey) fields[stringKey] = readStringValue(x.message());
    else if (boolKey) fields[boolKey] = readBoolValue(x.message());
    else if (listKey) p[listKey].push(x.string());
    else if (f === 2) p.creation_date = readTimestamp(x.message());
    else if (f === 7) readLabel(x.message(), p.labels);
    else if (f === 23) p.port = readUInt32Value(x.message());
    else return false;
    return true;
  });
  return p;
}

/** One `map<string, string>` entry. */
function readLabel(r: ProtoReader, labels: Record<string, string>): void {
  let key = '';
  let value = '';
  r.fields((f, wt, x) => {
    if (f === 1 && wt === LD) key = x.string();
    else if (f === 2 && wt === LD) value = x.string();
    else return false;
    return true;
  });
  // defineProperty: a label named "__proto__" is data, not the object's prototype.
  Object.defineProperty(labels, key, { value, enumerable: true, writable: true, configurable: true });
}
