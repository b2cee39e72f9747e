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
