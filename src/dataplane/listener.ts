import net from 'node:net';
import type { ListenPlan } from '../control/thread-messages.js';

/**
 * How all workers accept on one TLS port (docs/architecture.md#listener-strategies). This is the only module
 * that knows there are two ways:
 *
 * - `reuse-port` (Node >= 22.12 / >= 23.1): each worker binds its own SO_REUSEPORT socket; the kernel
 *   spreads connections, and a worker can close (or die and be replaced) without touching the others.
 * - `shared-fd` (Node 20, which has no reusePort): the first worker binds and the others accept on its
 *   descriptor. There is one descriptor for all, so the first close stops accepting everywhere and
 *   a dead worker's teardown closes it under the others: the engine then exits for its supervisor to
 *   restart it. Every handle still closes that number once, so a close after the first could hit a
 *   descriptor some thread opened meanwhile: shutdown therefore first stops every worker dispatching
 *   (no worker opens a descriptor after that), then has all of them close at once.
 */
export type ListenerStrategy = 'reuse-port' | 'shared-fd';

export function listenerStrategy(nodeVersion = process.versions.node): ListenerStrategy {
  const [major = 0, minor = 0] = nodeVersion.split('.').map(Number);
  const hasReusePort = major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
  return hasReusePort ? 'reuse-port' : 'shared-fd';
}

/** Whether a worker that dies can be replaced while the others keep their listener and connections. */
export function survivesWorkerDeath(strategy: ListenerStrategy): boolean {
  return strategy === 'reuse-port';
}

export interface WorkerListener {
  port: number;
  /** The shared descriptor, reported by the shared-fd owner only. */
  fd: number | undefined;
  /** Closes this worker's handle on the listening socket (see above for when it is safe). */
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
 * With `reuse-port`, a second engine on the same port would bind too (SO_REUSEPORT lets every socket of
 * the same user share it) and take half the connections. The engine therefore first claims the address:
 * an abstract Unix socket named after it (Linux; no file, gone with the process) that only one process can
 * hold. Close the returned server to give the claim up.
 */
export async function claimAddress(host: string, port: number): Promise<net.Server> {
  const claim = net.createServer();
  await new Promise<void>((resolve, reject) => {
    claim.once('error', (error: NodeJS.ErrnoException) =>
      reject(Object.assign(new Error(`${host}:${port} is held by another Rivulet engine (EADDRINUSE)`), { code: 'EADDRINUSE' })),
    );
    claim.listen(`\0rivulet-tls-listener-${host}-${port}`, () => resolve());
  });
  return claim;
}

export const AFFINITY_BIND_ERROR = 'affinity port';

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
    // The prefix lets the engine name the right config key when the bind fails.
    server.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`${AFFINITY_BIND_ERROR} ${port}: ${error.code ?? error.message}`)));
    server.listen({ host, port }, () => resolve());
  });
  return server;
}
