import net from 'node:net';
import tls from 'node:tls';
import { FrameDecoder } from '../../src/protocol/frame.js';
import type { Message } from '../../src/protocol/messages.js';
import { Wakeups } from '../helpers/wakeups.js';
import { DecodeError, FrameError } from '../../src/errors.js';

/** How a hostile peer leaves: abruptly, with a clean end of its side, or with a TCP reset. */
export type Ending = 'destroy' | 'end' | 'reset';

/**
 * One connection to the engine that writes whatever it is told, chunk by chunk, and keeps every byte
 * the engine sends back untouched (nothing is parsed while it arrives, so echoed garbage cannot
 * confuse it). Either rstrm/1 over TLS, or raw TCP for bytes in place of a ClientHello.
 */
export class HostileConnection {
  private readonly chunks: Buffer[] = [];
  private readonly wakeups = new Wakeups();
  private isClosed = false;

  private constructor(
    private readonly socket: net.Socket | tls.TLSSocket,
    private readonly tcp: net.Socket,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.wakeups.wake();
    });
    socket.on('error', () => {});
    tcp.on('error', () => {});
    socket.once('close', () => {
      this.isClosed = true;
      this.wakeups.wake();
    });
  }

  /** rstrm/1 over TLS, as agents and dialers connect. */
  static rstrm(port: number, ca: Buffer): Promise<HostileConnection> {
    return new Promise((resolve, reject) => {
      const tcp = net.connect({ host: '127.0.0.1', port });
      const session = tls.connect({ socket: tcp, servername: 'localhost', ALPNProtocols: ['rstrm/1'], ca });
      session.once('secureConnect', () => {
        session.off('error', reject);
        resolve(new HostileConnection(session, tcp));
      });
      session.once('error', reject);
    });
  }

  /** Plain TCP: the engine expects a TLS ClientHello first. */
  static tcp(port: number): Promise<HostileConnection> {
    return new Promise((resolve, reject) => {
      const tcp = net.connect({ host: '127.0.0.1', port });
      tcp.once('connect', () => {
        tcp.off('error', reject);
        resolve(new HostileConnection(tcp, tcp));
      });
      tcp.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Everything the engine sent so far. */
  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /**
   * Writes each chunk as its own write (its own TLS record); with `pauses`, yields to the event loop
   * between them so the engine reads them separately too.
   */
  async write(chunks: Buffer[], pauses = false): Promise<void> {
    for (const chunk of chunks) {
      if (this.socket.destroyed) return;
      this.socket.write(chunk);
      if (pauses) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Resolves true once `condition` holds, false after `timeoutMs`; rechecked whenever bytes arrive or the socket closes. */
  async until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return false;
      await this.wakeups.wait(remaining);
    }
    return true;
  }

  /** Leaves as `ending` says. */
  finish(ending: Ending): void {
    if (ending === 'reset') this.tcp.resetAndDestroy();
    else if (ending === 'end') this.socket.end();
    else this.socket.destroy();
  }

  /** After every case, whatever it checked: a case never leaves its socket behind. */
  destroy(): void {
    this.socket.destroy();
  }

}

/**
 * The engine's frames in `bytes`, and what follows the last whole frame. Our own codec reads them;
 * anything it refuses is the engine writing a frame it could not read itself.
 */
export function engineFrames(bytes: Buffer): { frames: Message[]; rest: Buffer } {
  const decoder = new FrameDecoder();
  decoder.push(bytes);
  const frames: Message[] = [];
  try {
    for (let frame = decoder.next(); frame; frame = decoder.next()) frames.push(frame);
  } catch (error) {
    if (error instanceof FrameError || error instanceof DecodeError) throw new Error(`the engine sent an undecodable frame: ${error.message}`);
    throw error;
  }
  return { frames, rest: decoder.takeRemainder() };
}
