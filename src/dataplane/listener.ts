import net from 'node:net';
import type { ListenPlan } from '../threads/messages.js';

/**
 * A worker's listening sockets: the TLS listener by the plan the main thread chose
 * (threads/listener-strategy.ts says why there are two ways and what each implies), and its affinity port.
 */
export interface WorkerListener {
  port: number;
  /** The shared descriptor, reported by the shared-fd owner only. */
  fd: number | undefined;
  /** Closes this worker's handle on the listening socket (threads/listener-strategy.ts says when that is safe). */
  close(): void;
}

export async function openListener(
  plan: ListenPlan,
  onConnection: (socket: net.Socket) => void,
): Promise<WorkerListener> {
  // allowHalfOpen: a peer's FIN ends one direction only; the splice decides when both are done.
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, onConnection);
  server.on('error', () => {}); // accept errors (EMFILE…) are transient; the listener keeps going
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const listening = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (plan.strategy === 'shared-fd-attach') server.listen({ fd: plan.fd }, listening);
    else server.listen({ host: plan.host, port: plan.port, reusePort: plan.strategy === 'reuse-port' }, listening);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    // net.Server keeps its libuv handle private; the descriptor is the only way to share it on Node 20.
    fd: plan.strategy === 'shared-fd-owner' ? (server as unknown as { _handle: { fd: number } })._handle.fd : undefined,
    close() {
      server.close();
    },
  };
}

/**
 * A worker's own affinity port (docs/architecture.md#stream-affinity): one socket per worker, so no sharing is needed on
 * any Node version.
 */
export async function openAffinityListener(
  host: string,
  port: number,
  onConnection: (socket: net.Socket) => void,
): Promise<net.Server> {
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, onConnection);
  server.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  });
  return server;
}
