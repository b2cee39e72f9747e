import { bearerToken } from '../auth/bearer.js';
import type { Logger } from '../log.js';
import net from 'node:net';
import type { TokenVerifier, Identity } from '../auth/tokens.js';
import { PERMISSIONS } from '../auth/permissions.js';
import type { Registry } from '../control/registry.js';
import { cachedClient, cachedTunnel } from './api-objects.js';
import { listJson, parseListParams } from './filters.js';
import { endpointOf, type ApiEndpoint, type ApiRequestCounts } from './request-counts.js';
import { endHead, type HttpRequest, type HttpResponse, type TemplatedApp } from './uws.js';
import { ParamsError } from '../errors.js';

/** The error codes of the API's JSON error body, with their status line. */
const STATUS_LINE = {
  bad_request: '400 Bad Request',
  unauthorized: '401 Unauthorized',
  forbidden: '403 Forbidden',
  not_found: '404 Not Found',
  method_not_allowed: '405 Method Not Allowed',
  misdirected: '421 Misdirected Request',
} as const;

export type ApiErrorCode = keyof typeof STATUS_LINE;

const JSON_TYPE = 'application/json; charset=utf-8';
const OPENAPI_TYPE = 'application/vnd.oai.openapi+json;version=3.1';
const ALLOWED_METHODS = 'GET, HEAD, OPTIONS';

export interface EngineApiOptions {
  engineHost: string;
  registry: Registry;
  verifier: TokenVerifier;
  /** The OpenAPI document, serialised once at startup. */
  openApiDocument: () => string;
  requestCounts: ApiRequestCounts;
  log: Logger;
}

/** What the request handler read from uWS's request object, which lives only during the handler. */
export interface ApiRequest {
  method: string;
  url: string;
  host: string;
  authorization: string;
  /** The `params` query parameter; a ParamsError when its percent-encoding is broken. */
  params: string | ParamsError | undefined;
  endpoint: ApiEndpoint;
  /** Counts the request by the status it is answered with; called once, where the status line is written. */
  answered: (status: number) => void;
}

/**
 * The Engine API's request/response routes on the main thread's uWS app (docs/engine-api.md): host check,
 * CORS, methods, Bearer auth and permissions, the list and get endpoints and the OpenAPI document.
 * The event streams (event-streams.ts) register their own routes next to these.
 */
export class EngineApi {
  /** The unfiltered lists as sent, rebuilt after a change: dashboards poll them (10,000 tunnels ≈ 4 MB). */
  private readonly fullLists = new Map<'clients' | 'tunnels', Buffer>();

  constructor(private readonly options: EngineApiOptions) {
    options.registry.subscribe(() => this.fullLists.clear());
  }

  register(app: TemplatedApp): void {
    app.any('/*', (res, req) => this.onRequest(res, this.readRequest(req)));
  }

  /** What the request handler needs from uWS's request object, which lives only during the handler. */
  readRequest(req: HttpRequest): ApiRequest {
    const query = req.getQuery();
    const url = req.getUrl();
    const endpoint = endpointOf(url);
    const counts = this.options.requestCounts;
    return {
      method: req.getMethod(),
      url,
      host: req.getHeader('host'),
      authorization: req.getHeader('authorization'),
      params: query ? paramsOf(query) : undefined,
      endpoint,
      answered: (status) => counts.record(endpoint, status),
    };
  }

  /** The checks every /api request passes first; an error response has been sent when it returns false. */
  precheck(res: HttpResponse, request: ApiRequest): boolean {
    if (!this.servesHost(request.host)) {
      sendError(res, request, 'misdirected', `${request.host || 'this host'} is not served here; use ${this.options.engineHost}`);
      return false;
    }
    if (!/^\/(?:api\/|rivulet\/v1\/|dashboard(?:\/|$))/.test(request.url)) {
      sendError(res, request, 'not_found', `no such endpoint: ${request.url}`);
      return false;
    }
    if (request.method === 'options') {
      request.answered(204);
      res
        .writeStatus('204 No Content')
        .writeHeader('access-control-allow-origin', '*')
        .writeHeader('access-control-allow-methods', 'GET, OPTIONS')
        .writeHeader('access-control-allow-headers', 'Authorization, Content-Type')
        .writeHeader('access-control-max-age', '600')
        .endWithoutBody();
      return false;
    }
    if (request.method !== 'get' && request.method !== 'head') {
      sendError(res, request, 'method_not_allowed', `${request.method.toUpperCase()} is not allowed`, { allow: ALLOWED_METHODS });
      return false;
    }
    return true;
  }

  /**
   * Bearer header only (query tokens are for the event streams): the identity, or undefined with the
   * error sent. Synchronous, so that every answer (a WebSocket upgrade above all) is given inside
   * uWS's handler (docs/engine-api.md#decisions).
   */
  authorize(res: HttpResponse, request: ApiRequest, token: string | undefined, permission?: string): Identity | undefined {
    const check = this.options.verifier.verify(token);
    if (!check.ok) {
      // uWS's getUrl() has no query string, where an event stream's token travels.
      this.options.log.debug({ path: request.url, reason: check.reason }, 'Engine API request refused: bad token');
      sendError(res, request, 'unauthorized', check.reason, { 'www-authenticate': 'Bearer' });
      return undefined;
    }
    const { permissions } = check.identity;
    if (permission && permissions !== null && !permissions.includes(permission)) {
      sendError(res, request, 'forbidden', `the token lacks the ${permission} permission`);
      return undefined;
    }
    return check.identity;
  }

  /**
   * The checks of a read-only endpoint: host and method (precheck), then the token — Bearer, or with
   * `query` given (the streams: EventSource sends no headers) `?rstream.token=` — and the read-only
   * permission. The identity, or undefined with the error response sent.
   */
  admitReader(res: HttpResponse, request: ApiRequest, query?: string): Identity | undefined {
    if (!this.precheck(res, request)) return undefined;
    const token = bearerToken(request.authorization) ?? (query === undefined ? undefined : queryToken(query));
    return this.authorize(res, request, token, PERMISSIONS.resourcesReadOnly);
  }

  private onRequest(res: HttpResponse, request: ApiRequest): void {
    if (!this.precheck(res, request)) return;
    const path = request.url;
    if (path === '/api/openapi.json') {
      sendJson(res, request, this.options.openApiDocument(), OPENAPI_TYPE);
      return;
    }
    const token = bearerToken(request.authorization);
    if (path === '/api/auth') {
      const identity = this.authorize(res, request, token);
      if (identity) sendJson(res, request, JSON.stringify({ user_id: identity.user_id, permissions: identity.permissions }));
      return;
    }
    const route = /^\/api\/(clients|tunnels)(?:\/([^/]+))?$/.exec(path);
    if (!route) {
      sendError(res, request, 'not_found', `no such endpoint: ${path}`);
      return;
    }
    const [, collection, encodedId] = route as unknown as [string, 'clients' | 'tunnels', string | undefined];
    if (this.authorize(res, request, token, PERMISSIONS.resourcesReadOnly)) this.serveCollection(res, request, collection, encodedId);
  }

  private serveCollection(res: HttpResponse, request: ApiRequest, collection: 'clients' | 'tunnels', encodedId: string | undefined): void {
    const { registry } = this.options;
    if (encodedId !== undefined) {
      let id: string;
      try {
        id = decodeURIComponent(encodedId);
      } catch {
        sendError(res, request, 'not_found', `no ${collection.slice(0, -1)} ${encodedId}`);
        return;
      }
      const client = collection === 'clients' ? registry.clients.get(id) : undefined;
      const tunnel = collection === 'tunnels' ? registry.tunnels.get(id) : undefined;
      const cached = client ? cachedClient(client) : tunnel ? cachedTunnel(tunnel) : undefined;
      if (!cached) sendError(res, request, 'not_found', `no ${collection.slice(0, -1)} ${id}`);
      else sendJson(res, request, cached.json);
      return;
    }
    if (request.params === undefined) {
      let full = this.fullLists.get(collection);
      if (!full) {
        full = Buffer.from(listJson(this.cachedObjects(collection), { limit: undefined, filter: () => true }));
        this.fullLists.set(collection, full);
      }
      sendJson(res, request, full);
      return;
    }
    let params;
    try {
      params = parseListParams(request.params, collection);
    } catch (error) {
      if (!(error instanceof ParamsError)) throw error;
      sendError(res, request, 'bad_request', error.message);
      return;
    }
    sendJson(res, request, listJson(this.cachedObjects(collection), params));
  }

  private cachedObjects(collection: 'clients' | 'tunnels'): Iterable<{ object: object; json: string }> {
    const { registry } = this.options;
    return collection === 'clients' ? [...registry.clients.values()].map(cachedClient) : [...registry.tunnels.values()].map(cachedTunnel);
  }

  /** The hosts the Engine API serves: engine.host or an IP literal (any other gets 421, docs/engine-api.md#decisions). */
  private servesHost(hostHeader: string): boolean {
    let host = hostHeader.toLowerCase();
    host = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
    host = host.replace(/\.$/, '');
    return host === this.options.engineHost || net.isIP(host) !== 0;
  }
}

/** One query parameter, decoded (`+` as space, as forms and Go's encoder write it); broken percent-encoding throws a ParamsError. */
export function queryParameter(query: string, name: string): string | undefined {
  for (const part of query.split('&')) {
    const equals = part.indexOf('=');
    const key = equals < 0 ? part : part.slice(0, equals);
    if (key !== name) continue;
    try {
      return decodeURIComponent((equals < 0 ? '' : part.slice(equals + 1)).replace(/\+/g, ' '));
    } catch {
      throw new ParamsError(`${name}: not valid percent-encoding`);
    }
  }
  return undefined;
}

/** `rstream.token` from the query; one whose percent-encoding is broken counts as none (401). */
function queryToken(query: string): string | undefined {
  try {
    return queryParameter(query, 'rstream.token');
  } catch (error) {
    if (error instanceof ParamsError) return undefined;
    throw error;
  }
}

function paramsOf(query: string): string | ParamsError | undefined {
  try {
    return queryParameter(query, 'params');
  } catch (error) {
    if (error instanceof ParamsError) return error;
    throw error;
  }
}

/** Lets an async handler know the client went away before it answers (uWS requires the handler). */
export function watchAbort(res: HttpResponse): () => boolean {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  return () => aborted;
}

export function sendJson(res: HttpResponse, request: ApiRequest, body: string | Buffer, contentType = JSON_TYPE): void {
  request.answered(200);
  res.writeStatus('200 OK').writeHeader('content-type', contentType).writeHeader('access-control-allow-origin', '*');
  endBody(res, request, body);
}

/** A 200's body (or, for HEAD, its length): large bodies in cork-sized pieces (see endInPieces). */
export function endBody(res: HttpResponse, request: ApiRequest, body: string | Buffer): void {
  if (request.method === 'head') endHead(res, Buffer.byteLength(body));
  else if (Buffer.byteLength(body) <= MAX_CORKED_BYTES) res.end(body);
  else endInPieces(res, Buffer.from(body));
}

/** uWS 20.30 can drop a write larger than its 16 KiB cork buffer under backpressure (see event-streams.ts). */
const MAX_CORKED_BYTES = 16 * 1024 - 512;

/**
 * A large body (a list of 10,000 tunnels is megabytes) in cork-sized pieces with uWS's tryEnd, resuming
 * from uWS's write offset when the socket drains.
 */
function endInPieces(res: HttpResponse, body: Buffer): void {
  const start = res.getWriteOffset();
  let sent = 0;
  // Required by uWS for a response that outlives the handler; also stops the pump.
  let aborted = false;
  res.onAborted(() => (aborted = true));
  const pump = (): boolean => {
    while (sent < body.length && !aborted) {
      const piece = body.subarray(sent, sent + MAX_CORKED_BYTES);
      let ok = false;
      let done = false;
      res.cork(() => ([ok, done] = res.tryEnd(piece, body.length)));
      if (done) return true;
      if (!ok) return false; // uWS kept what it wrote; onWritable says where to resume
      sent += piece.length;
    }
    return true;
  };
  res.onWritable((offset) => {
    sent = offset - start;
    return pump();
  });
  pump();
}

export function sendError(res: HttpResponse, request: ApiRequest, code: ApiErrorCode, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: code, message });
  request.answered(parseInt(STATUS_LINE[code], 10));
  res.writeStatus(STATUS_LINE[code]).writeHeader('content-type', JSON_TYPE).writeHeader('access-control-allow-origin', '*');
  for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value);
  if (request.method === 'head') endHead(res, Buffer.byteLength(body));
  else res.end(body);
}
