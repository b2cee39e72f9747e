import crypto from 'node:crypto';
import type { Registry, RegistryEvent } from '../control/registry.js';
import { apiClient, apiTunnel, cachedClient, cachedTunnel } from './api-objects.js';
import type { WatchParams } from './filters.js';

/** A subscriber with more than this queued is cut off (it reconnects for a fresh snapshot). */
export const MAX_QUEUED_BYTES = 1024 * 1024;

/** One event-stream subscriber as the hub sees it: a filter and a way to hand it serialised events. */
export interface Subscriber {
  filters: WatchParams;
  /** Takes one event's JSON; returns false when the subscriber was cut off (too slow). */
  deliver(json: string): boolean;
  /** Engine shutdown. */
  close(): void;
}

/**
 * The event-stream fan-out (docs/engine-api.md): registry changes as API events, each serialised once and
 * handed to every subscriber whose filter it passes. Subscribing takes the snapshot in the same turn
 * as joining the feed, so nothing is lost or repeated between `state.initial` and the next event.
 */
export class EventHub {
  private readonly subscribers = new Set<Subscriber>();
  /** Ids are `evt_` + 24 hex: this run's random prefix, then a counter, so they increase within a run. */
  private readonly idPrefix = crypto.randomBytes(4).toString('hex');
  private sequence = 0;
  private readonly unsubscribe: () => void;

  constructor(private readonly registry: Registry) {
    this.unsubscribe = registry.subscribe((event) => this.publish(event));
  }

  /** Adds a subscriber and delivers its `state.initial`; false if it was cut off at once. */
  subscribe(subscriber: Subscriber): boolean {
    const { clients, tunnels } = subscriber.filters;
    const now = new Date().toISOString();
    // Built from each record's cached JSON: with 10,000 tunnels this is megabytes, per subscriber.
    const clientsJson = [...this.registry.clients.values()].map(cachedClient).filter(({ object }) => clients(object as unknown as Record<string, unknown>));
    const tunnelsJson = [...this.registry.tunnels.values()].map(cachedTunnel).filter(({ object }) => tunnels(object));
    const snapshot =
      `{"snapshot_at":${JSON.stringify(now)},"clients":[${clientsJson.map(({ json }) => json).join(',')}],` +
      `"tunnels":[${tunnelsJson.map(({ json }) => json).join(',')}]}`;
    this.subscribers.add(subscriber);
    const delivered = subscriber.deliver(`{"id":"${this.nextId()}","type":"state.initial","created_at":"${now}","object":${snapshot}}`);
    if (!delivered) this.subscribers.delete(subscriber);
    return delivered;
  }

  unsubscribeOne(subscriber: Subscriber): void {
    this.subscribers.delete(subscriber);
  }

  /** Shutdown: every subscriber is closed (WebSocket code 1001, SSE end). */
  closeAll(): void {
    this.unsubscribe();
    for (const subscriber of [...this.subscribers]) subscriber.close();
    this.subscribers.clear();
  }

  private publish(event: RegistryEvent): void {
    if (this.subscribers.size === 0) return;
    const isClientEvent = event.type === 'client.created' || event.type === 'client.deleted';
    const status = event.type.endsWith('.deleted') ? 'offline' : 'online';
    const client = isClientEvent ? (event as Extract<RegistryEvent, { client: unknown }>).client : undefined;
    const tunnel = isClientEvent ? undefined : (event as Extract<RegistryEvent, { tunnel: unknown }>).tunnel;
    const object: Record<string, unknown> = client
      ? ((status === 'online' ? cachedClient(client).object : apiClient(client, status)) as unknown as Record<string, unknown>)
      : status === 'online'
        ? cachedTunnel(tunnel!).object
        : apiTunnel(tunnel!, status);
    let json: string | undefined;
    for (const subscriber of this.subscribers) {
      const filter = isClientEvent ? subscriber.filters.clients : subscriber.filters.tunnels;
      if (!filter(object)) continue;
      json ??= JSON.stringify({ id: this.nextId(), type: event.type, created_at: new Date().toISOString(), object });
      if (!subscriber.deliver(json)) this.subscribers.delete(subscriber);
    }
  }

  private nextId(): string {
    return `evt_${this.idPrefix}${(this.sequence++).toString(16).padStart(16, '0')}`;
  }
}
