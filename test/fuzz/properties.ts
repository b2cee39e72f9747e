import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameDecoder, MAX_FRAME_LENGTH, encodeFrame } from '../../src/protocol/frame.js';
import { decodeMessage, emptyTunnelProperties, encodeMessage, type Message } from '../../src/protocol/messages.js';
import { sleep } from '../helpers/engine.js';
import { HEALTHY_TUNNEL, type FuzzEngine } from './fuzz-engine.js';
import { HostileConnection, engineFrames, type Ending } from './hostile-peer.js';
import { anyMessage, chunksOf, cutPoints, flipBits, hostileBody, rstrmProto, wireBytes } from './rstrm-inputs.js';
import { DecodeError, FrameError } from '../../src/errors.js';

/**
 * The rstrm/1 fuzz properties, shared by `npm test` (test/protocol-fuzz.test.ts, a few cases each)
 * and `npm run fuzz` (test/fuzz/run.ts, for minutes).
 */
export interface FuzzProperty {
  /** Short and unique: the runner's --property takes it. */
  name: string;
  /** What must hold, as the test's title. */
  claim: string;
  /** Cases in `npm test`: enough to reach every kind of input, few enough to stay within seconds. */
  testRuns: number;
  /** Each property has inputs of its own shape. */
  property: fc.IRawProperty<any>;
}

// ---------------------------------------------------------------------------------------------
// The codec

type CodecErrorName = 'FrameError' | 'DecodeError';

/** Only the codec's own errors may leave it; anything else (TypeError, RangeError…) fails the property. */
function expectCodecError(error: unknown): CodecErrorName {
  if (error instanceof FrameError || error instanceof DecodeError) return error.name as CodecErrorName;
  throw new Error(`the codec threw a foreign error: ${error instanceof Error ? error.stack : String(error)}`);
}

/** Everything a FrameDecoder makes of `chunks` pushed one by one: messages, then an error or a wait. */
function readFrames(chunks: Buffer[]): { messages: Message[]; end: CodecErrorName | 'waiting'; rest?: Buffer } {
  const decoder = new FrameDecoder();
  const messages: Message[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    try {
      for (let message = decoder.next(); message; message = decoder.next()) messages.push(message);
    } catch (error) {
      return { messages, end: expectCodecError(error) };
    }
  }
  return { messages, end: 'waiting', rest: decoder.takeRemainder() };
}

const reference = rstrmProto.lookupType('rstream.io_rstrm.protobuf.Message');

export const codecProperties: FuzzProperty[] = [
  {
    name: 'decode-hostile',
    claim: 'decodeMessage on hostile bodies returns a message or throws DecodeError, and what it returns encodes back to itself',
    testRuns: 1200,
    property: fc.property(hostileBody, (body) => {
      let message: Message;
      try {
        message = decodeMessage(body);
      } catch (error) {
        assert.equal(expectCodecError(error), 'DecodeError');
        return;
      }
      // The engine answers with values it decoded (acks, request ids): they must be writable and mean the same.
      if (message.type !== 'unknown') assert.deepStrictEqual(decodeMessage(encodeMessage(message)), message);
    }),
  },
  {
    name: 'frame-chunking',
    claim: 'FrameDecoder reads any byte stream the same in any chunking, throwing only FrameError or DecodeError',
    testRuns: 600,
    property: fc.property(wireBytes, cutPoints, (bytes, cuts) => {
      assert.deepStrictEqual(readFrames(chunksOf(bytes, cuts)), readFrames([bytes]));
    }),
  },
  {
    name: 'round-trip',
    claim: 'every valid message survives encode → decode, framed and unframed',
    testRuns: 800,
    property: fc.property(anyMessage, (message) => {
      const body = encodeMessage(message);
      assert.deepStrictEqual(decodeMessage(body), message);
      if (body.length > MAX_FRAME_LENGTH) {
        assert.throws(() => encodeFrame(message), FrameError);
        return;
      }
      assert.deepStrictEqual(readFrames([encodeFrame(message)]), { messages: [message], end: 'waiting', rest: Buffer.alloc(0) });
    }),
  },
  {
    name: 'protobufjs-agrees',
    claim: 'protobufjs reads every encoded message against rstrm.proto and writes it back to the same message',
    testRuns: 300,
    property: fc.property(anyMessage, (message) => {
      const rewritten = Buffer.from(reference.encode(reference.decode(encodeMessage(message))).finish());
      assert.deepStrictEqual(decodeMessage(rewritten), message);
    }),
  },
];

// ---------------------------------------------------------------------------------------------
// Live connections

/** How long the engine gets to close a connection it must close. */
const CLOSE_MS = 2000;
/** How long a connection that must stay open is watched. */
const WATCH_MS = 20;
/** The control-channel probe's request id; generated strings never get this long and specific. */
const PROBE_REQUEST_ID = 'fuzz-probe-0123456789abcdef';

const ending = fc.constantFrom<Ending>('destroy', 'end', 'reset');
/** Hostile bytes, how they are cut into writes, and whether the engine reads each write apart. */
const hostileWrites = fc.record({ bytes: wireBytes, cuts: cutPoints, pauses: fc.boolean() });
type HostileWrites = { bytes: Buffer; cuts: number[]; pauses: boolean };

const HANDSHAKE_REPLY: Partial<Record<Message['type'], Message['type']>> = {
  open_control_channel_req: 'open_control_channel_rsp',
  proxy_req: 'proxy_rsp',
  stream_req: 'stream_rsp',
};

/**
 * One case against the engine: `play` opens the hostile connection and checks what the engine did
 * with it; afterwards, whatever happened, the engine must hold no more than before and the healthy
 * agent must be unharmed.
 */
async function againstEngine(engine: FuzzEngine, open: () => Promise<HostileConnection>, play: (peer: HostileConnection) => Promise<void>): Promise<void> {
  const peer = await open();
  try {
    await play(peer);
  } finally {
    peer.destroy();
  }
  await engine.settle();
  await engine.checkHealthy();
}

async function writeHostile(peer: HostileConnection, writes: HostileWrites): Promise<void> {
  await peer.write(chunksOf(writes.bytes, writes.cuts), writes.pauses);
}

async function leave(peer: HostileConnection, how: Ending): Promise<void> {
  peer.finish(how);
  if (how === 'end') assert.ok(await peer.until(() => peer.closed, CLOSE_MS), 'after a clean end from the peer, the engine closes the connection');
}

async function mustClose(peer: HostileConnection, why: string): Promise<void> {
  assert.ok(await peer.until(() => peer.closed, CLOSE_MS), `the engine closes the connection: ${why}`);
}

async function mustStayOpen(peer: HostileConnection, why: string): Promise<void> {
  await sleep(WATCH_MS);
  assert.ok(!peer.closed, `the engine keeps the connection open: ${why}`);
}

/** What the engine must do with `bytes` as an rstrm/1 connection's first bytes (its own codec decides). */
function firstFrameFate(bytes: Buffer): { fate: 'closes'; reply: Message['type'] | undefined } | { fate: 'waits' } {
  const decoder = new FrameDecoder();
  decoder.push(bytes);
  let first: Message | undefined;
  try {
    first = decoder.next();
  } catch (error) {
    expectCodecError(error);
    return { fate: 'closes', reply: undefined };
  }
  if (!first) return { fate: 'waits' };
  // No hostile handshake carries a valid token or a live stream id: each is refused, then closed.
  const zeroRtt = 'zero_rtt' in first && first.zero_rtt === true;
  return { fate: 'closes', reply: zeroRtt ? undefined : HANDSHAKE_REPLY[first.type] };
}

/** What an open control channel must do after `bytes`: frames are read in order until one fails. */
function controlChannelFate(bytes: Buffer): 'closes-on-error' | 'closes-on-request' | 'in-sync' | 'waits' {
  const decoder = new FrameDecoder();
  decoder.push(bytes);
  try {
    for (let message = decoder.next(); message; message = decoder.next()) {
      if (message.type === 'close_control_channel_req') return 'closes-on-request';
    }
  } catch (error) {
    expectCodecError(error);
    return 'closes-on-error';
  }
  return decoder.takeRemainder().length === 0 ? 'in-sync' : 'waits';
}

const hasError = (frame: Message): boolean =>
  ('result' in frame && 'error' in frame.result) || ('error' in frame && frame.error !== undefined);

/** Bytes in place of a TLS ClientHello: noise, or a real hello cut short or with bits flipped. */
const helloBytes = fc.oneof(
  fc.record({ noise: fc.uint8Array({ minLength: 1, maxLength: 256 }) }),
  fc.record({ cut: fc.nat(), flips: fc.array(fc.nat(), { maxLength: 4 }), extra: fc.uint8Array({ maxLength: 32 }) }),
);

const streamId = fc.oneof(
  // Ids in the engine's own shape, naming worker 0, 1 or one that does not exist.
  fc.tuple(fc.constantFrom('00', '01', '02', 'ff'), fc.stringMatching(/^[0-9a-f]{22}$/)).map(([worker, rest]) => worker + rest),
  fc.string({ maxLength: 40 }),
);

export function connectionProperties(engine: FuzzEngine): FuzzProperty[] {
  return [
    {
      name: 'conn-client-hello',
      claim: 'bytes in place of a TLS ClientHello: only that connection is affected, and nothing is left behind',
      testRuns: 30,
      property: fc.asyncProperty(helloBytes, cutPoints, ending, (input, cuts, how) =>
        againstEngine(engine, () => HostileConnection.tcp(engine.port), async (peer) => {
          const bytes =
            'noise' in input
              ? Buffer.from(input.noise)
              : Buffer.concat([flipBits(engine.clientHello.subarray(0, input.cut % (engine.clientHello.length + 1)), input.flips), input.extra]);
          await peer.write(chunksOf(bytes, cuts));
          await sleep(WATCH_MS);
          await leave(peer, how);
        }),
      ),
    },
    {
      name: 'conn-first-frame',
      claim: 'hostile first frames: the engine closes the connection (at most one error reply) once a frame is complete or broken, and waits otherwise',
      testRuns: 100,
      property: fc.asyncProperty(hostileWrites, ending, (writes, how) =>
        againstEngine(engine, () => HostileConnection.rstrm(engine.port, engine.ca), async (peer) => {
          await writeHostile(peer, writes);
          const expected = firstFrameFate(writes.bytes);
          if (expected.fate === 'waits') {
            await mustStayOpen(peer, 'its first frame is not complete yet');
            assert.equal(peer.received.length, 0, 'no reply before a whole first frame');
            await leave(peer, how);
            return;
          }
          await mustClose(peer, 'its first frame is broken, not a handshake, or refused');
          const { frames, rest } = engineFrames(peer.received);
          assert.equal(rest.length, 0, 'nothing but whole frames');
          assert.deepEqual(frames.map((frame) => frame.type), expected.reply ? [expected.reply] : [], 'the expected reply, or none');
          assert.ok(frames.every(hasError), 'a reply refuses');
        }),
      ),
    },
    {
      name: 'conn-control-channel',
      claim: 'hostile frames on an open control channel: a broken frame or CloseControlChannelReq closes it, anything else leaves it reading in step',
      testRuns: 50,
      property: fc.asyncProperty(
        fc.option(fc.record({ heartbeat_interval_ms: fc.integer({ min: 0, max: 400_000 }), heartbeat_timeout_ms: fc.integer({ min: 0, max: 1_000_000 }) }), { nil: undefined }),
        hostileWrites,
        ending,
        (liveness, writes, how) =>
          againstEngine(engine, () => HostileConnection.rstrm(engine.port, engine.ca), async (peer) => {
            await peer.write([encodeFrame({ type: 'open_control_channel_req', client_details: { agent: 'fuzz', token: engine.token }, ...(liveness ? { liveness } : {}) })]);
            assert.ok(await peer.until(() => engineFrames(peer.received).frames.length > 0, CLOSE_MS), 'the open is answered');
            const [opened] = engineFrames(peer.received).frames;
            assert.ok(opened?.type === 'open_control_channel_rsp' && 'ok' in opened.result, `the open succeeds: ${JSON.stringify(opened)}`);
            await writeHostile(peer, writes);
            const fate = controlChannelFate(writes.bytes);
            if (fate === 'closes-on-error' || fate === 'closes-on-request') {
              await mustClose(peer, fate);
              const replied = engineFrames(peer.received).frames.some((frame) => frame.type === 'close_control_channel_rsp');
              assert.equal(replied, fate === 'closes-on-request', 'CloseControlChannelRsp answers a CloseControlChannelReq, and nothing else');
              return;
            }
            if (fate === 'in-sync') {
              // A request after the hostile frames is answered: the channel read every frame boundary right.
              await peer.write([encodeFrame({ type: 'open_tunnel_req', request_id: PROBE_REQUEST_ID, tunnel_properties: { ...emptyTunnelProperties(), publish: false } })]);
              const answered = () => engineFrames(peer.received).frames.some((frame) => frame.type === 'open_tunnel_rsp' && frame.request_id === PROBE_REQUEST_ID);
              assert.ok(await peer.until(answered, CLOSE_MS), 'a request after the hostile frames is answered');
            }
            await mustStayOpen(peer, fate);
            await leave(peer, how);
          }),
      ),
    },
    {
      name: 'conn-proxy-unknown-stream',
      claim: 'a ProxyReq for a stream that does not exist, with hostile bytes after it: refused (4000 unless zero-RTT) and closed',
      testRuns: 50,
      property: fc.asyncProperty(streamId, fc.string({ maxLength: 70 }), fc.boolean(), hostileWrites, (id, secret, zeroRtt, writes) =>
        againstEngine(engine, () => HostileConnection.rstrm(engine.port, engine.ca), async (peer) => {
          await peer.write([encodeFrame({ type: 'proxy_req', client_details: { token: secret }, stream_id: id, zero_rtt: zeroRtt })]);
          await writeHostile(peer, writes);
          await mustClose(peer, 'its stream is unknown');
          const { frames } = engineFrames(peer.received);
          if (zeroRtt) assert.deepEqual(frames, [], 'zero-RTT: closed without a reply');
          else assert.deepEqual(frames, [{ type: 'proxy_rsp', error: { code: 4000, message: 'unknown or expired stream' } }]);
        }),
      ),
    },
    {
      name: 'conn-dial-payload',
      claim: 'frames and garbage as the payload of a private dial reach the agent and come back unchanged, never read as frames',
      testRuns: 40,
      property: fc.asyncProperty(fc.boolean(), fc.boolean(), hostileWrites, ending, (zeroRtt, coalesce, writes, how) =>
        againstEngine(engine, () => HostileConnection.rstrm(engine.port, engine.ca), async (peer) => {
          const request = encodeFrame({ type: 'stream_req', client_details: { token: engine.token }, tunnel_id_name: HEALTHY_TUNNEL, zero_rtt: zeroRtt });
          const payload = chunksOf(writes.bytes, writes.cuts);
          // Coalesced: the first payload bytes ride in the same write as the StreamReq.
          await peer.write(coalesce ? [Buffer.concat([request, ...payload.slice(0, 1)]), ...payload.slice(1)] : [request, ...payload], writes.pauses);
          /** What came back after the engine's StreamRsp (everything, with zero-RTT); undefined before the reply. */
          const echoed = (): Buffer | undefined => {
            if (zeroRtt) return peer.received;
            const decoder = new FrameDecoder();
            decoder.push(peer.received);
            const reply = decoder.next();
            if (!reply) return undefined;
            assert.ok(reply.type === 'stream_rsp' && 'stream_id' in reply.result, `the dial is accepted: ${JSON.stringify(reply)}`);
            return decoder.takeRemainder();
          };
          await peer.until(() => (echoed()?.length ?? -1) >= writes.bytes.length || peer.closed, CLOSE_MS);
          const back = echoed();
          assert.ok(back?.equals(writes.bytes), `the payload comes back exactly: ${back ? `${back.length} of ${writes.bytes.length} bytes` : 'no StreamRsp'}`);
          await leave(peer, how);
        }),
      ),
    },
  ];
}
