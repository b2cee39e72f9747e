import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import {
  ErrorCode,
  encodeMessage,
  type ClientDetails,
  type ControlChannelLiveness,
  type IpAddress,
  type Message,
  type RstrmError,
  type ServerDetails,
  type Timestamp,
  type TunnelProperties,
} from '../../src/protocol/messages.js';

/**
 * fast-check arbitraries for rstrm/1: every valid `Message`, and the hostile bytes a broken or
 * malicious peer can send instead (garbage, mutated frames, schema-shaped protobuf with wrong wire
 * types, unknown fields, invalid UTF-8, huge varints, deep nesting, oversized strings and maps).
 */

// ---------------------------------------------------------------------------------------------
// Valid messages

/** Well-formed Unicode only (no lone surrogates): what a valid peer can put in a proto3 string. */
const text = fc.string({ unit: 'binary', maxLength: 24 });
const uint32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
/** Optional keys are absent, never present-but-undefined, exactly as the decoder builds objects. */
const optionalRecord = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<Partial<T>> =>
  fc.record(model, { requiredKeys: [], noNullPrototype: true }) as fc.Arbitrary<Partial<T>>;

const rstrmError: fc.Arbitrary<RstrmError> = fc.record(
  { code: fc.oneof(fc.constantFrom(...Object.values(ErrorCode)), int32), message: text },
  { requiredKeys: ['code'], noNullPrototype: true },
);

const clientDetails: fc.Arbitrary<ClientDetails> = optionalRecord<Required<ClientDetails>>({
  agent: text, channel: text, version: text, os: text, arch: text, token: text, protocol_version: text,
});

const serverDetails: fc.Arbitrary<ServerDetails> = optionalRecord<Required<ServerDetails>>({
  agent: text, channel: text, version: text, plan: text, provider: text, region: text, update: text,
});

const liveness: fc.Arbitrary<ControlChannelLiveness> = fc.record(
  { heartbeat_interval_ms: uint32, heartbeat_timeout_ms: uint32 },
  { noNullPrototype: true },
);

/** int64 seconds and int32 nanos, negatives included: the codec must not care what the values mean. */
const timestamp: fc.Arbitrary<Timestamp> = fc.record({ seconds: fc.maxSafeInteger(), nanos: int32 }, { noNullPrototype: true });

const ipAddress: fc.Arbitrary<IpAddress> = fc.oneof(
  fc.record({ v4: uint32 }, { noNullPrototype: true }),
  fc.uint8Array({ maxLength: 16 }).map((bytes) => ({ v6: Buffer.from(bytes) })),
);

const stringList = fc.array(text, { maxLength: 3 });

const tunnelProperties: fc.Arbitrary<TunnelProperties> = fc
  .tuple(
    fc.record(
      {
        labels: fc.dictionary(text, text, { maxKeys: 3, noNullPrototype: true }),
        geoip: stringList,
        trusted_ips: stringList,
        tls_alpns: stringList,
        tls_ciphers: stringList,
      },
      { noNullPrototype: true },
    ),
    optionalRecord({
      id: text, creation_date: timestamp, name: text, type: text, publish: fc.boolean(), protocol: text, host: text,
      tls_mode: text, tls_min_version: text, mtls_auth: fc.boolean(), mtls_cacert_pem: text, http_version: text,
      http_use_tls: fc.boolean(), token_auth: fc.boolean(), rstream_auth: fc.boolean(), challenge_mode: fc.boolean(),
      hostname: text, port: uint32, upstream_tls: fc.boolean(), datagram_guaranteed_delivery: fc.boolean(),
      allow_cross_region_routing: fc.boolean(),
    }),
  )
  .map(([lists, optional]) => ({ ...lists, ...optional }));

/** A message type with its fields, optional ones present or absent. */
const variant = <T extends Message['type'], R>(type: T, required: { [K in keyof R]: fc.Arbitrary<R[K]> }, optional: object = {}) =>
  fc
    .tuple(fc.record(required, { noNullPrototype: true }), optionalRecord(optional as Record<string, fc.Arbitrary<unknown>>))
    .map(([fields, extra]) => ({ type, ...fields, ...extra }) as unknown as Message);

/** Every rstrm/1 message type, with arbitrary valid field values. */
export const anyMessage: fc.Arbitrary<Message> = fc.oneof(
  variant('open_control_channel_req', {}, { client_details: clientDetails, liveness }),
  variant('open_control_channel_rsp', {
    result: fc.oneof(
      fc.tuple(fc.record({ client_id: text }, { noNullPrototype: true }), optionalRecord({ server_details: serverDetails, liveness }))
        .map(([ok, extra]) => ({ ok: { ...ok, ...extra } })),
      rstrmError.map((error) => ({ error })),
    ),
  }),
  variant('close_control_channel_req', {}),
  variant('close_control_channel_rsp', {}),
  variant('open_tunnel_req', { request_id: text }, { tunnel_properties: tunnelProperties }),
  variant('open_tunnel_rsp', {
    request_id: text,
    result: fc.oneof(tunnelProperties.map((p) => ({ tunnel_properties: p })), rstrmError.map((error) => ({ error }))),
  }),
  variant('close_tunnel_req', { tunnel_id: text }),
  variant('close_tunnel_rsp', { tunnel_id: text }),
  variant('proxy_conn_req', { tunnel_id: text, stream_id: text }, { secret: text, source_ip: ipAddress, proxy_endpoint: text }),
  variant('proxy_conn_rsp', { stream_id: text }, { error: rstrmError }),
  variant('proxy_req', { stream_id: text }, { client_details: clientDetails, zero_rtt: fc.boolean() }),
  variant('proxy_rsp', {}, { error: rstrmError }),
  variant('stream_req', { tunnel_id_name: text }, { client_details: clientDetails, zero_rtt: fc.boolean(), datagram_channel: fc.boolean() }),
  variant('stream_rsp', { result: fc.oneof(text.map((id) => ({ stream_id: id })), rstrmError.map((error) => ({ error }))) }),
  variant('heartbeat', { sequence: fc.maxSafeNat(), acknowledgement: fc.maxSafeNat() }),
  variant('server_message', { message: text }),
  variant('datagram_channel_close', { stream_id: text }, { error: rstrmError }),
);

// ---------------------------------------------------------------------------------------------
// Schema-shaped garbage: protobuf fields built by hand along rstrm.proto, so every field at every
// depth can get hostile contents or a wrong wire type

/** rstrm.proto, read by protobufjs: the reference schema the codec is written from. */
export const rstrmProto = protobuf.loadSync(fileURLToPath(new URL('../../../src/protocol/rstrm.proto', import.meta.url))).resolveAll();
const MESSAGE_TYPE = 'rstream.io_rstrm.protobuf.Message';

type RawField =
  | { kind: 'varint'; field: number; value: bigint; overlong: number }
  | { kind: 'fixed'; field: number; wireType: 1 | 5; bytes: Uint8Array }
  | { kind: 'bytes'; field: number; content: Uint8Array; lengthSurplus: number }
  | { kind: 'message'; field: number; fields: RawField[] }
  /** Wire types 3 and 4 (groups, which rstrm/1 never uses) and 6, 7 (undefined). */
  | { kind: 'wire-type'; field: number; wireType: 3 | 4 | 6 | 7 }
  | { kind: 'repeated'; times: number; item: RawField }
  | { kind: 'nested'; depth: number; field: number; inner: RawField };

/** Field numbers no rstrm/1 message uses, up to the largest a tag can carry and past it. */
const unknownFieldNumber = fc.constantFrom(0, 27, 1000, 2 ** 29 - 1, 2 ** 29, 2 ** 32 - 1);

/** The edges of every integer type rstrm/1 uses, and beyond: 2^64 and more do not fit uint64. */
const varintValue = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fc.constantFrom(0n, 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 2n, 2n ** 64n - 1n, 2n ** 64n, 2n ** 70n - 1n),
);

const INVALID_UTF8 = [
  [0xff],
  [0xc0, 0x80], // overlong NUL
  [0xed, 0xa0, 0x80], // a UTF-16 surrogate encoded as UTF-8
  [0xe2, 0x82], // truncated sequence
  [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
].map((bytes) => Uint8Array.from(bytes));

/** A short string field's bytes: random, valid UTF-8, or invalid UTF-8 among text. */
const shortStringContent = fc.oneof(
  fc.uint8Array({ maxLength: 32 }),
  fc.string({ unit: 'binary', maxLength: 16 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))),
  fc.tuple(fc.constantFrom(...INVALID_UTF8), fc.string({ maxLength: 8 })).map(([bad, s]) => new Uint8Array(Buffer.concat([Buffer.from(s), bad]))),
);

/** Now and then a string up to the frame limit. */
const stringContent = fc.oneof(
  { weight: 12, arbitrary: shortStringContent },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 65_000 }).map((length) => new Uint8Array(length).fill(0x61)) },
);

const varintField = (field: fc.Arbitrary<number>): fc.Arbitrary<RawField> =>
  fc.record({ kind: fc.constant('varint' as const), field, value: varintValue, overlong: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 12 })) });
const fixedField = (field: fc.Arbitrary<number>, wireType: fc.Arbitrary<1 | 5>): fc.Arbitrary<RawField> =>
  fc.record({ kind: fc.constant('fixed' as const), field, wireType, bytes: fc.uint8Array({ minLength: 8, maxLength: 8 }) });
/** A length-delimited field whose length may also claim more bytes than there are. */
const bytesField = (field: fc.Arbitrary<number>, content = stringContent): fc.Arbitrary<RawField> =>
  fc.record({ kind: fc.constant('bytes' as const), field, content, lengthSurplus: fc.oneof(fc.constant(0), fc.constantFrom(1, 2 ** 31, 2 ** 53)) });

/** Any wire type on `field`: for a known field, most of these are the wrong one. */
const anyWireType = (field: fc.Arbitrary<number>): fc.Arbitrary<RawField> =>
  fc.oneof(
    varintField(field),
    fixedField(field, fc.constantFrom(1, 5)),
    bytesField(field),
    fc.record({ kind: fc.constant('wire-type' as const), field, wireType: fc.constantFrom(3, 4, 6, 7) }),
  );

/** A map<string, string> entry (key 1, value 2), whatever its (short) contents: there may be thousands. */
const mapEntry = (field: number): fc.Arbitrary<RawField> =>
  fc.tuple(bytesField(fc.constant(1), shortStringContent), bytesField(fc.constant(2), shortStringContent)).map(([key, value]) => ({ kind: 'message', field, fields: [key, value] }));

/** The contents rstrm.proto gives `field`, made hostile; `message` builds an embedded message's fields. */
function rightWireType(field: protobuf.Field, message: (type: protobuf.Type) => fc.Arbitrary<RawField[]>): fc.Arbitrary<RawField> {
  const number = fc.constant(field.id);
  if (field.map) {
    // A map with thousands of entries as well as a few.
    return fc.oneof(mapEntry(field.id), fc.record({ kind: fc.constant('repeated' as const), times: fc.integer({ min: 2, max: 2000 }), item: mapEntry(field.id) }));
  }
  if (field.resolvedType instanceof protobuf.Type) return message(field.resolvedType).map((fields) => ({ kind: 'message', field: field.id, fields }));
  if (field.type === 'string' || field.type === 'bytes') return bytesField(number);
  if (field.type === 'fixed32') return fixedField(number, fc.constant(5));
  return varintField(number); // integers, bools and enums
}

/**
 * For each message type of rstrm.proto, lists of hostile fields: its own fields with hostile
 * contents or the wrong wire type, unknown field numbers, and fields wrapped a thousand deep.
 */
const hostileFieldsByType = fc.letrec<Record<string, RawField[]>>((tie) => {
  const types: protobuf.Type[] = [];
  const collect = (namespace: protobuf.NamespaceBase): void => {
    for (const nested of namespace.nestedArray) {
      if (nested instanceof protobuf.Type) types.push(nested);
      if (nested instanceof protobuf.Namespace) collect(nested);
    }
  };
  collect(rstrmProto);
  const fieldsOf = (type: protobuf.Type): fc.Arbitrary<RawField[]> => tie(type.fullName) as fc.Arbitrary<RawField[]>;
  return Object.fromEntries(
    types.map((type) => {
      const numbers = type.fieldsArray.map((field) => field.id);
      const known = numbers.length > 0 ? fc.constantFrom(...numbers) : unknownFieldNumber;
      const field: fc.Arbitrary<RawField> = fc.oneof(
        { maxDepth: 6, depthIdentifier: 'schema' },
        // First: what depth-limited generation falls back to, no recursion.
        anyWireType(fc.oneof(known, unknownFieldNumber)),
        ...type.fieldsArray.map((f) => rightWireType(f, fieldsOf)),
        fc.record({ kind: fc.constant('nested' as const), depth: fc.integer({ min: 2, max: 1000 }), field: known, inner: anyWireType(known) }),
      );
      return [type.fullName, fc.array(field, { maxLength: 4, depthIdentifier: 'schema' })];
    }),
  );
});

const hostileTopLevelFields = hostileFieldsByType[`.${MESSAGE_TYPE}`]!;

function varintBytes(value: bigint, overlong = 0): Buffer {
  const bytes: number[] = [];
  do {
    bytes.push(Number(value & 0x7fn) | 0x80);
    value >>= 7n;
  } while (value > 0n);
  // Redundant continuation groups (0x80 … 0x00): the same value, spelled longer.
  for (let i = 0; i < overlong; i++) bytes.push(0x80);
  if (overlong > 0) bytes.push(0x00);
  bytes[bytes.length - 1]! &= 0x7f;
  return Buffer.from(bytes);
}

const tag = (field: number, wireType: number): Buffer => varintBytes(BigInt(field) * 8n + BigInt(wireType));
const lengthDelimited = (field: number, content: Buffer): Buffer => Buffer.concat([tag(field, 2), varintBytes(BigInt(content.length)), content]);

function encodeRaw(field: RawField): Buffer {
  switch (field.kind) {
    case 'varint':
      return Buffer.concat([tag(field.field, 0), varintBytes(field.value, field.overlong)]);
    case 'fixed':
      return Buffer.concat([tag(field.field, field.wireType), Buffer.from(field.bytes.subarray(0, field.wireType === 1 ? 8 : 4))]);
    case 'bytes':
      return Buffer.concat([tag(field.field, 2), varintBytes(BigInt(field.content.length + field.lengthSurplus)), field.content]);
    case 'message':
      return lengthDelimited(field.field, Buffer.concat(field.fields.map(encodeRaw)));
    case 'wire-type':
      return tag(field.field, field.wireType);
    case 'repeated':
      return Buffer.concat(Array.from({ length: field.times }, () => encodeRaw(field.item)));
    case 'nested': {
      let bytes = encodeRaw(field.inner);
      for (let level = 0; level < field.depth; level++) bytes = lengthDelimited(field.field, bytes);
      return bytes;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile message bodies and frames

/** Protobuf in the shape of a Message, garbage inside. */
const schemaShapedBody = hostileTopLevelFields.map((fields) => Buffer.concat(fields.map(encodeRaw)));

const validBody = anyMessage.map((message) => encodeMessage(message));

/** Valid bodies truncated, bit-flipped, or followed by hostile fields. */
const mutatedBody = fc.oneof(
  fc.tuple(validBody, fc.nat()).map(([body, cut]) => body.subarray(0, cut % (body.length + 1))),
  fc.tuple(validBody, fc.array(fc.nat(), { minLength: 1, maxLength: 4 })).map(([body, flips]) => flipBits(body, flips)),
  fc.tuple(validBody, hostileTopLevelFields).map(([body, extra]) => Buffer.concat([body, ...extra.map(encodeRaw)])),
);

/** A message body no valid peer would send. */
export const hostileBody: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  schemaShapedBody,
  mutatedBody,
);

/** Any body, valid or not. */
const anyBody: fc.Arbitrary<Buffer> = fc.oneof(validBody, hostileBody);

/** The 4-byte big-endian length prefix, written as is (no range check: that is for the peer to do). */
function header(length: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(length);
  return bytes;
}

const frameOf = (body: Buffer): Buffer => Buffer.concat([header(body.length), body]);

/** Lengths no frame may have: 0, just past 65535, 2^31, 2^32 − 1, anything above. */
const outOfRangeLength = fc.oneof(fc.constantFrom(0, 65_536, 2 ** 31, 2 ** 32 - 1), fc.integer({ min: 65_536, max: 2 ** 32 - 1 }));

/** One piece of a byte stream on the wire: valid frames, hostile frames, broken frames, or noise. */
const wireSegment: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 3, arbitrary: anyMessage.map((message) => frameOf(encodeMessage(message))) },
  { weight: 3, arbitrary: hostileBody.map(frameOf) },
  { weight: 1, arbitrary: fc.tuple(outOfRangeLength, fc.uint8Array({ maxLength: 16 })).map(([length, rest]) => Buffer.concat([header(length), rest])) },
  // Truncated frames, and frames whose length prefix lies about the body.
  { weight: 1, arbitrary: fc.tuple(anyBody, fc.nat()).map(([body, cut]) => frameOf(body).subarray(0, cut % (body.length + 4))) },
  { weight: 1, arbitrary: fc.tuple(anyBody, fc.integer({ min: -8, max: 8 })).map(([body, skew]) => Buffer.concat([header(Math.max(0, body.length + skew)), body])) },
  { weight: 1, arbitrary: fc.tuple(anyMessage, fc.array(fc.nat(), { minLength: 1, maxLength: 3 })).map(([message, flips]) => flipBits(frameOf(encodeMessage(message)), flips)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 48 }).map((bytes) => Buffer.from(bytes)) },
);

/** A byte stream of a few segments. */
export const wireBytes: fc.Arbitrary<Buffer> = fc.array(wireSegment, { minLength: 1, maxLength: 5 }).map((segments) => Buffer.concat(segments));

/** Where to cut a byte stream into reads or writes: offsets into it, any number, any order. */
export const cutPoints = fc.array(fc.nat(), { maxLength: 8 });

/** `bytes` cut at `points` (taken modulo its length) into consecutive, non-empty chunks. */
export function chunksOf(bytes: Buffer, points: number[]): Buffer[] {
  const offsets = [...new Set(points.map((point) => point % (bytes.length + 1)))].filter((o) => o > 0 && o < bytes.length).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const offset of [...offsets, bytes.length]) {
    if (offset > start) chunks.push(bytes.subarray(start, offset));
    start = offset;
  }
  return chunks;
}

/** `bytes` with the bits at `positions` (modulo its bit length) inverted; empty input stays empty. */
export function flipBits(bytes: Buffer, positions: number[]): Buffer {
  const flipped = Buffer.from(bytes);
  if (flipped.length === 0) return flipped;
  for (const position of positions) {
    const bit = position % (flipped.length * 8);
    flipped[bit >> 3]! ^= 1 << (bit & 7);
  }
  return flipped;
}
