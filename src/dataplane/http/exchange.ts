import type http from 'node:http';
import type http2 from 'node:http2';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './forwarded-headers.js';
import { abortResponse, sendGenerated, type EdgeRequest, type EdgeResponse } from './generated-response.js';
import type { H1Upstream } from './upstream-h1.js';
import type { H2Upstream } from './upstream-h2.js';
import type { TunnelUpstreams } from './upstream-pool.js';

/** What the pipeline decided about one request before it goes upstream. */
export interface ForwardPlan {
  /** Host / :authority as received. */
  authority: string;
  /** Path and query, minus what token_auth consumed. */
  path: string;
  peerAddress: string | undefined;
  dropAuthorization: boolean;
  /** The request carries no body (retry-safe, and the upstream request ends with its headers). */
  bodyless: boolean;
}

/** A constant abort reason: the default one is a DOMException with a stack, built on every abort. */
const DOWNSTREAM_LEFT = new Error('the downstream left');

/** Methods retried once on a fresh stream when a reused idle one fails before any response byte (RD). */
const RETRIABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

type Outcome = 'done' | { failedBeforeResponse: Error };

/**
 * Sends one downstream request to the tunnel's upstream and streams the response back (engine.md
 * §12.2 steps 5–6, §12.9): nothing is buffered, a slow reader holds back the upstream through the
 * pipes, a downstream that leaves destroys the upstream exchange, an upstream that fails after the
 * response head aborts the downstream.
 */
export async function proxyRequest(pool: TunnelUpstreams, req: EdgeRequest, res: EdgeResponse, plan: ForwardPlan): Promise<void> {
  // The client may have left during the checks before this (token verification is asynchronous).
  if (downstreamClosed(res)) return;
  const downstreamGone = new AbortController();
  whenDownstreamLeaves(res, () => downstreamGone.abort(DOWNSTREAM_LEFT));
  for (let attempt = 0; ; attempt++) {
    const lease = await pool.lease(plan.peerAddress, downstreamGone.signal, attempt > 0);
    if (!lease.ok) {
      if (!downstreamGone.signal.aborted) sendGenerated(req, res, lease.error);
      return;
    }
    const { upstream } = lease;
    if (downstreamGone.signal.aborted) {
      pool.giveBack(upstream);
      return;
    }
    const outcome =
      upstream.kind === 'h1'
        ? await exchangeH1(upstream, req, res, plan, downstreamGone.signal)
        : await exchangeH2(upstream, req, res, plan, downstreamGone.signal);
    if (outcome === 'done' || downstreamGone.signal.aborted) return;
    const retriable = attempt === 0 && lease.reused && upstream.kind === 'h1' && plan.bodyless && RETRIABLE_METHODS.has(req.method ?? '');
    if (retriable) continue;
    const parseError = (outcome.failedBeforeResponse as NodeJS.ErrnoException).code?.startsWith('HPE_');
    sendGenerated(req, res, {
      reason: parseError ? 'bad_upstream_response' : 'upstream_closed',
      message: parseError ? 'the upstream sent a response that is not HTTP' : 'the upstream closed before a full response',
    });
    return;
  }
}

function exchangeH1(upstream: H1Upstream, req: EdgeRequest, res: EdgeResponse, plan: ForwardPlan, downstreamGone: AbortSignal): Promise<Outcome> {
  return new Promise((resolve) => {
    const outgoing = upstream.request({
      method: req.method ?? 'GET',
      path: plan.path,
      headers: upstreamRequestHeaders(req.headers, { ...plan, upstream: 'h1', websocket: false }),
    });
    let responded = false;
    outgoing.once('response', (incoming: http.IncomingMessage) => {
      responded = true;
      relayResponse(res, incoming.statusCode ?? 502, incoming.statusMessage, downstreamResponseHeaders(incoming.headers), incoming);
      incoming.once('end', () => resolve('done'));
    });
    outgoing.on('error', (error) => {
      if (responded) {
        abortResponse(res);
        resolve('done');
      } else resolve({ failedBeforeResponse: error });
    });
    downstreamGone.addEventListener('abort', () => {
      outgoing.destroy();
      resolve('done');
    });
    sendBody(req, outgoing, plan.bodyless);
  });
}

function exchangeH2(upstream: H2Upstream, req: EdgeRequest, res: EdgeResponse, plan: ForwardPlan, downstreamGone: AbortSignal): Promise<Outcome> {
  return new Promise((resolve) => {
    const headers: http2.OutgoingHttpHeaders = {
      ...upstreamRequestHeaders(req.headers, { ...plan, upstream: 'h2', websocket: false }),
      ':method': req.method,
      ':path': plan.path,
      ':authority': plan.authority,
      ':scheme': upstream.scheme,
    };
    let outgoing: http2.ClientHttp2Stream;
    let completed: () => boolean;
    try {
      ({ stream: outgoing, completed } = upstream.request(headers, plan.bodyless));
    } catch (error) {
      resolve({ failedBeforeResponse: error as Error });
      return;
    }
    let responded = false;
    outgoing.once('response', (incoming) => {
      responded = true;
      relayResponse(res, Number(incoming[':status']), undefined, downstreamResponseHeaders(incoming), outgoing, completed);
    });
    outgoing.once('end', () => resolve('done'));
    outgoing.once('close', () => {
      if (!responded) resolve({ failedBeforeResponse: new Error(`upstream stream reset (code ${outgoing.rstCode})`) });
      else if (!completed()) abortResponse(res);
      resolve('done');
    });
    outgoing.on('error', () => {});
    downstreamGone.addEventListener('abort', () => {
      outgoing.destroy();
      resolve('done');
    });
    if (!plan.bodyless) sendBody(req, outgoing, false);
  });
}

/**
 * The response head, then the body piped with backpressure. The head goes out with the first body
 * chunk when that arrives in the same turn (one TLS record for a small response), else on its own
 * right after, so SSE and long polls see their headers at once. `completed`, when given, decides at
 * the body's end whether it was whole (else the response is aborted, engine.md §12.9).
 */
function relayResponse(
  res: EdgeResponse,
  status: number,
  statusMessage: string | undefined,
  headers: http.OutgoingHttpHeaders,
  body: NodeJS.ReadableStream & { once(event: 'error' | 'aborted' | 'end', listener: () => void): unknown; destroy(): void },
  completed?: () => boolean,
): void {
  if (downstreamClosed(res)) {
    body.destroy();
    return;
  }
  try {
    if (res.req.httpVersionMajor === 1 && statusMessage) {
      (res as http.ServerResponse).writeHead(status, statusMessage, headers);
    } else res.writeHead(status, headers);
  } catch {
    // A status h2 cannot carry (600–999) or a reason phrase with control characters.
    body.destroy();
    sendGenerated(res.req, res, { reason: 'bad_upstream_response', message: 'the upstream sent a status line that cannot be relayed' });
    return;
  }
  if ('flushHeaders' in res) setImmediate(() => res.flushHeaders()); // no-op once a chunk carried it; h2 sends at writeHead
  body.once('error', () => abortResponse(res));
  body.once('aborted', () => abortResponse(res));
  if (!completed) {
    body.pipe(res as NodeJS.WritableStream);
    return;
  }
  body.pipe(res as NodeJS.WritableStream, { end: false });
  body.once('end', () => {
    if (completed()) res.end();
    else abortResponse(res);
  });
}

/**
 * Whether the downstream response can no longer be written (client gone). An HTTP/1.1 response to a
 * request that arrived while the previous response on its kept-alive connection was still being
 * written has no socket yet (Node queues it): that client is very much there, so the connection's
 * socket is what is asked.
 */
export function downstreamClosed(res: EdgeResponse): boolean {
  return 'stream' in res ? res.stream.destroyed : res.destroyed || res.req.socket.destroyed;
}

/**
 * Calls `left` once if the downstream goes before `res` finished. A queued HTTP/1.1 response gets no
 * 'close' of its own when its connection dies (it never had the socket), so the connection is watched.
 */
function whenDownstreamLeaves(res: EdgeResponse, left: () => void): void {
  if ('stream' in res) {
    res.once('close', () => {
      if (!res.writableFinished) left();
    });
    return;
  }
  const connection = res.req.socket;
  const onClose = (): void => {
    if (!res.writableFinished) left();
  };
  connection.once('close', onClose);
  res.once('close', onClose);
  res.once('finish', () => connection.off('close', onClose));
}

function sendBody(req: EdgeRequest, outgoing: NodeJS.WritableStream & { destroy(): void }, bodyless: boolean): void {
  if (bodyless) {
    outgoing.end();
    return;
  }
  req.pipe(outgoing);
  req.once('error', () => outgoing.destroy());
}
