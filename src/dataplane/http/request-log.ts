import type { ResponseOrigin } from '../../threads/counters.js';
import type { LoggedRequest } from '../../threads/messages.js';
import { plainAddress } from './forwarded-headers.js';
import { wasGenerated, type EdgeResponse } from './generated-response.js';

/** Requests kept per tunnel on each worker. */
export const REQUEST_LOG_DEPTH = 200;
/**
 * Tunnels with a log on each worker; a tunnel past this takes the log of the one least recently
 * logged to. Bounds the memory of an engine with many busy tunnels (docs/bounds.md).
 */
export const LOGGED_TUNNELS = 500;
/** Longer paths are cut here (with `…`): a log line is for reading, not for replaying. */
const PATH_LIMIT = 256;
/** The scheme and authority of an absolute-form request target (`http://host/path`). */
const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\/[^/]*\/?/i;

/**
 * One request being logged: what is known when its head arrives, then its status and the response
 * bytes sent, filled in by the exchange that answers it. Created only while the request log is on.
 */
export class RequestLogLine {
  status: number | null = null;
  origin: ResponseOrigin = 'upstream';
  bytes = 0;
  private readonly startedAt = performance.now();
  private readonly time = Date.now();
  private readonly path: string;

  constructor(
    private readonly method: string,
    target: string,
    private readonly peerAddress: string | undefined,
  ) {
    // The query string goes at once: it can carry secrets (rstream.token among them), and is never kept.
    const queryAt = target.indexOf('?');
    const path = (queryAt < 0 ? target : target.slice(0, queryAt)).replace(ABSOLUTE_FORM, '/');
    this.path = path.length > PATH_LIMIT ? `${path.slice(0, PATH_LIMIT)}…` : path;
  }

  responded(status: number, origin: ResponseOrigin): void {
    this.status = status;
    this.origin = origin;
  }

  finish(aborted: boolean): LoggedRequest {
    return {
      time: this.time,
      method: this.method,
      path: this.path,
      status: this.status,
      origin: this.origin,
      duration_ms: Math.round((performance.now() - this.startedAt) * 10) / 10,
      bytes: this.bytes,
      client_ip: plainAddress(this.peerAddress) || null,
      aborted,
    };
  }
}

/** The last REQUEST_LOG_DEPTH requests of one tunnel. */
class Ring {
  private readonly items: LoggedRequest[] = [];
  private next = 0;

  push(item: LoggedRequest): void {
    if (this.items.length < REQUEST_LOG_DEPTH) this.items.push(item);
    else this.items[this.next] = item;
    this.next = (this.next + 1) % REQUEST_LOG_DEPTH;
  }

  /** Oldest first. */
  list(): LoggedRequest[] {
    if (this.items.length < REQUEST_LOG_DEPTH) return this.items.slice();
    return [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
  }
}

/**
 * A worker's request log (`dashboard.request_log: on`): each tunnel's last requests, by tunnel slot,
 * read by the main thread for the Engine API. A tunnel's log lives as long as its route here.
 */
export class RequestLog {
  /** Slots of the live routes: a request that ends after its tunnel went is not logged. */
  private readonly live = new Set<number>();
  /** Least recently logged to first (a write moves its tunnel to the end). */
  private readonly rings = new Map<number, Ring>();

  tunnelAdded(slot: number): void {
    this.live.add(slot);
  }

  tunnelRemoved(slot: number): void {
    this.live.delete(slot);
    this.rings.delete(slot);
  }

  record(slot: number, line: RequestLogLine, aborted: boolean): void {
    if (!this.live.has(slot)) return;
    let ring = this.rings.get(slot);
    if (ring) this.rings.delete(slot);
    else {
      ring = new Ring();
      if (this.rings.size >= LOGGED_TUNNELS) this.rings.delete(this.rings.keys().next().value!);
    }
    this.rings.set(slot, ring);
    ring.push(line.finish(aborted));
  }

  requests(slot: number): LoggedRequest[] {
    return this.rings.get(slot)?.list() ?? [];
  }
}

/** An h2 request's line, recorded when its response closes, for the tunnel `slot()` names then. */
export function logWhenDone(log: RequestLog, res: EdgeResponse, line: RequestLogLine, slot: () => number | undefined): void {
  res.once('close', () => {
    const tunnel = slot();
    if (tunnel === undefined) return;
    if (res.headersSent) line.responded(res.statusCode, wasGenerated(res) ? 'edge' : 'upstream');
    // The edge's own answers are written whole, not through the exchange that counts bytes.
    if (wasGenerated(res) && res.req.method !== 'HEAD') line.bytes = Number(res.getHeader('content-length'));
    log.record(tunnel, line, !res.writableEnded);
  });
}
