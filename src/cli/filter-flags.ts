import { UsageError } from '../errors.js';

/**
 * The CLI's filter grammar (docs/cli.md#rivulet-tunnel-list-rivulet-client-list): `k=v,k=v`, `labels.<k>=v` (or
 * `label.<k>`), `publish` as a boolean, a label value of `""` or `*` meaning any value. Turned into the API's filter object.
 */
const TUNNEL_KEYS = ['id', 'name', 'type', 'status', 'client_id', 'user_id', 'protocol', 'publish', 'hostname', 'http_version'];
const CLIENT_KEYS = ['id', 'status', 'user_id', 'agent', 'channel', 'version', 'os', 'arch', 'protocol_version'];

export type FilterKind = 'tunnels' | 'clients';

export function parseFilterFlags(texts: readonly string[], kind: FilterKind, flag: string): Record<string, unknown> | undefined {
  const filter: Record<string, unknown> = {};
  const labels: Record<string, string | null> = {};
  const keys = kind === 'tunnels' ? TUNNEL_KEYS : CLIENT_KEYS;
  for (const text of texts) {
    for (const pair of text.split(',')) {
      if (pair.trim() === '') continue;
      const equals = pair.indexOf('=');
      if (equals <= 0) throw new UsageError(`invalid ${flag} "${pair}" (expected key=value)`);
      const key = pair.slice(0, equals).trim();
      const value = pair.slice(equals + 1).trim();
      const label = /^labels?\.(.+)$/.exec(key)?.[1];
      if (label !== undefined) {
        labels[label] = value === '' || value === '*' ? null : value;
      } else if (!keys.includes(key)) {
        throw new UsageError(`unknown ${flag} key "${key}" (one of ${keys.join(', ')}, labels.<key>)`);
      } else if (key === 'publish') {
        if (value !== 'true' && value !== 'false') throw new UsageError(`${flag} publish must be true or false`);
        filter.publish = value === 'true';
      } else filter[key] = value;
    }
  }
  if (Object.keys(labels).length > 0) filter.labels = labels;
  return Object.keys(filter).length > 0 ? filter : undefined;
}
