import { bearerToken } from '../auth/bearer.js';
import { PERMISSIONS } from '../auth/permissions.js';
import type { TunnelRecord } from '../control/registry.js';
import type { Registry } from '../control/registry.js';
import type { TunnelTraffic } from '../threads/tunnel-stats.js';
import { sendJson, type ApiRequest, type EngineApi } from './engine-api.js';
import { MAX_QUEUED_BYTES } from './event-hub.js';
import { queryToken } from './event-streams.js';
import { SseStream } from './sse-stream.js';
import type { HttpResponse, TemplatedApp } from './uws.js';

export const TUNNEL_STATS_PATH = '/rivulet/v1/tunnels/stats';
export const STATS_STREAM_PATH = '/rivulet/v1/stats/stream';
/** How often the stats stream sends what changed. */
const STATS_INTERVAL_MS = 1000;

type Figures = TunnelTraffic & { streams: number };

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
  /** What the last tick saw of each tunnel: a tunnel is sent again when its activity or streams moved. */
  private seen = new Map<string, Figures>();

  constructor(
    private readonly api: EngineApi,
    private readonly registry: Registry,
    private readonly trafficOf: (tunnel: TunnelRecord) => Figures,
  ) {}

  register(app: TemplatedApp): void {
    app.any(TUNNEL_STATS_PATH, (res, req) => {
      const request = this.api.readRequest(req);
      void this.admit(res, request, undefined).then((admitted) => {
        if (admitted) res.cork(() => sendJson(res, request, JSON.stringify(this.snapshot())));
      });
    });
    app.any(STATS_STREAM_PATH, (res, req) => void this.openStream(res, this.api.readRequest(req), req.getQuery() ?? ''));
  }

  /** Every live tunnel's figures, oldest tunnel first. */
  snapshot(): { time: string; tunnels: TunnelStatsJson[] } {
    const tunnels: TunnelStatsJson[] = [];
    for (const tunnel of this.registry.tunnels.values()) tunnels.push(statsJson(tunnel.id, this.trafficOf(tunnel)));
    return { time: new Date().toISOString(), tunnels };
  }

  /** Engine shutdown: the streams end. */
  close(): void {
    for (const watcher of [...this.watchers]) watcher.close();
  }

  /** Host, method, token (Bearer; the stream also takes `?rstream.token=`, as EventSource cannot send headers), permission. */
  private async admit(res: HttpResponse, request: ApiRequest, query: string | undefined): Promise<boolean> {
    if (!this.api.precheck(res, request)) return false;
    const token = bearerToken(request.authorization) ?? (query === undefined ? undefined : queryToken(query));
    return (await this.api.authorize(res, request, token, PERMISSIONS.resourcesReadOnly)) !== undefined;
  }

  private async openStream(res: HttpResponse, request: ApiRequest, query: string): Promise<void> {
    if (!(await this.admit(res, request, query))) return;
    const watcher = new SseStream(res, (snapshotBytes) => MAX_QUEUED_BYTES + snapshotBytes, () => {
      this.watchers.delete(watcher);
      if (this.watchers.size > 0) return;
      clearInterval(this.ticker);
      this.ticker = undefined;
    });
    request.answered(200);
    res.cork(() => {
      res
        .writeStatus('200 OK')
        .writeHeader('content-type', 'text/event-stream')
        .writeHeader('cache-control', 'no-cache')
        .writeHeader('x-accel-buffering', 'no')
        .writeHeader('access-control-allow-origin', '*');
    });
    if (!watcher.write(Buffer.from(`event: snapshot\ndata: ${JSON.stringify(this.snapshot())}\n\n`))) return;
    this.watchers.add(watcher);
    this.ticker ??= setInterval(() => this.tick(), STATS_INTERVAL_MS).unref();
  }

  /** One `stats` event for every watcher: the tunnels whose figures moved since the last tick, and those gone. */
  private tick(): void {
    const moved: TunnelStatsJson[] = [];
    const seen = new Map<string, Figures>();
    for (const tunnel of this.registry.tunnels.values()) {
      const figures = this.trafficOf(tunnel);
      const before = this.seen.get(tunnel.id);
      if (!before || before.last_activity_ms !== figures.last_activity_ms || before.streams !== figures.streams) moved.push(statsJson(tunnel.id, figures));
      seen.set(tunnel.id, figures);
    }
    const removed = [...this.seen.keys()].filter((id) => !seen.has(id));
    this.seen = seen;
    const event = Buffer.from(`event: stats\ndata: ${JSON.stringify({ time: new Date().toISOString(), tunnels: moved, removed })}\n\n`);
    for (const watcher of [...this.watchers]) watcher.write(event);
  }
}

function statsJson(id: string, traffic: Figures): TunnelStatsJson {
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
    streams: traffic.streams,
    last_activity: traffic.last_activity_ms > 0 ? new Date(traffic.last_activity_ms).toISOString() : null,
  };
}
