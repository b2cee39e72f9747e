import { Duplex } from 'node:stream';
import type { PeerMessage } from '../threads/messages.js';
import type { CounterRow } from '../threads/counters.js';

/**
 * Bytes in flight towards the other worker before the writer is held back. With the readable side's
 * own buffer this bounds what one relayed stream can hold in memory.
 */
export const RELAY_WINDOW_BYTES = 512 * 1024;

type RelayMessage = Extract<PeerMessage, { type: `relay-${string}` }>;

/**
 * One end of a stream whose two halves live on different workers (docs/architecture.md: sockets cannot move
 * between threads). It is a Duplex, so it splices like a socket: writes travel as `relay-data` to the
 * other worker, which acknowledges each chunk once its reader took it (credit-based flow control);
 * `relay-end` carries a half-close and `relay-close` a teardown.
 */
export class RelayedStream extends Duplex {
  private inFlight = 0;
  private heldWrite: (() => void) | undefined;
  private unacknowledged = 0;
  private peerClosed = false;
  /** Payload bytes through this end, like a socket's (read by the stream metrics). */
  bytesRead = 0;
  bytesWritten = 0;

  constructor(
    readonly streamId: string,
    private readonly send: (message: RelayMessage, transfer?: ArrayBuffer[]) => void,
    private readonly forget: () => void,
    private readonly countSent: (bytes: number) => void,
  ) {
    super({ allowHalfOpen: true });
  }

  /** Called by the hub for each relay message addressed to this stream. */
  receive(message: RelayMessage): void {
    switch (message.type) {
      case 'relay-data': {
        const chunk = Buffer.from(message.chunk.buffer, message.chunk.byteOffset, message.chunk.byteLength);
        this.bytesRead += chunk.length;
        if (this.push(chunk)) this.send({ type: 'relay-ack', stream_id: this.streamId, bytes: chunk.length });
        else this.unacknowledged += chunk.length;
        return;
      }
      case 'relay-ack':
        this.inFlight -= message.bytes;
        if (this.heldWrite && this.inFlight < RELAY_WINDOW_BYTES) {
          const release = this.heldWrite;
          this.heldWrite = undefined;
          release();
        }
        return;
      case 'relay-end':
        this.push(null);
        return;
      case 'relay-close':
        this.peerClosed = true;
        this.destroy();
        return;
    }
  }

  override _read(): void {
    if (this.unacknowledged > 0) {
      this.send({ type: 'relay-ack', stream_id: this.streamId, bytes: this.unacknowledged });
      this.unacknowledged = 0;
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    // A copy of exactly these bytes, transferred: cloning the Buffer would copy its whole backing store.
    const bytes = new Uint8Array(chunk);
    // Counted first: the peer may pass these bytes on, and someone read the counters, before this thread runs again.
    this.countSent(chunk.length);
    this.send({ type: 'relay-data', stream_id: this.streamId, chunk: bytes }, [bytes.buffer]); // detaches `bytes`
    this.bytesWritten += chunk.length;
    this.inFlight += chunk.length;
    if (this.inFlight < RELAY_WINDOW_BYTES) done();
    else this.heldWrite = done;
  }

  override _final(done: (error?: Error | null) => void): void {
    this.send({ type: 'relay-end', stream_id: this.streamId });
    done();
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    // After a clean end both ways the other side closes on its own, once it has flushed.
    const clean = this.readableEnded && this.writableFinished;
    if (!this.peerClosed && !clean) this.send({ type: 'relay-close', stream_id: this.streamId });
    this.forget();
    done(error);
  }
}

/** This worker's relayed streams by stream id, for routing incoming relay messages. */
export class RelayHub {
  private readonly streams = new Map<string, RelayedStream>();

  constructor(
    private readonly sendToPeer: (peer: number, message: PeerMessage, transfer?: ArrayBuffer[]) => void,
    private readonly counters: CounterRow,
  ) {}

  /** A relayed end for `streamId`; undefined when one is live already (a stream id is used once). */
  open(streamId: string, peer: number): RelayedStream | undefined {
    if (this.streams.has(streamId)) return undefined;
    const stream = new RelayedStream(
      streamId,
      (message, transfer) => this.sendToPeer(peer, message, transfer),
      () => this.streams.delete(streamId),
      (bytes) => this.counters.add('relay_bytes', bytes),
    );
    this.streams.set(streamId, stream);
    return stream;
  }

  /** A relay message for a stream that is gone (or never was here) is dropped. */
  deliver(message: RelayMessage): void {
    this.streams.get(message.stream_id)?.receive(message);
  }
}
