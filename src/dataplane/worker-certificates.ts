import tls from 'node:tls';
import { CertCheckGate } from '../threads/cert-check-gate.js';
import type { CertificatePem, WorkerToMain } from '../threads/messages.js';

/** How long a handshake that won the check gate waits for the main thread's answer. */
const CHECK_WAIT_MS = 1000;

/**
 * A worker's view of the engine certificate: the SecureContext new handshakes use, replaced when the
 * main thread pushes a reloaded pair. Session-ticket keys are the engine's, so resumption works
 * across workers.
 */
/** A TLS tunnel's own floor and cipher list; the certificate is the engine's. */
export interface TlsPolicy {
  minVersion: tls.SecureVersion;
  ciphers: string | undefined;
}

export class WorkerCertificates {
  private certificate: CertificatePem;
  private context: tls.SecureContext;
  /** Contexts for TLS tunnels' policies, rebuilt when the certificate changes. */
  private readonly policyContexts = new Map<string, tls.SecureContext>();
  private readonly pendingChecks = new Map<number, () => void>();
  private nextRequestId = 1;

  constructor(
    certificate: CertificatePem,
    private readonly ticketKeys: Buffer,
    private readonly gate: CertCheckGate,
    private readonly post: (message: WorkerToMain) => void,
  ) {
    this.certificate = certificate;
    this.context = this.build(certificate);
  }

  replace(certificate: CertificatePem): void {
    this.certificate = certificate;
    this.context = this.build(certificate);
    this.policyContexts.clear();
  }

  /** The current certificate under a tunnel's TLS policy (call after `forHandshake`). */
  contextFor(policy: TlsPolicy): tls.SecureContext {
    const key = `${policy.minVersion}|${policy.ciphers ?? ''}`;
    let context = this.policyContexts.get(key);
    if (!context) {
      context = this.build(this.certificate, policy);
      this.policyContexts.set(key, context);
    }
    return context;
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

  private build(certificate: CertificatePem, policy: TlsPolicy = { minVersion: 'TLSv1.2', ciphers: undefined }): tls.SecureContext {
    return tls.createSecureContext({
      cert: certificate.certPem,
      key: certificate.keyPem,
      ticketKeys: this.ticketKeys,
      minVersion: policy.minVersion,
      ...(policy.ciphers ? { ciphers: policy.ciphers } : {}),
    });
  }
}
