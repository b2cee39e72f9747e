import { bearerToken } from '../auth/bearer.js';
import { PERMISSIONS } from '../auth/permissions.js';
import type { TunnelRecord } from '../control/registry.js';
import type { Registry } from '../control/registry.js';
import type { TunnelTraffic } from '../threads/tunnel-stats.js';
import { sendJson, type EngineApi } from './engine-api.js';
import type { TemplatedApp } from './uws.js';

export const TUNNEL_STATS_PATH = '/rivulet/v1/tunnels/stats';

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
 * Rivulet's per-tunnel traffic figures, next to the Engine API (same host, Bearer token and
 * permission, outside `/api/` and its OpenAPI document): read from the workers' shared per-tunnel
 * rows when asked, never kept here.
 */
export class TrafficStats {
  constructor(
    private readonly api: EngineApi,
    private readonly registry: Registry,
    private readonly trafficOf: (tunnel: TunnelRecord) => TunnelTraffic & { streams: number },
  ) {}

  register(app: TemplatedApp): void {
    app.any(TUNNEL_STATS_PATH, (res, req) => {
      const request = this.api.readRequest(req);
      if (!this.api.precheck(res, request)) return;
      void this.api.authorize(res, request, bearerToken(request.authorization), PERMISSIONS.resourcesReadOnly).then((identity) => {
        if (identity) res.cork(() => sendJson(res, request, JSON.stringify(this.snapshot())));
      });
    });
  }

  /** Every live tunnel's figures, oldest tunnel first. */
  snapshot(): { time: string; tunnels: TunnelStatsJson[] } {
    const tunnels: TunnelStatsJson[] = [];
    for (const tunnel of this.registry.tunnels.values()) tunnels.push(statsJson(tunnel.id, this.trafficOf(tunnel)));
    return { time: new Date().toISOString(), tunnels };
  }
}

function statsJson(id: string, traffic: TunnelTraffic & { streams: number }): TunnelStatsJson {
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
