import http2 from 'node:http2';
import { downstreamResponseHeaders, fieldsOfH2, headersOfFields, upstreamRequestHeaders, upstreamRequestLines } from './forwarded-headers.js';
import { abortResponse, sendGenerated, type EdgeRequest, type EdgeResponse } from './generated-response.js';
import { chunkOf, LAST_CHUNK } from './h1-wire.js';
import type { H1Upstream } from './upstream-h1.js';
import type { H2Upstream } from './upstream-h2.js';
import type { UpstreamChoice } from './upstream-choice.js';
import { BodyIdleWatch } from './body-idle.js';
import type { RequestLogLine } from './request-log.js';

/** What the pipeline decided about one request before it goes upstream. */
export interface ForwardPlan {
  /** Host / :authority as received. */
  authority: string;
  /** Path and query, minus what token_auth consumed. */
  path: string;
  peerAddress: string | undefined;
  dropAuthorization: boolean;
}

/** Methods retried once on a fresh stream when a reused idle one fails before any response byte. */
const RETRIABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Methods whose bodyless requests carry `Content-Length: 0` to an HTTP/1.1 upstream. */
const EXPECTS_BODY = new Set(['POST', 'PUT', 'PATCH']);

/** The time bounds of one request (see docs/bounds.md). */
export interface ExchangeLimits {
  /** timeouts.http_response_seconds: from the end of the request to the response head. */
  responseMs: number;
  /** timeouts.http_request_body_idle_seconds: the longest silence inside a request body. */
  bodyIdleMs: number;
}

type Outcome = 'done' | { failedBeforeResponse: 'upstream_closed' | 'bad_upstream_response' | 'upstream_timeout' | 'request_timeout' };

const FAILURE_MESSAGES = {
  upstream_closed: 'the upstream closed before a full response',
  bad_upstream_response: 'the upstream sent a response that is not HTTP',
  upstream_timeout: 'the upstream sent no response in time',
  request_timeout: 'the request body stopped arriving',
} as const;

/**
 * One request of an h2 downstream sent to the tunnel's upstream, the response streamed back
 * (docs/http-edge.md): nothing is buffered, a slow reader holds back the upstream, a
 * downstream that leaves abandons the upstream exchange, an upstream that fails after the response
 * head resets the stream. Streams are tried until one answers: a reused stream that closes before any
 * response byte is tried once more on a fresh one (a request safe to repeat); with an endpoint pool, a
 * member that gives no stream, or closes one before responding to such a request, passes the request to
 * the next member. The caller ends `choice` when this returns.
 */
export async function proxyRequest(
  choice: UpstreamChoice,
  req: EdgeRequest,
  res: EdgeResponse,
  plan: ForwardPlan,
  limits: ExchangeLimits,
  logLine: RequestLogLine | undefined,
): Promise<void> {
  if (res.stream.destroyed) return;
  const downstreamGone = new AbortController();
  // Node's response reports itself finished after a client's RST_STREAM too: what tells a client that
  // left is that the edge had not ended the response yet.
  res.once('close', () => {
    if (!res.writableEnded) downstreamGone.abort();
  });
  const bodyless = req.stream.endAfterHeaders;
  const repeatable = bodyless && RETRIABLE_METHODS.has(req.method);
  let fresh = false;
  for (let pool = choice.pool; ; ) {
    const lease = await pool.lease(plan.peerAddress, downstreamGone.signal, fresh);
    if (downstreamGone.signal.aborted) {
      if (lease.ok) pool.giveBack(lease.upstream);
      return;
    }
    if (!lease.ok) {
      const next = choice.next(lease.error.reason);
      if (next) {
        [pool, fresh] = [next, false];
        continue;
      }
      sendGenerated(req, res, lease.error);
      return;
    }
    const { upstream } = lease;
    const outcome =
      upstream.kind === 'h1'
        ? await exchangeH1(upstream, req, res, plan, bodyless, downstreamGone.signal, limits, logLine)
        : await exchangeH2(upstream, req, res, plan, bodyless, downstreamGone.signal, limits, logLine);
    if (outcome === 'done' || downstreamGone.signal.aborted) return;
    const closedEarly = repeatable && outcome.failedBeforeResponse === 'upstream_closed';
    if (closedEarly && !fresh && lease.reused && upstream.kind === 'h1') {
      fresh = true;
      continue;
    }
    const next = closedEarly ? choice.next() : undefined;
    if (next) {
      [pool, fresh] = [next, false];
      continue;
    }
    sendGenerated(req, res, { reason: outcome.failedBeforeResponse, message: FAILURE_MESSAGES[outcome.failedBeforeResponse] });
    return;
  }
}

/**
 * To an HTTP/1.1 upstream: the head serialized from the h2 headers (cookie crumbs joined), the body
 * by its Content-Length or chunked by the edge; the response's payload written to the h2 stream.
 */
function exchangeH1(
  upstream: H1Upstream,
  req: EdgeRequest,
  res: EdgeResponse,
  plan: ForwardPlan,
  bodyless: boolean,
  downstreamGone: AbortSignal,
  limits: ExchangeLimits,
  logLine: RequestLogLine | undefined,
): Promise<Outcome> {
  return new Promise((resolve) => new H1UpstreamExchange(upstream, req, res, downstreamGone, limits, logLine, resolve).start(plan, bodyless));
}

/** One exchangeH1: its timers and listeners, all released when it settles. */
class H1UpstreamExchange {
  private responded = false;
  private responseTimer: NodeJS.Timeout | undefined;
  private bodyIdle: BodyIdleWatch | undefined;
  private readonly onDrain = (): void => this.upstream.resume();
  // The client may cancel its stream after this exchange is over and the upstream serves another request.
  private readonly onGone = (): void => {
    this.upstream.abandon();
    this.settle('done');
  };

  constructor(
    private readonly upstream: H1Upstream,
    private readonly req: EdgeRequest,
    private readonly res: EdgeResponse,
    private readonly downstreamGone: AbortSignal,
    private readonly limits: ExchangeLimits,
    private readonly logLine: RequestLogLine | undefined,
    private readonly resolve: (outcome: Outcome) => void,
  ) {}

  start(plan: ForwardPlan, bodyless: boolean): void {
    const { upstream, req, res } = this;
    const { head, chunked } = h1RequestHead(req, plan, bodyless);
    res.on('drain', this.onDrain);
    this.downstreamGone.addEventListener('abort', this.onGone);
    upstream.begin(head, { method: req.method, upgrade: false, requestComplete: bodyless }, {
      wantsPayload: true,
      interim: () => {},
      head: (response) => {
        this.responded = true;
        clearTimeout(this.responseTimer);
        if (!relayHead(res, response.status, headersOfFields(response.fields))) {
          upstream.abandon();
          this.settle('done');
        }
      },
      body: (data) => {
        if (this.logLine) this.logLine.bytes += data.length;
        return res.write(data);
      },
      end: () => {
        res.end();
        this.settle('done');
      },
      fail: (failure) => {
        if (!this.responded && failure.beforeResponse) return this.settle({ failedBeforeResponse: failure.reason });
        abortResponse(res);
        this.settle('done');
      },
    });
    if (bodyless) return this.awaitResponse();
    this.bodyIdle = new BodyIdleWatch(this.limits.bodyIdleMs, () => upstream.stream.writableNeedDrain, () => {
      upstream.abandon();
      if (this.responded) abortResponse(res);
      this.settle(this.responded ? 'done' : { failedBeforeResponse: 'request_timeout' });
    });
    sendBodyToH1(req, upstream, chunked, this.bodyIdle, () => this.awaitResponse());
  }

  private awaitResponse(): void {
    if (this.responseTimer || this.responded) return;
    this.responseTimer = setTimeout(() => {
      this.upstream.abandon();
      this.settle({ failedBeforeResponse: 'upstream_timeout' });
    }, this.limits.responseMs);
  }

  private settle(outcome: Outcome): void {
    clearTimeout(this.responseTimer);
    this.bodyIdle?.stop();
    this.res.off('drain', this.onDrain);
    this.downstreamGone.removeEventListener('abort', this.onGone);
    this.resolve(outcome);
  }
}

/** The HTTP/1.1 request head for an h2 request, and whether the edge chunks its body. */
function h1RequestHead(req: EdgeRequest, plan: ForwardPlan, bodyless: boolean): { head: string; chunked: boolean } {
  const length = req.headers['content-length'];
  const chunked = !bodyless && length === undefined;
  // A POST or PUT without a body still says so, as HTTP/1.1 clients do.
  const framing = bodyless ? (EXPECTS_BODY.has(req.method) ? 'content-length: 0\r\n' : '') : chunked ? 'transfer-encoding: chunked\r\n' : `content-length: ${length}\r\n`;
  const cookie = req.headers.cookie;
  const fields = fieldsOfH2({ ...req.headers, cookie: Array.isArray(cookie) ? cookie.join('; ') : cookie });
  return { head: `${req.method} ${plan.path} HTTP/1.1\r\n${upstreamRequestLines(fields, plan, false, framing)}\r\n`, chunked };
}

/** The h2 request body to an HTTP/1.1 upstream, with backpressure; `ended` once it is all written. */
function sendBodyToH1(req: EdgeRequest, upstream: H1Upstream, chunked: boolean, bodyIdle: BodyIdleWatch, ended: () => void): void {
  req.on('data', (data: Buffer) => {
    bodyIdle.activity();
    if (!upstream.write(chunked ? Buffer.concat(chunkOf(data)) : data)) {
      req.pause();
      upstream.stream.once('drain', () => req.resume());
    }
  });
  req.once('end', () => {
    bodyIdle.stop();
    if (chunked) upstream.write(LAST_CHUNK);
    upstream.requestEnded();
    ended();
  });
}

/** To an h2/h2c upstream: a stream on the shared session, bodies piped both ways. */
function exchangeH2(
  upstream: H2Upstream,
  req: EdgeRequest,
  res: EdgeResponse,
  plan: ForwardPlan,
  bodyless: boolean,
  downstreamGone: AbortSignal,
  { responseMs, bodyIdleMs }: ExchangeLimits,
  logLine: RequestLogLine | undefined,
): Promise<Outcome> {
  return new Promise((resolve) => {
    let outgoing: http2.ClientHttp2Stream;
    let completed: () => boolean;
    try {
      ({ stream: outgoing, completed } = upstream.request(h2RequestHeaders(req, plan, upstream.scheme), bodyless));
    } catch {
      resolve({ failedBeforeResponse: 'upstream_closed' });
      return;
    }
    let responded = false;
    let responseTimer: NodeJS.Timeout | undefined;
    const awaitResponse = (): void => {
      if (responded) return;
      responseTimer = setTimeout(() => {
        resolve({ failedBeforeResponse: 'upstream_timeout' });
        outgoing.close(http2.constants.NGHTTP2_CANCEL);
      }, responseMs);
    };
    outgoing.once('response', (incoming) => {
      responded = true;
      clearTimeout(responseTimer);
      relayH2Response(outgoing, incoming, res, completed);
      if (logLine) outgoing.on('data', (data: Buffer) => (logLine.bytes += data.length));
    });
    outgoing.once('end', () => resolve('done'));
    outgoing.once('close', () => {
      clearTimeout(responseTimer);
      if (!responded) resolve({ failedBeforeResponse: 'upstream_closed' });
      else if (!completed()) abortResponse(res);
      resolve('done');
    });
    outgoing.on('error', () => {});
    downstreamGone.addEventListener('abort', () => {
      outgoing.destroy();
      resolve('done');
    });
    if (bodyless) {
      awaitResponse();
      return;
    }
    const bodyIdle = new BodyIdleWatch(bodyIdleMs, () => outgoing.writableNeedDrain, () => {
      if (responded) abortResponse(res);
      else resolve({ failedBeforeResponse: 'request_timeout' });
      outgoing.close(http2.constants.NGHTTP2_CANCEL);
    });
    sendBodyToH2(req, outgoing, bodyIdle, awaitResponse);
  });
}

function h2RequestHeaders(req: EdgeRequest, plan: ForwardPlan, scheme: 'http' | 'https'): http2.OutgoingHttpHeaders {
  return {
    ...upstreamRequestHeaders(req.headers, { ...plan, upstream: 'h2', websocket: false }),
    ':method': req.method,
    ':path': plan.path,
    ':authority': plan.authority,
    ':scheme': scheme,
  };
}

/** An h2 upstream's response head and body to the h2 downstream. */
function relayH2Response(outgoing: http2.ClientHttp2Stream, incoming: http2.IncomingHttpHeaders, res: EdgeResponse, completed: () => boolean): void {
  if (!relayHead(res, Number(incoming[':status']), incoming)) {
    outgoing.destroy();
    return;
  }
  outgoing.once('error', () => abortResponse(res));
  outgoing.pipe(res, { end: false });
  outgoing.once('end', () => {
    // Node also ends a stream it tears down: only a real end completes the response.
    if (completed()) res.end();
    else abortResponse(res);
  });
}

/** The h2 request body piped to the upstream stream; `ended` once it is all sent. */
function sendBodyToH2(req: EdgeRequest, outgoing: http2.ClientHttp2Stream, bodyIdle: BodyIdleWatch, ended: () => void): void {
  outgoing.once('close', () => bodyIdle.stop());
  req.on('data', () => bodyIdle.activity());
  req.pipe(outgoing);
  req.once('error', () => outgoing.destroy());
  req.once('end', () => {
    bodyIdle.stop();
    ended();
  });
}

/** The response head on the h2 stream; false when it cannot be relayed (a 502 went out instead). */
function relayHead(res: EdgeResponse, status: number, headers: http2.IncomingHttpHeaders): boolean {
  if (res.stream.destroyed) return false;
  try {
    res.writeHead(status, downstreamResponseHeaders(headers));
    return true;
  } catch {
    // A status h2 cannot carry (600–999) or a field it refuses.
    sendGenerated(res.req, res, { reason: 'bad_upstream_response', message: 'the upstream sent a status line that cannot be relayed' });
    return false;
  }
}
