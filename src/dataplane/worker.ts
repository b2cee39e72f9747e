import type net from 'node:net';
import { receiveMessageOnPort } from 'node:worker_threads';
import { CertCheckGate } from '../threads/cert-check-gate.js';
import type { MainToWorker, WorkerExit, WorkerTask, WorkerToMain } from '../threads/messages.js';
import { createLogger, type Logger } from '../log.js';
import { ConnectionCensus, CounterRow } from '../threads/counters.js';
import { ConnectionAcceptor } from './acceptor.js';
import { ControlLink } from './control-link.js';
import { publishLoopDelay } from './loop-delay.js';
import { Dataplane } from './dataplane.js';
import { openAffinityListener, openListener, type WorkerListener } from './listener.js';
import { WorkerCertificates } from './worker-certificates.js';

/** What one worker runs: built from its task, before it listens. */
interface WorkerParts {
  log: Logger;
  post: (message: WorkerToMain) => void;
  certificates: WorkerCertificates;
  link: ControlLink;
  dataplane: Dataplane;
  acceptor: ConnectionAcceptor;
  stopLoopDelay: () => void;
}

/** Its listening sockets: the shared TLS port and, with affinity, its own port. */
interface WorkerListeners {
  listener: WorkerListener;
  affinity: net.Server | undefined;
}

/**
 * A data-plane worker: one long-lived piscina task per thread. It accepts on the TLS listener and
 * owns its connections until the main thread asks it to shut down; the task then resolves.
 */
export default async function runWorker(task: WorkerTask): Promise<WorkerExit> {
  const parts = buildWorker(task);
  const listeners = await openListeners(task, parts);
  if ('outcome' in listeners) return listeners;
  parts.post({ type: 'listening', port: listeners.listener.port, fd: listeners.listener.fd });
  parts.log.debug({ strategy: task.listen.strategy, port: listeners.listener.port }, 'worker accepting');
  return serveUntilDrained(task, parts, listeners);
}

function buildWorker(task: WorkerTask): WorkerParts {
  const { port, workerIndex } = task;
  const log = createLogger(task.logLevel, { worker: workerIndex });
  const post = (message: WorkerToMain): void => port.postMessage(message);
  const ticketKeys = Buffer.from(task.ticketKeys);
  const certificates = new WorkerCertificates(task.certificate, ticketKeys, new CertCheckGate(task.certCheckGate), post);
  const link = new ControlLink(port, log);
  const counters = new CounterRow(task.counters, workerIndex);
  const stopLoopDelay = publishLoopDelay(counters);
  const dataplane = new Dataplane(workerIndex, task.dataplane, link, counters, task.tunnelTables, log);
  for (const route of task.routes) dataplane.addRoute(route);
  const acceptor = new ConnectionAcceptor({
    engineHost: task.engineHost,
    apiSocketPath: task.apiSocketPath,
    counters,
    census: new ConnectionCensus(task.counters),
    certificates,
    ticketKeys,
    dataplane,
    log,
  });
  return { log, post, certificates, link, dataplane, acceptor, stopLoopDelay };
}

/** Binds the affinity port (if any), then the TLS listener; a failure is the task's typed exit. */
async function openListeners(task: WorkerTask, parts: WorkerParts): Promise<WorkerListeners | WorkerExit> {
  const { workerIndex } = task;
  const affinityPlan = task.dataplane.affinity;
  let affinity: net.Server | undefined;
  try {
    if (affinityPlan) affinity = await openAffinityListener(affinityPlan.host, affinityPlan.portBase + workerIndex, parts.acceptor.acceptAffinity);
  } catch (error) {
    parts.stopLoopDelay();
    return listenFailed(workerIndex, 'affinity', affinityPlan!.portBase + workerIndex, error);
  }
  try {
    return { listener: await openListener(task.listen, parts.acceptor.accept), affinity };
  } catch (error) {
    parts.stopLoopDelay();
    affinity?.close();
    return listenFailed(workerIndex, 'tls', task.listen.strategy === 'shared-fd-attach' ? 0 : task.listen.port, error);
  }
}

/** Handles the main thread's messages until shutdown has drained this worker's connections. */
function serveUntilDrained(task: WorkerTask, parts: WorkerParts, listeners: WorkerListeners): Promise<WorkerExit> {
  const { port, workerIndex } = task;
  const { certificates, link, dataplane, acceptor } = parts;
  let drainDeadline = Date.now();
  return new Promise<WorkerExit>((resolve) => {
    const onMessage = (message: MainToWorker): void => {
      switch (message.type) {
        case 'certificate':
          certificates.replace(message.certificate);
          return;
        case 'certificate-checked':
          certificates.checked(message.requestId);
          return;
        case 'reply':
          link.reply(message.id, message.reply);
          return;
        case 'api-socket':
          acceptor.apiSocketMoved(message.socketPath);
          return;
        case 'route-add':
          dataplane.addRoute(message.route);
          return;
        case 'route-remove':
          dataplane.removeRoute(message.tunnel_id);
          return;
        case 'peer':
          dataplane.peers.connect(message.index, message.port);
          return;
        case 'request-log':
          parts.post({ type: 'request-log', queryId: message.queryId, requests: dataplane.requestLog?.requests(message.slot) ?? [] });
          return;
        case 'shutdown':
          acceptor.stopDispatching();
          listeners.affinity?.close();
          drainDeadline = message.deadline;
          parts.post({ type: 'draining' });
          dataplane.shutdownChannels();
          return;
        case 'close-listener':
          // Only after every worker stopped dispatching (threads/listener-strategy.ts); then drain and finish.
          listeners.listener.close();
          void acceptor.drain(drainDeadline).then((connectionsCut) => {
            parts.stopLoopDelay();
            resolve({ outcome: 'drained', workerIndex, connectionsCut });
          });
          return;
      }
    };
    port.on('message', onMessage);
    dataplane.readQueuedMessages = () => {
      for (let queued = receiveMessageOnPort(port); queued; queued = receiveMessageOnPort(port)) onMessage(queued.message as MainToWorker);
    };
  });
}

/** A bind failure as a typed exit, so the main thread can name the config key without parsing text. */
function listenFailed(workerIndex: number, listener: 'tls' | 'affinity', port: number, error: unknown): WorkerExit {
  const { code, message } = error as NodeJS.ErrnoException;
  return { outcome: 'listen-failed', workerIndex, listener, port, code: code ?? message };
}
