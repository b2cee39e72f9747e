import { receiveMessageOnPort } from 'node:worker_threads';
import { CertCheckGate } from '../certs/check-gate.js';
import type { MainToWorker, WorkerExit, WorkerTask, WorkerToMain } from '../control/thread-messages.js';
import { createLogger } from '../log.js';
import { ConnectionCensus, CounterRow } from '../metrics/counters.js';
import { StreamSlots } from '../control/stream-slots.js';
import { ConnectionAcceptor } from './acceptor.js';
import { ControlLink } from './control-link.js';
import { publishLoopDelay } from './loop-delay.js';
import { Dataplane } from './dataplane.js';
import { openAffinityListener, openListener } from './listener.js';
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
  const link = new ControlLink(port);
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
  const affinityListener = affinity
    ? await openAffinityListener(affinity.host, affinity.portBase + workerIndex, acceptor.acceptAffinity)
    : undefined;
  const listener = await openListener(task.listen, acceptor.accept);
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
            resolve({ workerIndex, connectionsCut });
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
