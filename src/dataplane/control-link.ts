import type { MessagePort } from 'node:worker_threads';
import type { ControlCallName, ControlCalls, ControlReply, WorkerToMain } from '../control/thread-messages.js';

/** The control plane answers within this bound or the request fails (the caller closes its connection). */
const CALL_TIMEOUT_MS = 10_000;

export class ControlCallTimeout extends Error {
  override name = 'ControlCallTimeout';
}

/** A worker's request/reply channel to the main thread (control/control-plane.ts answers). */
export class ControlLink {
  private readonly pending = new Map<number, (reply: ControlReply<ControlCallName>) => void>();
  private nextId = 1;

  constructor(private readonly port: MessagePort) {}

  call<K extends ControlCallName>(type: K, request: ControlCalls[K]['request']): Promise<ControlReply<K>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ControlCallTimeout(`control plane did not answer ${type} in time`));
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(reply as ControlReply<K>);
      });
      this.notify({ type: 'request', id, request: { type, ...request } as never });
    });
  }

  reply(id: number, reply: ControlReply<ControlCallName>): void {
    this.pending.get(id)?.(reply);
  }

  notify(message: WorkerToMain): void {
    this.port.postMessage(message);
  }
}
