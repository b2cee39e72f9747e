import type { ApiClient, ApiTunnel, EngineEvent, StatsEvent, TunnelFigures } from './api.js';

/** Five minutes of one-second samples for the sparklines. */
const HISTORY = 300;
const FEED_LENGTH = 100;

export interface TunnelRow {
  tunnel: ApiTunnel;
  figures: TunnelFigures | undefined;
  requestsPerSecond: number;
  bytesInPerSecond: number;
  bytesOutPerSecond: number;
}

export interface FeedEntry {
  time: string;
  type: string;
  subject: string;
}

/**
 * What the page knows: clients and tunnels from the event stream (a snapshot, then changes), their
 * figures from the stats stream, and per-second rates from consecutive figures.
 */
export class Model {
  readonly clients = new Map<string, ApiClient>();
  readonly rows = new Map<string, TunnelRow>();
  readonly feed: FeedEntry[] = [];
  readonly requestsHistory: number[] = [];
  readonly bytesHistory: number[] = [];
  private lastStatsAt: number | undefined;

  applyEvent(event: EngineEvent): void {
    if (event.type === 'state.initial') {
      this.clients.clear();
      for (const client of event.object.clients) this.clients.set(client.id, client);
      const previous = new Map(this.rows);
      this.rows.clear();
      for (const tunnel of event.object.tunnels) this.rows.set(tunnel.id, previous.get(tunnel.id) ?? emptyRow(tunnel));
      return;
    }
    if (event.type === 'client.created') this.clients.set(event.object.id, event.object);
    else if (event.type === 'client.deleted') this.clients.delete(event.object.id);
    else if (event.type === 'tunnel.created') this.rows.set(event.object.id, this.rows.get(event.object.id) ?? emptyRow(event.object));
    else this.rows.delete(event.object.id);
    const subject = 'hostname' in event.object && event.object.hostname ? event.object.hostname : ('name' in event.object && event.object.name) || event.object.id;
    this.feed.unshift({ time: event.created_at, type: event.type, subject: String(subject) });
    this.feed.length = Math.min(this.feed.length, FEED_LENGTH);
  }

  /** A snapshot sets figures; a tick updates those that moved (the others had no activity: rate 0). */
  applyStats(stats: StatsEvent, snapshot: boolean): void {
    const now = Date.parse(stats.time);
    const seconds = this.lastStatsAt === undefined || snapshot ? 0 : Math.max(0.001, (now - this.lastStatsAt) / 1000);
    this.lastStatsAt = now;
    const moved = new Map(stats.tunnels.map((figures) => [figures.id, figures]));
    for (const row of this.rows.values()) {
      const figures = moved.get(row.tunnel.id);
      if (!figures) {
        if (!snapshot) Object.assign(row, { requestsPerSecond: 0, bytesInPerSecond: 0, bytesOutPerSecond: 0 });
        continue;
      }
      // A tunnel without figures yet was created after the snapshot: it started from zero.
      const before = row.figures ?? zeroFigures(figures.id);
      if (seconds > 0) {
        row.requestsPerSecond = (requestTotal(figures) - requestTotal(before)) / seconds;
        row.bytesInPerSecond = (figures.bytes_in - before.bytes_in) / seconds;
        row.bytesOutPerSecond = (figures.bytes_out - before.bytes_out) / seconds;
      }
      row.figures = figures;
    }
    if (!snapshot) {
      const totals = this.totals();
      push(this.requestsHistory, totals.requestsPerSecond);
      push(this.bytesHistory, totals.bytesPerSecond);
    }
  }

  totals(): { clients: number; tunnels: number; streams: number; requestsPerSecond: number; bytesPerSecond: number } {
    let streams = 0;
    let requestsPerSecond = 0;
    let bytesPerSecond = 0;
    for (const row of this.rows.values()) {
      streams += row.figures?.streams ?? 0;
      requestsPerSecond += row.requestsPerSecond;
      bytesPerSecond += row.bytesInPerSecond + row.bytesOutPerSecond;
    }
    return { clients: this.clients.size, tunnels: this.rows.size, streams, requestsPerSecond, bytesPerSecond };
  }
}

export function requestTotal(figures: TunnelFigures): number {
  const { requests } = figures;
  return requests['1xx'] + requests['2xx'] + requests['3xx'] + requests['4xx'] + requests['5xx'];
}

function zeroFigures(id: string): TunnelFigures {
  return { id, requests: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 }, bytes_in: 0, bytes_out: 0, streams: 0, last_activity: null };
}

function emptyRow(tunnel: ApiTunnel): TunnelRow {
  return { tunnel, figures: undefined, requestsPerSecond: 0, bytesInPerSecond: 0, bytesOutPerSecond: 0 };
}

function push(history: number[], value: number): void {
  history.push(value);
  if (history.length > HISTORY) history.shift();
}
