import net from 'node:net';
import tls from 'node:tls';
import { SignJWT } from 'jose';
import { FrameDecoder, encodeFrame } from '../../src/protocol/frame.js';
import { emptyTunnelProperties, type Message, type MessageOf, type MessageType, type TunnelProperties } from '../../src/protocol/messages.js';
import { TEST_SECRET } from './fixtures.js';
import { Wakeups } from './wakeups.js';

/** An engine token signed with the test secret; `claims` override the defaults. */
export async function mintToken(claims: Record<string, unknown> = {}, secret = TEST_SECRET, alg = 'HS256'): Promise<string> {
  return new SignJWT({ type: 'auth', sub: 'tester', ...claims })
    .setProtectedHeader({ alg })
    .setIssuedAt()
    .sign(Buffer.from(secret));
}

/**
 * A raw rstrm/1 connection for tests: it writes exactly the frames a test asks for (so it can play the
 * official JS or Go client, or a broken one) and reads the engine's frames one by one.
 */
export class RawConnection {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Message[] = [];
  private readonly wakeups = new Wakeups();
  private rawMode = false;
  readonly closed: Promise<void>;
  /** Payload bytes after the handshake frames, once `raw()` was called. */
  readonly payload: Buffer[] = [];

  private constructor(
    readonly socket: tls.TLSSocket,
    /** The TCP connection under the TLS session (for resets). */
    readonly tcp: net.Socket,
  ) {
    socket.on('data', (chunk: Buffer) => {
      if (this.rawMode) {
        this.payload.push(chunk);
      } else {
        this.decoder.push(chunk);
        for (let message = this.decoder.next(); message; message = this.decoder.next()) this.frames.push(message);
      }
      this.wakeups.wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => this.wakeups.wake());
  }

  static connect(port: number, ca: Buffer, options: tls.ConnectionOptions = {}): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const tcp = net.connect({ host: (options.host as string | undefined) ?? '127.0.0.1', port });
      tcp.on('error', () => {});
      const socket = tls.connect({ socket: tcp, servername: 'localhost', ALPNProtocols: ['rstrm/1'], ca, ...options });
      socket.once('secureConnect', () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket, tcp));
      });
      socket.once('error', reject);
    });
  }

  send(...messages: Message[]): void {
    this.socket.write(Buffer.concat(messages.map(encodeFrame)));
  }

  /** The next frame (of `type`, if given; others are skipped unless `strict`). Rejects on close or timeout. */
  async next<T extends MessageType>(type?: T, timeoutMs = 5000): Promise<MessageOf<T>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.frames.findIndex((frame) => type === undefined || frame.type === type);
      if (index >= 0) return this.frames.splice(index, 1)[0] as MessageOf<T>;
      if (this.socket.destroyed || this.socket.readableEnded) throw new Error(`connection closed while waiting for ${type ?? 'a frame'}`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`no ${type ?? 'frame'} within ${timeoutMs} ms`);
      await this.wakeups.wait(remaining);
    }
  }



  /** Frames received and not yet taken. */
  get pending(): readonly Message[] {
    return this.frames;
  }

  /** From now on every byte is payload; frames already decoded stay readable. */
  raw(): void {
    this.rawMode = true;
    const rest = this.decoder.takeRemainder();
    if (rest.length > 0) this.payload.push(rest);
  }

  /** Waits until `count` payload bytes arrived and takes them. */
  async readPayload(count: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const received = Buffer.concat(this.payload);
      if (received.length >= count) {
        this.payload.splice(0, this.payload.length, received.subarray(count));
        return received.subarray(0, count);
      }
      if (this.socket.destroyed) throw new Error(`closed after ${received.length} of ${count} payload bytes`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error('payload timeout');
      await this.wakeups.wait(remaining);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A control channel opened with `token` (and the given liveness offer); returns the Ok's client id. */
export async function openControlChannel(
  port: number,
  ca: Buffer,
  token: string,
  liveness?: { heartbeat_interval_ms: number; heartbeat_timeout_ms: number },
): Promise<{ agent: RawConnection; clientId: string; ok: Extract<MessageOf<'open_control_channel_rsp'>['result'], { ok: unknown }>['ok'] }> {
  const agent = await RawConnection.connect(port, ca);
  agent.send({ type: 'open_control_channel_req', client_details: { agent: 'test', token, protocol_version: '1.4.5' }, ...(liveness ? { liveness } : {}) });
  const reply = await agent.next('open_control_channel_rsp');
  if (!('ok' in reply.result)) throw new Error(`open refused: ${JSON.stringify(reply.result.error)}`);
  return { agent, clientId: reply.result.ok.client_id, ok: reply.result.ok };
}

/** A control channel of its own with one published HTTP tunnel at `<hostname>.t.<host>` (plus `overrides`); throws if refused. */
export async function openHttpTunnel(port: number, ca: Buffer, hostname: string, overrides: Partial<TunnelProperties> = {}): Promise<RawConnection> {
  const { agent } = await openControlChannel(port, ca, await mintToken());
  agent.send({ type: 'open_tunnel_req', request_id: '1', tunnel_properties: { ...emptyTunnelProperties(), protocol: 'http', hostname, ...overrides } });
  const reply = await agent.next('open_tunnel_rsp');
  if ('error' in reply.result) throw new Error(`tunnel ${hostname} refused: ${JSON.stringify(reply.result)}`);
  return agent;
}
