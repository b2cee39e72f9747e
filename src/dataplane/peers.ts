import type { MessagePort } from 'node:worker_threads';
import type { PeerMessage } from '../threads/messages.js';

/** This worker's direct MessagePorts to every other worker (set up by the supervisor). */
export class PeerLinks {
  private readonly ports = new Map<number, MessagePort>();

  constructor(private readonly onMessage: (from: number, message: PeerMessage) => void) {}

  connect(index: number, port: MessagePort): void {
    this.ports.get(index)?.close();
    this.ports.set(index, port);
    port.on('message', (message: PeerMessage) => this.onMessage(index, message));
  }

  /** False when there is no link (yet) to that worker; the caller fails what it was doing. */
  send(index: number, message: PeerMessage, transfer?: ArrayBuffer[]): boolean {
    const port = this.ports.get(index);
    if (!port) return false;
    port.postMessage(message, transfer);
    return true;
  }
}
