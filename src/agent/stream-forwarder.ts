import net from 'node:net';
import { encodeFrame } from '../protocol/frame.js';
import { ErrorCode, type MessageOf, type RstrmError } from '../protocol/messages.js';
import { endSoon, splice } from '../net/splice.js';
import { clientDetails, type ControlClient } from './control-client.js';
import { connectEngine, type EngineEndpoint } from './engine-connection.js';
import { formatSourceIp } from './source-ip-text.js';

/** The official JS client's caps: beyond them a stream is refused with 7000. */
const MAX_DIALS_IN_FLIGHT = 256;
const MAX_DIALS_QUEUED = 1024;
const TARGET_DIAL_TIMEOUT_MS = 10_000;

export interface ForwardTarget {
  host: string;
  port: number;
}

/**
 * Serves ProxyConnReqs for the agent's tunnels (docs/protocol.md#a-stream): dial the local target first, then the
 * proxy connection (to `proxy_endpoint` when the engine names one), ProxyReq with zero_rtt, the
 * ProxyConnRsp once the proxy connection is up, and a splice with half-close. Failures are reported
 * with ProxyConnRsp errors, never a silent drop.
 */
export class StreamForwarder {
  private inFlight = 0;
  private readonly queue: Array<MessageOf<'proxy_conn_req'>> = [];

  constructor(
    private readonly options: {
      client: ControlClient;
      engine: EngineEndpoint;
      token: string;
      target: ForwardTarget;
      knowsTunnel: (tunnelId: string) => boolean;
      onConnection: (sourceIp: string) => void;
      /** The local target refused or timed out a stream. */
      onTargetFailure: (reason: string) => void;
    },
  ) {}

  handle(request: MessageOf<'proxy_conn_req'>): void {
    const { client } = this.options;
    if (!this.options.knowsTunnel(request.tunnel_id)) {
      client.sendProxyConnRsp(request.stream_id, { code: ErrorCode.InvalidStream, message: 'unknown tunnel' });
    } else if (request.proxy_endpoint && !request.secret) {
      client.sendProxyConnRsp(request.stream_id, { code: ErrorCode.InvalidStream, message: 'proxy_endpoint without a secret' });
    } else if (this.inFlight < MAX_DIALS_IN_FLIGHT) {
      void this.serve(request);
    } else if (this.queue.length < MAX_DIALS_QUEUED) {
      this.queue.push(request);
    } else {
      client.sendProxyConnRsp(request.stream_id, { code: ErrorCode.CapacityExhausted, message: 'too many streams being set up' });
    }
  }

  private async serve(request: MessageOf<'proxy_conn_req'>): Promise<void> {
    this.inFlight++;
    try {
      await this.connect(request);
    } finally {
      this.inFlight--;
      const next = this.queue.shift();
      if (next) void this.serve(next);
    }
  }

  private async connect(request: MessageOf<'proxy_conn_req'>): Promise<void> {
    const { client, target } = this.options;
    const refuse = (error: RstrmError): void => client.sendProxyConnRsp(request.stream_id, error);
    let upstream: net.Socket;
    try {
      upstream = await dialTarget(target);
    } catch (error) {
      this.options.onTargetFailure((error as Error).message);
      refuse({ code: ErrorCode.ServiceUnavailable, message: `upstream dial failed: ${(error as Error).message}` });
      return;
    }
    const endpoint = request.proxy_endpoint ? proxyEndpoint(request.proxy_endpoint, this.options.engine) : this.options.engine;
    let proxy;
    try {
      proxy = await connectEngine(endpoint);
    } catch (error) {
      upstream.destroy();
      refuse({ code: ErrorCode.ServiceUnavailable, message: `proxy connection failed: ${(error as Error).message}` });
      return;
    }
    proxy.on('error', () => proxy.destroy());
    proxy.write(
      encodeFrame({
        type: 'proxy_req',
        client_details: clientDetails(request.secret ?? ''),
        stream_id: request.stream_id,
        zero_rtt: true,
      }),
    );
    // JS ordering: ProxyConnRsp once the proxy connection is up (docs/protocol.md#a-stream).
    client.sendProxyConnRsp(request.stream_id);
    this.options.onConnection(formatSourceIp(request.source_ip));
    splice(proxy, upstream);
  }
}

function dialTarget(target: ForwardTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('timed out'));
    }, TARGET_DIAL_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.on('error', () => endSoon(socket));
      resolve(socket);
    });
    const onError = (error: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      reject(new Error(error.code ?? error.message));
    };
    socket.once('error', onError);
  });
}

/** `host:port` from ProxyConnReq.proxy_endpoint, dialed with the engine's TLS settings. */
function proxyEndpoint(text: string, engine: EngineEndpoint): EngineEndpoint {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (!match) return engine;
  return { host: match[1] ?? match[2]!, port: Number(match[3]), caPem: engine.caPem };
}
