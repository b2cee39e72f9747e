import type { Duplex } from 'node:stream';

/**
 * Joins two byte streams both ways with backpressure (pipe pauses a source whose destination is
 * full). An end on one side ends the writes towards the other; an error or close on either side
 * destroys both, so neither can leak.
 */
export function splice(a: Duplex, b: Duplex): void {
  const destroyBoth = (): void => {
    a.destroy();
    b.destroy();
  };
  a.pipe(b);
  b.pipe(a);
  a.once('error', destroyBoth);
  b.once('error', destroyBoth);
  a.once('close', destroyBoth);
  b.once('close', destroyBoth);
}

/** How long a peer gets to close its side after we ended ours, before the socket is destroyed. */
const END_GRACE_MS = 1000;

/**
 * Ends our side after a final reply. Sockets here are half-open, so without the timer a peer that
 * never closes its side would hold the connection for ever.
 */
export function endSoon(socket: Duplex): void {
  socket.end();
  setTimeout(() => socket.destroy(), END_GRACE_MS).unref();
}
