import type { MessagePort } from 'node:worker_threads';
import type { Logger } from '../log.js';
import { CONTROL_PLANE_FAILED, type ControlCallName, type ControlCalls, type ControlReply, type ControlRequest, type WorkerToMain } from '../threads/messages.js';

/** The control plane answers within this bound, or the call yields CONTROL_PLANE_FAILED. */
const CALL_TIMEOUT_MS = 10_000;

/** A worker's request/reply channel to the main thread (control/control-plane.ts answers). */
export class ControlLink {
  private readonly pending = new Map<number, (reply: ControlReply<ControlCallName>) => void>();
  private nextId = 1;

  constructor(
    private readonly port: MessagePort,
    private readonly log: Logger,
  ) {}

  /** Resolves with the control plane's reply; never rejects (see CallResult). */
  call<K extends ControlCallName>(type: K, request: ControlCalls[K]['request']): Promise<ControlReply<K>> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.log.error({ call: type, timeout_ms: CALL_TIMEOUT_MS }, 'the control plane did not answer a call in time');
        resolve(CONTROL_PLANE_FAILED);
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(reply as ControlReply<K>);
      });
      this.notify({ type: 'request', id, request: { type, ...request } as ControlRequest });
    });
  }

  reply(id: number, reply: ControlReply<ControlCallName>): void {
    this.pending.get(id)?.(reply);
  }

  notify(message: WorkerToMain): void {
    this.port.postMessage(message);
  }
}
