import fs from 'node:fs/promises';
import type { Logger } from 'pino';
import { certificateWarnings, loadCertificatePair, type CertificatePair } from './certificate-pair.js';
import { CertificateError } from '../errors.js';

/**
 * The static certificate provider with hot reload (docs/operations.md#rotate-certificates), owned by the main thread.
 * Workers ask for a check on handshakes (rate-limited engine-wide through a shared gate); this
 * class decides whether the files changed, validates a new pair and hands it to `onReload`.
 */
export class StaticCertificateProvider {
  /** Reload attempts, for `rivulet_cert_reloads_total`. */
  readonly reloads = { ok: 0, failed: 0 };
  private seenSignature: string;
  private failedSignature: string | undefined;
  private checkInFlight: Promise<void> | undefined;

  private constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    private pair: CertificatePair,
    signature: string,
    private readonly engineHost: string,
    private readonly log: Logger,
    private readonly onReload: (pair: CertificatePair) => void,
  ) {
    this.seenSignature = signature;
  }

  /**
   * Loads the pair at startup; throws CertificateError (fatal, exit 1) when it is unusable. A pair
   * that is usable but does not cover the engine's names, or expires soon, is logged.
   */
  static async open(options: {
    certFile: string;
    keyFile: string;
    engineHost: string;
    log: Logger;
    onReload: (pair: CertificatePair) => void;
  }): Promise<StaticCertificateProvider> {
    const { certFile, keyFile, engineHost, log, onReload } = options;
    const signature = await filesSignature(certFile, keyFile);
    const pair = await loadCertificatePair(certFile, keyFile);
    for (const warning of certificateWarnings(pair, engineHost)) log.warn(warning);
    return new StaticCertificateProvider(certFile, keyFile, pair, signature, engineHost, log, onReload);
  }

  get current(): CertificatePair {
    return this.pair;
  }

  /** Compares the files' stats with the last ones seen and reloads on a change; never throws. */
  check(): Promise<void> {
    this.checkInFlight ??= this.reloadIfChanged().finally(() => (this.checkInFlight = undefined));
    return this.checkInFlight;
  }

  private async reloadIfChanged(): Promise<void> {
    const signature = await filesSignature(this.certFile, this.keyFile);
    if (signature === this.seenSignature || signature === this.failedSignature) return;
    try {
      const pair = await loadCertificatePair(this.certFile, this.keyFile);
      // The stats were taken before the read, so a rename landing mid-read shows up as a change next time.
      this.seenSignature = signature;
      this.failedSignature = undefined;
      this.pair = pair;
      this.reloads.ok++;
      this.log.info(
        { subject: pair.subject, not_after: pair.notAfter.toISOString(), fingerprint_sha256: pair.fingerprint256 },
        'certificate reloaded',
      );
      for (const warning of certificateWarnings(pair, this.engineHost)) this.log.warn(warning);
      this.onReload(pair);
    } catch (error) {
      this.failedSignature = signature;
      this.reloads.failed++;
      const reason = error instanceof CertificateError ? error.message : String(error);
      this.log.error({ reason }, 'certificate reload failed; the previous certificate stays in service');
    }
  }
}

/** (dev, ino, size, mtime, ctime) of both files; a missing file has its own stable marker. */
async function filesSignature(certFile: string, keyFile: string): Promise<string> {
  const one = async (file: string): Promise<string> => {
    try {
      const s = await fs.stat(file, { bigint: true });
      return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
    } catch (error) {
      return `missing:${(error as NodeJS.ErrnoException).code ?? ''}`;
    }
  };
  return `${await one(certFile)}|${await one(keyFile)}`;
}
