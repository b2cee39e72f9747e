import net from 'node:net';
import type { Duplex } from 'node:stream';
import { ApiRequestHeads } from './api-request-heads.js';
import { endSoon } from '../net/splice.js';

/** A burst of API connections can fill the main thread's accept backlog: retry this long, then give up. */
const CONNECT_ATTEMPTS = 50;
const RETRY_DELAY_MS = 20;

/**
 * Joins a terminated base-host HTTP session to the main thread's Engine API server (its Unix socket).
 * A Unix socket refuses at once (EAGAIN) when the listener's backlog is full, unlike TCP which would
 * retry the SYN, so a burst (a thousand event-stream subscribers reconnecting) retries here briefly.
 */
export function spliceToApi(session: Duplex, socketPath: string, attempt = 1): void {
  const api = net.connect({ path: socketPath, allowHalfOpen: true });
  const retry = (error: NodeJS.ErrnoException): void => {
    api.destroy();
    if (error.code === 'EAGAIN' && attempt < CONNECT_ATTEMPTS && !session.destroyed) {
      setTimeout(() => spliceToApi(session, socketPath, attempt + 1), RETRY_DELAY_MS);
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
