import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { test } from 'node:test';
import { listenerStrategy } from '../src/threads/listener-strategy.js';
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

test("reusePort (Node >= 22.12): a worker killed mid-traffic is replaced; the other worker's connections, agents and traffic go on; new connections reach the replacement", {
  skip: listenerStrategy() !== 'reuse-port' && 'needs Node >= 22.12 (reusePort)',
}, async () => {
  const t = await startTestEngine();
  try {
    const port = t.engine.publicPort;
    const token = await mintToken();
    // Agents' control channels, spread by the kernel over both workers.
    const liveness = { heartbeat_interval_ms: 1000, heartbeat_timeout_ms: 10_000 }; // negotiated: heartbeats are answered
    const agents = await Promise.all(Array.from({ length: 8 }, () => openControlChannel(port, t.ca, token, liveness)));
    await waitFor(() => agents.every(({ clientId }) => t.engine.control.registry.clients.has(clientId)));
    const workerOf = (clientId: string): number => t.engine.control.registry.clients.get(clientId)!.worker;
    const onDead = agents.filter(({ clientId }) => workerOf(clientId) === 0);
    const onSurvivor = agents.filter(({ clientId }) => workerOf(clientId) === 1);
    assert.ok(onSurvivor.length > 0, 'some control channel is on worker 1');
    const held = await Promise.all(
      Array.from({ length: 20 }, () => handshake(port, { servername: 'localhost', ALPNProtocols: ['http/1.1'], ca: t.ca })),
    );
    // Traffic on the survivor's control channels while worker 0 dies: heartbeats answered throughout.
    let sequence = 0;
    let answered = 0;
    let traffic = true;
    const heartbeats = (async () => {
      while (traffic) {
        sequence++;
        for (const { agent } of onSurvivor) agent.send({ type: 'heartbeat', sequence, acknowledgement: 0 });
        for (const { agent } of onSurvivor) if ((await agent.next('heartbeat', 2000)).acknowledgement === sequence) answered++;
        await sleep(20);
      }
    })();
    await sleep(200);
    await threadsOf(t.engine.supervisor)[0]!.terminate();
    await sleep(1500);
    traffic = false;
    await heartbeats;
    assert.equal(answered, sequence * onSurvivor.length, 'every heartbeat on the surviving worker was answered');
    const survivors = held.filter((session) => !session.socket.destroyed);
    assert.ok(survivors.length > 0 && survivors.length < 20, `only the dead worker's connections were lost (${survivors.length} left)`);
    for (const { clientId } of onSurvivor) assert.ok(t.engine.control.registry.clients.has(clientId), 'a control channel on the survivor stays');
    await waitFor(() => onDead.every(({ clientId }) => !t.engine.control.registry.clients.has(clientId)));
    const acceptedByReplacement = t.engine.counters.row(0).accepted_api;
    for (let i = 0; i < 20; i++) {
      const fresh = await handshake(port, { servername: 'localhost', ALPNProtocols: ['http/1.1'], ca: t.ca });
      fresh.socket.destroy();
    }
    assert.ok(t.engine.counters.row(0).accepted_api > acceptedByReplacement, 'the replacement (worker 0 again) accepts new connections');
    held.forEach((session) => session.socket.destroy());
    agents.forEach(({ agent }) => agent.close());
  } finally {
    await t.stop();
  }
});
