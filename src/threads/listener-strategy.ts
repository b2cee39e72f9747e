/**
 * How all workers accept on one TLS port (docs/architecture.md#listener-strategies). The main thread
 * picks the strategy here and gives each worker its part as a ListenPlan; there are two ways:
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
