import net from 'node:net';
import type { Duplex } from 'node:stream';
import { ApiRequestHeads } from './api-request-heads.js';
import { endSoon } from '../net/splice.js';

/**
 * A burst of API connections can fill the main thread's accept backlog: retry with backoff for up to
 * 10 s. A thousand event-stream subscribers arriving at once on a busy machine took longer than the
 * single second this used to allow, and the ones past it were closed without a reply.
 */
const CONNECT_GIVE_UP_MS = 10_000;
const FIRST_RETRY_MS = 10;
const MAX_RETRY_MS = 250;

/**
 * Joins a terminated base-host HTTP session to the main thread's Engine API server (its Unix socket).
 * A Unix socket refuses at once (EAGAIN) when the listener's backlog is full, unlike TCP which would
 * retry the SYN, so a burst (a thousand event-stream subscribers reconnecting) retries here.
 */
export function spliceToApi(session: Duplex, socketPath: string, giveUpAt = Date.now() + CONNECT_GIVE_UP_MS, retryMs = FIRST_RETRY_MS): void {
  // The client may have left while a retry waited: joined now, the API socket would outlive it.
  if (session.destroyed) return;
  const api = net.connect({ path: socketPath, allowHalfOpen: true });
  const retry = (error: NodeJS.ErrnoException): void => {
    api.destroy();
    if (error.code === 'EAGAIN' && Date.now() + retryMs < giveUpAt && !session.destroyed) {
      setTimeout(() => spliceToApi(session, socketPath, giveUpAt, Math.min(retryMs * 2, MAX_RETRY_MS)), retryMs);
    } else session.destroy();
  };
  api.once('error', retry);
  api.once('connect', () => {
    api.off('error', retry);
    joinApi(session, api);
  });
}

/**
 * Both ways like a splice (backpressure, half-close, a side that fails takes the other down), with
 * the requests passing through ApiRequestHeads. A request it refuses is answered here; what the API
 * was still to answer on that connection is dropped with it.
 */
function joinApi(session: Duplex, api: net.Socket): void {
  const requests = new ApiRequestHeads((answer) => {
    api.destroy();
    session.write(answer);
    endSoon(session);
  });
  session.pipe(requests).pipe(api);
  api.pipe(session);
  const abort = (): void => {
    session.destroy();
    api.destroy();
  };
  session.once('error', abort);
  api.once('error', abort);
  session.once('close', () => {
    if (!(session.readableEnded && session.writableFinished)) api.destroy();
  });
  api.once('close', () => {
    if (!(api.readableEnded && api.writableFinished) && !session.writableEnded) session.destroy();
  });
}
