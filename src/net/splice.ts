import type { Duplex } from 'node:stream';

/**
 * Joins two byte streams both ways with backpressure (pipe pauses a source whose destination is
 * full). An end on one side ends the writes towards the other (half-close). A side that errors, or
 * closes before both of its directions finished, takes the other down with it; a side that closes
 * cleanly does not, so the other can still flush what it holds.
 */
export function splice(a: Duplex, b: Duplex): void {
  // A side that already ended would end the other on this tick, which may still be inside that TLS
  // socket's own read callback: a TLS socket shut down from there drops what its peer sends next
  // (a zero-RTT dial that ended at once lost its reply). The pipes start on the next turn instead.
  if (a.readableEnded || b.readableEnded) setImmediate(() => pipeBoth(a, b));
  else pipeBoth(a, b);
  const abort = (): void => {
    a.destroy();
    b.destroy();
  };
  a.once('error', abort);
  b.once('error', abort);
  const closed = (side: Duplex, other: Duplex) => (): void => {
    if (!(side.readableEnded && side.writableFinished)) other.destroy();
  };
  a.once('close', closed(a, b));
  b.once('close', closed(b, a));
}

function pipeBoth(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
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
