import type { EngineConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { ErrorCode, type RstrmError } from '../protocol/messages.js';
import { POOL_LABEL, POOL_MEMBERS_LABEL } from '../protocol/pool-labels.js';
import { TokenVerifier, allows } from '../auth/tokens.js';
import { PERMISSIONS } from '../auth/permissions.js';
import { Registry, type TunnelRecord } from './registry.js';
import { StreamSlotAllocator } from '../threads/stream-slots.js';
import { TunnelStatsReader, type TunnelTables, type TunnelTraffic } from '../threads/tunnel-stats.js';
import type { CloseReason, ControlReply, ControlRequest, LoggedRequest, MainToWorker, TunnelRoute } from '../threads/messages.js';
import { acceptTunnelRequest } from './tunnel-request.js';

/** How the control plane reaches the workers (implemented by the supervisor). */
export interface WorkerBus {
  broadcast(message: MainToWorker): void;
  /** Each worker's request log of the tunnel in `slot`. */
  requestLogs(slot: number): Promise<Array<{ worker: number; requests: LoggedRequest[] }>>;
}

type OpenResult = 'ok' | 'unauthorized' | 'invalid' | 'unavailable';
type TunnelRequestResult = OpenResult | 'capacity';

/** The metric label of a refusal: its error code's class, everything else being the request's fault. */
function resultOf(code: number): Exclude<TunnelRequestResult, 'ok'> {
  if (code === ErrorCode.Unauthorized) return 'unauthorized';
  if (code === ErrorCode.ServiceUnavailable || code === ErrorCode.Internal) return 'unavailable';
  if (code === ErrorCode.CapacityExhausted) return 'capacity';
  return 'invalid';
}

const PROTOCOL_VERSION = /^(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$/;

/**
 * The main thread's decisions for the data plane: token checks, client and tunnel lifecycle, private
 * dial authorisation. Workers ask (ControlRequest), it answers, updates the registry and pushes
 * route changes to every worker. It never sees a payload byte.
 */
export class ControlPlane {
  readonly registry: Registry;
  private readonly slots: StreamSlotAllocator;
  private readonly traffic: TunnelStatsReader;
  private readonly verifier: TokenVerifier;
  private shuttingDown = false;
  /** Control-channel teardowns by reason (for rivulet_control_channel_closes_total). */
  readonly closes: Record<CloseReason, number> = { agent: 0, eof: 0, liveness: 0, protocol_error: 0, shutdown: 0 };
  /** OpenControlChannelReq outcomes (rivulet_control_channel_opens_total). */
  readonly opens: Record<OpenResult, number> = { ok: 0, unauthorized: 0, invalid: 0, unavailable: 0 };
  /** OpenTunnelReq outcomes (rivulet_tunnel_requests_total). */
  readonly tunnelRequests: Record<TunnelRequestResult, number> = { ok: 0, unauthorized: 0, unavailable: 0, invalid: 0, capacity: 0 };

  constructor(
    private readonly config: EngineConfig,
    private readonly log: Logger,
    private readonly workers: WorkerBus,
    private readonly publicPort: () => number,
    tables: TunnelTables,
  ) {
    this.verifier = new TokenVerifier(config.auth.jwt.token_jwt_secret);
    this.slots = new StreamSlotAllocator(tables.streamSlots);
    this.traffic = new TunnelStatsReader(tables.tunnelStats);
    // Every tunnel that goes, announced or only reserved, leaves the workers' routes and its slot.
    this.registry = new Registry((tunnel) => {
      this.workers.broadcast({ type: 'route-remove', tunnel_id: tunnel.id });
      this.slots.free(tunnel.slot);
    });
  }

  /** Pending + active streams of a tunnel, engine-wide: what max_streams_per_tunnel counts (0 when gone). */
  streamsCounted(tunnelId: string): number {
    const slot = this.registry.tunnels.get(tunnelId)?.slot;
    return slot === undefined ? 0 : this.slots.streamCount(slot);
  }

  /** A live tunnel's traffic, and its streams open now (pending, busy or pooled). */
  trafficOf(tunnel: TunnelRecord): { traffic: TunnelTraffic; streams: number } {
    return { traffic: this.traffic.read(tunnel.slot), streams: this.slots.streamCount(tunnel.slot) };
  }

  /** When a live tunnel last had traffic (epoch ms, 0 before any): cheaper than its whole row. */
  lastActivityMs(tunnel: TunnelRecord): number {
    return this.traffic.lastActivityMs(tunnel.slot);
  }

  /** Every worker's part of a live tunnel's request log; undefined for no live tunnel. */
  requestLogOf(tunnelId: string): Promise<Array<{ worker: number; requests: LoggedRequest[] }>> | undefined {
    const tunnel = this.registry.tunnels.get(tunnelId);
    return tunnel && this.workers.requestLogs(tunnel.slot);
  }

  /** A live tunnel's streams open now. */
  openStreams(tunnel: TunnelRecord): number {
    return this.slots.streamCount(tunnel.slot);
  }

  beginShutdown(): void {
    this.shuttingDown = true;
  }

  /** Every tunnel the workers route: the live ones and those whose OpenTunnelRsp is on its way. */
  routes(): TunnelRoute[] {
    return this.registry.held().map((tunnel) => this.routeOf(tunnel));
  }

  async handle(worker: number, request: ControlRequest): Promise<ControlReply<ControlRequest['type']>> {
    switch (request.type) {
      case 'open-client': {
        const reply = await this.openClient(worker, request);
        const result = reply.ok ? 'ok' : resultOf(reply.error.code);
        this.opens[result === 'capacity' ? 'unavailable' : result]++; // no capacity limit on clients
        return reply;
      }
      case 'open-tunnel': {
        const reply = this.openTunnel(request);
        this.tunnelRequests[reply.ok ? 'ok' : resultOf(reply.error.code)]++;
        return reply;
      }
      case 'close-tunnel':
        this.closeTunnel(request.client_id, request.tunnel_id);
        return { ok: true };
      case 'close-client':
        this.closeClient(request.client_id, request.reason);
        return { ok: true };
    }
  }

  /** A worker died: tear down the clients whose control channels it held. */
  workerLost(worker: number): void {
    for (const client of [...this.registry.clients.values()]) {
      if (client.worker === worker) this.closeClient(client.id, 'eof');
    }
  }

  /** The tunnel's OpenTunnelRsp is written: it is announced (the workers route it already). */
  tunnelAnswered(tunnelId: string): void {
    this.registry.publishTunnel(tunnelId);
  }

  private async openClient(
    worker: number,
    request: Extract<ControlRequest, { type: 'open-client' }>,
  ): Promise<ControlReply<'open-client'>> {
    const check = this.verifier.verify(request.token);
    if (!check.ok) {
      this.log.debug({ worker, agent: request.details.agent, reason: check.reason }, 'control channel refused: bad token');
      return refuse(ErrorCode.Unauthorized, `invalid token: ${check.reason}`);
    }
    const version = request.details.protocol_version;
    if (version !== undefined) {
      const match = PROTOCOL_VERSION.exec(version);
      if (!match) return refuse(ErrorCode.ProtocolVersionInvalid, `invalid protocol_version "${version}"`);
      if (match[1] !== '1') return refuse(ErrorCode.ProtocolVersionIncompatible, `incompatible protocol_version "${version}"`);
    }
    if (this.shuttingDown) return refuse(ErrorCode.ServiceUnavailable, 'engine is shutting down');
    const { token: _token, ...details } = request.details;
    const client = this.registry.addClient(check.identity, details, worker);
    this.log.info({ client_id: client.id, user_id: client.identity.user_id, agent: details.agent, worker }, 'client connected');
    return { ok: true, client_id: client.id };
  }

  private openTunnel(request: Extract<ControlRequest, { type: 'open-tunnel' }>): ControlReply<'open-tunnel'> {
    const client = this.registry.clients.get(request.client_id);
    if (!client) return refuse(ErrorCode.ServiceUnavailable, 'control channel is closing');
    if (!allows(client.identity, PERMISSIONS.tunnelsCreateDelete)) {
      return refuse(ErrorCode.Unauthorized, `permission denied: ${PERMISSIONS.tunnelsCreateDelete} required`);
    }
    const limit = this.config.dataplane.max_tunnels_per_client;
    if (limit > 0 && client.tunnels.size >= limit) {
      return refuse(ErrorCode.CapacityExhausted, `tunnel limit reached (${limit} per client)`);
    }
    if (this.shuttingDown) return refuse(ErrorCode.ServiceUnavailable, 'engine is shutting down');
    const result = acceptTunnelRequest(request.properties, {
      engineHost: this.config.engine.host,
      publicPort: this.publicPort(),
      pooling: this.config.tunnels.pooling.enabled,
      nameHolder: (name) => this.registry.nameHolder(name)?.properties,
      hostnameHolder: (hostname) => this.registry.hostnameHolder(hostname)?.properties,
    });
    if ('error' in result) return { ok: false, error: result.error };
    const slot = this.slots.allocate();
    if (slot === undefined) return refuse(ErrorCode.CapacityExhausted, 'engine tunnel capacity reached');
    this.traffic.clear(slot);
    const tunnel = this.registry.reserveTunnel(client, result.ok.properties, slot);
    // Every worker gets the route before the owner's worker gets this reply, so by the time the agent
    // reads its OpenTunnelRsp (and tells anyone), any worker a visitor reaches knows the tunnel. A
    // stream asked for before that reply is written finds no tunnel on the channel (no ProxyConnReq may
    // precede the OpenTunnelRsp) and fails as if its agent were gone.
    this.workers.broadcast({ type: 'route-add', route: this.routeOf(tunnel) });
    const pool = this.poolOf(tunnel);
    this.log.info({ client_id: client.id, tunnel_id: tunnel.id, hostname: tunnel.properties.hostname, pool }, 'tunnel opened');
    // The reply tells the agent how many members its pool has (docs/pools.md); the record keeps its labels as asked.
    if (!pool) return { ok: true, tunnel_id: tunnel.id, properties: tunnel.properties };
    const labels = { ...tunnel.properties.labels, [POOL_MEMBERS_LABEL]: String(pool.members) };
    return { ok: true, tunnel_id: tunnel.id, properties: { ...tunnel.properties, labels } };
  }

  /** Endpoint pools and their members now (none while pooling is off: labels are then only labels). */
  poolCounts(): { pools: number; members: number } {
    return this.config.tunnels.pooling.enabled ? this.registry.poolCounts() : { pools: 0, members: 0 };
  }

  /** A pooled tunnel's pool key and member count (itself included), with pooling on. */
  private poolOf(tunnel: TunnelRecord): { key: string; members: number } | undefined {
    const key = tunnel.properties.labels[POOL_LABEL];
    if (!this.config.tunnels.pooling.enabled || key === undefined) return undefined;
    return { key, members: this.registry.poolSize(tunnel) };
  }

  private closeTunnel(clientId: string, tunnelId: string): void {
    const tunnel = this.registry.tunnels.get(tunnelId);
    if (tunnel && tunnel.clientId !== clientId) return; // not this client's: nothing changes
    this.registry.removeTunnel(tunnelId);
  }

  private closeClient(clientId: string, reason: CloseReason): void {
    if (!this.registry.clients.has(clientId)) return;
    this.registry.removeClient(clientId);
    this.closes[reason]++;
    this.log.info({ client_id: clientId, reason }, 'client disconnected');
  }

  private routeOf(tunnel: TunnelRecord): TunnelRoute {
    return {
      tunnel_id: tunnel.id,
      client_id: tunnel.clientId,
      owner_worker: this.registry.clients.get(tunnel.clientId)!.worker,
      slot: tunnel.slot,
      properties: tunnel.properties,
    };
  }
}

function refuse(code: number, message: string): { ok: false; error: RstrmError } {
  return { ok: false, error: { code, message } };
}
