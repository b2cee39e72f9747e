import net from 'node:net';
import { ipv4FromMapped } from '../net/ip.js';
import type { IpAddress } from '../protocol/messages.js';

/**
 * A peer address as ProxyConnReq.source_ip: IPv4 as a uint32 with the first octet
 * high, IPv6 as 16 bytes, and IPv4-mapped IPv6 (dual-stack listeners) sent as IPv4.
 */
export function sourceIpOf(address: string | undefined): IpAddress | undefined {
  if (!address) return undefined;
  const v4 = ipv4FromMapped(address) ?? address;
  if (net.isIPv4(v4)) {
    const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number];
    return { v4: ((a << 24) | (b << 16) | (c << 8) | d) >>> 0 };
  }
  if (net.isIPv6(address)) return { v6: ipv6Bytes(address) };
  return undefined;
}

function ipv6Bytes(address: string): Buffer {
  const zone = address.indexOf('%');
  let text = zone >= 0 ? address.slice(0, zone) : address;
  const bytes = Buffer.alloc(16);
  const tail4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail4) {
    const [a, b, c, d] = tail4[1]!.split('.').map(Number) as [number, number, number, number];
    text = text.slice(0, -tail4[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  groups.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  return bytes;
}
