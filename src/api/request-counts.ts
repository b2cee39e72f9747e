/** The Engine API's endpoints as a fixed label set (no label grows with tenants: docs/metrics.md#how-the-figures-are-gathered). */
export const API_ENDPOINTS = ['openapi', 'auth', 'clients', 'client', 'tunnels', 'tunnel', 'sse', 'websocket', 'tunnel_stats', 'request_log', 'other'] as const;
export type ApiEndpoint = (typeof API_ENDPOINTS)[number];

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

export function endpointOf(url: string): ApiEndpoint {
  switch (url) {
    case '/api/openapi.json':
      return 'openapi';
    case '/api/auth':
      return 'auth';
    case '/api/clients':
      return 'clients';
    case '/api/tunnels':
      return 'tunnels';
    case '/api/sse':
      return 'sse';
    case '/api/websocket':
      return 'websocket';
    case '/rivulet/v1/tunnels/stats':
      return 'tunnel_stats';
  }
  if (/^\/api\/clients\/[^/]+$/.test(url)) return 'client';
  if (/^\/api\/tunnels\/[^/]+$/.test(url)) return 'tunnel';
  if (/^\/rivulet\/v1\/tunnels\/[^/]+\/requests$/.test(url)) return 'request_log';
  return 'other';
}

/** Engine API requests by endpoint and status class, counted when answered (rivulet_api_requests_total). */
export class ApiRequestCounts {
  private readonly counts = new Map<string, { endpoint: ApiEndpoint; class: string; count: number }>();

  record(endpoint: ApiEndpoint, status: number): void {
    const klass = STATUS_CLASSES[Math.min(4, Math.max(0, Math.floor(status / 100) - 1))]!;
    const key = `${endpoint} ${klass}`;
    const entry = this.counts.get(key);
    if (entry) entry.count++;
    else this.counts.set(key, { endpoint, class: klass, count: 1 });
  }

  entries(): Iterable<{ endpoint: ApiEndpoint; class: string; count: number }> {
    return this.counts.values();
  }
}
