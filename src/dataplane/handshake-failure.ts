import type { HandshakeFailureReason } from '../threads/counters.js';

/** The metrics reason of a failed server handshake (`rivulet_tls_handshake_failures_total`, docs/metrics.md). */
export function handshakeFailureReason(error: NodeJS.ErrnoException): HandshakeFailureReason {
  if (error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'timeout';
  if (error.code === 'ERR_SSL_NO_APPLICATION_PROTOCOL') return 'alpn';
  if (error.code?.startsWith('ERR_SSL')) return 'protocol';
  return 'other';
}
