import { sendError, type ApiRequest, type EngineApi } from './engine-api.js';
import { MAX_QUEUED_BYTES, type EventHub, type Subscriber } from './event-hub.js';
import { parseWatchParams, type WatchParams } from './filters.js';
import type { HttpResponse, TemplatedApp } from './uws.js';
import { SseStream } from './sse-stream.js';
import { ParamsError } from '../errors.js';

/** An SSE comment every 15 s keeps proxies and readers from timing out. */
const SSE_KEEPALIVE_MS = 15_000;
const SSE_KEEPALIVE = Buffer.from(': keepalive\n\n');
/** uWS pings a quiet peer and closes one that stays silent this long. */
const WEBSOCKET_IDLE_SECONDS = 60;

interface SocketData {
  filters: WatchParams;
  subscriber?: Subscriber;
  /** Bytes this socket may have queued: 1 MiB beyond its snapshot (see queueAllowance). */
  allowance?: number;
}

/** Hard stop for uWS's own WebSocket buffer; the 1 MiB rule is enforced below it, per subscriber. */
const WEBSOCKET_MAX_BACKPRESSURE = 256 * 1024 * 1024;

/**
 * A subscriber with more than 1 MiB queued is cut (docs/engine-api.md#decisions). The first event, `state.initial`, can
 * alone be megabytes (10,000 tunnels ≈ 4 MB) and is queued all at once, so the 1 MiB counts beyond it.
 */
function queueAllowance(snapshotBytes: number): number {
  return MAX_QUEUED_BYTES + snapshotBytes;
}

/**
 * `GET /api/sse` and `GET /api/websocket` (docs/engine-api.md): auth before the stream starts (Bearer header,
 * else the `rstream.token` query), `params` filters, `state.initial` first, then the hub's events;
 * a subscriber with more than 1 MiB queued is cut off without slowing anyone else.
 */
export class EventStreams {
  private readonly sseStreams = new Set<SseSubscriber>();
  private webSockets = 0;
  private readonly keepalive: NodeJS.Timeout;

  constructor(
    private readonly api: EngineApi,
    private readonly hub: EventHub,
  ) {
    this.keepalive = setInterval(() => {
      for (const subscriber of this.sseStreams) subscriber.stream.write(SSE_KEEPALIVE);
    }, SSE_KEEPALIVE_MS).unref();
  }

  register(app: TemplatedApp): void {
    app.any('/api/sse', (res, req) => this.openSse(res, this.api.readRequest(req), req.getQuery() ?? ''));
    app.ws<SocketData>('/api/websocket', {
      idleTimeout: WEBSOCKET_IDLE_SECONDS,
      sendPingsAutomatically: true,
      maxBackpressure: WEBSOCKET_MAX_BACKPRESSURE,
      maxPayloadLength: 16 * 1024,
      upgrade: (res, req, context) => {
        const request = this.api.readRequest(req);
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        const filters = this.admit(res, request, req.getQuery() ?? '');
        if (!filters) return;
        request.answered(101);
        // Here, inside the handler: uWS can close a socket upgraded later, from a corked callback,
        // right after `open` (docs/engine-api.md#decisions).
        res.upgrade<SocketData>({ filters }, key, protocol, extensions, context);
      },
      open: (ws) => {
        this.webSockets++;
        const data = ws.getUserData();
        const subscriber: Subscriber = {
          filters: data.filters,
          deliver: (json) => {
            data.allowance ??= queueAllowance(Buffer.byteLength(json));
            if (ws.send(json, false) !== 2 && ws.getBufferedAmount() <= data.allowance) return true;
            ws.end(1008, 'too slow: event queue over 1 MiB');
            return false;
          },
          close: () => ws.end(1001, 'engine shutting down'),
        };
        data.subscriber = subscriber;
        // Not inside this (corked) callback: a large snapshot must not go through uWS's cork buffer.
        setImmediate(() => {
          if (data.subscriber === subscriber) this.hub.subscribe(subscriber);
        });
      },
      message: () => {}, // frames from the client are ignored
      close: (ws) => {
        this.webSockets--;
        const data = ws.getUserData();
        if (data.subscriber) this.hub.unsubscribeOne(data.subscriber);
        data.subscriber = undefined;
      },
    });
  }

  /** Live subscribers per transport, for rivulet_event_subscribers. */
  subscriberCounts(): { sse: number; websocket: number } {
    return { sse: this.sseStreams.size, websocket: this.webSockets };
  }

  /** Shutdown: WebSocket subscribers get close code 1001, SSE streams end. */
  close(): void {
    clearInterval(this.keepalive);
    this.hub.closeAll();
  }

  private openSse(res: HttpResponse, request: ApiRequest, query: string): void {
    const filters = this.admit(res, request, query);
    if (!filters) return;
    const stream = new SseSubscriber(
      SseStream.open(res, request, queueAllowance, () => {
        this.sseStreams.delete(stream);
        this.hub.unsubscribeOne(stream);
      }),
      filters,
    );
    if (this.hub.subscribe(stream)) this.sseStreams.add(stream);
  }

  /** The stream endpoints' checks: host, method, token (header or query), permission, params. */
  private admit(res: HttpResponse, request: ApiRequest, query: string): WatchParams | undefined {
    if (!this.api.admitReader(res, request, query)) return undefined;
    try {
      return parseWatchParams(request.params);
    } catch (error) {
      if (!(error instanceof ParamsError)) throw error;
      sendError(res, request, 'bad_request', error.message);
      return undefined;
    }
  }
}

let lastEvent: { json: string; frame: Buffer } = { json: '', frame: Buffer.alloc(0) };

/** An SSE response as a hub subscriber. */
class SseSubscriber implements Subscriber {
  constructor(
    readonly stream: SseStream,
    readonly filters: WatchParams,
  ) {}

  deliver(json: string): boolean {
    // The hub hands every subscriber the same string for an event: encode it once.
    if (json !== lastEvent.json) lastEvent = { json, frame: Buffer.from(`data: ${json}\n\n`) };
    return this.stream.write(lastEvent.frame);
  }

  close(): void {
    this.stream.close();
  }
}
