import tls from 'node:tls';
import { CertCheckGate } from '../certs/check-gate.js';
import type { CertificatePem, WorkerToMain } from '../control/thread-messages.js';

/** How long a handshake that won the check gate waits for the main thread's answer. */
const CHECK_WAIT_MS = 1000;

/**
 * A worker's view of the engine certificate: the SecureContext new handshakes use, replaced when the
 * main thread pushes a reloaded pair. Session-ticket keys are the engine's, so resumption works
 * across workers.
 */
export class WorkerCertificates {
  private context: tls.SecureContext;
  private readonly pendingChecks = new Map<number, () => void>();
  private nextRequestId = 1;

  constructor(
    certificate: CertificatePem,
    private readonly ticketKeys: Buffer,
    private readonly gate: CertCheckGate,
    private readonly post: (message: WorkerToMain) => void,
  ) {
    this.context = this.build(certificate);
  }

  replace(certificate: CertificatePem): void {
    this.context = this.build(certificate);
  }

  checked(requestId: number): void {
    this.pendingChecks.get(requestId)?.();
  }

  /**
   * The context for a handshake starting now. The handshake that wins the engine-wide once-a-second
   * gate waits (bounded) for the main thread's file check, so a just-rotated pair already serves it.
   */
  async forHandshake(): Promise<tls.SecureContext> {
    if (!this.gate.tryClaim()) return this.context;
    const requestId = this.nextRequestId++;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.pendingChecks.delete(requestId);
        resolve();
      };
      const timer = setTimeout(done, CHECK_WAIT_MS);
      this.pendingChecks.set(requestId, done);
      this.post({ type: 'check-certificate', requestId });
    });
    return this.context;
  }

  private build(certificate: CertificatePem): tls.SecureContext {
    return tls.createSecureContext({
      cert: certificate.certPem,
      key: certificate.keyPem,
      ticketKeys: this.ticketKeys,
      minVersion: 'TLSv1.2',
    });
  }
}
