import net from 'node:net';

/** A `host:port` listen address; IPv6 hosts are stored without brackets. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses `host:port`, `[v6]:port` or `:port`; returns undefined when malformed. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text);
  const plain = /^([^:[\]]*):(\d{1,5})$/.exec(text);
  const match = bracketed ?? plain;
  if (!match) return undefined;
  const host = match[1] === '' ? '0.0.0.0' : match[1]!;
  const port = Number(match[2]);
  if (port > 65535) return undefined;
  if (bracketed && net.isIPv6(host) === false) return undefined;
  if (!bracketed && !net.isIPv4(host) && !isHostName(host)) return undefined;
  return { host, port };
}

export function formatListenAddress(address: ListenAddress): string {
  return net.isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

const HOST_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** An LDH DNS name (labels of 1–63 chars, total ≤ 253), not an IP literal nor all-numeric at the top. */
export function isHostName(name: string): boolean {
  if (name.length === 0 || name.length > 253 || net.isIP(name) !== 0) return false;
  const labels = name.split('.');
  return labels.every((label) => HOST_LABEL.test(label)) && !/^\d+$/.test(labels.at(-1)!);
}

/** Loopback: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 or the name `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.toLowerCase();
  if (bare === 'localhost') return true;
  if (net.isIPv4(bare)) return bare.startsWith('127.');
  if (net.isIPv6(bare)) {
    const blocks = new net.BlockList();
    blocks.addAddress('::1', 'ipv6');
    blocks.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');
    return blocks.check(bare, 'ipv6');
  }
  return false;
}
