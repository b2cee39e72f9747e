/**
 * `dataplane.max_streams_per_tunnel` (docs/bounds.md) counts a tunnel's pending + active streams
 * engine-wide, while its streams start on any worker. Each live tunnel holds one slot: three int32
 * words in a SharedArrayBuffer. They are counted even when streams are not limited (the count is the
 * tunnel's open streams in the Engine API's stats).
 *
 * - `streams[slot]`: the worker that opens a stream increments it (refusing past the limit, if any) and
 *   decrements it when that stream ends; a decrement notifies the word, which wakes the requests
 *   waiting for room (`Atomics.waitAsync`) on every worker.
 * - `waiting[slot]`: requests waiting at the limit now, on any worker, that only a stream given back
 *   by another worker's pool can serve in time (see StreamLimit.waitForRoom). A stream about to go
 *   idle gives its slot back instead while this is above 0 (its own pool's waiters were served first).
 * - `arrivals[slot]`: incremented (and notified) each time a request starts waiting. It only grows
 *   (wrapping at 2^32), so a watcher that read a value knows for sure how many arrived since. The HTTP
 *   edge's pools read both to give back the slots of idle pooled streams to whoever waits.
 *
 * The main thread hands slots out and takes them back once a deleted tunnel's streams are all gone.
 */
/** Live tunnels the engine can hold: each holds a slot, in this table and in tunnel-stats.ts. */
export const TUNNEL_SLOTS = 262_144;

const TABLES = ['streams', 'waiting', 'arrivals'] as const;
const TABLE_BYTES = TUNNEL_SLOTS * Int32Array.BYTES_PER_ELEMENT;

export function createStreamSlotBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(TABLES.length * TABLE_BYTES);
}

function table(buffer: SharedArrayBuffer, name: (typeof TABLES)[number]): Int32Array {
  return new Int32Array(buffer, TABLES.indexOf(name) * TABLE_BYTES, TUNNEL_SLOTS);
}

/** Main thread: slot allocation. */
export class StreamSlotAllocator {
  private readonly streams: Int32Array;
  private readonly inUse = new Uint8Array(TUNNEL_SLOTS);
  private next = 0;

  constructor(buffer: SharedArrayBuffer) {
    this.streams = table(buffer, 'streams');
  }

  /** A free slot (not held by a live tunnel, no stream still counted), or undefined when none is. */
  allocate(): number | undefined {
    for (let tried = 0; tried < TUNNEL_SLOTS; tried++) {
      const slot = (this.next + tried) % TUNNEL_SLOTS;
      if (!this.inUse[slot] && Atomics.load(this.streams, slot) === 0) {
        this.inUse[slot] = 1;
        this.next = (slot + 1) % TUNNEL_SLOTS;
        return slot;
      }
    }
    return undefined;
  }

  /** The tunnel is gone; its slot is reused only after its last stream released it. */
  free(slot: number): void {
    this.inUse[slot] = 0;
  }

  /** Pending + active streams counted on `slot`, engine-wide. */
  streamCount(slot: number): number {
    return Atomics.load(this.streams, slot);
  }
}

/** Worker side: the two words of each slot, and waiting on them without polling. */
export class StreamSlots {
  private readonly streams: Int32Array;
  private readonly waiting: Int32Array;
  private readonly arrivals: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.streams = table(buffer, 'streams');
    this.waiting = table(buffer, 'waiting');
    this.arrivals = table(buffer, 'arrivals');
  }

  tryAcquire(slot: number, limit: number): boolean {
    if (Atomics.add(this.streams, slot, 1) < limit) return true;
    Atomics.sub(this.streams, slot, 1);
    return false;
  }

  /** Always notifies: ~40 ns when nobody waits, cheaper than keeping a count of who does. */
  release(slot: number): void {
    Atomics.sub(this.streams, slot, 1);
    Atomics.notify(this.streams, slot);
  }

  streamCount(slot: number): number {
    return Atomics.load(this.streams, slot);
  }

  /** Settles once the count may differ from `observed` (at once if it already does), or after `ms`. */
  streamCountChanged(slot: number, observed: number, ms: number): Promise<void> {
    return settled(Atomics.waitAsync(this.streams, slot, observed, ms));
  }

  /**
   * A request starts waiting at the limit (or, `starving`, starts needing a stream given back): pools
   * holding idle streams of this tunnel hear of it. `waiting` before `arrivals`, while a watcher
   * starts by reading `arrivals`, then `waiting`: a request arriving meanwhile shows in one of the two.
   */
  arrive(slot: number, starving: boolean): void {
    if (starving) Atomics.add(this.waiting, slot, 1);
    Atomics.add(this.arrivals, slot, 1);
    Atomics.notify(this.arrivals, slot);
  }

  /** A starving request got room, gave up or left. */
  leave(slot: number): void {
    Atomics.sub(this.waiting, slot, 1);
  }

  waitingCount(slot: number): number {
    return Atomics.load(this.waiting, slot);
  }

  arrivalCount(slot: number): number {
    return Atomics.load(this.arrivals, slot);
  }

  /** Settles once a request arrived after `observed` was read, or after `ms`. */
  arrivalCountChanged(slot: number, observed: number, ms: number): Promise<void> {
    return settled(Atomics.waitAsync(this.arrivals, slot, observed, ms));
  }
}

function settled(wait: ReturnType<typeof Atomics.waitAsync>): Promise<void> {
  return wait.async ? wait.value.then(() => undefined) : Promise.resolve();
}
