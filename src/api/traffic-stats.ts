import type { TunnelRecord } from '../control/registry.js';
import type { Registry } from '../control/registry.js';
import type { TunnelTraffic } from '../threads/tunnel-stats.js';
import { sendJson, type ApiRequest, type EngineApi } from './engine-api.js';
import { MAX_QUEUED_BYTES } from './event-hub.js';
import { SseStream } from './sse-stream.js';
import type { HttpResponse, TemplatedApp } from './uws.js';

export const TUNNEL_STATS_PATH = '/rivulet/v1/tunnels/stats';
export const STATS_STREAM_PATH = '/rivulet/v1/stats/stream';
/** How often the stats stream sends what changed. */
const STATS_INTERVAL_MS = 1000;

/** Where the figures come from (the control plane, reading the workers' shared rows). */
export interface TrafficSource {
  trafficOf(tunnel: TunnelRecord): { traffic: TunnelTraffic; streams: number };
  /** Read each second for every tunnel: a tunnel is sent again only when one of these two moved. */
  lastActivityMs(tunnel: TunnelRecord): number;
  openStreams(tunnel: TunnelRecord): number;
}

/** What the last tick saw of a tunnel. */
interface Seen {
  lastActivityMs: number;
  streams: number;
}

/** One tunnel's figures in `GET /rivulet/v1/tunnels/stats` (docs/engine-api.md#tunnel-traffic). */
export interface TunnelStatsJson {
  id: string;
  requests: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  bytes_in: number;
  bytes_out: number;
  streams: number;
  last_activity: string | null;
}

/**
 * Rivulet's per-tunnel traffic figures, next to the Engine API (same host, token and permission,
 * outside `/api/` and its OpenAPI document), read from the workers' shared per-tunnel rows:
 * `GET /rivulet/v1/tunnels/stats` answers them all; `GET /rivulet/v1/stats/stream` (SSE) sends them all
 * once, then each second the tunnels whose figures moved, computed once for every watcher.
 */
export class TrafficStats {
  private readonly watchers = new Set<SseStream>();
  private ticker: NodeJS.Timeout | undefined;
  /** What the last tick saw of each live tunnel, updated in place (10,000 tunnels: no garbage per tick). */
  private readonly seen = new Map<string, Seen>();
  /** Tunnels deleted since the last tick, while anyone watches. */
  private removed: string[] = [];

  constructor(
    private readonly api: EngineApi,
    private readonly registry: Registry,
    private readonly source: TrafficSource,
  ) {
    registry.subscribe((event) => {
      if (event.type !== 'tunnel.deleted' || !this.seen.delete(event.tunnel.id)) return;
      if (this.watchers.size > 0) this.removed.push(event.tunnel.id);
    });
  }

  register(app: TemplatedApp): void {
    app.any(TUNNEL_STATS_PATH, (res, req) => {
      const request = this.api.readRequest(req);
      if (this.api.admitReader(res, request)) sendJson(res, request, JSON.stringify(this.snapshot()));
    });
    app.any(STATS_STREAM_PATH, (res, req) => this.openStream(res, this.api.readRequest(req), req.getQuery() ?? ''));
  }

  /** Every live tunnel's figures, oldest tunnel first. */
  snapshot(): { time: string; tunnels: TunnelStatsJson[] } {
    const tunnels: TunnelStatsJson[] = [];
    for (const tunnel of this.registry.tunnels.values()) tunnels.push(statsJson(tunnel.id, this.source.trafficOf(tunnel)));
    return { time: new Date().toISOString(), tunnels };
  }

  /** Engine shutdown: the streams end. */
  close(): void {
    for (const watcher of [...this.watchers]) watcher.close();
  }

  private openStream(res: HttpResponse, request: ApiRequest, query: string): void {
    if (!this.api.admitReader(res, request, query)) return;
    const watcher = SseStream.open(res, request, (snapshotBytes) => MAX_QUEUED_BYTES + snapshotBytes, () => {
      this.watchers.delete(watcher);
      if (this.watchers.size > 0) return;
      clearInterval(this.ticker);
      this.ticker = undefined;
      this.removed = [];
    });
    if (!watcher.write(Buffer.from(`event: snapshot\ndata: ${JSON.stringify(this.snapshot())}\n\n`))) return;
    this.watchers.add(watcher);
    this.ticker ??= setInterval(() => this.tick(), STATS_INTERVAL_MS).unref();
  }

  /** One `stats` event for every watcher: the tunnels whose figures moved since the last tick, and those gone. */
  private tick(): void {
    const moved: TunnelStatsJson[] = [];
    for (const tunnel of this.registry.tunnels.values()) {
      const lastActivityMs = this.source.lastActivityMs(tunnel);
      const streams = this.source.openStreams(tunnel);
      const before = this.seen.get(tunnel.id);
      if (before && before.lastActivityMs === lastActivityMs && before.streams === streams) continue;
      if (before) Object.assign(before, { lastActivityMs, streams });
      else this.seen.set(tunnel.id, { lastActivityMs, streams });
      moved.push(statsJson(tunnel.id, this.source.trafficOf(tunnel)));
    }
    const removed = this.removed;
    this.removed = [];
    const event = Buffer.from(`event: stats\ndata: ${JSON.stringify({ time: new Date().toISOString(), tunnels: moved, removed })}\n\n`);
    for (const watcher of [...this.watchers]) watcher.write(event);
  }
}

function statsJson(id: string, { traffic, streams }: { traffic: TunnelTraffic; streams: number }): TunnelStatsJson {
  return {
    id,
    requests: {
      '1xx': traffic.responses_1xx,
      '2xx': traffic.responses_2xx,
      '3xx': traffic.responses_3xx,
      '4xx': traffic.responses_4xx,
      '5xx': traffic.responses_5xx,
    },
    bytes_in: traffic.bytes_in,
    bytes_out: traffic.bytes_out,
    streams,
    last_activity: traffic.last_activity_ms > 0 ? new Date(traffic.last_activity_ms).toISOString() : null,
  };
}
