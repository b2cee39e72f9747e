import crypto from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { PeerMessage, ProxyVerdict, TunnelRoute } from '../threads/messages.js';
import { ErrorCode, type IpAddress, type RstrmError } from '../protocol/messages.js';
import { StreamFailure } from '../errors.js';

export type ProxyConnRequest = Extract<PeerMessage, { type: 'proxy-conn-req' }>;

interface PendingStream {
  tunnelId: string;
  /** The tunnel's slot, counted for this stream: whoever adopts it releases it, even once the tunnel is gone. */
  slot: number;
  secret: Buffer;
  /** A pooled HTTP stream: the worker its proxy connection lands on may keep it (see ProxyVerdict). */
  adoptable: boolean;
  timer: NodeJS.Timeout;
  resolve: (proxyEnd: Duplex) => void;
  reject: (failure: StreamFailure) => void;
}

export type Claim =
  | { verdict: 'accepted'; complete: (proxyEnd: Duplex) => void }
  | { verdict: 'adopt'; tunnelId: string; slot: number }
  | { verdict: Exclude<ProxyVerdict, 'accepted' | 'adopt'> };

/**
 * The streams this worker waits for (docs/protocol.md#a-stream): a downstream or private dial here needs the
 * agent to open a proxy connection, which may land on any worker. The stream id names this worker
 * in its first byte, so whoever receives the ProxyReq knows whom to ask; the secret is checked here,
 * in constant time, once.
 */
export class StreamBroker {
  private readonly pending = new Map<string, PendingStream>();

  constructor(
    private readonly options: {
      workerIndex: number;
      streamRequestMs: number;
      /** `host:port` the agent should dial for streams of this worker (affinity), if any. */
      proxyEndpoint: string | undefined;
      /** Hands a ProxyConnReq to the worker holding the owner's control channel. */
      requestProxyConnection: (ownerWorker: number, request: ProxyConnRequest) => void;
    },
  ) {}

  open(route: TunnelRoute, sourceIp: IpAddress | undefined, adoptable: boolean): { id: string; connected: Promise<Duplex> } {
    const id = newStreamId(this.options.workerIndex);
    const secret = crypto.randomBytes(32).toString('hex');
    const connected = new Promise<Duplex>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(id, new StreamFailure('timeout', ErrorCode.ServiceUnavailable, 'timed out waiting for the agent to connect')),
        this.options.streamRequestMs,
      );
      this.pending.set(id, { tunnelId: route.tunnel_id, slot: route.slot, secret: Buffer.from(secret), adoptable, timer, resolve, reject });
    });
    this.options.requestProxyConnection(route.owner_worker, {
      type: 'proxy-conn-req',
      client_id: route.client_id,
      tunnel_id: route.tunnel_id,
      stream_id: id,
      secret,
      source_ip: sourceIp,
      proxy_endpoint: this.options.proxyEndpoint,
    });
    return { id, connected };
  }

  /**
   * A ProxyReq for `id` arrived (here, or on another worker: `elsewhere`): check it and, if right,
   * take the stream — or, for an adoptable stream that landed elsewhere, leave it to that worker.
   */
  claim(id: string, secret: string, elsewhere: boolean): Claim {
    const stream = this.pending.get(id);
    if (!stream) return { verdict: 'unknown' };
    const offered = Buffer.from(secret);
    if (offered.length !== stream.secret.length || !crypto.timingSafeEqual(offered, stream.secret)) {
      return { verdict: 'bad-secret' }; // stays pending: the right agent may still come
    }
    this.pending.delete(id);
    clearTimeout(stream.timer);
    if (elsewhere && stream.adoptable) {
      stream.reject(new StreamFailure('adopted', ErrorCode.ServiceUnavailable, 'the stream joined the pool of the worker it reached'));
      return { verdict: 'adopt', tunnelId: stream.tunnelId, slot: stream.slot };
    }
    return { verdict: 'accepted', complete: (proxyEnd) => stream.resolve(proxyEnd) };
  }

  /** The agent refused the stream (ProxyConnRsp error), or its control channel could not be reached. */
  refuse(id: string, reason: 'refused' | 'owner_gone', error: RstrmError): void {
    this.fail(id, new StreamFailure(reason, ErrorCode.ServiceUnavailable, error.message ?? reason));
  }

  /** The tunnel is gone (closed, or its control channel ended): its pending streams fail now. */
  failTunnel(tunnelId: string): void {
    for (const [id, stream] of this.pending) {
      if (stream.tunnelId === tunnelId) this.fail(id, new StreamFailure('owner_gone', ErrorCode.ServiceUnavailable, 'tunnel owner disconnected'));
    }
  }

  /** The downstream gave up: its wait ends now, and a late ProxyReq for this id is unknown. */
  cancel(id: string): void {
    this.fail(id, new StreamFailure('cancelled', ErrorCode.ServiceUnavailable, 'the downstream left'));
  }

  private fail(id: string, failure: StreamFailure): void {
    const stream = this.pending.get(id);
    if (!stream) return;
    this.pending.delete(id);
    clearTimeout(stream.timer);
    stream.reject(failure);
  }
}

/** 24 lowercase hex: this worker's index in the first byte, then 88 random bits (docs/protocol.md#a-stream). */
export function newStreamId(workerIndex: number): string {
  return workerIndex.toString(16).padStart(2, '0') + crypto.randomBytes(11).toString('hex');
}

/** The worker that waits for stream `id`, or undefined when the id cannot be one of ours. */
export function workerOfStream(id: string, workers: number): number | undefined {
  if (!/^[0-9a-f]{24}$/.test(id)) return undefined;
  const index = parseInt(id.slice(0, 2), 16);
  return index < workers ? index : undefined;
}
