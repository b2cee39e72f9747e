import type { Duplex } from 'node:stream';
import type { TunnelRoute } from '../threads/messages.js';
import type { StreamKind, StreamOutcome } from '../threads/counters.js';
import type { StreamSlots } from '../threads/stream-slots.js';
import { ErrorCode } from '../protocol/messages.js';
import { StreamFailure, type StreamFailureReason } from '../errors.js';
import { sourceIpOf } from './source-ip.js';
import type { StreamBroker } from './streams.js';
import type { StreamMeter } from './stream-meter.js';

/** Gives back a stream's place under max_streams_per_tunnel; calling it twice is harmless. */
export type SlotRelease = () => void;

export type TunnelStream = { ok: true; id: string; proxyEnd: Duplex } | { ok: false; failure: StreamFailure };

interface RoomWaiter {
  settle(release: SlotRelease | undefined): void;
}

/** A request waiting for room under the limit. */
export interface RoomWait {
  /** The room (its release), or undefined after the wait's `ms` or `cancel()`. */
  readonly room: Promise<SlotRelease | undefined>;
  /** Stops waiting. Room granted just before is still in `room`: whoever cancels releases it. */
  cancel(): void;
}

/**
 * Setting up a stream to an agent (docs/architecture.md#a-published-request): counting it against the
 * tunnel's engine-wide limit, asking the agent for the proxy connection and handing it over. TLS
 * tunnels and private dials take `open`; the HTTP edge's upstream pools take the parts (`limit`,
 * `request`) because they also wait for room and reuse streams.
 */
export class StreamSetup {
  readonly limit: StreamLimit;

  constructor(
    slots: StreamSlots,
    private readonly broker: StreamBroker,
    private readonly meter: StreamMeter,
    settings: StreamLimitSettings,
  ) {
    this.limit = new StreamLimit(slots, settings);
  }

  /**
   * One stream from `downstream` to the agent that owns `route` (TLS tunnels, private dials): counted
   * for as long as the downstream lives, refused at once at the limit, given up if the downstream leaves.
   */
  async open(route: TunnelRoute, peerAddress: string | undefined, downstream: Duplex, kind: Exclude<StreamKind, 'http'>): Promise<TunnelStream> {
    const release = this.limit.count(route);
    if (!release) {
      this.meter.failed(kind, 'capacity');
      return { ok: false, failure: this.limit.capacityFailure() };
    }
    downstream.once('close', release);
    const downstreamLeft = new AbortController();
    const abort = (): void => downstreamLeft.abort();
    downstream.once('close', abort);
    try {
      return await this.request(route, peerAddress, downstreamLeft.signal, kind, false);
    } finally {
      downstream.off('close', abort);
    }
  }

  /**
   * Asks the agent for a stream (ProxyConnReq) and waits for its proxy connection, for at most
   * stream_request_seconds; `cancelled` ends the wait early. The caller holds the stream's slot,
   * unless the stream is `adoptable` and another worker adopts it (failure `adopted`): that worker's
   * pool then holds the slot.
   */
  async request(
    route: TunnelRoute,
    peerAddress: string | undefined,
    cancelled: AbortSignal,
    kind: StreamKind,
    adoptable: boolean,
  ): Promise<TunnelStream> {
    const stream = this.broker.open(route, sourceIpOf(peerAddress), adoptable);
    const cancel = (): void => this.broker.cancel(stream.id);
    if (cancelled.aborted) cancel();
    else cancelled.addEventListener('abort', cancel, { once: true });
    try {
      const proxyEnd = await stream.connected;
      if (cancelled.aborted) {
        proxyEnd.destroy();
        this.meter.failed(kind, 'failed');
        return { ok: false, failure: new StreamFailure('cancelled', ErrorCode.ServiceUnavailable, 'downstream left') };
      }
      this.meter.connected(kind, proxyEnd, route.slot);
      return { ok: true, id: stream.id, proxyEnd };
    } catch (error) {
      const failure = error as StreamFailure;
      if (failure.reason !== 'adopted') this.meter.failed(kind, OUTCOME_OF_FAILURE[failure.reason]);
      return { ok: false, failure };
    } finally {
      cancelled.removeEventListener('abort', cancel);
    }
  }

}

/** What the limit needs of a tunnel's route: its slot. */
export type LimitedTunnel = Pick<TunnelRoute, 'slot'>;

export interface StreamLimitSettings {
  maxStreamsPerTunnel: number;
  /** Bounds a worker's wait on a slot whose waiters all left. */
  streamRequestMs: number;
}

/**
 * max_streams_per_tunnel on this worker. Waiting for room is woken by a release anywhere in the engine
 * (Atomics.waitAsync on the slot's counter), never by polling: this worker holds at most one wait per
 * slot and serves its own waiters first in, first out.
 */
export class StreamLimit {
  /** Requests of this worker waiting for room, per slot, oldest first. */
  private readonly waiting = new Map<number, RoomWaiter[]>();
  /** Slots this worker holds its one wait on. */
  private readonly serving = new Set<number>();

  constructor(
    private readonly slots: StreamSlots,
    private readonly settings: StreamLimitSettings,
  ) {}

  /** Counts a new stream of `route` now; undefined when the tunnel is at its limit. */
  count(route: LimitedTunnel): SlotRelease | undefined {
    const limit = this.settings.maxStreamsPerTunnel;
    return this.slots.tryAcquire(route.slot, limit > 0 ? limit : Infinity) ? this.releaseOf(route.slot) : undefined;
  }

  /**
   * Counts a new stream of `route`, waiting up to `ms` for room: a stream released on any worker wakes
   * the oldest waiter here, and pools holding idle streams give one back as the wait starts. After
   * `starveAfterMs` (0: at once) the request also claims the streams about to go idle on other workers
   * (see roomWanted): a caller whose own worker has busy streams of the tunnel gives them that long to
   * come free, since reusing one beats closing a stream here and opening one there. A plain cancel
   * handle rather than an AbortSignal: this runs for most requests at the limit, and EventTarget
   * listeners cost more than the wait itself.
   */
  waitForRoom(route: LimitedTunnel, ms: number, starveAfterMs: number): RoomWait {
    const now = this.count(route);
    if (now) return { room: Promise.resolve(now), cancel: () => {} };
    const slot = route.slot;
    if (ms <= 0) return { room: Promise.resolve(undefined), cancel: () => {} };
    let settle!: (release: SlotRelease | undefined) => void;
    const room = new Promise<SlotRelease | undefined>((resolve) => {
      const queue = this.waiting.get(slot) ?? [];
      this.waiting.set(slot, queue);
      let settled = false;
      let starving = starveAfterMs <= 0;
      settle = (release) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(starve);
        queue.splice(queue.indexOf(waiter), 1);
        if (starving) this.slots.leave(slot);
        resolve(release);
      };
      const waiter: RoomWaiter = { settle };
      const timer = setTimeout(() => settle(undefined), ms);
      const starve = starving || starveAfterMs >= ms ? undefined : setTimeout(() => this.slots.arrive(slot, (starving = true)), starveAfterMs);
      queue.push(waiter);
      // Announced before the next try, so a release between that try and the wait cannot be missed.
      this.slots.arrive(slot, starving);
      if (!this.serving.has(slot)) void this.serveWaiters(slot, queue);
    });
    return { room, cancel: () => settle(undefined) };
  }

  /** Whether a starving request waits at `route`'s limit now, on any worker. */
  roomWanted(route: LimitedTunnel): boolean {
    return this.slots.waitingCount(route.slot) > 0;
  }

  /** The current `arrivals` reading of `route`'s slot. */
  arrivals(route: LimitedTunnel): number {
    return this.slots.arrivalCount(route.slot);
  }

  /**
   * How many requests started waiting at `route`'s limit, on any worker, since the `arrivals` reading
   * `since`: settles on the first arrival, or with 0 after `ms`. Pools holding idle streams watch it.
   */
  async arrivedSince(route: LimitedTunnel, since: number, ms: number): Promise<number> {
    await this.slots.arrivalCountChanged(route.slot, since, ms);
    return (this.slots.arrivalCount(route.slot) - since) | 0;
  }

  /**
   * A proxy connection adopted from another worker's request: its stream was counted when that worker
   * asked (on `slot`); this worker's pool gives the slot back when the stream closes.
   */
  adoptedRelease(slot: number): SlotRelease {
    return this.releaseOf(slot);
  }

  capacityFailure(): StreamFailure {
    return new StreamFailure('capacity', ErrorCode.CapacityExhausted, `stream limit reached (${this.settings.maxStreamsPerTunnel} per tunnel)`);
  }

  private releaseOf(slot: number): SlotRelease {
    let released = false;
    return () => {
      if (!released) this.slots.release(slot);
      released = true;
    };
  }

  /**
   * The one wait this worker holds on `slot`: hands room to its waiters, oldest first, until none is
   * left. A waiter that joins while it runs is covered: the wait is registered before that waiter's
   * arrival, so any release after it wakes the wait.
   */
  private async serveWaiters(slot: number, queue: RoomWaiter[]): Promise<void> {
    this.serving.add(slot);
    const limit = this.settings.maxStreamsPerTunnel;
    while (queue.length > 0) {
      const observed = this.slots.streamCount(slot);
      if (observed < limit && this.slots.tryAcquire(slot, limit)) {
        queue[0]!.settle(this.releaseOf(slot));
        continue;
      }
      // The timeout only bounds a wait whose waiters all left; each waiter has its own deadline.
      await this.slots.streamCountChanged(slot, observed, this.settings.streamRequestMs);
    }
    this.serving.delete(slot);
    this.waiting.delete(slot);
  }
}

const OUTCOME_OF_FAILURE: Record<Exclude<StreamFailureReason, 'adopted'>, Exclude<StreamOutcome, 'connected'>> = {
  refused: 'refused',
  timeout: 'timeout',
  capacity: 'capacity',
  owner_gone: 'failed',
  cancelled: 'failed',
};
