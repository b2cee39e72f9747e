import type { ClientRecord, TunnelRecord } from '../control/registry.js';
import type { TunnelProperties } from '../protocol/messages.js';

/**
 * The Engine API's Client and Tunnel objects (docs/engine-api.md): required fields always present,
 * optional ones omitted rather than null, JSON names are the proto's (renames below), timestamps ISO-8601 with Z.
 */

export type Status = 'online' | 'offline';

export interface ApiClient {
  id: string;
  status: Status;
  user_id: string;
  workspace_id: 'default';
  project_id: 'default';
  agent?: string;
  channel?: string;
  version?: string;
  os?: string;
  arch?: string;
  protocol_version?: string;
}

export interface ApiTunnel {
  id: string;
  client_id: string;
  status: Status;
  user_id: string;
  workspace_id: 'default';
  project_id: 'default';
  creation_date: string;
  type: string;
  publish: boolean;
  [field: string]: unknown;
}

const CLIENT_DETAIL_FIELDS = ['agent', 'channel', 'version', 'os', 'arch', 'protocol_version'] as const;

export function apiClient(client: ClientRecord, status: Status = 'online'): ApiClient {
  const object: ApiClient = { id: client.id, status, user_id: client.identity.user_id, workspace_id: 'default', project_id: 'default' };
  for (const field of CLIENT_DETAIL_FIELDS) {
    const value = client.details[field];
    if (value) object[field] = value;
  }
  return object;
}

/** Proto fields that have no API field or are written by the envelope above. */
const NOT_IN_API = new Set<keyof TunnelProperties>(['id', 'creation_date', 'type', 'publish', 'mtls_cacert_pem', 'datagram_guaranteed_delivery', 'allow_cross_region_routing']);
/** JSON names that differ from the proto's. */
const API_NAME: Partial<Record<keyof TunnelProperties, string>> = { geoip: 'geo_ip' };

export function apiTunnel(tunnel: TunnelRecord, status: Status = 'online'): ApiTunnel {
  const properties = tunnel.properties;
  const object: ApiTunnel = {
    id: tunnel.id,
    client_id: tunnel.clientId,
    status,
    user_id: tunnel.userId,
    workspace_id: 'default',
    project_id: 'default',
    creation_date: tunnel.createdAt.toISOString(),
    type: properties.type || 'bytestream',
    publish: properties.publish !== false,
  };
  for (const [field, value] of Object.entries(properties) as Array<[keyof TunnelProperties, unknown]>) {
    if (NOT_IN_API.has(field) || !isSet(value)) continue;
    object[API_NAME[field] ?? field] = value;
  }
  return object;
}

/** "Set" means present and non-empty; booleans present in the echo are kept even when false. */
function isSet(value: unknown): boolean {
  if (value === undefined || value === null || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.keys(value).length > 0;
  if (typeof value === 'number') return value !== 0;
  return true;
}

/** An online object and its JSON, built once: a record never changes while it is live. */
export interface CachedObject<T> {
  object: T;
  json: string;
}

const clientCache = new WeakMap<ClientRecord, CachedObject<ApiClient>>();
const tunnelCache = new WeakMap<TunnelRecord, CachedObject<ApiTunnel>>();

export function cachedClient(client: ClientRecord): CachedObject<ApiClient> {
  return cached(clientCache, client, apiClient);
}

export function cachedTunnel(tunnel: TunnelRecord): CachedObject<ApiTunnel> {
  return cached(tunnelCache, tunnel, apiTunnel);
}

function cached<R extends object, T>(cache: WeakMap<R, CachedObject<T>>, record: R, build: (record: R) => T): CachedObject<T> {
  let entry = cache.get(record);
  if (!entry) {
    const object = build(record);
    entry = { object, json: JSON.stringify(object) };
    cache.set(record, entry);
  }
  return entry;
}
