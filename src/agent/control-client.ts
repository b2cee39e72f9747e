import crypto from 'node:crypto';
import type tls from 'node:tls';
import { type Message, type MessageOf, type RstrmError, type TunnelProperties } from '../protocol/messages.js';
import { VERSION } from '../version.js';
import { FrameChannel, connectEngine, type EngineEndpoint } from './engine-connection.js';
import { EngineRefusal } from '../errors.js';

/** Official agents' heartbeat interval; the engine must echo it exactly (docs/protocol.md#the-control-channel). */
const HEARTBEAT_INTERVAL_MS = 5000;
const HEARTBEAT_TIMEOUT_MAX_MS = 900_000;
const OPEN_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 5000;
export const PROTOCOL_VERSION = '1.4.5';

/** ClientDetails of every connection `rivulet` opens. */
export function clientDetails(token: string) {
  return {
    agent: 'rivulet',
    channel: 'cli',
    version: VERSION,
    os: process.platform,
    arch: process.arch,
    protocol_version: PROTOCOL_VERSION,
    token,
  };
}

export interface ControlClientHandlers {
  onProxyConnReq: (request: MessageOf<'proxy_conn_req'>) => void;
  /** The engine dropped a tunnel on its own (unsolicited CloseTunnelRsp). */
  onTunnelClosed: (tunnelId: string) => void;
}

/**
 * The agent's control channel (docs/protocol.md#the-control-channel): open with liveness offered, heartbeats
 * with validated acknowledgements, tunnels opened by request id, a clean close. `closed` resolves with
 * the reason the channel ended, whatever it was.
 */
export class ControlClient {
  readonly closed: Promise<Error>;
  private endWith!: (reason: Error) => void;
  private channel!: FrameChannel;
  private liveness: { timeout: number } | undefined;
  private sequence = 0;
  private lastAck = 0;
  private lastFrameAt = Date.now();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly tunnelReplies = new Map<string, (reply: MessageOf<'open_tunnel_rsp'>) => void>();
  private readonly closeReplies = new Map<string, () => void>();
  private channelClosedReply: (() => void) | undefined;
  private ended = false;
  private opened = false;

  private constructor(
    private readonly socket: tls.TLSSocket,
    private readonly handlers: ControlClientHandlers,
  ) {
    this.closed = new Promise((resolve) => (this.endWith = resolve));
  }

  static async open(endpoint: EngineEndpoint, token: string, handlers: ControlClientHandlers): Promise<{ client: ControlClient; clientId: string }> {
    const socket = await connectEngine(endpoint);
    const client = new ControlClient(socket, handlers);
    const first = new Promise<MessageOf<'open_control_channel_rsp'>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply to OpenControlChannelReq')), OPEN_TIMEOUT_MS);
      client.channel = new FrameChannel(
        socket,
        (message) => {
          if (client.opened) client.onMessage(message);
          else {
            clearTimeout(timer);
            if (message.type === 'open_control_channel_rsp') resolve(message);
            else reject(new Error(`unexpected first frame ${message.type}`));
          }
        },
        (error) => client.fail(error),
      );
      socket.once('close', () => reject(new Error('engine closed the connection')));
      socket.on('error', () => {});
    });
    client.channel.send({
      type: 'open_control_channel_req',
      client_details: clientDetails(token),
      liveness: { heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS, heartbeat_timeout_ms: 0 },
    });
    let reply: MessageOf<'open_control_channel_rsp'>;
    try {
      reply = await first;
    } catch (error) {
      socket.destroy();
      throw error;
    }
    if ('error' in reply.result) {
      socket.destroy();
      throw new EngineRefusal(reply.result.error);
    }
    const { client_id: clientId, liveness } = reply.result.ok;
    if (!clientId) throw client.fail(new Error('engine sent an empty client_id'));
    if (liveness) {
      const { heartbeat_interval_ms: interval, heartbeat_timeout_ms: timeout } = liveness;
      if (interval !== HEARTBEAT_INTERVAL_MS || timeout < interval || timeout > HEARTBEAT_TIMEOUT_MAX_MS) {
        throw client.fail(new Error(`engine liveness ${interval}/${timeout} ms is not acceptable`));
      }
      client.liveness = { timeout };
    }
    client.opened = true;
    client.start();
    return { client, clientId };
  }

  async openTunnel(properties: TunnelProperties): Promise<TunnelProperties> {
    const requestId = crypto.randomUUID();
    const reply = new Promise<MessageOf<'open_tunnel_rsp'>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.tunnelReplies.delete(requestId);
        reject(new Error('no reply to OpenTunnelReq'));
      }, REQUEST_TIMEOUT_MS);
      this.tunnelReplies.set(requestId, (message) => {
        clearTimeout(timer);
        this.tunnelReplies.delete(requestId);
        resolve(message);
      });
      void this.closed.then((reason) => {
        clearTimeout(timer);
        reject(reason);
      });
    });
    this.channel.send({ type: 'open_tunnel_req', request_id: requestId, tunnel_properties: properties });
    const result = (await reply).result;
    if ('error' in result) throw new EngineRefusal(result.error);
    if (!result.tunnel_properties.id) throw new Error('engine reply carries no tunnel id');
    return result.tunnel_properties;
  }

  sendProxyConnRsp(streamId: string, error?: RstrmError): void {
    this.channel.send({ type: 'proxy_conn_rsp', stream_id: streamId, ...(error ? { error } : {}) });
  }

  /** CloseTunnelReq for each tunnel, then CloseControlChannelReq; waits up to 5 s for the replies. */
  async close(tunnelIds: Iterable<string>): Promise<void> {
    if (this.ended) return;
    const replies = [...tunnelIds].map((id) => {
      const replied = new Promise<void>((resolve) => this.closeReplies.set(id, resolve));
      this.channel.send({ type: 'close_tunnel_req', tunnel_id: id });
      return replied;
    });
    const closed = new Promise<void>((resolve) => (this.channelClosedReply = resolve));
    await withTimeout(Promise.all(replies), CLOSE_TIMEOUT_MS);
    this.channel.send({ type: 'close_control_channel_req' });
    await withTimeout(closed, CLOSE_TIMEOUT_MS);
    this.fail(new Error('closed'));
  }

  private start(): void {
    this.socket.on('close', () => this.fail(new Error('connection to the engine closed')));
    this.heartbeatTimer = setInterval(() => {
      if (this.liveness) {
        if (Date.now() - this.lastFrameAt > this.liveness.timeout) {
          this.fail(new Error('engine silent beyond the liveness timeout'));
          return;
        }
        this.channel.send({ type: 'heartbeat', sequence: ++this.sequence, acknowledgement: 0 });
      } else {
        this.channel.send({ type: 'heartbeat', sequence: 0, acknowledgement: 0 });
      }
    }, this.liveness ? Math.min(HEARTBEAT_INTERVAL_MS, 1000) : HEARTBEAT_INTERVAL_MS);
  }

  private onMessage(message: Message): void {
    this.lastFrameAt = Date.now();
    switch (message.type) {
      case 'heartbeat':
        if (!this.liveness) {
          if (message.sequence !== 0 || message.acknowledgement !== 0) this.fail(new Error('unexpected heartbeat from the engine'));
        } else if (message.sequence !== 0 || message.acknowledgement <= this.lastAck || message.acknowledgement > this.sequence) {
          this.fail(new Error(`bad heartbeat acknowledgement ${message.acknowledgement}`));
        } else this.lastAck = message.acknowledgement;
        return;
      case 'open_tunnel_rsp':
        this.tunnelReplies.get(message.request_id)?.(message);
        return;
      case 'close_tunnel_rsp': {
        const reply = this.closeReplies.get(message.tunnel_id);
        if (reply) {
          this.closeReplies.delete(message.tunnel_id);
          reply();
        } else this.handlers.onTunnelClosed(message.tunnel_id);
        return;
      }
      case 'close_control_channel_rsp':
        this.channelClosedReply?.();
        return;
      case 'proxy_conn_req':
        this.handlers.onProxyConnReq(message);
        return;
      default:
        return; // ServerMessage and anything newer: nothing to do
    }
  }

  private fail(reason: Error): Error {
    if (!this.ended) {
      this.ended = true;
      clearInterval(this.heartbeatTimer);
      this.socket.destroy();
      this.endWith(reason);
    }
    return reason;
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    void promise.then((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}
