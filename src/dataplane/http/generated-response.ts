import http from 'node:http';
import http2 from 'node:http2';

/** Requests and responses of h2 downstreams (Node's compatibility API); HTTP/1.1 has its own path (h1-exchange.ts). */
export type EdgeRequest = http2.Http2ServerRequest;
export type EdgeResponse = http2.Http2ServerResponse;

/** The `x-rivulet-error` reason tokens, with their status (docs/troubleshooting.md#visitors-get-an-error-page). */
const STATUS_OF = {
  bad_request: 400,
  unauthorized: 401,
  forbidden_ip: 403,
  tunnel_not_found: 404,
  /** Rivulet's own: a request body that stopped arriving for timeouts.http_request_body_idle_seconds. */
  request_timeout: 408,
  misdirected: 421,
  /** Rivulet's own: a request line longer than the whole header limit. */
  uri_too_long: 414,
  headers_too_large: 431,
  not_implemented: 501,
  agent_refused: 502,
  upstream_closed: 502,
  upstream_tls: 502,
  bad_upstream_response: 502,
  agent_gone: 502,
  capacity: 503,
  shutting_down: 503,
  agent_timeout: 504,
  /** Rivulet's own: no response head within timeouts.http_response_seconds of the request. */
  upstream_timeout: 504,
} as const;

export type EdgeErrorReason = keyof typeof STATUS_OF;

export interface EdgeError {
  reason: EdgeErrorReason;
  message: string;
}

/** Responses the edge made itself (sendGenerated), as opposed to relayed upstream ones. */
const generatedResponses = new WeakSet<EdgeResponse>();

export function wasGenerated(res: EdgeResponse): boolean {
  return generatedResponses.has(res);
}

/**
 * An engine-generated response: one line of text (or a small JSON object when the client prefers
 * JSON) and the reason in `x-rivulet-error`, so an operator can tell the edge's answers from the
 * upstream's. After response headers went out there is nothing left to say: the response is aborted.
 */
export function sendGenerated(req: EdgeRequest, res: EdgeResponse, error: EdgeError, extraHeaders: http.OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    abortResponse(res);
    return;
  }
  generatedResponses.add(res);
  const { status, body, contentType } = generatedBody(error, req.headers.accept);
  res.writeHead(status, {
    ...extraHeaders,
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-rivulet-error': error.reason,
  });
  if (req.method === 'HEAD') res.end();
  else res.end(body);
}

function generatedBody(error: EdgeError, accept: string | undefined): { status: number; body: string; contentType: string } {
  const status = STATUS_OF[error.reason];
  return prefersJson(accept)
    ? { status, body: `${JSON.stringify({ status, error: error.reason, message: error.message })}\n`, contentType: 'application/json' }
    : { status, body: `${status} ${error.message}\n`, contentType: 'text/plain; charset=utf-8' };
}

/**
 * Ends a response that can no longer be completed so that no client takes it for whole (docs/http-edge.md#decisions):
 * the stream is reset with INTERNAL_ERROR (a plain destroy would send NO_ERROR, which clients
 * read as a clean end). HTTP/1.1 closes the connection before the final chunk or full length instead.
 */
export function abortResponse(res: EdgeResponse): void {
  res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
}

export function statusOf(reason: EdgeErrorReason): number {
  return STATUS_OF[reason];
}

/**
 * The same response as raw HTTP/1.1 bytes, for the edge's own HTTP/1.1 connections. `close` adds
 * `Connection: close` (the connection ends after it); a HEAD request gets the head only.
 */
export function rawGenerated(
  error: EdgeError,
  options: { accept?: string; head?: boolean; close: boolean; extraHeaders?: Record<string, string>; keepAliveLine?: string } = { close: true },
): string {
  const { status, body, contentType } = generatedBody(error, options.accept);
  let extra = options.keepAliveLine ?? '';
  for (const [name, value] of Object.entries(options.extraHeaders ?? {})) extra += `${name}: ${value}\r\n`;
  return (
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${extra}` +
    `content-type: ${contentType}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `cache-control: no-store\r\nx-rivulet-error: ${error.reason}\r\n${options.close ? 'connection: close\r\n' : ''}\r\n${options.head ? '' : body}`
  );
}

/** `Accept` names application/json (or a +json type) before any text type. */
function prefersJson(accept: string | undefined): boolean {
  if (!accept) return false;
  for (const range of accept.split(',')) {
    const type = range.split(';')[0]!.trim().toLowerCase();
    if (type === 'application/json' || /^application\/[a-z0-9.+-]*\+json$/.test(type)) return true;
    if (type.startsWith('text/') || type === '*/*') return false;
  }
  return false;
}
