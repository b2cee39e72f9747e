import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { DataplaneSettings, PeerMessage, ProxyVerdict, TunnelRoute } from '../threads/messages.js';
import { ipv4FromMapped, parseCidr } from '../net/ip.js';
import { TokenVerifier } from '../auth/tokens.js';
import type { Logger } from '../log.js';
import type { CounterRow, StreamKind } from '../threads/counters.js';
import { StreamFailure, type StreamFailureReason } from '../errors.js';
import { StreamSlots } from '../threads/stream-slots.js';
import { TunnelStatsWriter, type TunnelTables } from '../threads/tunnel-stats.js';
import { ErrorCode, type RstrmError } from '../protocol/messages.js';
import type { ControlChannel } from './control-channel.js';
import type { ControlLink } from './control-link.js';
import { PeerLinks } from './peers.js';
import { RelayHub } from './relay.js';
import { StreamMeter } from './stream-meter.js';
import { StreamBroker, workerOfStream, type ProxyConnRequest } from './streams.js';
import { StreamSetup, type TunnelStream } from './stream-setup.js';
import { RouteGroup } from './route-group.js';
import { RequestLog } from './http/request-log.js';

/** How long the worker that received a ProxyReq waits for the stream's worker to judge it. */
const VERDICT_TIMEOUT_MS = 10_000;

/**
 * One worker's share of the data plane: its copy of the route table, the control channels it holds,
 * the streams it waits for, and the links to the other workers through which stream set-up and
 * relayed bytes travel. The main thread is on none of these paths.
 */
export class Dataplane {
  readonly routes = new Map<string, TunnelRoute>();
  /** The tunnels at each hostname: one, or an endpoint pool's members. */
  private readonly routesByHostname = new Map<string, RouteGroup>();
  /** The same by lowercased name, for private dials (a name is one tunnel's, or a pool's, compared without case). */
  private readonly routesByName = new Map<string, RouteGroup>();
  /** Checks the tokens of private dials here, without asking the main thread. */
  readonly verifier: TokenVerifier;
  /** Set at shutdown: no new stream is authorised. */
  shuttingDown = false;
  /** trusted_ips of published tunnels that have them, as lookup structures. */
  private readonly allowLists = new Map<string, net.BlockList>();
  readonly channels = new Map<string, ControlChannel>();
  readonly peers: PeerLinks;
  readonly relays: RelayHub;
  readonly streams: StreamBroker;
  readonly meter: StreamMeter;
  /** Per-tunnel traffic, engine-wide by tunnel slot (the Engine API's stats). */
  readonly traffic: TunnelStatsWriter;
  readonly setup: StreamSetup;
  /** Each tunnel's recent requests, while `dashboard.request_log` is on. */
  readonly requestLog: RequestLog | undefined;
  private readonly verdictWaiters = new Map<string, (verdict: Verdict) => void>();
  private readonly routeRemovedListeners: Array<(tunnelId: string) => void> = [];
  private adoptListener: ((route: TunnelRoute, proxyEnd: Duplex, release: () => void) => boolean) | undefined;

  constructor(
    readonly workerIndex: number,
    readonly settings: DataplaneSettings,
    readonly link: ControlLink,
    readonly counters: CounterRow,
    tables: TunnelTables,
    readonly log: Logger,
  ) {
    this.traffic = new TunnelStatsWriter(tables.tunnelStats);
    this.verifier = new TokenVerifier(settings.tokenSecret);
    this.peers = new PeerLinks((from, message) => this.onPeerMessage(from, message));
    this.meter = new StreamMeter(counters, this.traffic);
    this.relays = new RelayHub((peer, message, transfer) => this.peers.send(peer, message, transfer), counters);
    const affinity = settings.affinity;
    this.streams = new StreamBroker({
      workerIndex,
      streamRequestMs: settings.streamRequestMs,
      proxyEndpoint: affinity ? endpoint(affinity.advertiseHost, affinity.portBase + workerIndex) : undefined,
      requestProxyConnection: (owner, request) => this.requestProxyConnection(owner, request),
    });
    this.requestLog = settings.requestLog ? new RequestLog() : undefined;
    this.setup = new StreamSetup(new StreamSlots(tables.streamSlots), this.streams, this.meter, settings);
  }

  addRoute(route: TunnelRoute): void {
    this.routes.set(route.tunnel_id, route);
    const hostname = route.properties.hostname;
    if (hostname) groupOf(this.routesByHostname, hostname).add(route);
    if (route.properties.name) groupOf(this.routesByName, route.properties.name.toLowerCase()).add(route);
    if (route.properties.trusted_ips.length > 0) this.allowLists.set(route.tunnel_id, allowList(route.properties.trusted_ips));
    this.requestLog?.tunnelAdded(route.slot);
  }

  removeRoute(tunnelId: string): void {
    const route = this.routes.get(tunnelId);
    this.routes.delete(tunnelId);
    if (route?.properties.hostname) leave(this.routesByHostname, route.properties.hostname, tunnelId);
    if (route?.properties.name) leave(this.routesByName, route.properties.name.toLowerCase(), tunnelId);
    this.allowLists.delete(tunnelId);
    if (route) this.requestLog?.tunnelRemoved(route.slot);
    this.streams.failTunnel(tunnelId);
    for (const listener of this.routeRemovedListeners) listener(tunnelId);
  }

  /**
   * The HTTP edge takes pooled streams that other workers asked for and that landed here (see
   * ProxyVerdict `adopt`); it returns false when it cannot (the stream is then closed).
   */
  onAdopt(listener: (route: TunnelRoute, proxyEnd: Duplex, release: () => void) => boolean): void {
    this.adoptListener = listener;
  }

  /**
   * A proxy connection adopted from another worker's request: its stream slot, counted when that
   * worker asked, is released by this worker's pool when the stream closes.
   */
  adoptStream(tunnelId: string, slot: number, proxyEnd: Duplex): void {
    const route = this.routes.get(tunnelId);
    const release = this.setup.limit.adoptedRelease(slot);
    if (!route || !this.adoptListener?.(route, proxyEnd, release)) {
      release();
      proxyEnd.destroy();
    }
  }

  /** Whoever keeps per-tunnel state on this worker (the HTTP edge's upstream pools) forgets it here. */
  onRouteRemoved(listener: (tunnelId: string) => void): void {
    this.routeRemovedListeners.push(listener);
  }

  /**
   * The live published tunnels at `hostname` (already lowercased, as SNI is). A miss first reads the
   * main thread's messages still queued for this worker: the agent may have been told its tunnel is
   * open (through another worker) before this worker's event loop got to the route.
   */
  groupForHostname(hostname: string): RouteGroup | undefined {
    const group = this.routesByHostname.get(hostname);
    if (group) return group;
    this.readQueuedMessages();
    return this.routesByHostname.get(hostname);
  }

  /**
   * What a private dial reaches, read as groupForHostname does: by id, that one tunnel; by name (without
   * case), the tunnel or pool of that name.
   */
  dialTarget(idOrName: string): RouteGroup | undefined {
    const find = (): RouteGroup | undefined => {
      const byId = this.routes.get(idOrName);
      return byId ? RouteGroup.of(byId) : this.routesByName.get(idOrName.toLowerCase());
    };
    const group = find();
    if (group) return group;
    this.readQueuedMessages();
    return find();
  }

  /**
   * One stream from `downstream` to a member of `group` (TLS tunnels, private dials): the member the group
   * chooses; when it refuses, times out or is gone, the next one (nothing has been answered downstream yet).
   */
  async openToGroup(group: RouteGroup, peerAddress: string | undefined, downstream: Duplex, kind: Exclude<StreamKind, 'http'>): Promise<TunnelStream> {
    const tried = new Set<string>();
    // The group may have emptied while the downstream's TLS handshake ran.
    let outcome: TunnelStream = { ok: false, failure: new StreamFailure('owner_gone', ErrorCode.TunnelNotFound, 'the tunnel is gone') };
    for (let member = group.choose(); member; member = group.choose(tried)) {
      if (tried.size > 0) this.counters.add('pool_failovers');
      const ended = group.began(member);
      downstream.once('close', ended);
      outcome = await this.setup.open(member, peerAddress, downstream, kind);
      if (outcome.ok) return outcome;
      ended();
      if (!FAILS_OVER.has(outcome.failure.reason) || downstream.destroyed) return outcome;
      tried.add(member.tunnel_id);
    }
    return outcome;
  }

  /** Set by the worker: handles, now and in order, the main thread's messages not yet delivered. */
  readQueuedMessages: () => void = () => {};

  /** trusted_ips against the TCP peer: IPv4-mapped IPv6 counts as IPv4; no list allows all. */
  admits(route: TunnelRoute, peerAddress: string | undefined): boolean {
    const list = this.allowLists.get(route.tunnel_id);
    if (!list) return true;
    if (!peerAddress) return false;
    const address = ipv4FromMapped(peerAddress) ?? peerAddress;
    return list.check(address, net.isIPv4(address) ? 'ipv4' : 'ipv6');
  }

  /** A stream's worker index comes from its id; undefined when the id is not one of ours. */
  workerOfStream(streamId: string): number | undefined {
    return workerOfStream(streamId, this.settings.workers);
  }

  /** Asks the worker waiting for `streamId` whether this ProxyReq may take it. */
  askVerdict(worker: number, streamId: string, secret: string): Promise<Verdict> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle({ verdict: 'unknown' }), VERDICT_TIMEOUT_MS);
      const settle = (verdict: Verdict): void => {
        clearTimeout(timer);
        this.verdictWaiters.delete(streamId);
        resolve(verdict);
      };
      this.verdictWaiters.set(streamId, settle);
      if (!this.peers.send(worker, { type: 'proxy-arrived', stream_id: streamId, secret })) settle({ verdict: 'unknown' });
    });
  }

  /** The agent refused `streamId`, or could not be asked: tell the worker waiting for it. */
  refuseStream(streamId: string, reason: 'refused' | 'owner_gone', error: RstrmError): void {
    const worker = this.workerOfStream(streamId);
    if (worker === undefined) return;
    if (worker === this.workerIndex) this.streams.refuse(streamId, reason, error);
    else this.peers.send(worker, { type: 'stream-refused', stream_id: streamId, reason, error });
  }

  /** Graceful shutdown: no new stream is authorised, and every control channel here says goodbye to its agent. */
  shutdownChannels(): void {
    this.shuttingDown = true;
    for (const channel of [...this.channels.values()]) channel.shutdown();
  }

  private onPeerMessage(from: number, message: PeerMessage): void {
    switch (message.type) {
      case 'proxy-conn-req':
        this.deliverProxyConnReq(message);
        return;
      case 'stream-refused':
        this.streams.refuse(message.stream_id, message.reason, message.error);
        return;
      case 'proxy-arrived': {
        const claim = this.streams.claim(message.stream_id, message.secret, true);
        // A stream still pending here has no relayed end yet: the id was never spliced.
        if (claim.verdict === 'accepted') claim.complete(this.relays.open(message.stream_id, from)!);
        const adopt = claim.verdict === 'adopt' ? { adopt: { tunnel_id: claim.tunnelId, slot: claim.slot } } : {};
        this.peers.send(from, { type: 'proxy-verdict', stream_id: message.stream_id, verdict: claim.verdict, ...adopt });
        return;
      }
      case 'proxy-verdict':
        this.verdictWaiters.get(message.stream_id)?.(
          message.verdict === 'adopt' ? { verdict: 'adopt', tunnelId: message.adopt!.tunnel_id, slot: message.adopt!.slot } : { verdict: message.verdict },
        );
        return;
      default:
        this.relays.deliver(message);
    }
  }

  private requestProxyConnection(owner: number, request: ProxyConnRequest): void {
    if (owner === this.workerIndex) this.deliverProxyConnReq(request);
    else if (!this.peers.send(owner, request)) this.refuseStream(request.stream_id, 'owner_gone', OWNER_GONE);
  }

  private deliverProxyConnReq(request: ProxyConnRequest): void {
    const channel = this.channels.get(request.client_id);
    if (!channel || !channel.hasTunnel(request.tunnel_id)) this.refuseStream(request.stream_id, 'owner_gone', OWNER_GONE);
    else channel.sendProxyConnReq(request);
  }
}

/** Stream failures another pool member may not share: the member refused, did not answer, or is gone. */
export const FAILS_OVER: ReadonlySet<StreamFailureReason> = new Set(['refused', 'timeout', 'owner_gone']);

function groupOf(index: Map<string, RouteGroup>, key: string): RouteGroup {
  let group = index.get(key);
  if (!group) index.set(key, (group = new RouteGroup()));
  return group;
}

function leave(index: Map<string, RouteGroup>, key: string, tunnelId: string): void {
  if (index.get(key)?.remove(tunnelId)) index.delete(key);
}

/** The other worker's answer to a ProxyReq that arrived here. */
export type Verdict = { verdict: 'adopt'; tunnelId: string; slot: number } | { verdict: Exclude<ProxyVerdict, 'adopt'> };

const OWNER_GONE: RstrmError = { code: ErrorCode.ServiceUnavailable, message: 'tunnel owner disconnected' };

function allowList(entries: readonly string[]): net.BlockList {
  const list = new net.BlockList();
  for (const entry of entries) {
    const cidr = parseCidr(entry);
    if (cidr) list.addSubnet(cidr.address, cidr.prefix, cidr.family);
  }
  return list;
}

function endpoint(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
