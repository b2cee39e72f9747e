/** The Engine API and Rivulet's stats stream, as the page uses them: same origin, the operator's token. */

export interface ApiTunnel {
  id: string;
  client_id: string;
  creation_date: string;
  type: string;
  publish: boolean;
  hostname?: string;
  name?: string;
  protocol?: string;
  labels?: Record<string, string>;
}

export interface ApiClient {
  id: string;
  user_id: string;
  agent?: string;
  version?: string;
  os?: string;
  arch?: string;
}

export interface TunnelFigures {
  id: string;
  requests: Record<'1xx' | '2xx' | '3xx' | '4xx' | '5xx', number>;
  bytes_in: number;
  bytes_out: number;
  streams: number;
  last_activity: string | null;
}

export type EngineEvent =
  | { type: 'state.initial'; created_at: string; object: { clients: ApiClient[]; tunnels: ApiTunnel[] } }
  | { type: 'client.created' | 'client.deleted'; created_at: string; object: ApiClient }
  | { type: 'tunnel.created' | 'tunnel.deleted'; created_at: string; object: ApiTunnel };

export interface EngineInfo {
  version: string;
  node: string;
  started_at: string;
  workers: number;
  listener_strategy: string;
  certificate: { subject: string; subject_alt_name: string; not_after: string };
}

/** The engine panel's facts (`GET /rivulet/v1/engine`); undefined when they cannot be read. */
export async function fetchEngineInfo(token: string): Promise<EngineInfo | undefined> {
  try {
    const reply = await fetch('/rivulet/v1/engine', { headers: { authorization: `Bearer ${token}` } });
    return reply.ok ? ((await reply.json()) as EngineInfo) : undefined;
  } catch {
    return undefined;
  }
}

export type StatsEvent = { time: string; tunnels: TunnelFigures[]; removed?: string[] };

export interface LoggedRequest {
  time: string;
  method: string;
  path: string;
  status: number | null;
  origin: 'upstream' | 'edge';
  duration_ms: number;
  bytes: number;
  client_ip: string | null;
  aborted: boolean;
  worker: number;
}

export type RequestLogReply = { ok: true; enabled: boolean; requests: LoggedRequest[] } | { ok: false; status: number; message: string };

/** A tunnel's recent requests (`GET /rivulet/v1/tunnels/<id>/requests`), or why there are none. */
export async function fetchRequestLog(token: string, tunnelId: string): Promise<RequestLogReply> {
  try {
    const reply = await fetch(`/rivulet/v1/tunnels/${encodeURIComponent(tunnelId)}/requests`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await reply.json().catch(() => ({}))) as { enabled?: boolean; requests?: LoggedRequest[]; message?: string };
    if (!reply.ok) return { ok: false, status: reply.status, message: body.message ?? `the engine answered ${reply.status}` };
    return { ok: true, enabled: body.enabled === true, requests: body.requests ?? [] };
  } catch {
    return { ok: false, status: 0, message: 'the engine cannot be reached' };
  }
}

/** What a token may see, or the API's own message when it may not. */
export async function checkToken(token: string): Promise<{ ok: true } | { ok: false; message: string }> {
  let reply: Response;
  try {
    reply = await fetch('/api/tunnels?params=' + encodeURIComponent(JSON.stringify({ limit: 1 })), { headers: { authorization: `Bearer ${token}` } });
  } catch {
    return { ok: false, message: 'the engine cannot be reached' };
  }
  if (reply.ok) return { ok: true };
  const body = (await reply.json().catch(() => ({}))) as { message?: string };
  return { ok: false, message: body.message ?? `the engine answered ${reply.status}` };
}

/**
 * An SSE stream with the token in its query (EventSource sends no headers). `onLost` runs when the
 * engine refuses it (the token expired) or it drops; EventSource itself reconnects after a drop.
 */
export function subscribe(path: string, token: string, handlers: Record<string, (data: unknown) => void>, onLost: () => void): () => void {
  const separator = path.includes('?') ? '&' : '?';
  const source = new EventSource(`${path}${separator}rstream.token=${encodeURIComponent(token)}`);
  for (const [type, handle] of Object.entries(handlers)) source.addEventListener(type, (event) => handle(JSON.parse((event as MessageEvent<string>).data)));
  source.onerror = () => onLost();
  return () => source.close();
}
