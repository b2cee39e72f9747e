import type { ClientHello } from './client-hello.js';
import type { DispatchKind } from '../threads/counters.js';

/**
 * Where a connection goes, decided from its ClientHello before TLS is terminated (docs/architecture.md#a-worker).
 * `alpn` is the list the TLS server offers back for that class, in preference order.
 */
export type Dispatch =
  | { kind: Exclude<DispatchKind, 'edge'>; alpn: readonly string[] }
  /** The edge negotiates its own ALPN: h2 > http/1.1 (HTTP tunnels), or a TLS tunnel's own list. */
  | { kind: 'edge' }
  | { kind: 'refuse'; reason: 'unknown_sni' };

export const ALPN_RSTRM = 'rstrm/1';
const AGENT_ALPN = [ALPN_RSTRM] as const;
/** The base host speaks HTTP/1.1 only: an h2-only offer fails the handshake (no common protocol). */
const API_ALPN = ['http/1.1'] as const;

const TUNNEL_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function classifyConnection(hello: ClientHello, engineHost: string): Dispatch {
  const name = hello.serverName;
  if (name === undefined || name === engineHost) {
    if (hello.alpnProtocols?.includes(ALPN_RSTRM)) return { kind: 'agent', alpn: AGENT_ALPN };
    return { kind: 'api', alpn: API_ALPN };
  }
  if (tunnelLabel(name, engineHost) !== undefined) return { kind: 'edge' };
  return { kind: 'refuse', reason: 'unknown_sni' };
}

/** The `<label>` of `<label>.t.<engineHost>`, or undefined for any other name. */
export function tunnelLabel(name: string, engineHost: string): string | undefined {
  const suffix = `.t.${engineHost}`;
  if (!name.endsWith(suffix)) return undefined;
  const label = name.slice(0, -suffix.length);
  return TUNNEL_LABEL.test(label) ? label : undefined;
}
