import tls from 'node:tls';
import type { Duplex } from 'node:stream';

const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * A TLS client over a stream to the agent (upstream_tls, docs/http-edge.md#decisions): SNI is the tunnel's
 * public hostname, the certificate is not verified (the agent chose the target), TLS 1.2 at least.
 * Resolves undefined (stream destroyed) when the handshake fails or stalls.
 */
export function upstreamTls(stream: Duplex, servername: string | undefined, alpn: readonly string[]): Promise<tls.TLSSocket | undefined> {
  stream.resume(); // it arrives paused; the upstream speaks only after our ClientHello
  const socket = tls.connect({
    socket: stream,
    servername,
    ALPNProtocols: alpn.length > 0 ? [...alpn] : undefined,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
  });
  socket.once('close', () => stream.destroy());
  return new Promise((resolve) => {
    const settle = (result: tls.TLSSocket | undefined): void => {
      clearTimeout(timer);
      socket.off('error', failed);
      if (!result) socket.destroy();
      else socket.on('error', () => socket.destroy());
      resolve(result);
    };
    const failed = (): void => settle(undefined);
    const timer = setTimeout(failed, HANDSHAKE_TIMEOUT_MS);
    socket.once('error', failed);
    socket.once('secureConnect', () => settle(socket));
  });
}
