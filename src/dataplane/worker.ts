import type net from 'node:net';
import { receiveMessageOnPort } from 'node:worker_threads';
import { CertCheckGate } from '../threads/cert-check-gate.js';
import type { MainToWorker, WorkerExit, WorkerTask, WorkerToMain } from '../threads/messages.js';
import { createLogger } from '../log.js';
import { ConnectionCensus, CounterRow } from '../threads/counters.js';
import { StreamSlots } from '../threads/stream-slots.js';
import { ConnectionAcceptor } from './acceptor.js';
import { ControlLink } from './control-link.js';
import { publishLoopDelay } from './loop-delay.js';
import { Dataplane } from './dataplane.js';
import { openAffinityListener, openListener, type WorkerListener } from './listener.js';
import { WorkerCertificates } from './worker-certificates.js';

/**
 * A data-plane worker: one long-lived piscina task per thread. It accepts on the TLS listener and
 * owns its connections until the main thread asks it to shut down; the task then resolves.
 */
export default async function runWorker(task: WorkerTask): Promise<WorkerExit> {
  const { port, workerIndex } = task;
  const log = createLogger(task.logLevel, { worker: workerIndex });
  const post = (message: WorkerToMain): void => port.postMessage(message);
  const ticketKeys = Buffer.from(task.ticketKeys);
  const certificates = new WorkerCertificates(
    task.certificate,
    ticketKeys,
    new CertCheckGate(task.certCheckGate),
    post,
  );
  const link = new ControlLink(port, log);
  const counters = new CounterRow(task.counters, workerIndex);
  const stopLoopDelay = publishLoopDelay(counters);
  const dataplane = new Dataplane(workerIndex, task.dataplane, link, counters, new StreamSlots(task.streamSlots), log);
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
  const affinity = task.dataplane.affinity;
  let affinityListener: net.Server | undefined;
  let listener: WorkerListener;
  try {
    if (affinity) affinityListener = await openAffinityListener(affinity.host, affinity.portBase + workerIndex, acceptor.acceptAffinity);
  } catch (error) {
    stopLoopDelay();
    return listenFailed(workerIndex, 'affinity', affinity!.portBase + workerIndex, error);
  }
  try {
    listener = await openListener(task.listen, acceptor.accept);
  } catch (error) {
    stopLoopDelay();
    affinityListener?.close();
    return listenFailed(workerIndex, 'tls', task.listen.strategy === 'shared-fd-attach' ? 0 : task.listen.port, error);
  }
  post({ type: 'listening', port: listener.port, fd: listener.fd });
  log.debug({ strategy: task.listen.strategy, port: listener.port }, 'worker accepting');

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
        case 'shutdown':
          acceptor.stopDispatching();
          affinityListener?.close();
          drainDeadline = message.deadline;
          post({ type: 'draining' });
          dataplane.shutdownChannels();
          return;
        case 'close-listener':
          // Only after every worker stopped dispatching (see listener.ts); then drain and finish.
          listener.close();
          void acceptor.drain(drainDeadline).then((connectionsCut) => {
            stopLoopDelay();
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
