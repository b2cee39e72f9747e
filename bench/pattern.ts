import crypto from 'node:crypto';

/**
 * Deterministic bytes both ends of the keep-alive scenario can produce on their own: the generator
 * checks an answer of n bytes against PATTERN[0, n), the upstream checks a request body sent from
 * offset k against PATTERN[k, k + n), with a memory compare instead of a hash.
 */
export const PATTERN_BYTES = 2 * 1024 * 1024;

export const PATTERN: Buffer = (() => {
  const bytes = Buffer.allocUnsafe(PATTERN_BYTES);
  let block = crypto.createHash('sha512').update('rivulet-keepalive').digest();
  for (let offset = 0; offset < PATTERN_BYTES; offset += block.length) {
    block.copy(bytes, offset);
    block = crypto.createHash('sha512').update(block).digest();
  }
  return bytes;
})();
