/**
 * The data plane's traffic counters in one SharedArrayBuffer (docs/architecture.md#a-worker): one row per worker, each
 * row written only by its worker and summed by the main thread at scrape time, so counting never
 * sends a message. A row is a seqlock word followed by float64 columns (exact up to 2^53); rows are
 * padded to 64-byte cache lines so workers never share a line.
 */

export const DISPATCH_KINDS = ['agent', 'api', 'edge'] as const;
export type DispatchKind = (typeof DISPATCH_KINDS)[number];

export const HANDSHAKE_FAILURE_REASONS = ['unknown_sni', 'alpn', 'protocol', 'timeout', 'other'] as const;
export type HandshakeFailureReason = (typeof HANDSHAKE_FAILURE_REASONS)[number];

export const STREAM_KINDS = ['http', 'tls', 'private'] as const;
export type StreamKind = (typeof STREAM_KINDS)[number];

export const STREAM_OUTCOMES = ['connected', 'refused', 'timeout', 'capacity', 'failed'] as const;
export type StreamOutcome = (typeof STREAM_OUTCOMES)[number];

export const STREAM_DIRECTIONS = ['upstream', 'downstream'] as const;

export const RESPONSE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export const RESPONSE_ORIGINS = ['upstream', 'edge'] as const;
export type ResponseOrigin = (typeof RESPONSE_ORIGINS)[number];

export const ACCESS_DENIAL_REASONS = ['trusted_ips', 'token_auth'] as const;
export type AccessDenialReason = (typeof ACCESS_DENIAL_REASONS)[number];

/** Columns that are gauges of what a worker holds or measures now: they die with it (see CounterRow). */
const GAUGE_COLUMNS = [
  'connections_open',
  ...STREAM_KINDS.map((kind) => `streams_active_${kind}` as const),
  /** The worker's event-loop delay over the last second (set, not added: see worker-health.ts). */
  'event_loop_delay_p99_ms',
  'event_loop_delay_max_ms',
] as const;

export const COUNTER_COLUMNS = [
  /** Gauges: TCP connections this worker holds on the TLS listener; spliced proxy connections by kind; loop delay. */
  ...GAUGE_COLUMNS,
  ...DISPATCH_KINDS.map((kind) => `accepted_${kind}` as const),
  ...HANDSHAKE_FAILURE_REASONS.map((reason) => `handshake_failures_${reason}` as const),
  /** Connections closed at accept because the engine held `dataplane.max_connections` already. */
  'connections_refused_max_connections',
  /** Raw TCP bytes on the TLS listener's connections, added when each connection closes. */
  'bytes_received',
  'bytes_sent',
  /** Proxy connections that landed on another worker than their stream and were relayed. */
  'streams_relayed',
  /** Stream bytes this worker sent to another worker (0 with perfect affinity). */
  'relay_bytes',
  /** Stream attempts by the worker that asked for the stream, by kind and outcome. */
  ...STREAM_KINDS.flatMap((kind) => STREAM_OUTCOMES.map((outcome) => `streams_${kind}_${outcome}` as const)),
  /** Payload bytes written to (`upstream`) and read from (`downstream`) agent proxy connections. */
  ...STREAM_KINDS.flatMap((kind) => STREAM_DIRECTIONS.map((direction) => `stream_bytes_${kind}_${direction}` as const)),
  /** Responses sent downstream on HTTP tunnels, by status class and by who made them. */
  ...RESPONSE_CLASSES.flatMap((klass) => RESPONSE_ORIGINS.map((origin) => `http_responses_${klass}_${origin}` as const)),
  ...ACCESS_DENIAL_REASONS.map((reason) => `access_denied_${reason}` as const),
  /** New streams that went to another member of an endpoint pool after the first one failed them. */
  'pool_failovers',
] as const;
export type CounterColumn = (typeof COUNTER_COLUMNS)[number];

const COLUMN_INDEX = Object.fromEntries(COUNTER_COLUMNS.map((name, index) => [name, index])) as Record<
  CounterColumn,
  number
>;

const CACHE_LINE = 64;
/** Bytes per row: an 8-byte header (int32 sequence + padding), the columns, padded to a cache line. */
const ROW_BYTES = Math.ceil((8 + COUNTER_COLUMNS.length * 8) / CACHE_LINE) * CACHE_LINE;

const MAX_READ_ATTEMPTS = 10_000;

export type CounterValues = Record<CounterColumn, number>;

export function createCounterBuffer(workers: number): SharedArrayBuffer {
  return new SharedArrayBuffer(ROW_BYTES * workers);
}

/** A worker's own row. Single writer: the seqlock only lets readers see whole updates. */
export class CounterRow {
  private readonly sequence: Int32Array;
  private readonly values: Float64Array;

  /**
   * A replacement worker takes over its predecessor's row: the sequence is made even again (the old
   * thread may have died mid-update) and the gauges restart from zero, since the connections and
   * streams they counted died with it. Counters keep counting up.
   */
  constructor(buffer: SharedArrayBuffer, worker: number) {
    this.sequence = new Int32Array(buffer, worker * ROW_BYTES, 1);
    this.values = new Float64Array(buffer, worker * ROW_BYTES + 8, COUNTER_COLUMNS.length);
    if (Atomics.load(this.sequence, 0) % 2 !== 0) Atomics.add(this.sequence, 0, 1);
    Atomics.add(this.sequence, 0, 1);
    for (const gauge of GAUGE_COLUMNS) this.values[COLUMN_INDEX[gauge]] = 0;
    Atomics.add(this.sequence, 0, 1);
  }

  add(column: CounterColumn, amount = 1): void {
    Atomics.add(this.sequence, 0, 1);
    this.values[COLUMN_INDEX[column]]! += amount;
    Atomics.add(this.sequence, 0, 1);
  }

  set(column: CounterColumn, value: number): void {
    Atomics.add(this.sequence, 0, 1);
    this.values[COLUMN_INDEX[column]] = value;
    Atomics.add(this.sequence, 0, 1);
  }

  addPair(first: CounterColumn, firstAmount: number, second: CounterColumn, secondAmount: number): void {
    Atomics.add(this.sequence, 0, 1);
    this.values[COLUMN_INDEX[first]]! += firstAmount;
    this.values[COLUMN_INDEX[second]]! += secondAmount;
    Atomics.add(this.sequence, 0, 1);
  }
}

/**
 * Every worker's `connections_open` gauge summed, read by a worker at each accept to apply the
 * engine-wide connection limit. No seqlock: a gauge is one aligned float64 that only its worker writes,
 * so a read sees an old or a new value, never a torn one; workers accepting at the same instant may
 * overshoot the limit by at most one connection each.
 */
export class ConnectionCensus {
  private readonly gauges: Float64Array[];

  constructor(buffer: SharedArrayBuffer) {
    const rows = buffer.byteLength / ROW_BYTES;
    this.gauges = Array.from({ length: rows }, (_, worker) => new Float64Array(buffer, worker * ROW_BYTES + 8 + COLUMN_INDEX.connections_open * 8, 1));
  }

  openConnections(): number {
    let open = 0;
    for (const gauge of this.gauges) open += gauge[0]!;
    return open;
  }
}

/** The main thread's reading side. */
export class CounterTable {
  constructor(
    private readonly buffer: SharedArrayBuffer,
    readonly workers: number,
  ) {}

  /**
   * A consistent copy of one worker's row: retried while the worker is mid-update, with a bound so
   * a worker that died mid-update cannot hang the reader.
   */
  row(worker: number): CounterValues {
    const sequence = new Int32Array(this.buffer, worker * ROW_BYTES, 1);
    const values = new Float64Array(this.buffer, worker * ROW_BYTES + 8, COUNTER_COLUMNS.length);
    let copy = Array.from(values);
    for (let attempt = 0; attempt < MAX_READ_ATTEMPTS; attempt++) {
      const before = Atomics.load(sequence, 0);
      if (before % 2 !== 0) continue;
      copy = Array.from(values);
      if (Atomics.load(sequence, 0) === before) break;
    }
    return Object.fromEntries(COUNTER_COLUMNS.map((name, i) => [name, copy[i]!])) as CounterValues;
  }

  totals(): CounterValues {
    const sum = Object.fromEntries(COUNTER_COLUMNS.map((name) => [name, 0])) as CounterValues;
    for (let worker = 0; worker < this.workers; worker++) {
      const row = this.row(worker);
      for (const name of COUNTER_COLUMNS) sum[name] += row[name];
    }
    return sum;
  }
}
