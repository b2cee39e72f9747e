import type { TLSSocket } from 'node:tls';
import type { CloseReason } from '../threads/messages.js';
import type { Logger } from '../log.js';
import { FrameDecoder, encodeFrame } from '../protocol/frame.js';
import {
  emptyTunnelProperties,
  type ControlChannelLiveness,
  type Message,
  type MessageOf,
  type RstrmError,
} from '../protocol/messages.js';
import type { ControlLink } from './control-link.js';
import { endSoon } from '../net/splice.js';
import type { ProxyConnRequest } from './streams.js';

/** An agent that stops reading its control channel may not make the engine buffer without limit. */
const MAX_UNSENT_BYTES = 1024 * 1024;
/**
 * Tunnel requests one channel may have before the control plane at once; past it the channel stops
 * reading until one is answered, so an agent that floods requests is slowed, not buffered.
 */
const MAX_REQUESTS_IN_FLIGHT = 64;
/** The engine gives a negotiated channel T + 1 s of silence (docs/protocol.md#the-control-channel). */
const LIVENESS_SLACK_MS = 1000;

export interface ControlChannelOptions {
  clientId: string;
  socket: TLSSocket;
  /** The decoder that read the opening frame; it may already hold the next frames. */
  decoder: FrameDecoder;
  liveness: ControlChannelLiveness | undefined;
  link: ControlLink;
  log: Logger;
  /** The agent refused a stream (ProxyConnRsp with an error). */
  onStreamRefused: (streamId: string, error: RstrmError) => void;
  onClosed: (channel: ControlChannel) => void;
}

/**
 * One agent's control channel after a successful open (docs/protocol.md#the-control-channel): tunnels open and close
 * through the control plane, heartbeats are acknowledged in negotiated mode, ProxyConnReqs for its
 * tunnels are written here, and any ending tears the client down exactly once.
 */
export class ControlChannel {
  readonly clientId: string;
  /** Tunnels whose OpenTunnelRsp this channel has written and not yet closed. */
  private readonly tunnels = new Set<string>();
  private lastAcknowledged = 0;
  private livenessTimer: NodeJS.Timeout | undefined;
  private lastFrameAt = Date.now();
  private ended = false;
  private requestsInFlight = 0;

  constructor(private readonly options: ControlChannelOptions) {
    this.clientId = options.clientId;
  }

  start(): void {
    const { socket, decoder } = this.options;
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      this.drainFrames();
    });
    socket.on('end', () => this.teardown('eof'));
    socket.on('close', () => this.teardown('eof'));
    socket.on('error', () => this.teardown('eof'));
    const liveness = this.options.liveness;
    if (liveness) {
      const limit = liveness.heartbeat_timeout_ms + LIVENESS_SLACK_MS;
      this.livenessTimer = setInterval(() => {
        if (Date.now() - this.lastFrameAt > limit) this.teardown('liveness');
      }, Math.min(1000, liveness.heartbeat_interval_ms));
    }
    this.drainFrames();
    socket.resume();
  }

  hasTunnel(tunnelId: string): boolean {
    return this.tunnels.has(tunnelId);
  }

  sendProxyConnReq(request: ProxyConnRequest): void {
    this.send({
      type: 'proxy_conn_req',
      tunnel_id: request.tunnel_id,
      stream_id: request.stream_id,
      secret: request.secret,
      source_ip: request.source_ip,
      proxy_endpoint: request.proxy_endpoint,
    });
  }

  /** Graceful engine shutdown: an unsolicited CloseTunnelRsp for every tunnel, then close. */
  shutdown(): void {
    for (const tunnelId of this.tunnels) this.send({ type: 'close_tunnel_rsp', tunnel_id: tunnelId });
    this.tunnels.clear();
    void this.teardown('shutdown', { graceful: true });
  }

  private drainFrames(): void {
    for (;;) {
      if (this.requestsInFlight >= MAX_REQUESTS_IN_FLIGHT) {
        this.options.socket.pause();
        return;
      }
      let message: Message | undefined;
      try {
        message = this.options.decoder.next();
      } catch (error) {
        this.options.log.debug({ client_id: this.clientId, err: (error as Error).message }, 'bad frame on control channel');
        void this.teardown('protocol_error');
        return;
      }
      if (!message || this.ended) return;
      this.lastFrameAt = Date.now();
      this.handle(message);
    }
  }

  private handle(message: Message): void {
    switch (message.type) {
      case 'heartbeat':
        // Negotiated mode: acknowledge each new sequence at once; legacy mode: never send a heartbeat.
        if (this.options.liveness && message.sequence > this.lastAcknowledged) {
          this.lastAcknowledged = message.sequence;
          this.send({ type: 'heartbeat', sequence: 0, acknowledgement: message.sequence });
        }
        return;
      case 'open_tunnel_req':
        this.track(this.openTunnel(message));
        return;
      case 'close_tunnel_req':
        this.track(this.closeTunnel(message.tunnel_id));
        return;
      case 'close_control_channel_req':
        void this.teardown('agent', { graceful: true, reply: true });
        return;
      case 'proxy_conn_rsp':
        // An OK is informational (never waited for); an error refuses that stream only.
        if (message.error) {
          const detail = message.error.message ? `: ${message.error.message}` : ` (code ${message.error.code})`;
          this.options.onStreamRefused(message.stream_id, { code: message.error.code, message: `agent refused the stream${detail}` });
        }
        return;
      default:
        this.options.log.debug({ client_id: this.clientId, type: message.type }, 'ignored message on control channel');
    }
  }

  /** Counts a request to the control plane; when one finishes, frames held back are read again. */
  private track(request: Promise<void>): void {
    this.requestsInFlight++;
    void request.finally(() => {
      this.requestsInFlight--;
      if (this.ended) return;
      this.drainFrames();
      if (this.requestsInFlight < MAX_REQUESTS_IN_FLIGHT) this.options.socket.resume();
    });
  }

  private async openTunnel(request: MessageOf<'open_tunnel_req'>): Promise<void> {
    const reply = await this.options.link.call('open-tunnel', {
      client_id: this.clientId,
      request_id: request.request_id,
      properties: request.tunnel_properties ?? emptyTunnelProperties(),
    });
    if (this.ended) return;
    if (!reply.ok) {
      this.send({ type: 'open_tunnel_rsp', request_id: request.request_id, result: { error: reply.error } });
      return;
    }
    this.send({ type: 'open_tunnel_rsp', request_id: request.request_id, result: { tunnel_properties: reply.properties } });
    this.tunnels.add(reply.tunnel_id);
    // Only now are streams asked of the agent (no ProxyConnReq may precede its OpenTunnelRsp), and the tunnel announced.
    this.options.link.notify({ type: 'tunnel-answered', tunnel_id: reply.tunnel_id });
  }

  private async closeTunnel(tunnelId: string): Promise<void> {
    this.tunnels.delete(tunnelId);
    await this.options.link.call('close-tunnel', { client_id: this.clientId, tunnel_id: tunnelId });
    if (!this.ended) this.send({ type: 'close_tunnel_rsp', tunnel_id: tunnelId });
  }

  /**
   * Ends the channel once: the control plane withdraws the client and its tunnels (events, routes,
   * pending streams), then the socket closes — after CloseControlChannelRsp when the agent asked.
   */
  private async teardown(reason: CloseReason, how: { graceful?: boolean; reply?: boolean } = {}): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.livenessTimer);
    this.options.onClosed(this);
    const { socket, link } = this.options;
    if (!how.graceful) socket.destroy();
    await link.call('close-client', { client_id: this.clientId, reason });
    if (!how.graceful) return;
    if (how.reply) this.write({ type: 'close_control_channel_rsp' });
    endSoon(socket); // closed within 1 s
  }

  private send(message: Message): void {
    if (this.ended) return;
    this.write(message);
  }

  private write(message: Message): void {
    const { socket } = this.options;
    if (socket.destroyed) return;
    socket.write(encodeFrame(message));
    if (socket.writableLength > MAX_UNSENT_BYTES) {
      this.options.log.warn({ client_id: this.clientId }, 'agent does not read its control channel; closing it');
      void this.teardown('protocol_error');
    }
  }
}

