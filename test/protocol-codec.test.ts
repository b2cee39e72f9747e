import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import protobuf from 'protobufjs';
import { FrameDecoder, encodeFrame } from '../src/protocol/frame.js';
import { decodeMessage, emptyTunnelProperties, encodeMessage, type Message } from '../src/protocol/messages.js';
import { DecodeError, FrameError } from '../src/errors.js';

const root = protobuf.loadSync(fileURLToPath(new URL('../../src/protocol/rstrm.proto', import.meta.url)));
const Reference = root.lookupType('rstream.io_rstrm.protobuf.Message');
const asObject = (bytes: Uint8Array) =>
  Reference.toObject(Reference.decode(bytes), { longs: Number, bytes: Buffer, defaults: false, oneofs: false });

const tunnel = {
  ...emptyTunnelProperties(),
  id: '0b6e2f9a41c3d58e7f10a2b4',
  creation_date: { seconds: 1780315200, nanos: 123000000 },
  name: 'web',
  type: 'bytestream',
  publish: false,
  protocol: 'http',
  labels: { env: 'dev', team: '' },
  trusted_ips: ['10.0.0.0/8', '2001:db8::/32'],
  tls_alpns: ['h2'],
  hostname: '',
  port: 443,
  upstream_tls: false,
  token_auth: true,
};

const samples: Message[] = [
  {
    type: 'open_control_channel_req',
    client_details: { agent: 'rivulet', token: 'a.b.c', protocol_version: '1.4.5', os: '' },
    liveness: { heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 0 },
  },
  {
    type: 'open_control_channel_rsp',
    result: { ok: { client_id: '7d1f0c2ab9e84f3c5a6b1e02', server_details: { agent: 'rivulet' }, liveness: { heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 15000 } } },
  },
  { type: 'open_control_channel_rsp', result: { error: { code: 1000, message: 'invalid token: expired' } } },
  { type: 'close_control_channel_req' },
  { type: 'open_tunnel_req', request_id: 'f0e1', tunnel_properties: tunnel },
  { type: 'open_tunnel_rsp', request_id: '', result: { tunnel_properties: tunnel } },
  { type: 'open_tunnel_rsp', request_id: 'x', result: { error: { code: 5000, message: 'feature not available: protocol=quic' } } },
  { type: 'close_tunnel_rsp', tunnel_id: 'abc' },
  { type: 'proxy_conn_req', tunnel_id: 't', stream_id: 's'.repeat(24), secret: 'f'.repeat(64), source_ip: { v4: 0x7f000001 } },
  { type: 'proxy_conn_req', tunnel_id: 't', stream_id: 's', source_ip: { v6: Buffer.alloc(16, 1) }, proxy_endpoint: 'edge:20001' },
  { type: 'proxy_conn_rsp', stream_id: 's', error: { code: 6000, message: 'upstream dial failed' } },
  { type: 'proxy_req', client_details: { token: 'secret' }, stream_id: 's', zero_rtt: true },
  { type: 'proxy_rsp' },
  { type: 'proxy_rsp', error: { code: 4000 } },
  { type: 'stream_req', client_details: { token: 'jwt' }, tunnel_id_name: 'db', zero_rtt: false, datagram_channel: false },
  { type: 'stream_rsp', result: { stream_id: '0123456789abcdef01234567' } },
  { type: 'stream_rsp', result: { error: { code: 3000, message: 'tunnel not found' } } },
  { type: 'heartbeat', sequence: 7, acknowledgement: 0 },
  { type: 'heartbeat', sequence: 0, acknowledgement: 2 ** 40 },
  { type: 'server_message', message: 'hello' },
];

/** A varint's bytes, for values a ProtoWriter would not write. */
function varint(value: bigint): number[] {
  const bytes: number[] = [];
  for (; value >= 0x80n; value >>= 7n) bytes.push(Number(value & 0x7fn) | 0x80);
  return [...bytes, Number(value)];
}

/** Field `field` holding `content`, length-delimited (tag and length of one byte each). */
const embedded = (field: number, content: number[]): number[] => [field * 8 + 2, content.length, ...content];

describe('codec against the .proto (protobufjs as the reference)', () => {
  for (const sample of samples) {
    test(`${sample.type} round-trips and protobufjs agrees`, () => {
      const bytes = encodeMessage(sample);
      assert.deepEqual(decodeMessage(bytes), sample);
      const reference = Reference.encode(Reference.fromObject(asObject(bytes))).finish();
      assert.deepEqual(decodeMessage(Buffer.from(reference)), sample, 'decodes what protobufjs encodes');
    });
  }

  test('wrapper presence: absent and present-with-default differ on the wire', () => {
    const absent = encodeMessage({ type: 'proxy_req', stream_id: 's' });
    const explicitFalse = encodeMessage({ type: 'proxy_req', stream_id: 's', zero_rtt: false });
    assert.ok(explicitFalse.length > absent.length);
    assert.equal((decodeMessage(absent) as { zero_rtt?: boolean }).zero_rtt, undefined);
    assert.equal((decodeMessage(explicitFalse) as { zero_rtt?: boolean }).zero_rtt, false);
  });

  test('source_ip v4 is fixed32 with the first octet in the high byte', () => {
    const bytes = encodeMessage({ type: 'proxy_conn_req', tunnel_id: '', stream_id: '', source_ip: { v4: 0x01020304 } });
    assert.ok(bytes.includes(Buffer.from([0x0d, 0x04, 0x03, 0x02, 0x01])));
    assert.equal((asObject(bytes).proxyConnReq as { sourceIp: { v4: number } }).sourceIp.v4, 0x01020304);
  });

  test('a source_ip with neither v4 nor v6 leaves no source_ip key', () => {
    assert.deepEqual(decodeMessage(Buffer.from(embedded(9, embedded(4, [])))), { type: 'proxy_conn_req', tunnel_id: '', stream_id: '' });
  });

  test('unknown payloads, unknown fields and open enum values are tolerated', () => {
    const unknownPayload = Buffer.from([0xc2, 0x01, 0x00]); // field 24, empty
    assert.deepEqual(decodeMessage(unknownPayload), { type: 'unknown' });
    const withExtra = Buffer.concat([encodeMessage({ type: 'close_tunnel_req', tunnel_id: 'a' }), Buffer.from([0xf8, 0x01, 0x05])]);
    assert.deepEqual(decodeMessage(withExtra), { type: 'close_tunnel_req', tunnel_id: 'a' });
    const oddCode = Reference.encode(Reference.fromObject({ proxyRsp: { error: { code: 4242 } } })).finish();
    assert.deepEqual(decodeMessage(Buffer.from(oddCode)), { type: 'proxy_rsp', error: { code: 4242 } });
  });

  test('truncated or malformed bodies throw', () => {
    const bytes = encodeMessage(samples[4]!);
    assert.throws(() => decodeMessage(bytes.subarray(0, bytes.length - 3)));
    assert.throws(() => decodeMessage(Buffer.from([0x0b])), /wire type/); // group start
    assert.throws(() => decodeMessage(Buffer.from([0x32, 0x00])), /without/); // empty OpenTunnelRsp
  });
});

describe('integers at the edges of their types', () => {
  test('negative int32 error codes and int64 timestamp seconds read back exactly', () => {
    for (const code of [-1, -5, -3000, -(2 ** 31)]) {
      const refusal: Message = { type: 'proxy_rsp', error: { code } };
      assert.deepEqual(decodeMessage(encodeMessage(refusal)), refusal);
    }
    const early: Message = {
      type: 'open_tunnel_req',
      request_id: '',
      tunnel_properties: { ...emptyTunnelProperties(), creation_date: { seconds: -62135596800, nanos: -1 } },
    };
    assert.deepEqual(decodeMessage(encodeMessage(early)), early);
  });

  test('an int32 is the low 32 bits of its varint, never a number outside int32', () => {
    const code = (value: bigint) => decodeMessage(Buffer.from(embedded(12, embedded(1, [0x08, ...varint(value)]))));
    assert.deepEqual(code(2n ** 33n + 5n), { type: 'proxy_rsp', error: { code: 5 } });
    assert.deepEqual(code(2n ** 64n - 1n), { type: 'proxy_rsp', error: { code: -1 } });
  });

  test('a varint past 64 bits is refused; 2^64 − 1 and 2^63 − 1 read as numbers that write back the same', () => {
    const heartbeat = (value: bigint) => Buffer.from(embedded(15, [0x08, ...varint(value)]));
    assert.throws(() => decodeMessage(heartbeat(2n ** 64n)), DecodeError);
    assert.throws(() => decodeMessage(heartbeat(2n ** 70n - 1n)), DecodeError);
    const largest = decodeMessage(heartbeat(2n ** 64n - 1n));
    assert.deepEqual(decodeMessage(encodeMessage(largest)), largest);
    const seconds = Buffer.from(embedded(5, embedded(2, embedded(2, [0x08, ...varint(2n ** 63n - 1n)]))));
    const latest = decodeMessage(seconds);
    assert.deepEqual(decodeMessage(encodeMessage(latest)), latest);
  });
});

describe('framing', () => {
  test('frames split byte by byte and coalesced with payload', () => {
    const frames = Buffer.concat([encodeFrame(samples[0]!), encodeFrame(samples[11]!), Buffer.from('payload')]);
    const decoder = new FrameDecoder();
    const seen: Message[] = [];
    for (const byte of frames) {
      decoder.push(Buffer.from([byte]));
      for (let m = decoder.next(); m; m = decoder.next()) seen.push(m);
      if (seen.length === 2) break;
    }
    assert.deepEqual(seen, [samples[0], samples[11]]);
    const coalesced = new FrameDecoder();
    coalesced.push(frames);
    coalesced.next();
    assert.deepEqual(coalesced.next(), samples[11]);
    assert.equal(coalesced.takeRemainder().toString(), 'payload');
  });

  test('length 0 and length > 65535 are fatal', () => {
    for (const length of [0, 65536, 0xffffffff]) {
      const decoder = new FrameDecoder();
      const header = Buffer.alloc(4);
      header.writeUInt32BE(length);
      decoder.push(header);
      assert.throws(() => decoder.next(), FrameError);
    }
    assert.throws(() => encodeFrame({ type: 'server_message', message: 'x'.repeat(70000) }), FrameError);
  });
});
