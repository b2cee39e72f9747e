import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { test } from 'node:test';
import { listenerStrategy } from '../src/dataplane/listener.js';
import type { WorkerSupervisor } from '../src/control/worker-supervisor.js';
import { handshake, sleep, startTestEngine, waitFor } from './helpers/engine.js';
import { mintToken, openControlChannel } from './helpers/rstrm-agent.js';

/** The pool's real threads; terminating one is a worker death as the supervisor sees it. */
function threadsOf(supervisor: WorkerSupervisor): Worker[] {
  return (supervisor as unknown as { pool: { threads: Worker[] } }).pool.threads;
}

test('shared descriptor (Node 20): a dead worker makes the engine exit for its supervisor', {
  skip: listenerStrategy() !== 'shared-fd' && 'this runtime has reusePort',
}, async () => {
  let fatal: string | undefined;
  const t = await startTestEngine({}, undefined, (reason) => (fatal = reason));
  try {
    const { agent, clientId } = await openControlChannel(t.engine.publicPort, t.ca, await mintToken());
    await waitFor(() => t.engine.control.registry.clients.has(clientId));
    const holder = t.engine.control.registry.clients.get(clientId)!.worker;
    await threadsOf(t.engine.supervisor)[holder]!.terminate();
    for (let waited = 0; fatal === undefined && waited < 3000; waited += 50) await sleep(50);
    assert.match(fatal ?? '', /^worker \d died .*shared listening descriptor/);
    assert.ok(!t.engine.control.registry.clients.has(clientId), 'its control channels were torn down first');
    agent.close();
  } finally {
    await t.stop();
  }
});

test('reusePort (Node >= 22.12): a dead worker is replaced and the others keep their connections', {
  skip: listenerStrategy() !== 'reuse-port' && 'needs Node >= 22.12 (reusePort)',
}, async () => {
  const t = await startTestEngine();
  try {
    const port = t.engine.publicPort;
    const held = await Promise.all(
      Array.from({ length: 20 }, () => handshake(port, { servername: 'localhost', ALPNProtocols: ['http/1.1'], ca: t.ca })),
    );
    await threadsOf(t.engine.supervisor)[0]!.terminate();
    await sleep(1500);
    const survivors = held.filter((session) => !session.socket.destroyed);
    assert.ok(survivors.length > 0 && survivors.length < 20, `only the dead worker's connections were lost (${survivors.length} left)`);
    for (let i = 0; i < 20; i++) {
      const fresh = await handshake(port, { servername: 'localhost', ALPNProtocols: ['http/1.1'], ca: t.ca });
      fresh.socket.destroy();
    }
    held.forEach((session) => session.socket.destroy());
  } finally {
    await t.stop();
  }
});
