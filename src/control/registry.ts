import crypto from 'node:crypto';
import type { ClientDetails, TunnelProperties } from '../protocol/messages.js';
import type { Identity } from '../auth/tokens.js';
import { POOL_LABEL } from '../protocol/pool-labels.js';

/**
 * The control plane's state (docs/architecture.md#what-state-exists): live clients and tunnels, in creation order, with the
 * name and hostname indexes that keep them unique engine-wide (or shared by the members of an endpoint
 * pool, docs/pools.md). In memory only; main thread only.
 * Every change is announced to subscribers in registry order (a client's tunnel.deleted events
 * before its client.deleted).
 */

export interface ClientRecord {
  id: string;
  identity: Identity;
  details: ClientDetails;
  /** The worker that holds the control channel. */
  worker: number;
  tunnels: Set<string>;
}

export interface TunnelRecord {
  id: string;
  clientId: string;
  userId: string;
  createdAt: Date;
  /** The normalised properties as echoed in OpenTunnelRsp (id, creation_date included). */
  properties: TunnelProperties;
  /** Its row in the per-tunnel tables (stream counts, traffic). */
  slot: number;
}

export type RegistryEvent =
  | { type: 'client.created' | 'client.deleted'; client: ClientRecord }
  | { type: 'tunnel.created' | 'tunnel.deleted'; tunnel: TunnelRecord };

/** 24 lowercase hex characters from a CSPRNG. */
export function newId(): string {
  return crypto.randomBytes(12).toString('hex');
}

export class Registry {
  readonly clients = new Map<string, ClientRecord>();
  readonly tunnels = new Map<string, TunnelRecord>();
  /** Holders of each name (lowercase) and hostname, live or reserved, oldest first: one, or a pool's members. */
  private readonly tunnelsByName = new Map<string, Set<string>>();
  private readonly tunnelsByHostname = new Map<string, Set<string>>();
  /** Accepted tunnels whose OpenTunnelRsp is not yet on the wire: reserved, not yet routable. */
  private readonly reserved = new Map<string, TunnelRecord>();
  private readonly listeners = new Set<(event: RegistryEvent) => void>();

  /** `released` hears of every tunnel that goes, announced or only reserved. */
  constructor(private readonly released: (tunnel: TunnelRecord) => void = () => {}) {}

  subscribe(listener: (event: RegistryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  addClient(identity: Identity, details: ClientDetails, worker: number): ClientRecord {
    const client: ClientRecord = { id: newId(), identity, details, worker, tunnels: new Set() };
    this.clients.set(client.id, client);
    this.emit({ type: 'client.created', client });
    return client;
  }

  /** Tears a client down: its tunnels (routable or reserved) first, then the client. */
  removeClient(clientId: string): TunnelRecord[] {
    const client = this.clients.get(clientId);
    if (!client) return [];
    const removed: TunnelRecord[] = [];
    for (const tunnelId of [...client.tunnels]) {
      const tunnel = this.removeTunnel(tunnelId);
      if (tunnel) removed.push(tunnel);
    }
    this.clients.delete(clientId);
    this.emit({ type: 'client.deleted', client });
    return removed;
  }

  /** Live and reserved tunnels: what the workers route. */
  held(): TunnelRecord[] {
    return [...this.tunnels.values(), ...this.reserved.values()];
  }

  /** A tunnel (live or reserved) holding this name, if any: its pool's oldest member. */
  nameHolder(nameLowercase: string): TunnelRecord | undefined {
    return this.firstOf(this.tunnelsByName.get(nameLowercase));
  }

  hostnameHolder(hostname: string): TunnelRecord | undefined {
    return this.firstOf(this.tunnelsByHostname.get(hostname.toLowerCase()));
  }

  /** The tunnels sharing this one's address (its hostname, or a private tunnel's name), itself included. */
  poolSize(tunnel: TunnelRecord): number {
    const { hostname, name } = tunnel.properties;
    return (hostname ? this.tunnelsByHostname.get(hostname) : name ? this.tunnelsByName.get(name.toLowerCase()) : undefined)?.size ?? 1;
  }

  /** Endpoint pools now (addresses whose holders carry a pool key) and their members, live or reserved. */
  poolCounts(): { pools: number; members: number } {
    let pools = 0;
    let members = 0;
    const count = (holders: Set<string>, published: boolean): void => {
      const first = this.firstOf(holders)!;
      // A published tunnel's pool is its hostname's; its name, if any, is not a second pool.
      if (first.properties.labels[POOL_LABEL] === undefined || (first.properties.publish !== false) !== published) return;
      pools++;
      members += holders.size;
    };
    for (const holders of this.tunnelsByHostname.values()) count(holders, true);
    for (const holders of this.tunnelsByName.values()) count(holders, false);
    return { pools, members };
  }

  /**
   * Holds the name and hostname of an accepted tunnel (the workers route it from now on); `publish`
   * announces it once its reply is written.
   */
  reserveTunnel(client: ClientRecord, properties: TunnelProperties, slot: number, now = new Date()): TunnelRecord {
    const tunnel: TunnelRecord = {
      id: newId(),
      clientId: client.id,
      userId: client.identity.user_id,
      createdAt: now,
      slot,
      properties: {
        ...properties,
        creation_date: { seconds: Math.floor(now.getTime() / 1000), nanos: (now.getTime() % 1000) * 1_000_000 },
      },
    };
    tunnel.properties.id = tunnel.id;
    this.reserved.set(tunnel.id, tunnel);
    client.tunnels.add(tunnel.id);
    if (properties.name) holdersOf(this.tunnelsByName, properties.name.toLowerCase()).add(tunnel.id);
    if (properties.hostname) holdersOf(this.tunnelsByHostname, properties.hostname.toLowerCase()).add(tunnel.id);
    return tunnel;
  }

  /** Makes a reserved tunnel live; returns it, or undefined if it was withdrawn meanwhile. */
  publishTunnel(tunnelId: string): TunnelRecord | undefined {
    const tunnel = this.reserved.get(tunnelId);
    if (!tunnel) return undefined;
    this.reserved.delete(tunnelId);
    this.tunnels.set(tunnelId, tunnel);
    this.emit({ type: 'tunnel.created', tunnel });
    return tunnel;
  }

  /** Removes a live or reserved tunnel; returns it if it was live (routable and announced). */
  removeTunnel(tunnelId: string): TunnelRecord | undefined {
    const tunnel = this.tunnels.get(tunnelId) ?? this.reserved.get(tunnelId);
    if (!tunnel) return undefined;
    const wasLive = this.tunnels.delete(tunnelId);
    this.reserved.delete(tunnelId);
    this.clients.get(tunnel.clientId)?.tunnels.delete(tunnelId);
    if (tunnel.properties.name) release(this.tunnelsByName, tunnel.properties.name.toLowerCase(), tunnelId);
    if (tunnel.properties.hostname) release(this.tunnelsByHostname, tunnel.properties.hostname.toLowerCase(), tunnelId);
    this.released(tunnel);
    if (!wasLive) return undefined;
    this.emit({ type: 'tunnel.deleted', tunnel });
    return tunnel;
  }

  /** A live tunnel by id first, then by name, case-insensitively (a pool's oldest live member). */
  resolve(idOrName: string): TunnelRecord | undefined {
    const byId = this.tunnels.get(idOrName);
    if (byId) return byId;
    for (const id of this.tunnelsByName.get(idOrName.toLowerCase()) ?? []) {
      const live = this.tunnels.get(id);
      if (live) return live;
    }
    return undefined;
  }

  private firstOf(holders: Set<string> | undefined): TunnelRecord | undefined {
    const id = holders?.values().next().value;
    return id === undefined ? undefined : (this.tunnels.get(id) ?? this.reserved.get(id));
  }

  private emit(event: RegistryEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}

function holdersOf(index: Map<string, Set<string>>, key: string): Set<string> {
  let holders = index.get(key);
  if (!holders) index.set(key, (holders = new Set()));
  return holders;
}

function release(index: Map<string, Set<string>>, key: string, tunnelId: string): void {
  const holders = index.get(key);
  holders?.delete(tunnelId);
  if (holders?.size === 0) index.delete(key);
}
