import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { decodeMessage, emptyTunnelProperties, encodeMessage, type Message } from '../src/protocol/messages.js';
import { median, numberArgument, summary, writeResult } from './harness.js';
import type { BenchRow, ScenarioResult } from './report.js';

/**
 * rstrm/1 codec speed, in frames (message bodies) per second, encode and decode, for:
 *   hand-written          – Rivulet's codec (encodeMessage / decodeMessage), on Rivulet's Message objects;
 *   protobufjs            – rstrm.proto loaded at run time, its own message instances (Type.encode / Type.decode):
 *                           protobufjs at its fastest, no mapping to Rivulet's types;
 *   protobufjs+objects    – the same plus fromObject / toObject, to and from plain objects (wrappers still
 *                           `{ value }`, the oneof still a field): the least a switch would add.
 * Every decoder reads the same bytes. Before timing, each codec decodes the other's encoding of every
 * message into the same message. Runs interleaved, series order rotated per run, medians and min–max.
 * Usage: node dist/bench/codec.js [--runs N] [--seconds S per measurement] [--out FILE]
 */

const RUNS = numberArgument('runs', 5);
const SECONDS = numberArgument('seconds', 0.5);
const WARM_UP_SECONDS = Math.min(SECONDS, 0.2);
const BATCH = 256;

const SERIES = ['hand-written', 'protobufjs', 'protobufjs+objects'] as const;
type Series = (typeof SERIES)[number];
const DIRECTIONS = ['encode', 'decode'] as const;
type Direction = (typeof DIRECTIONS)[number];

const hex = (length: number, seed: number): string =>
  Array.from({ length }, (_, i) => ((seed * 7 + i * 13) % 16).toString(16)).join('');

/** A CA certificate's size and shape, for mtls_cacert_pem. */
const CA_PEM = `-----BEGIN CERTIFICATE-----\n${Buffer.alloc(560, 'rivulet-ca').toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;

/** What travels on a busy engine: per stream, per agent heartbeat interval, per agent connection. */
const CASES: Array<{ name: string; message: Message }> = [
  {
    name: 'ProxyConnReq',
    message: {
      type: 'proxy_conn_req',
      tunnel_id: hex(24, 1),
      stream_id: hex(24, 2),
      secret: hex(64, 3),
      source_ip: { v4: 0xc6336417 },
      proxy_endpoint: '10.0.3.7:20001',
    },
  },
  {
    name: 'OpenTunnelReq',
    message: {
      type: 'open_tunnel_req',
      request_id: hex(16, 4),
      tunnel_properties: {
        ...emptyTunnelProperties(),
        id: hex(24, 5),
        creation_date: { seconds: 1780315200, nanos: 123000000 },
        name: 'shop-frontend',
        type: 'bytestream',
        publish: true,
        protocol: 'http',
        labels: { env: 'production', team: 'web', region: 'eu-west', owner: 'ops@example.com' },
        geoip: ['FR', 'DE', 'NL'],
        trusted_ips: ['10.0.0.0/8', '192.168.0.0/16', '2001:db8::/32'],
        host: 'shop.example.com',
        tls_mode: 'terminated',
        tls_alpns: ['h2', 'http/1.1'],
        tls_min_version: '1.2',
        tls_ciphers: ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'],
        mtls_auth: true,
        mtls_cacert_pem: CA_PEM,
        http_version: 'http/1.1',
        http_use_tls: false,
        token_auth: true,
        rstream_auth: false,
        challenge_mode: false,
        hostname: 'shop',
        port: 443,
        upstream_tls: false,
        datagram_guaranteed_delivery: false,
        allow_cross_region_routing: true,
      },
    },
  },
  { name: 'Heartbeat', message: { type: 'heartbeat', sequence: 48213, acknowledgement: 48212 } },
  {
    name: 'OpenControlChannelReq',
    message: {
      type: 'open_control_channel_req',
      client_details: {
        agent: 'rivulet',
        channel: 'stable',
        version: '0.1.0',
        os: 'linux',
        arch: 'x64',
        token: `eyJhbGciOiJIUzI1NiJ9.${Buffer.from(JSON.stringify({ sub: 'agent-7', iat: 1780315200, exp: 1780401600 })).toString('base64url')}.${hex(43, 6)}`,
        protocol_version: '1.4.5',
      },
      liveness: { heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 15000 },
    },
  },
];

const root = new protobuf.Root().loadSync(fileURLToPath(new URL('../../src/protocol/rstrm.proto', import.meta.url)), { keepCase: true });
root.resolveAll();
const Reference = root.lookupType('rstream.io_rstrm.protobuf.Message');
const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, bytes: Buffer, defaults: false, oneofs: false };

/**
 * A Rivulet message as protobufjs's plain object, built from the schema rather than from our bytes so
 * the cross-check below means something. With keepCase the names agree; wrappers become `{ value }`.
 */
function toReferenceObject(value: Record<string, unknown>, type: protobuf.Type): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    const item = value[field.name];
    if (item === undefined) continue;
    const inner = field.resolvedType;
    if (!(inner instanceof protobuf.Type) || field.map) out[field.name] = item;
    else if (/^\.?google\.protobuf\.\w+Value$/.test(inner.fullName)) out[field.name] = { value: item };
    else out[field.name] = toReferenceObject(item as Record<string, unknown>, inner);
  }
  return out;
}

interface Prepared {
  messages: Message[];
  /** Rivulet's encoding: what every decoder reads. */
  bytes: Buffer[];
  objects: Array<Record<string, unknown>>;
  instances: protobuf.Message[];
  byteIdentical: number;
}

function prepare(messages: Message[]): Prepared {
  const prepared: Prepared = { messages, bytes: [], objects: [], instances: [], byteIdentical: 0 };
  for (const message of messages) {
    const { type, ...body } = message;
    const object = { [type]: toReferenceObject(body, Reference.fields[type]!.resolvedType as protobuf.Type) };
    const instance = Reference.fromObject(object);
    const ours = encodeMessage(message);
    const theirs = Buffer.from(Reference.encode(instance).finish());
    assert.deepStrictEqual(decodeMessage(theirs), message, `${type}: the hand-written codec reads protobufjs's bytes back`);
    assert.deepStrictEqual(
      Buffer.from(Reference.encode(Reference.decode(ours)).finish()),
      theirs,
      `${type}: protobufjs reads the hand-written bytes into the message it built itself`,
    );
    if (ours.equals(theirs)) prepared.byteIdentical++;
    prepared.bytes.push(ours);
    prepared.objects.push(object);
    prepared.instances.push(instance);
  }
  return prepared;
}

/** One operation on frame `i`; returns something non-zero, so a codec that did nothing shows. */
type Operation = (i: number) => number;

function operations(p: Prepared): Record<Series, Record<Direction, Operation>> {
  return {
    'hand-written': {
      encode: (i) => encodeMessage(p.messages[i]!).length,
      decode: (i) => decodeMessage(p.bytes[i]!).type.length,
    },
    protobufjs: {
      encode: (i) => Reference.encode(p.instances[i]!).finish().length,
      decode: (i) => (Reference.decode(p.bytes[i]!) ? 1 : 0),
    },
    'protobufjs+objects': {
      encode: (i) => Reference.encode(Reference.fromObject(p.objects[i]!)).finish().length,
      decode: (i) => Object.keys(Reference.toObject(Reference.decode(p.bytes[i]!), TO_OBJECT)).length,
    },
  };
}

/** Frames per second of `operation` cycling over `count` frames for `seconds`. */
function measure(operation: Operation, count: number, seconds: number): number {
  let frames = 0;
  let produced = 0;
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(Math.round(seconds * 1e9));
  let now = started;
  do {
    for (let k = 0; k < BATCH; k++) produced += operation(frames++ % count);
    now = process.hrtime.bigint();
  } while (now < deadline);
  if (produced < frames) throw new Error('an operation produced nothing');
  return frames / (Number(now - started) / 1e9);
}

type Case = { name: string; prepared: Prepared };
type Rates = Map<string, Record<Direction, Record<Series, number[]>>>;

/** Every case, direction and series, `RUNS` times, interleaved. */
function timeAll(cases: Case[]): Rates {
  const rates: Rates = new Map(cases.map(({ name }) => [name, { encode: emptySeries(), decode: emptySeries() }]));
  // Untimed, so the first run does not time the JIT compiling each codec.
  for (const { prepared } of cases) {
    const ops = operations(prepared);
    for (const series of SERIES) for (const direction of DIRECTIONS) measure(ops[series][direction], prepared.messages.length, WARM_UP_SECONDS);
  }
  for (let run = 0; run < RUNS; run++) {
    // Rotated so that no series always runs first, right after another's garbage.
    const order = SERIES.map((_, i) => SERIES[(i + run) % SERIES.length]!);
    for (const { name, prepared } of cases) {
      const ops = operations(prepared);
      for (const direction of DIRECTIONS) {
        for (const series of order) rates.get(name)![direction][series].push(measure(ops[series][direction], prepared.messages.length, SECONDS));
      }
    }
    const mix = rates.get('mix')!;
    const figures = DIRECTIONS.map((d) => `${d} ${SERIES.map((s) => `${s} ${Math.round(mix[d][s].at(-1)! / 1000)}k`).join(', ')}`);
    process.stderr.write(`run ${run + 1}/${RUNS}, mix frames/s: ${figures.join('; ')}\n`);
  }
  return rates;
}

function main(): void {
  const cases: Case[] = [
    ...CASES.map(({ name, message }) => ({ name, prepared: prepare([message]) })),
    { name: 'mix', prepared: prepare(CASES.map(({ message }) => message)) },
  ];
  const label = (name: string, p: Prepared): string =>
    name === 'mix' ? `mix: the ${p.messages.length} above in turn` : `${name} (${p.bytes[0]!.length} B)`;
  const rates = timeAll(cases);
  const rows: BenchRow[] = cases.flatMap(({ name, prepared }) =>
    DIRECTIONS.map((direction) => ({
      case: label(name, prepared),
      metric: direction,
      unit: 'frames/s',
      higherIsBetter: true,
      series: Object.fromEntries(SERIES.map((series) => [series, summary(rates.get(name)![direction][series])])),
    })),
  );
  const mix = rates.get('mix')!;
  const ratio = (direction: Direction, series: Series): string => (median(mix[direction]['hand-written']) / median(mix[direction][series])).toFixed(2);
  const identical = cases.at(-1)!.prepared.byteIdentical;
  const result: ScenarioResult = {
    scenario: 'codec',
    title: 'rstrm/1 codec: frames/s, hand-written vs protobufjs loading rstrm.proto',
    runs: RUNS,
    rows,
    targets: [],
    notes: [
      `One thread on a ${os.cpus().length}-core machine shared with other work: read the ratios within a row and the min–max, not absolute figures. ${SECONDS} s per measurement, runs interleaved.`,
      'A frame is one Message body (encodeMessage / decodeMessage); the 4-byte length header is the same work for every codec and left out. Every decoder reads the same bytes.',
      'protobufjs: its own message instances (Type.encode / Type.decode), no mapping to Rivulet\'s Message type. protobufjs+objects: plus fromObject / toObject to plain objects, still short of Rivulet\'s types (wrappers stay `{ value }`, the payload a field).',
      `Checked before timing: each codec decodes the other's encoding of every message into the same message; ${identical} of ${CASES.length} encodings are byte-identical.`,
      `Mix, hand-written over protobufjs: encode ${ratio('encode', 'protobufjs')}×, decode ${ratio('decode', 'protobufjs')}×; over protobufjs+objects: encode ${ratio('encode', 'protobufjs+objects')}×, decode ${ratio('decode', 'protobufjs+objects')}×.`,
    ],
  };
  writeResult('codec', {
    ...result,
    seconds_per_measurement: SECONDS,
    frame_bytes: Object.fromEntries(CASES.map(({ name, message }) => [name, encodeMessage(message).length])),
    protobufjs: protobufVersion(),
  });
}

function emptySeries(): Record<Series, number[]> {
  return { 'hand-written': [], protobufjs: [], 'protobufjs+objects': [] };
}

function protobufVersion(): string {
  return (JSON.parse(fs.readFileSync(new URL('../../node_modules/protobufjs/package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

main();
