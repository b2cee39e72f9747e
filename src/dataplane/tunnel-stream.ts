import type { Duplex } from 'node:stream';
import type { TunnelRoute } from '../threads/messages.js';
import type { StreamKind, StreamOutcome } from '../threads/counters.js';
import { ErrorCode } from '../protocol/messages.js';
import type { Dataplane } from './dataplane.js';
import { sourceIpOf } from './source-ip.js';
import { StreamFailure, type StreamFailureReason } from '../errors.js';

export type TunnelStream = { ok: true; id: string; proxyEnd: Duplex } | { ok: false; failure: StreamFailure };

/**
 * One stream from `downstream` to the agent that owns `route` (docs/protocol.md#a-stream): counted against the
 * tunnel's stream limit for as long as the downstream lives, given up if the downstream leaves first.
 */
export async function openTunnelStream(
  dataplane: Dataplane,
  route: TunnelRoute,
  peerAddress: string | undefined,
  downstream: Duplex,
  kind: Exclude<StreamKind, 'http'>,
): Promise<TunnelStream> {
  const release = dataplane.acquireStream(route);
  if (!release) {
    dataplane.meter.failed(kind, 'capacity');
    const limit = dataplane.settings.maxStreamsPerTunnel;
    return { ok: false, failure: new StreamFailure('capacity', ErrorCode.CapacityExhausted, `stream limit reached (${limit} per tunnel)`) };
  }
  downstream.once('close', release);
  const downstreamLeft = new AbortController();
  const abort = (): void => downstreamLeft.abort();
  downstream.once('close', abort);
  try {
    return await requestStream(dataplane, route, peerAddress, downstreamLeft.signal, kind, false);
  } finally {
    downstream.off('close', abort);
  }
}

/**
 * Asks the agent for a stream (ProxyConnReq) and waits for its proxy connection, for at most
 * stream_request_seconds; `cancelled` ends the wait early. The caller accounts for the stream slot,
 * unless the stream is `adoptable` and another worker adopts it (failure `adopted`): that worker's
 * pool then holds the slot.
 */
export async function requestStream(
  dataplane: Dataplane,
  route: TunnelRoute,
  peerAddress: string | undefined,
  cancelled: AbortSignal,
  kind: StreamKind,
  adoptable: boolean,
): Promise<TunnelStream> {
  const stream = dataplane.streams.open(route, sourceIpOf(peerAddress), adoptable);
  const cancel = (): void => dataplane.streams.cancel(stream.id);
  if (cancelled.aborted) cancel();
  else cancelled.addEventListener('abort', cancel, { once: true });
  try {
    const proxyEnd = await stream.connected;
    if (cancelled.aborted) {
      proxyEnd.destroy();
      dataplane.meter.failed(kind, 'failed');
      return { ok: false, failure: new StreamFailure('cancelled', ErrorCode.ServiceUnavailable, 'downstream left') };
    }
    dataplane.meter.connected(kind, proxyEnd);
    return { ok: true, id: stream.id, proxyEnd };
  } catch (error) {
    const failure = error as StreamFailure;
    if (failure.reason !== 'adopted') dataplane.meter.failed(kind, OUTCOME_OF_FAILURE[failure.reason]);
    return { ok: false, failure };
  } finally {
    cancelled.removeEventListener('abort', cancel);
  }
}

const OUTCOME_OF_FAILURE: Record<Exclude<StreamFailureReason, 'adopted'>, Exclude<StreamOutcome, 'connected'>> = {
  refused: 'refused',
  timeout: 'timeout',
  capacity: 'capacity',
  owner_gone: 'failed',
  cancelled: 'failed',
};
