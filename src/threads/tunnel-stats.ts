import { TUNNEL_SLOTS, createStreamSlotBuffer } from './stream-slots.js';

/**
 * Per-tunnel traffic, counted by the workers in one SharedArrayBuffer: a row per tunnel slot (the
 * slot each live tunnel holds, as for its stream count), one 64-byte cache line of eight int64
 * columns. Any worker adds to any row with `Atomics.add`, so counting sends no message; the main
 * thread reads rows for the Engine API's stats and zeroes a row when it hands its slot to a new
 * tunnel. Prometheus gets no per-tunnel labels from this: engine-wide figures stay in counters.ts.
 */
export const TUNNEL_STAT_COLUMNS = [
  /** Responses sent downstream on an HTTP tunnel by status class (the upstream's and the edge's own). */
  'responses_1xx',
  'responses_2xx',
  'responses_3xx',
  'responses_4xx',
  'responses_5xx',
  /** Payload bytes towards the agent (what visitors sent) and from it (what they received). */
  'bytes_in',
  'bytes_out',
  /** Epoch ms of the last response or stream bytes counted. */
  'last_activity_ms',
] as const;
export type TunnelStatColumn = (typeof TUNNEL_STAT_COLUMNS)[number];

const COLUMNS = TUNNEL_STAT_COLUMNS.length;
const COLUMN = Object.fromEntries(TUNNEL_STAT_COLUMNS.map((name, index) => [name, index])) as Record<TunnelStatColumn, number>;
const FIRST_RESPONSE_COLUMN = COLUMN.responses_1xx;

/** The SharedArrayBuffers indexed by tunnel slot, made once by the main thread and given to every worker. */
export interface TunnelTables {
  streamSlots: SharedArrayBuffer;
  tunnelStats: SharedArrayBuffer;
}

export function createTunnelTables(): TunnelTables {
  return { streamSlots: createStreamSlotBuffer(), tunnelStats: new SharedArrayBuffer(TUNNEL_SLOTS * COLUMNS * BigInt64Array.BYTES_PER_ELEMENT) };
}

/** Worker side: adds to the row of a tunnel's slot. */
export class TunnelStatsWriter {
  private readonly cells: BigInt64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.cells = new BigInt64Array(buffer);
  }

  /** One response sent downstream with `status`. */
  response(slot: number, status: number): void {
    const row = slot * COLUMNS;
    Atomics.add(this.cells, row + FIRST_RESPONSE_COLUMN + Math.min(4, Math.max(0, Math.floor(status / 100) - 1)), 1n);
    Atomics.store(this.cells, row + COLUMN.last_activity_ms, BigInt(Date.now()));
  }

  /** Stream payload bytes since the last call for that stream: `sent` towards the agent, `received` from it. */
  bytes(slot: number, sent: number, received: number): void {
    const row = slot * COLUMNS;
    if (sent > 0) Atomics.add(this.cells, row + COLUMN.bytes_in, BigInt(sent));
    if (received > 0) Atomics.add(this.cells, row + COLUMN.bytes_out, BigInt(received));
    Atomics.store(this.cells, row + COLUMN.last_activity_ms, BigInt(Date.now()));
  }
}

export type TunnelTraffic = Record<TunnelStatColumn, number>;

/** Main thread: reads rows, and clears a slot's row before a new tunnel takes the slot. */
export class TunnelStatsReader {
  private readonly cells: BigInt64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.cells = new BigInt64Array(buffer);
  }

  /** The row of `slot` (exact up to 2^53, which no counter here reaches in practice). */
  read(slot: number): TunnelTraffic {
    const row = slot * COLUMNS;
    const traffic = {} as TunnelTraffic;
    for (let column = 0; column < COLUMNS; column++) traffic[TUNNEL_STAT_COLUMNS[column]!] = Number(Atomics.load(this.cells, row + column));
    return traffic;
  }

  /** The row's last activity alone (epoch ms, 0 before any): what tells a watcher whether the row moved. */
  lastActivityMs(slot: number): number {
    return Number(Atomics.load(this.cells, slot * COLUMNS + COLUMN.last_activity_ms));
  }

  clear(slot: number): void {
    const row = slot * COLUMNS;
    for (let column = 0; column < COLUMNS; column++) Atomics.store(this.cells, row + column, 0n);
  }
}
