import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { FrameDecoder, encodeFrame } from '../protocol/frame.js';
import { ErrorCode, type ControlChannelLiveness, type Message, type MessageOf, type RstrmError } from '../protocol/messages.js';
import { ControlChannel } from './control-channel.js';
import type { Dataplane, Verdict } from './dataplane.js';
import { endSoon, splice } from '../net/splice.js';
import { VERSION } from '../version.js';
import { authorizeDial } from './dial-authorization.js';

/** The first frame must arrive within 10 s of the handshake (docs/protocol.md#transport-and-framing). */
const FIRST_FRAME_TIMEOUT_MS = 10_000;
/** TCP keepalive on control sockets finds dead peers in legacy liveness mode (docs/protocol.md#the-control-channel). */
const CONTROL_KEEPALIVE_MS = 15_000;
const HEARTBEAT_INTERVAL_RANGE = [1000, 300_000] as const;
const HEARTBEAT_TIMEOUT_MAX = 900_000;

export interface RstrmConnection {
  session: TLSSocket;
  /** The TCP socket under the TLS session. */
  raw: Socket;
  /** The TCP peer address (for source_ip). */
  peerAddress: string | undefined;
  /** Affinity ports accept proxy connections only (docs/architecture.md#stream-affinity). */
  proxyOnly: boolean;
}

/**
 * An `rstrm/1` connection: the first frame says what it is (docs/protocol.md#transport-and-framing). A control channel, a
 * proxy connection or a private dial; anything else, undecodable, or nothing in time → closed
 * without a reply, touching nothing else.
 */
export function serveRstrm(dataplane: Dataplane, connection: RstrmConnection): void {
  const { session } = connection;
  const decoder = new FrameDecoder();
  const fail = (why: string): void => {
    dataplane.log.debug({ reason: why }, 'rstrm/1 connection closed before its first frame');
    session.destroy();
  };
  const timer = setTimeout(() => fail('no first frame within 10 s'), FIRST_FRAME_TIMEOUT_MS);
  // The listener lets peers half-close: one that ends before its first frame is whole never sends the rest.
  const onEnd = (): void => {
    clearTimeout(timer);
    fail('ended before its first frame');
  };
  const onData = (chunk: Buffer): void => {
    decoder.push(chunk);
    let first: Message | undefined;
    try {
      first = decoder.next();
    } catch (error) {
      clearTimeout(timer);
      fail((error as Error).message);
      return;
    }
    if (!first) return;
    clearTimeout(timer);
    session.off('data', onData);
    session.off('end', onEnd);
    session.pause();
    route(dataplane, connection, decoder, first);
  };
  session.on('data', onData);
  session.once('end', onEnd);
  session.once('close', () => clearTimeout(timer));
}

function route(dataplane: Dataplane, connection: RstrmConnection, decoder: FrameDecoder, first: Message): void {
  const { session } = connection;
  if (first.type === 'proxy_req') {
    unshiftPayload(session, decoder);
    void serveProxyConnection(dataplane, session, first);
  } else if (first.type === 'open_control_channel_req' && !connection.proxyOnly) {
    void openControlChannel(dataplane, connection, decoder, first);
  } else if (first.type === 'stream_req' && !connection.proxyOnly) {
    unshiftPayload(session, decoder);
    void servePrivateDial(dataplane, connection, first);
  } else {
    dataplane.log.debug({ type: first.type }, 'unexpected first frame; connection closed');
    session.destroy();
  }
}

/** Bytes after the handshake frame in the same read are payload and must not be lost. */
function unshiftPayload(session: TLSSocket, decoder: FrameDecoder): void {
  const rest = decoder.takeRemainder();
  if (rest.length > 0) session.unshift(rest);
}

function writeFrame(session: TLSSocket, message: Message): void {
  if (!session.destroyed) session.write(encodeFrame(message));
}

/**
 * A refusal, then the end. Whatever the peer still sends is dropped: unread bytes would hide its
 * end, and the connection would be held for endSoon's whole grace after the peer has gone.
 */
function refuseAndEnd(session: TLSSocket, refusal: Message): void {
  writeFrame(session, refusal);
  session.resume();
  endSoon(session);
}

async function openControlChannel(
  dataplane: Dataplane,
  connection: RstrmConnection,
  decoder: FrameDecoder,
  request: MessageOf<'open_control_channel_req'>,
): Promise<void> {
  const { session } = connection;
  const reply = await dataplane.link
    .call('open-client', { token: request.client_details?.token, details: request.client_details ?? {} });
  if (!reply.ok) {
    refuseAndEnd(session, { type: 'open_control_channel_rsp', result: { error: reply.error } });
    return;
  }
  const clientId = reply.client_id;
  if (session.destroyed) {
    // The agent left while the control plane was deciding: withdraw the client it created.
    await dataplane.link.call('close-client', { client_id: clientId, reason: 'eof' });
    return;
  }
  const liveness = negotiateLiveness(request.liveness);
  writeFrame(session, {
    type: 'open_control_channel_rsp',
    result: {
      ok: {
        client_id: clientId,
        server_details: { agent: 'rivulet', channel: 'stable', version: VERSION },
        ...(liveness ? { liveness } : {}),
      },
    },
  });
  connection.raw.setKeepAlive(true, CONTROL_KEEPALIVE_MS);
  const channel = new ControlChannel({
    clientId,
    socket: session,
    decoder,
    liveness,
    link: dataplane.link,
    log: dataplane.log.child({ client_id: clientId }),
    onStreamRefused: (streamId, error) => dataplane.refuseStream(streamId, 'refused', error),
    onClosed: (closed) => dataplane.channels.delete(closed.clientId),
  });
  dataplane.channels.set(clientId, channel);
  channel.start();
}

/** Echo the agent's interval; T is its timeout if in [I, 900 s], else min(900 s, max(3I, 15 s)) (docs/protocol.md#the-control-channel). */
export function negotiateLiveness(offer: ControlChannelLiveness | undefined): ControlChannelLiveness | undefined {
  if (!offer) return undefined;
  const interval = offer.heartbeat_interval_ms;
  if (interval < HEARTBEAT_INTERVAL_RANGE[0] || interval > HEARTBEAT_INTERVAL_RANGE[1]) return undefined;
  const proposed = offer.heartbeat_timeout_ms;
  const timeout =
    proposed >= interval && proposed <= HEARTBEAT_TIMEOUT_MAX
      ? proposed
      : Math.min(HEARTBEAT_TIMEOUT_MAX, Math.max(3 * interval, 15_000));
  return { heartbeat_interval_ms: interval, heartbeat_timeout_ms: timeout };
}

/**
 * The agent's proxy connection for one stream (docs/protocol.md#a-stream): matched with the waiting stream by
 * id and secret, on this worker or on the one named in the id; never waits for ProxyConnRsp.
 */
async function serveProxyConnection(dataplane: Dataplane, session: TLSSocket, request: MessageOf<'proxy_req'>): Promise<void> {
  const zeroRtt = request.zero_rtt === true;
  const streamId = request.stream_id;
  const secret = request.client_details?.token ?? '';
  const worker = dataplane.workerOfStream(streamId);
  let verdict: Verdict = { verdict: 'unknown' };
  let proxyEnd: Duplex | undefined;
  let complete: ((end: Duplex) => void) | undefined;
  if (worker === dataplane.workerIndex) {
    const claim = dataplane.streams.claim(streamId, secret, false);
    if (claim.verdict === 'accepted') {
      verdict = { verdict: 'accepted' };
      complete = claim.complete;
    } else if (claim.verdict !== 'adopt') verdict = { verdict: claim.verdict };
  } else if (worker !== undefined) {
    // Opened before asking, so relayed bytes that follow the verdict always find it. None is opened
    // for the id of a stream relayed here already: that stream is taken, and this ProxyReq unknown.
    proxyEnd = dataplane.relays.open(streamId, worker);
    if (proxyEnd) {
      verdict = await dataplane.askVerdict(worker, streamId, secret);
      if (verdict.verdict !== 'accepted') proxyEnd.destroy();
    }
  }
  if (verdict.verdict === 'unknown' || verdict.verdict === 'bad-secret') {
    const error: RstrmError =
      verdict.verdict === 'bad-secret'
        ? { code: ErrorCode.Unauthorized, message: 'invalid stream secret' }
        : { code: ErrorCode.InvalidStream, message: 'unknown or expired stream' };
    dataplane.log.debug({ stream_id: streamId, verdict: verdict.verdict }, 'proxy connection refused');
    if (zeroRtt) session.destroy();
    else refuseAndEnd(session, { type: 'proxy_rsp', error });
    return;
  }
  if (!zeroRtt) writeFrame(session, { type: 'proxy_rsp' });
  if (verdict.verdict === 'adopt') dataplane.adoptStream(verdict.tunnelId, verdict.slot, session);
  else if (complete) complete(session);
  else {
    dataplane.counters.add('streams_relayed');
    splice(session, proxyEnd!);
  }
}

/** A private dial (docs/protocol.md#a-private-dial): authorise, ask the owner's agent for a stream, then splice. */
async function servePrivateDial(dataplane: Dataplane, connection: RstrmConnection, request: MessageOf<'stream_req'>): Promise<void> {
  const { session } = connection;
  const zeroRtt = request.zero_rtt === true;
  const refuse = (error: RstrmError): void => {
    // A zero-RTT dialer gets no StreamRsp; a reset, never a clean end, tells it the dial failed.
    if (zeroRtt) connection.raw.resetAndDestroy();
    else refuseAndEnd(session, { type: 'stream_rsp', result: { error } });
  };
  const authorization = authorizeDial(dataplane, request);
  if (!authorization.ok) {
    refuse(authorization.error);
    return;
  }
  const stream = await dataplane.openToGroup(authorization.tunnels, connection.peerAddress, session, 'private');
  if (!stream.ok) {
    refuse({ code: stream.failure.rstrmCode, message: stream.failure.message });
    return;
  }
  if (!zeroRtt) writeFrame(session, { type: 'stream_rsp', result: { stream_id: stream.id } });
  splice(session, stream.proxyEnd);
}
