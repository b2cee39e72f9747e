import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { EngineConfig } from '../config/schema.js';
import type net from 'node:net';
import { listenerStrategy, survivesWorkerDeath, type ListenerStrategy } from '../threads/listener-strategy.js';
import { claimAddress } from './address-claim.js';
import type { Logger } from '../log.js';
import {
  CONTROL_PLANE_FAILED,
  type CertificatePem,
  type ControlReply,
  type ControlRequest,
  type DataplaneSettings,
  type ListenPlan,
  type LoggedRequest,
  type MainToWorker,
  type TunnelRoute,
  type WorkerExit,
  type WorkerTask,
  type WorkerToMain,
} from '../threads/messages.js';
import { WorkerListenFailure } from '../errors.js';
import type { TunnelTables } from '../threads/tunnel-stats.js';

export interface SupervisorOptions {
  config: EngineConfig;
  log: Logger;
  certificate: () => CertificatePem;
  counters: SharedArrayBuffer;
  certCheckGate: SharedArrayBuffer;
  tunnelTables: TunnelTables;
  ticketKeys: Buffer;
  /** Where the Engine API listens now (it moves if its socket file is removed). */
  apiSocketPath: () => string;
  dataplane: DataplaneSettings;
  /** Live routes, for a worker that joins a running engine. */
  routes: () => TunnelRoute[];
  /** Runs the certificate file check a worker asked for; resolves once any new pair was pushed. */
  checkCertificate: () => Promise<void>;
  /** The control plane's answer to a worker's request. */
  onRequest: (worker: number, request: ControlRequest) => Promise<ControlReply<ControlRequest['type']>>;
  onTunnelAnswered: (tunnelId: string) => void;
  /** A worker died: the control channels it held are gone with it. */
  onWorkerLost: (worker: number) => void;
  /** Called when the data plane cannot go on (a worker died under the shared-descriptor strategy). */
  onFatal: (reason: string) => void;
}

interface WorkerSlot {
  index: number;
  port: MessagePort;
  plan: ListenPlan;
  task: Promise<WorkerExit>;
  draining: Promise<void>;
  onDraining: () => void;
}

/** Delay before a replacement worker binds, so a crash loop cannot spin the CPU. */
const RESTART_DELAY_MS = 500;
/** A worker that has not started accepting by then is treated as failed. */
const STARTUP_TIMEOUT_MS = 15_000;
/** How long past the drain deadline we wait for a worker that does not report back. */
const DRAIN_SLACK_MS = 2000;
/** A worker that does not send its part of a request log by then is left out of it. */
const REQUEST_LOG_WAIT_MS = 2000;

/** `promise`, or undefined once `deadline` (epoch ms) has passed. */
function withDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/**
 * Runs the data-plane workers on a piscina pool: one never-ending task per thread, each with its own
 * MessagePort. Starts them onto the TLS listener, pushes certificates, answers their requests, and
 * replaces a worker that dies when the listener strategy allows it.
 */
export class WorkerSupervisor {
  readonly strategy: ListenerStrategy = listenerStrategy();
  private readonly pool: Piscina<WorkerTask, WorkerExit>;
  private readonly slots: WorkerSlot[] = [];
  private boundPort = 0;
  /** Under `reuse-port`: this engine's hold on its TLS address (see claimAddress). */
  private addressClaim: net.Server | undefined;
  private stopping = false;
  /** Request-log queries waiting for workers' answers, by query id. */
  private readonly logQueries = new Map<number, (requests: LoggedRequest[]) => void>();
  private nextLogQuery = 0;

  constructor(private readonly options: SupervisorOptions) {
    const threads = options.config.dataplane.workers;
    this.pool = new Piscina({
      filename: new URL('../dataplane/worker.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      atomics: 'disabled',
    });
    // Worker crashes also reject the task they ran; that is where they are handled.
    this.pool.on('error', (error: Error) => options.log.error({ err: error.message }, 'worker pool error'));
  }

  get port(): number {
    return this.boundPort;
  }

  get workerCount(): number {
    return this.options.config.dataplane.workers;
  }

  /** Brings every worker onto the TLS listener; resolves with the bound port or rejects with the bind error. */
  async start(): Promise<number> {
    const { host, port } = this.options.config.tls.listen_addr;
    const sharesPort = this.strategy === 'reuse-port';
    if (sharesPort && port !== 0) this.addressClaim = await claimAddress(host, port);
    const first = await this.launch(0, { strategy: sharesPort ? 'reuse-port' : 'shared-fd-owner', host, port });
    this.boundPort = first.port;
    // An ephemeral port is this engine's alone once bound; claimed all the same, for a second engine to see.
    if (sharesPort && port === 0) this.addressClaim = await claimAddress(host, first.port);
    const rest: Array<Promise<unknown>> = [];
    for (let index = 1; index < this.workerCount; index++) rest.push(this.launch(index, this.followerPlan(first.fd)));
    await Promise.all(rest);
    for (const slot of this.slots) this.connectPeers(slot.index, slot.index + 1);
    return this.boundPort;
  }

  broadcast(message: MainToWorker): void {
    for (const slot of this.slots) this.send(slot, message);
  }

  /** Each worker's request log of the tunnel in `slot`, with the worker's index (a worker that does not answer in time gives none). */
  requestLogs(slot: number): Promise<Array<{ worker: number; requests: LoggedRequest[] }>> {
    return Promise.all(
      this.slots.map(
        (worker) =>
          new Promise<{ worker: number; requests: LoggedRequest[] }>((resolve) => {
            const queryId = ++this.nextLogQuery;
            const answer = (requests: LoggedRequest[]): void => {
              clearTimeout(timer);
              this.logQueries.delete(queryId);
              resolve({ worker: worker.index, requests });
            };
            const timer = setTimeout(() => answer([]), REQUEST_LOG_WAIT_MS);
            this.logQueries.set(queryId, answer);
            this.send(worker, { type: 'request-log', queryId, slot });
          }),
      ),
    );
  }

  broadcastCertificate(certificate: CertificatePem): void {
    this.broadcast({ type: 'certificate', certificate });
  }

  /**
   * Stops every worker accepting; resolves once all of them have (bounded by `deadline`). First every
   * worker stops dispatching (so none opens a descriptor any more), then all close their listening
   * handles together: with a shared descriptor each handle closes the same number (threads/listener-strategy.ts).
   */
  async stopAccepting(deadline: number): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) this.send(slot, { type: 'shutdown', deadline });
    await withDeadline(Promise.all(this.slots.map((slot) => slot.draining)), deadline);
    for (const slot of this.slots) this.send(slot, { type: 'close-listener' });
  }

  /** Waits for the workers to finish draining (a little past `deadline` at most); returns connections cut. */
  async drained(deadline: number): Promise<number> {
    const exits = await withDeadline(Promise.allSettled(this.slots.map((slot) => slot.task)), deadline + DRAIN_SLACK_MS);
    return (exits ?? []).reduce((cut, exit) => cut + (exit.status === 'fulfilled' && exit.value.outcome === 'drained' ? exit.value.connectionsCut : 0), 0);
  }

  /** Stops the threads (after shutdown, or when startup failed). */
  async release(): Promise<void> {
    this.stopping = true;
    this.addressClaim?.close();
    for (const slot of this.slots) slot.port.close();
    await this.pool.destroy();
  }

  private followerPlan(ownerFd: number | undefined): ListenPlan {
    const { host } = this.options.config.tls.listen_addr;
    if (this.strategy === 'reuse-port') return { strategy: 'reuse-port', host, port: this.boundPort };
    return { strategy: 'shared-fd-attach', fd: ownerFd! };
  }

  /** Starts worker `index` and resolves once it accepts on the listener. */
  private launch(index: number, plan: ListenPlan): Promise<{ port: number; fd: number | undefined }> {
    const { port1: port, port2: workerPort } = new MessageChannel();
    let onDraining = (): void => {};
    const draining = new Promise<void>((resolve) => (onDraining = resolve));
    const task: WorkerTask = {
      workerIndex: index,
      port: workerPort,
      engineHost: this.options.config.engine.host,
      logLevel: this.options.config.engine.log_level,
      listen: plan,
      counters: this.options.counters,
      certCheckGate: this.options.certCheckGate,
      tunnelTables: this.options.tunnelTables,
      ticketKeys: this.options.ticketKeys,
      certificate: this.options.certificate(),
      apiSocketPath: this.options.apiSocketPath(),
      dataplane: this.options.dataplane,
      routes: this.options.routes(),
    };
    const slot: WorkerSlot = {
      index,
      port,
      plan,
      draining,
      onDraining,
      task: this.pool.run(task, { transferList: [workerPort] }),
    };
    this.slots[index] = slot;
    return new Promise((resolve, reject) => {
      const startup = setTimeout(() => reject(new Error(`worker ${index} did not start within ${STARTUP_TIMEOUT_MS} ms`)), STARTUP_TIMEOUT_MS);
      port.on('message', (message: WorkerToMain) => {
        if (message.type === 'listening') {
          clearTimeout(startup);
          resolve(message);
        } else this.onMessage(slot, message);
      });
      // A finished task also counts as drained: its 'draining' message may still be unread when the
      // task's result (which travels on piscina's own channel) arrives and the port is closed.
      slot.task.then(
        (exit) => {
          slot.onDraining();
          port.close();
          if (exit.outcome === 'listen-failed') {
            clearTimeout(startup);
            reject(new WorkerListenFailure(exit.listener, exit.port, exit.code));
          }
        },
        (error: Error) => {
          clearTimeout(startup);
          slot.onDraining();
          port.close();
          reject(error);
          this.onWorkerDied(slot, error);
        },
      );
    });
  }

  private onMessage(slot: WorkerSlot, message: Exclude<WorkerToMain, { type: 'listening' }>): void {
    switch (message.type) {
      case 'check-certificate':
        void this.options
          .checkCertificate()
          .then(() => this.send(slot, { type: 'certificate-checked', requestId: message.requestId }));
        return;
      case 'draining':
        slot.onDraining();
        return;
      case 'request':
        void this.options
          .onRequest(slot.index, message.request)
          .catch((error: Error) => {
            this.options.log.error({ err: error.message, stack: error.stack, worker: slot.index, call: message.request.type }, 'a control call failed');
            return CONTROL_PLANE_FAILED;
          })
          .then((reply) => this.send(slot, { type: 'reply', id: message.id, reply }));
        return;
      case 'tunnel-answered':
        this.options.onTunnelAnswered(message.tunnel_id);
        return;
      case 'request-log':
        this.logQueries.get(message.queryId)?.(message.requests);
        return;
    }
  }

  /** Gives worker `index` a direct MessagePort to every worker from `from` on (or all, on a restart). */
  private connectPeers(index: number, from: number): void {
    for (let other = from; other < this.slots.length; other++) {
      if (other === index) continue;
      const { port1, port2 } = new MessageChannel();
      this.slots[index]!.port.postMessage({ type: 'peer', index: other, port: port1 } satisfies MainToWorker, [port1]);
      this.slots[other]!.port.postMessage({ type: 'peer', index, port: port2 } satisfies MainToWorker, [port2]);
    }
  }

  private onWorkerDied(slot: WorkerSlot, error: Error): void {
    if (this.stopping || this.boundPort === 0) return; // shutting down, or startup reports the error
    const { log } = this.options;
    this.options.onWorkerLost(slot.index);
    if (!survivesWorkerDeath(this.strategy)) {
      this.options.onFatal(
        `worker ${slot.index} died (${error.message}); the shared listening descriptor is gone with it`,
      );
      return;
    }
    log.error({ worker: slot.index, err: error.message }, 'worker died; starting a replacement');
    setTimeout(() => {
      if (this.stopping) return;
      this.launch(slot.index, { strategy: 'reuse-port', host: this.options.config.tls.listen_addr.host, port: this.boundPort })
        .then(() => {
          this.connectPeers(slot.index, 0);
          log.info({ worker: slot.index }, 'replacement worker accepting');
        })
        .catch((restartError: Error) => this.options.onFatal(`worker ${slot.index} could not restart: ${restartError.message}`));
    }, RESTART_DELAY_MS);
  }

  private send(slot: WorkerSlot, message: MainToWorker): void {
    slot.port.postMessage(message);
  }
}
