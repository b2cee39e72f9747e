import type { Duplex } from 'node:stream';
import type { TunnelRoute } from '../threads/messages.js';
import { opensslCipherName } from '../net/tls-ciphers.js';
import type { Dataplane } from './dataplane.js';
import type { RouteGroup } from './route-group.js';
import type { TunnelProperties } from '../protocol/messages.js';
import { endSoon, splice } from '../net/splice.js';
import { upstreamTls } from './upstream-tls.js';
import type { TlsPolicy } from './worker-certificates.js';

/**
 * Published TLS tunnels (docs/architecture.md#a-worker): the downstream is either the raw connection, ClientHello
 * included (passthrough: the upstream owns the certificate), or the plaintext of a session the engine
 * terminated. Either way it is spliced to one stream to the agent, with half-close and no idle
 * timeout; a stream that cannot be had closes the downstream. A terminated tunnel with upstream_tls
 * speaks TLS again towards the upstream.
 */
export async function serveTlsTunnel(
  dataplane: Dataplane,
  tunnels: RouteGroup,
  properties: TunnelProperties,
  downstream: Duplex,
  peerAddress: string | undefined,
  negotiatedAlpn: string | false = false,
): Promise<void> {
  const stream = await dataplane.openToGroup(tunnels, peerAddress, downstream, 'tls');
  if (!stream.ok) {
    dataplane.log.debug({ hostname: properties.hostname, reason: stream.failure.reason }, 'TLS tunnel stream failed');
    endSoon(downstream);
    return;
  }
  if (!properties.upstream_tls || properties.tls_mode === 'passthrough') {
    splice(downstream, stream.proxyEnd);
    return;
  }
  // The client may leave during the upstream handshake; the relay has no idle timeout to catch that.
  const downstreamLeft = (): void => void stream.proxyEnd.destroy();
  downstream.once('close', downstreamLeft);
  // Terminated with upstream_tls: the upstream gets TLS again, offered the protocol the client chose.
  const secured = await upstreamTls(stream.proxyEnd, properties.hostname, negotiatedAlpn ? [negotiatedAlpn] : []);
  downstream.off('close', downstreamLeft);
  if (!secured) {
    dataplane.log.debug({ hostname: properties.hostname }, 'TLS tunnel: the upstream TLS handshake failed');
    endSoon(downstream);
    return;
  }
  if (downstream.destroyed) secured.destroy();
  else splice(downstream, secured);
}

/** The tunnel's floor (default TLS 1.2) and cipher list in OpenSSL names. */
export function tlsPolicyOf(route: TunnelRoute): TlsPolicy {
  const { tls_min_version: floor, tls_ciphers: ciphers } = route.properties;
  return {
    minVersion: floor === 'tls1.3' ? 'TLSv1.3' : 'TLSv1.2',
    ciphers: ciphers.length > 0 ? ciphers.map((name) => opensslCipherName(name) ?? name).join(':') : undefined,
  };
}
