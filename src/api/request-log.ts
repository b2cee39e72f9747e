import type { LoggedRequest } from '../threads/messages.js';
import { sendError, sendJson, watchAbort, type ApiRequest, type EngineApi } from './engine-api.js';
import type { HttpResponse, TemplatedApp } from './uws.js';

/** `:tunnel_id` is the tunnel's id (percent-encoded as in `/api/tunnels/{id}`). */
export const REQUEST_LOG_PATH = '/rivulet/v1/tunnels/:tunnel_id/requests';

/** Where the log lives: each worker keeps its own part, asked over its MessagePort. */
export interface RequestLogSource {
  /** Every worker's part of a live tunnel's log; undefined when no live tunnel has this id. */
  requestLogOf(tunnelId: string): Promise<Array<{ worker: number; requests: LoggedRequest[] }>> | undefined;
}

/** One request as `GET /rivulet/v1/tunnels/{id}/requests` shows it (docs/engine-api.md#request-log). */
export type LoggedRequestJson = Omit<LoggedRequest, 'time'> & { time: string; worker: number };

/**
 * A tunnel's recent HTTP requests (`dashboard.request_log: on`), newest first: the last 200 of each
 * worker, gathered from the workers when asked. Same token and permission as the API; while the log is
 * off the answer says so and holds nothing.
 */
export class RequestLogApi {
  constructor(
    private readonly api: EngineApi,
    private readonly enabled: boolean,
    private readonly source: RequestLogSource,
  ) {}

  register(app: TemplatedApp): void {
    app.any(REQUEST_LOG_PATH, (res, req) => {
      const request = this.api.readRequest(req);
      const encodedId = req.getParameter(0) ?? '';
      void this.serve(res, request, encodedId);
    });
  }

  private async serve(res: HttpResponse, request: ApiRequest, encodedId: string): Promise<void> {
    if (!this.api.admitReader(res, request)) return;
    let tunnelId: string;
    try {
      tunnelId = decodeURIComponent(encodedId);
    } catch {
      tunnelId = encodedId;
    }
    const parts = this.source.requestLogOf(tunnelId);
    if (parts === undefined) {
      sendError(res, request, 'not_found', `no tunnel ${tunnelId}`);
      return;
    }
    if (!this.enabled) {
      sendJson(res, request, JSON.stringify({ tunnel_id: tunnelId, enabled: false, requests: [] }));
      return;
    }
    const aborted = watchAbort(res);
    const requests = newestFirst(await parts);
    if (!aborted()) res.cork(() => sendJson(res, request, JSON.stringify({ tunnel_id: tunnelId, enabled: true, requests })));
  }
}

/** Each worker's part is oldest first; requests of one millisecond keep their order (the sort is stable). */
function newestFirst(parts: Array<{ worker: number; requests: LoggedRequest[] }>): LoggedRequestJson[] {
  const all = parts.flatMap(({ worker, requests }) => requests.map((entry) => ({ entry, worker })).reverse());
  all.sort((a, b) => b.entry.time - a.entry.time);
  return all.map(({ entry, worker }) => ({ ...entry, time: new Date(entry.time).toISOString(), worker }));
}
