import tls from 'node:tls';
import { FrameDecoder, encodeFrame } from '../src/protocol/frame.js';
import type { Message } from '../src/protocol/messages.js';

/** An agent speaking rstrm/1 by hand: one control channel, frames sent as given and awaited by type. */
export class RawAgent {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Message[] = [];
  private wake: (() => void) | undefined;

  private constructor(private readonly socket: tls.TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let message = this.decoder.next(); message; message = this.decoder.next()) this.frames.push(message);
      this.wake?.();
    });
    socket.on('error', () => {});
  }

  static async open(port: number, ca: Buffer, token: string): Promise<RawAgent> {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['rstrm/1'], ca });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    const agent = new RawAgent(socket);
    agent.send({ type: 'open_control_channel_req', client_details: { agent: 'bench', token, protocol_version: '1.4.5' } });
    await agent.next('open_control_channel_rsp');
    return agent;
  }

  send(message: Message): void {
    this.socket.write(encodeFrame(message));
  }

  async next(type: Message['type']): Promise<Message> {
    for (;;) {
      const index = this.frames.findIndex((frame) => frame.type === type);
      if (index >= 0) return this.frames.splice(index, 1)[0]!;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
