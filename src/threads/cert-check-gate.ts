/**
 * The engine-wide "at most one certificate check per second" gate (docs/operations.md#rotate-certificates). Workers race for
 * it on handshakes through one shared int64 timestamp; the winner asks the main thread to check.
 */
export const CERT_CHECK_INTERVAL_MS = 1000;

export function createCertCheckGate(): SharedArrayBuffer {
  return new SharedArrayBuffer(BigInt64Array.BYTES_PER_ELEMENT);
}

export class CertCheckGate {
  private readonly lastCheck: BigInt64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.lastCheck = new BigInt64Array(buffer);
  }

  /** True for exactly one caller per interval, engine-wide. */
  tryClaim(now = Date.now()): boolean {
    const last = Atomics.load(this.lastCheck, 0);
    const current = BigInt(now);
    if (current - last < BigInt(CERT_CHECK_INTERVAL_MS)) return false;
    return Atomics.compareExchange(this.lastCheck, 0, last, current) === last;
  }
}
