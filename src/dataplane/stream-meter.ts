import type { Duplex } from 'node:stream';
import type { CounterRow, StreamKind, StreamOutcome } from '../threads/counters.js';
import type { TunnelStatsWriter } from '../threads/tunnel-stats.js';

/** How stale the byte counters of a long-lived stream may get in a scrape. */
const FLUSH_INTERVAL_MS = 1000;

/** A proxy connection's end here: the agent's TLS socket, or a RelayedStream to the worker that holds it. */
type CountedEnd = Duplex & { readonly bytesRead: number; readonly bytesWritten: number };

interface LiveStream {
  readonly kind: StreamKind;
  /** Its tunnel's slot, whose traffic row gets the same bytes. */
  readonly slot: number;
  readonly end: CountedEnd;
  read: number;
  written: number;
}

/**
 * Stream metrics of one worker, counted by the worker that asked for each stream (it knows the kind).
 * Bytes are not counted per chunk: each live stream's socket counters are sampled once a second and
 * when it closes, so the byte path gains no work and a scrape lags by at most a second.
 */
export class StreamMeter {
  private readonly live = new Set<LiveStream>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly counters: CounterRow,
    private readonly traffic: TunnelStatsWriter,
  ) {}

  failed(kind: StreamKind, outcome: Exclude<StreamOutcome, 'connected'>): void {
    this.counters.add(`streams_${kind}_${outcome}`);
  }

  /**
   * `proxyEnd` is now this stream's. Bytes it already holds unread are payload; what it read or wrote
   * before (the rstrm/1 frames that set it up) is not.
   */
  connected(kind: StreamKind, proxyEnd: Duplex, slot: number): void {
    const end = proxyEnd as CountedEnd;
    const stream: LiveStream = { kind, slot, end, read: end.bytesRead - end.readableLength, written: end.bytesWritten };
    this.counters.addPair(`streams_${kind}_connected`, 1, `streams_active_${kind}`, 1);
    this.live.add(stream);
    this.timer ??= setInterval(() => this.flushLive(), FLUSH_INTERVAL_MS).unref();
    const gone = (): void => {
      this.flush(stream);
      this.counters.add(`streams_active_${kind}`, -1);
      this.live.delete(stream);
      if (this.live.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
    // A stream that closed before it reached us emits no 'close' again: it would stay counted for ever.
    if (end.closed) gone();
    else end.once('close', gone);
  }

  private flushLive(): void {
    for (const stream of this.live) this.flush(stream);
  }

  private flush(stream: LiveStream): void {
    const { bytesRead, bytesWritten } = stream.end;
    if (bytesRead === stream.read && bytesWritten === stream.written) return;
    const received = bytesRead - stream.read;
    const sent = bytesWritten - stream.written;
    this.counters.addPair(`stream_bytes_${stream.kind}_downstream`, received, `stream_bytes_${stream.kind}_upstream`, sent);
    this.traffic.bytes(stream.slot, sent, received);
    stream.read = bytesRead;
    stream.written = bytesWritten;
  }
}
