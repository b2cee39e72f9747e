/**
 * `dataplane.max_streams_per_tunnel` (docs/bounds.md) counts a tunnel's pending + active streams
 * engine-wide, while its streams start on any worker. Each limited tunnel gets one int32 slot in a
 * SharedArrayBuffer: the worker that opens a stream increments it (atomically, refusing past the
 * limit) and decrements it when that stream ends. The main thread hands slots out and takes them
 * back once a deleted tunnel's streams are all gone.
 */
/** Live tunnels the engine can hold while streams per tunnel are limited (as they are by default). */
export const STREAM_SLOTS = 1_048_576;

export function createStreamSlotBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(STREAM_SLOTS * Int32Array.BYTES_PER_ELEMENT);
}

/** Main thread: slot allocation. */
export class StreamSlotAllocator {
  private readonly counts: Int32Array;
  private readonly inUse = new Uint8Array(STREAM_SLOTS);
  private next = 0;

  constructor(buffer: SharedArrayBuffer) {
    this.counts = new Int32Array(buffer);
  }

  /** A free slot (not held by a live tunnel, no stream still counted), or undefined when none is. */
  allocate(): number | undefined {
    for (let tried = 0; tried < STREAM_SLOTS; tried++) {
      const slot = (this.next + tried) % STREAM_SLOTS;
      if (!this.inUse[slot] && Atomics.load(this.counts, slot) === 0) {
        this.inUse[slot] = 1;
        this.next = (slot + 1) % STREAM_SLOTS;
        return slot;
      }
    }
    return undefined;
  }

  /** The tunnel is gone; its slot is reused only after its last stream released it. */
  free(slot: number): void {
    this.inUse[slot] = 0;
  }
}

/** Worker side: acquiring and releasing a stream against a tunnel's limit. */
export class StreamSlots {
  private readonly counts: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.counts = new Int32Array(buffer);
  }

  tryAcquire(slot: number, limit: number): boolean {
    if (Atomics.add(this.counts, slot, 1) < limit) return true;
    Atomics.sub(this.counts, slot, 1);
    return false;
  }

  release(slot: number): void {
    Atomics.sub(this.counts, slot, 1);
  }
}
