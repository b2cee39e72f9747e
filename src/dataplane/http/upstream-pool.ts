import { setMaxListeners } from 'node:events';
import type { Duplex } from 'node:stream';
import type { TunnelRoute } from '../../threads/messages.js';
import type { Dataplane } from '../dataplane.js';
import { RelayedStream } from '../relay.js';
import type { RoomWait, SlotRelease, StreamLimit } from '../stream-setup.js';
import { upstreamTls } from '../upstream-tls.js';
import type { EdgeError, EdgeErrorReason } from './generated-response.js';
import { H1Upstream } from './upstream-h1.js';
import { H2Upstream } from './upstream-h2.js';
import { type StreamFailureReason } from '../../errors.js';

/** How often idle pooled upstreams are checked against http_idle_seconds. */
const IDLE_SWEEP_MS = 1000;
const UPSTREAM_ALPN = ['h2', 'http/1.1'] as const;
const WEBSOCKET_ALPN = ['http/1.1'] as const;
/**
 * How long a request at the limit waits for one of its worker's busy streams before it also claims
 * streams going idle on other workers: well above the time a pooled stream takes to come free under
 * load (the stream-limit bench's p99 is ~30 ms), well below stream_request_seconds.
 */
const CLAIM_ELSEWHERE_AFTER_MS = 100;

export type Upstream = H1Upstream | H2Upstream;
export type Lease = { ok: true; upstream: Upstream; reused: boolean } | { ok: false; error: EdgeError };
export type DedicatedStream = { ok: true; stream: Duplex } | { ok: false; error: EdgeError };

/** A new stream, and what it speaks. */
type Opened = { ok: true; stream: Duplex; protocol: 'h1' | 'h2'; scheme: 'http' | 'https'; relayed: boolean };
/** How opening a stream ended: `adopted` when it joined the pool of the worker it reached. */
type OpenOutcome = Opened | { ok: false; error: EdgeError } | { ok: false; adopted: true };

/**
 * How many times a request asks for a stream that may be adopted by the worker it lands on; then it
 * takes a relayed one (with 2 workers, all six land elsewhere once in 64 requests for a new stream).
 */
const ADOPTABLE_ATTEMPTS = 6;

const ERROR_OF_FAILURE: Record<Exclude<StreamFailureReason, 'adopted'>, EdgeErrorReason> = {
  refused: 'agent_refused',
  timeout: 'agent_timeout',
  owner_gone: 'agent_gone',
  capacity: 'capacity',
  cancelled: 'agent_refused', // never sent: the downstream is gone
};

/**
 * One tunnel's upstream streams on this worker (docs/http-edge.md#decisions): idle HTTP/1.1 streams reused last
 * in, first out; HTTP/2 sessions shared up to their stream limit; every stream counted against
 * max_streams_per_tunnel from its ProxyConnReq until it closes. At the limit a request waits, for up
 * to stream_request_seconds, for a pooled stream to come free here or room under the limit (a stream
 * closing on any worker); meanwhile idle pooled streams on every worker give their slots back.
 */
export class TunnelUpstreams {
  private readonly idleH1: H1Upstream[] = [];
  private readonly sessions = new Set<H2Upstream>();
  /** Idle upstreams and since when (epoch ms); one sweep a second closes those idle too long. */
  private readonly idleSince = new Map<Upstream, number>();
  private idleSweep: NodeJS.Timeout | undefined;
  private readonly waiters = new Set<(upstream: Upstream | undefined) => void>();
  /** Upstreams of this pool, busy or idle. */
  private upstreams = 0;
  /** Requests waiting for room under the tunnel's limit: cancelled when the pool closes. */
  private readonly roomWaits = new Set<RoomWait>();
  private closed = false;
  /**
   * Aborted when the pool closes: the opens of streams, which outlive the requests that asked for them.
   * Every open in flight listens to it (and stops listening when done), so it has no listener limit.
   */
  private readonly lifetime = unlimitedListeners(new AbortController());
  /**
   * Streams being opened for requests that have since left (an h2 client that resets its streams at
   * once would otherwise make the agent open one upstream connection per reset), and how many waiting
   * requests have counted on one of them: a request finding one unclaimed waits for it instead of
   * opening another.
   */
  private spareOpens = 0;
  private spareClaims = 0;
  /** An HTTP/2 session being opened: requests arriving meanwhile wait for it rather than open their own. */
  private openingH2: Promise<unknown> | undefined;
  /**
   * Upstreams over a stream relayed from another worker (every adoption attempt missed): they serve
   * the request that opened them (and an h2 session its concurrent ones), then close, so the next
   * request asks again rather than keep paying the relay.
   */
  private readonly relayed = new WeakSet<Upstream>();
  /** Upstream TLS negotiated h2 before: expect it again. */
  private negotiatedH2 = false;
  /** While streams idle here, requests that start waiting at the limit anywhere are watched for. */
  private watchingArrivals = false;
  private readonly limit: StreamLimit;

  constructor(
    private readonly dataplane: Dataplane,
    private readonly route: TunnelRoute,
  ) {
    this.limit = dataplane.setup.limit;
  }

  /** The tunnel's slot (its traffic row). */
  get slot(): number {
    return this.route.slot;
  }

  /** An upstream for one request: pooled unless `fresh`, else a new stream. */
  async lease(peerAddress: string | undefined, cancelled: AbortSignal, fresh: boolean): Promise<Lease> {
    if (!fresh) {
      const pooled = this.takePooled();
      if (pooled) return { ok: true, upstream: pooled, reused: true };
      if (this.openingH2) {
        await this.openingH2;
        const shared = this.takePooled();
        if (shared) return { ok: true, upstream: shared, reused: true };
      }
      if (this.spareOpens > this.spareClaims) {
        this.spareClaims++;
        const handed = await untilAborted(this.waitForHandoff(this.dataplane.settings.streamRequestMs), cancelled);
        this.spareClaims--;
        if (handed) return { ok: true, upstream: handed, reused: false };
        if (cancelled.aborted) return { ok: false, error: DOWNSTREAM_LEFT };
      }
    }
    const opening = this.openUpstream(peerAddress, cancelled, fresh);
    const multiplexed = this.route.properties.http_version === 'h2c' || this.negotiatedH2;
    if (multiplexed && !this.openingH2) {
      this.openingH2 = opening;
      void opening.finally(() => (this.openingH2 = undefined));
    }
    return opening;
  }

  /**
   * A new stream for one request. One whose proxy connection lands on another worker joins that
   * worker's pool, so no request waits on bytes relayed between workers; this worker asks again, a
   * bounded number of times, then takes a relayed stream.
   */
  private async openUpstream(peerAddress: string | undefined, cancelled: AbortSignal, fresh: boolean): Promise<Lease> {
    for (let attempt = 0; ; attempt++) {
      const slot = await this.acquireSlot(cancelled, !fresh);
      if (!slot.ok) return slot.upstream ? { ok: true, upstream: slot.upstream, reused: true } : { ok: false, error: slot.error ?? capacityError(this.dataplane) };
      // The open outlives the request: one that leaves meanwhile leaves its stream to the next request.
      // Room that had to be waited for is not given away: a stream adopted elsewhere would sit idle
      // there, be given back, and the request would wait again (a relayed stream serves it instead).
      const adoptable = attempt < ADOPTABLE_ATTEMPTS && !slot.waited;
      const opening = this.openStream(peerAddress, slot.release, this.lifetime.signal, { websocket: false, adoptable });
      const opened = await unlessAborted(opening, cancelled);
      if (opened === undefined) {
        this.spare(opening);
        return { ok: false, error: DOWNSTREAM_LEFT };
      }
      if (!opened.ok && 'adopted' in opened) {
        const pooled = fresh ? undefined : this.takePooled();
        if (pooled) return { ok: true, upstream: pooled, reused: true };
        continue;
      }
      if (!opened.ok) return opened;
      const upstream = this.upstreamOf(opened);
      this.adopt(upstream);
      return { ok: true, upstream, reused: false };
    }
  }

  /** A stream whose request left while it was being opened: it joins the pool (or a waiting request) when ready. */
  private spare(opening: Promise<OpenOutcome>): void {
    this.spareOpens++;
    void opening.then((opened) => {
      this.spareOpens--;
      if (opened.ok) {
        const upstream = this.upstreamOf(opened);
        this.adopt(upstream);
        if (this.reusable(upstream)) return;
      }
      // Failed, not reusable, or joined another worker's pool: a request that counted on it opens its own.
      const waiter = this.waiters.size > 0 ? this.waiters.values().next().value : undefined;
      waiter?.(undefined);
    });
  }

  /**
   * A proxy connection this worker did not ask for: another worker's request for a pooled stream that
   * landed here. It joins this pool as an idle upstream; `release` frees its stream slot when it closes.
   */
  async adoptStream(proxyEnd: Duplex, release: SlotRelease): Promise<void> {
    proxyEnd.once('close', release);
    if (this.closed) {
      proxyEnd.destroy();
      return;
    }
    this.dataplane.meter.connected('http', proxyEnd, this.route.slot);
    const opened = await this.speak(proxyEnd, false, undefined, false);
    if (!opened.ok) return;
    // One multiplexed session per worker is enough: a second one would only sit idle.
    if (opened.protocol === 'h2' && [...this.sessions].some((session) => session.hasRoom())) {
      opened.stream.destroy();
      return;
    }
    const upstream = this.upstreamOf(opened);
    this.adopt(upstream);
    this.reusable(upstream);
  }

  /** A stream of its own, never pooled: a WebSocket relay. */
  async dedicated(peerAddress: string | undefined, cancelled: AbortSignal): Promise<DedicatedStream> {
    const slot = await this.acquireSlot(cancelled, false);
    if (!slot.ok) return { ok: false, error: slot.error ?? capacityError(this.dataplane) };
    const opened = await this.openStream(peerAddress, slot.release, cancelled, { websocket: true, adoptable: false });
    if (!opened.ok) return 'adopted' in opened ? { ok: false, error: { reason: 'agent_refused', message: 'stream adopted elsewhere' } } : opened;
    return { ok: true, stream: opened.stream };
  }

  /** A leased upstream that was not used (the client left meanwhile) goes back to the pool. */
  giveBack(upstream: Upstream): void {
    if (upstream.kind === 'h1') this.reusable(upstream);
  }

  /** The tunnel is gone: idle streams close now, busy ones when their exchange ends. */
  close(): void {
    this.closed = true;
    this.lifetime.abort();
    for (const waiter of this.waiters) waiter(undefined);
    for (const wait of this.roomWaits) wait.cancel();
    for (const upstream of [...this.idleH1, ...this.sessions]) upstream.close();
    this.idleSince.clear();
    clearInterval(this.idleSweep);
    this.idleSweep = undefined;
  }

  /** A request waits at this tunnel's stream limit: give back the slot of one idle stream, if any. */
  private releaseIdle(): boolean {
    const idleSession = [...this.sessions].find((session) => session.idle);
    const upstream = this.idleH1.shift() ?? idleSession;
    if (!upstream) return false;
    this.markBusy(upstream);
    upstream.close();
    return true;
  }

  /**
   * While streams idle here, each request that starts waiting at the tunnel's limit, on any worker,
   * takes the slot of one of them. Several workers may each give one back for the same request; the
   * extra streams are opened again when needed.
   */
  private async giveBackSlotsWhileIdle(): Promise<void> {
    if (this.watchingArrivals || this.dataplane.settings.maxStreamsPerTunnel <= 0) return;
    this.watchingArrivals = true;
    let seen = this.limit.arrivals(this.route);
    // One that arrived before the first reading still waits, and is seen in the second.
    if (this.limit.roomWanted(this.route)) this.releaseIdle();
    while (!this.closed && this.idleSince.size > 0) {
      const arrived = await this.limit.arrivedSince(this.route, seen, this.dataplane.settings.httpIdleMs);
      seen = (seen + arrived) | 0;
      for (let given = 0; given < arrived && this.releaseIdle(); given++);
    }
    this.watchingArrivals = false;
  }

  /** A pooled upstream ready for a request now (an idle HTTP/1.1 stream, or an h2 session with room). */
  takePooled(): Upstream | undefined {
    for (const session of this.sessions) {
      if (session.hasRoom()) {
        this.markBusy(session);
        return session;
      }
    }
    for (let upstream = this.idleH1.pop(); upstream; upstream = this.idleH1.pop()) {
      this.markBusy(upstream);
      if (upstream.alive && !upstream.pastKeepAlive) return upstream;
      upstream.close(); // its slot goes with it
    }
    return undefined;
  }

  /**
   * Room for a new stream, or (`acceptHandoff`) a pooled upstream: whichever comes first within
   * stream_request_seconds.
   */
  private async acquireSlot(
    cancelled: AbortSignal,
    acceptHandoff: boolean,
  ): Promise<{ ok: true; release: SlotRelease; waited: boolean } | { ok: false; upstream?: Upstream; error?: EdgeError }> {
    const now = this.limit.count(this.route);
    if (now) return { ok: true, release: now, waited: false };
    const pooled = acceptHandoff ? this.takePooled() : undefined;
    if (pooled) return { ok: false, upstream: pooled };
    if (this.closed) return { ok: false, error: capacityError(this.dataplane) };
    const ms = this.dataplane.settings.streamRequestMs;
    // With busy streams of its own here the request may get one of them; without, it needs one given back.
    const ownStreams = acceptHandoff && this.upstreams > 0;
    const roomWait = this.limit.waitForRoom(this.route, ms, ownStreams ? CLAIM_ELSEWHERE_AFTER_MS : 0);
    const handoffWait = acceptHandoff ? this.waitForHandoff(ms) : undefined;
    const stop = (): void => {
      roomWait.cancel();
      handoffWait?.cancel();
    };
    this.roomWaits.add(roomWait);
    cancelled.addEventListener('abort', stop, { once: true });
    if (cancelled.aborted) stop();
    const room = roomWait.room.then((release) => ({ release }));
    const handoff = handoffWait?.upstream.then((upstream) => ({ upstream }));
    let first: { release: SlotRelease | undefined } | { upstream: Upstream | undefined } = await (handoff ? Promise.race([room, handoff]) : room);
    // No handoff after all (a spare open failed): room is still worth waiting for.
    if ('upstream' in first && !first.upstream) first = await room;
    stop();
    this.roomWaits.delete(roomWait);
    cancelled.removeEventListener('abort', stop);
    if ('upstream' in first) {
      void room.then(({ release }) => release?.());
      return { ok: false, upstream: first.upstream };
    }
    void handoff?.then(({ upstream }) => upstream && this.reusable(upstream));
    return first.release ? { ok: true, release: first.release, waited: true } : { ok: false, error: capacityError(this.dataplane) };
  }

  /** Waits up to `ms` for a pooled upstream to come free; `cancel` ends the wait with undefined. */
  private waitForHandoff(ms: number): { upstream: Promise<Upstream | undefined>; cancel(): void } {
    let settle!: (upstream: Upstream | undefined) => void;
    const upstream = new Promise<Upstream | undefined>((resolve) => {
      settle = (handed) => {
        clearTimeout(timer);
        this.waiters.delete(settle);
        resolve(handed);
      };
      const timer = setTimeout(() => settle(undefined), ms);
      this.waiters.add(settle);
    });
    return { upstream, cancel: () => settle(undefined) };
  }

  private async openStream(
    peerAddress: string | undefined,
    release: SlotRelease,
    cancelled: AbortSignal,
    options: { websocket: boolean; adoptable: boolean },
  ): Promise<OpenOutcome> {
    const requested = await this.dataplane.setup.request(this.route, peerAddress, cancelled, 'http', options.adoptable);
    if (!requested.ok) {
      const { reason, message } = requested.failure;
      if (reason === 'adopted') return { ok: false, adopted: true }; // its slot went with it
      release();
      return { ok: false, error: { reason: ERROR_OF_FAILURE[reason], message } };
    }
    requested.proxyEnd.once('close', release);
    return this.speak(requested.proxyEnd, options.websocket, cancelled, requested.proxyEnd instanceof RelayedStream);
  }

  /** What runs over a new proxy connection: TLS to the upstream first if the tunnel asks for it. */
  private async speak(
    proxyEnd: Duplex,
    websocket: boolean,
    cancelled: AbortSignal | undefined,
    relayed: boolean,
  ): Promise<Opened | { ok: false; error: EdgeError }> {
    const { properties } = this.route;
    if (!properties.upstream_tls) {
      return { ok: true, stream: proxyEnd, protocol: properties.http_version === 'h2c' && !websocket ? 'h2' : 'h1', scheme: 'http', relayed };
    }
    const secured = await upstreamTls(proxyEnd, properties.hostname, websocket ? WEBSOCKET_ALPN : UPSTREAM_ALPN);
    if (!secured) return { ok: false, error: { reason: 'upstream_tls', message: 'the TLS handshake with the upstream failed' } };
    if (cancelled?.aborted) {
      secured.destroy();
      return { ok: false, error: { reason: 'upstream_closed', message: 'the downstream left' } };
    }
    return { ok: true, stream: secured, protocol: secured.alpnProtocol === 'h2' ? 'h2' : 'h1', scheme: 'https', relayed };
  }

  private upstreamOf(opened: Opened): Upstream {
    if (opened.protocol === 'h2' && opened.scheme === 'https') this.negotiatedH2 = true;
    const upstream = opened.protocol === 'h2' ? new H2Upstream(opened.stream, opened.scheme) : new H1Upstream(opened.stream);
    if (opened.relayed) this.relayed.add(upstream);
    return upstream;
  }

  private adopt(upstream: Upstream): void {
    this.upstreams++;
    if (upstream.kind === 'h1') {
      upstream.onReusable = () => this.reusable(upstream);
      upstream.stream.once('close', () => this.forget(upstream));
    } else {
      this.sessions.add(upstream);
      upstream.onStreamDone = () => this.reusable(upstream);
      upstream.session.once('close', () => this.forget(upstream));
    }
  }

  /** An exchange finished: the upstream goes to a waiting request, else back to the pool. */
  private reusable(upstream: Upstream): boolean {
    if (!upstream.alive) {
      if (upstream.kind === 'h1') upstream.close();
      return false;
    }
    if (this.closed) {
      if (upstream.kind === 'h1' || upstream.idle) upstream.close();
      return false;
    }
    if (this.relayed.has(upstream) && (upstream.kind === 'h1' || upstream.idle)) {
      upstream.close();
      return false;
    }
    if (upstream.kind === 'h2' && !upstream.hasRoom()) return false;
    const waiter = this.waiters.size > 0 ? this.waiters.values().next().value : undefined;
    if (waiter) {
      waiter(upstream);
      return true;
    }
    const goesIdle = upstream.kind === 'h1' || upstream.idle;
    // A request waits at the limit that nothing on its worker serves in time (it needs a stream of
    // its own, its worker holds none, or they stayed busy): this slot is its.
    if (goesIdle && this.limit.roomWanted(this.route)) {
      upstream.close();
      return false;
    }
    if (upstream.kind === 'h1') this.idleH1.push(upstream);
    if (goesIdle) this.markIdle(upstream);
    return true;
  }

  private forget(upstream: Upstream): void {
    this.upstreams--;
    this.markBusy(upstream);
    if (upstream.kind === 'h2') this.sessions.delete(upstream);
    else {
      const index = this.idleH1.indexOf(upstream);
      if (index >= 0) this.idleH1.splice(index, 1);
    }
  }

  private markIdle(upstream: Upstream): void {
    this.idleSince.set(upstream, Date.now());
    // A timestamp per request rather than a timer: the sweep is the only timer, and only while something is idle.
    this.idleSweep ??= setInterval(() => this.closeIdle(), Math.min(IDLE_SWEEP_MS, this.dataplane.settings.httpIdleMs)).unref();
    void this.giveBackSlotsWhileIdle();
  }

  private markBusy(upstream: Upstream): void {
    this.idleSince.delete(upstream);
  }

  /** An idle pooled stream (or h2 session with no active streams) closes after http_idle_seconds. */
  private closeIdle(): void {
    const expired = Date.now() - this.dataplane.settings.httpIdleMs;
    for (const [upstream, since] of this.idleSince) {
      if (since > expired) continue;
      this.idleSince.delete(upstream);
      upstream.close();
    }
    if (this.idleSince.size === 0) {
      clearInterval(this.idleSweep);
      this.idleSweep = undefined;
    }
  }
}

/** The answer to a request that left while it waited: never sent. */
const DOWNSTREAM_LEFT: EdgeError = { reason: 'agent_refused', message: 'the downstream left' };

function unlimitedListeners(controller: AbortController): AbortController {
  setMaxListeners(0, controller.signal);
  return controller;
}

/** A handoff wait that `signal` cancels. */
async function untilAborted(wait: { upstream: Promise<Upstream | undefined>; cancel(): void }, signal: AbortSignal): Promise<Upstream | undefined> {
  if (signal.aborted) wait.cancel();
  const cancel = (): void => wait.cancel();
  signal.addEventListener('abort', cancel, { once: true });
  try {
    return await wait.upstream;
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/** What `work` resolves to, or undefined if `signal` aborts first (the work goes on). */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    void work.then((value) => {
      signal.removeEventListener('abort', onAbort);
      resolve(value);
    });
  });
}

/** A request that found no stream within the limit: counted as the stream attempt it could not make. */
function capacityError(dataplane: Dataplane): EdgeError {
  dataplane.meter.failed('http', 'capacity');
  return { reason: 'capacity', message: `stream limit reached (${dataplane.settings.maxStreamsPerTunnel} per tunnel)` };
}
