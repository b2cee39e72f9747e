import type { IpAddress } from '../protocol/messages.js';

/** ProxyConnReq.source_ip as text, for the agent's per-connection output. */
export function formatSourceIp(address: IpAddress | undefined): string {
  if (!address) return 'unknown';
  if ('v4' in address) return [24, 16, 8, 0].map((shift) => (address.v4 >>> shift) & 0xff).join('.');
  const bytes = Buffer.from(address.v6);
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}
