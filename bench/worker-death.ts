import fs from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { setTimeout as delay } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import type { RunningEngine } from '../src/engine.js';
import { listenerStrategy, survivesWorkerDeath } from '../src/threads/listener-strategy.js';
import { benchCertificates, numberArgument, startBenchEngine, startEngineProcess, summary, writeResult, type BenchChild } from './harness.js';
import { load, startBenchUpstream, startForwardAgent, tunnelTarget } from './load.js';
import type { ScenarioResult } from './report.js';

/**
 * A data-plane worker dies mid-traffic. The engine runs with two workers, four `rivulet forward`
 * agents publish a tunnel each, autocannon loads one tunnel for --seconds, and a third of the way in
 * a worker dies. Measured: requests that failed, how long the tunnel did not answer (a probe on a
 * fresh connection every 25 ms) and how long until the listener accepted on the dead worker's behalf.
 *   reuse-port (Node >= 22.12): the engine runs in this process and one worker thread is terminated;
 *     done twice per run, loading a tunnel whose agent's control channel is on the surviving worker,
 *     and one whose channel died with the worker. The engine replaces the worker in place.
 *   shared-fd (Node 20): a dead worker takes the shared listening descriptor with it and the engine
 *     exits, so the engine runs as its own process, is killed, and is started again on the same port at
 *     once, as a process supervisor would.
 * Usage: node dist/bench/worker-death.js [--runs N] [--seconds S] [--connections C] [--out FILE]
 */

const RUNS = numberArgument('runs', 3);
const SECONDS = numberArgument('seconds', 6);
const CONNECTIONS = numberArgument('connections', 50);
const AGENTS = 4;
/** What `rivulet forward` is given: the first wait before it reconnects after losing its channel. */
const AGENT_RETRY_MS = 1000;
const PROBE_EVERY_MS = 25;
/** Probes in a row that must answer before the tunnel counts as serving again. */
const PROBES_TO_RECOVER = 4;
const GIVE_UP_MS = 60_000;

const STRATEGY = listenerStrategy();
const REPLACED_IN_PLACE = survivesWorkerDeath(STRATEGY);
const SERIES = REPLACED_IN_PLACE ? ['agent on the surviving worker', 'agent on the killed worker'] : ['engine restarted'];

interface RunFigures {
  /** autocannon's errors and non-2xx answers; it re-dials at once, so refused dials count too. */
  failed: number;
  /** From the death until the tunnel answered PROBES_TO_RECOVER probes in a row. */
  unavailableMs: number;
  /** From the death until the listener accepted for the dead worker (or the restarted engine) again. */
  acceptingMs: number;
}

interface Bench {
  certs: Awaited<ReturnType<typeof benchCertificates>>;
  ca: Buffer;
  upstreamPort: number;
}

/** An engine with two workers, and how one of them dies in it. */
interface EngineUnderTest {
  port: number;
  /** Kills a worker (which one may depend on where `label`'s agent is); resolves once it is dead. */
  killWorker(label: string, series: string): Promise<void>;
  /** Resolves once a connection was accepted in the dead worker's place. */
  acceptingAgain(): Promise<void>;
  stop(): Promise<void>;
}

/** reuse-port: the engine in this process; a worker thread is terminated and replaced in place. */
async function inProcessEngine(bench: Bench): Promise<EngineUnderTest> {
  const engine = await startBenchEngine(bench.certs, { workers: 2 });
  const threads = (engine.supervisor as unknown as { pool: { threads: Worker[] } }).pool.threads;
  let victim = 0;
  let acceptedBefore = 0;
  return {
    port: engine.publicPort,
    async killWorker(label, series) {
      const holder = workerOfTunnel(engine, label) ?? 0;
      victim = series === 'agent on the killed worker' ? holder : 1 - holder;
      acceptedBefore = acceptedBy(engine, victim);
      await threads[victim]!.terminate();
    },
    async acceptingAgain() {
      // Fresh connections, which the kernel spreads over the listening sockets, until one lands on the replacement.
      while (acceptedBy(engine, victim) <= acceptedBefore) {
        await handshake(engine.publicPort, bench.ca);
        await delay(5);
      }
    },
    stop: () => engine.shutdown(0),
  };
}

/** shared-fd: the engine as its own process, killed and started again on its port. */
async function processEngine(bench: Bench): Promise<EngineUnderTest> {
  const dataplane = (): string => '{ workers: 2 }';
  const started = await startEngineProcess(bench.certs, dataplane);
  const { port } = started;
  let { engine } = started;
  return {
    port,
    async killWorker() {
      engine.child.kill('SIGKILL');
      await engine.stop();
    },
    async acceptingAgain() {
      ({ engine } = await startEngineProcess(bench.certs, dataplane, [], port));
    },
    stop: () => engine.stop(),
  };
}

function acceptedBy(engine: RunningEngine, worker: number): number {
  const row = engine.counters.row(worker) as unknown as Record<string, number>;
  return Object.entries(row).reduce((sum, [name, value]) => (name.startsWith('accepted_') ? sum + value : sum), 0);
}

/** The worker holding the control channel of the agent that published `label`, if it is online. */
function workerOfTunnel(engine: RunningEngine, label: string): number | undefined {
  const { registry } = engine.control;
  for (const tunnel of registry.tunnels.values()) {
    if (tunnel.properties.hostname === `${label}.t.localhost`) return registry.clients.get(tunnel.clientId)?.worker;
  }
  return undefined;
}

/**
 * A TLS handshake with the engine's own host (the Engine API's address), then a clean close: a client
 * that destroys its socket at once may never deliver its Finished, and the worker counts a connection
 * only when its handshake completes. Given up after a second (a connection queued on the dead worker's
 * socket as it closed is never answered).
 */
function handshake(port: number, ca: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['http/1.1'], ca }, () => socket.end());
    socket.setTimeout(1000, () => socket.destroy());
    socket.once('close', () => resolve());
    socket.once('error', () => {});
  });
}

/** One request on a fresh connection: did the tunnel answer 200? */
function probe(port: number, label: string, ca: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const host = `${label}.t.localhost`;
    const request = https.get({ host: '127.0.0.1', port, path: '/small', servername: host, headers: { host: `${host}:${port}` }, ca, agent: false, timeout: 2000 }, (response) => {
      response.resume();
      response.once('end', () => resolve(response.statusCode === 200));
      response.once('error', () => resolve(false));
    });
    request.once('timeout', () => request.destroy());
    request.once('error', () => resolve(false));
  });
}

/** Milliseconds from `since` until the tunnel answered PROBES_TO_RECOVER probes in a row. */
async function unavailableFor(port: number, label: string, ca: Buffer, since: number): Promise<number> {
  let answeredInARow = 0;
  let firstOfRow = 0;
  while (answeredInARow < PROBES_TO_RECOVER) {
    if (performance.now() - since > GIVE_UP_MS) throw new Error(`${label} did not answer again within a minute`);
    const sent = performance.now();
    if (await probe(port, label, ca)) {
      if (answeredInARow++ === 0) firstOfRow = sent;
    } else answeredInARow = 0;
    await delay(PROBE_EVERY_MS);
  }
  return Math.max(0, firstOfRow - since);
}

async function oneRun(bench: Bench, series: string): Promise<RunFigures> {
  const engine = REPLACED_IN_PLACE ? await inProcessEngine(bench) : await processEngine(bench);
  const labels = Array.from({ length: AGENTS }, (_, index) => `death${index}`);
  const agents: BenchChild[] = [];
  try {
    const agentFlags = ['--retry-interval', String(AGENT_RETRY_MS)];
    for (const label of labels) agents.push(await startForwardAgent(bench.certs, engine.port, bench.upstreamPort, label, agentFlags));
    const loaded = labels[0]!;
    const loadDone = load(tunnelTarget(series, loaded, engine.port), CONNECTIONS, SECONDS);
    await delay((SECONDS * 1000) / 3);
    const diedAt = performance.now();
    await engine.killWorker(loaded, series);
    const [figures, unavailableMs, acceptingMs] = await Promise.all([
      loadDone,
      unavailableFor(engine.port, loaded, bench.ca, diedAt),
      // The give-up timer is unref'd: it must not hold the process for a minute after an early answer.
      Promise.race([engine.acceptingAgain().then(() => performance.now() - diedAt), delay(GIVE_UP_MS, undefined, { ref: false }).then(() => Promise.reject(new Error('nothing accepted for a minute')))]),
    ]);
    return { failed: figures.errors, unavailableMs, acceptingMs };
  } finally {
    for (const agent of agents.reverse()) await agent.stop();
    await engine.stop();
  }
}

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const upstream = await startBenchUpstream(certs);
  const bench: Bench = { certs, ca: fs.readFileSync(certs.caCert), upstreamPort: upstream.http };
  const runs = new Map<string, RunFigures[]>(SERIES.map((name) => [name, []]));
  try {
    for (let run = 1; run <= RUNS; run++) {
      for (const series of run % 2 ? SERIES : [...SERIES].reverse()) {
        const figures = await oneRun(bench, series);
        runs.get(series)!.push(figures);
        process.stderr.write(
          `run ${run}/${RUNS} ${series}: ${figures.failed} failed, unavailable ${Math.round(figures.unavailableMs)} ms, accepting after ${Math.round(figures.acceptingMs)} ms\n`,
        );
      }
    }
  } finally {
    await upstream.child.stop();
  }
  const series = (pick: (figures: RunFigures) => number) => Object.fromEntries(SERIES.map((name) => [name, summary(runs.get(name)!.map(pick))]));
  const unavailable = series((figures) => figures.unavailableMs);
  const bystander = unavailable['agent on the surviving worker']?.median;
  const result: ScenarioResult = {
    scenario: 'worker-death',
    title: `A worker dies mid-traffic (${CONNECTIONS} connections for ${SECONDS} s, death at ${(SECONDS / 3).toFixed(1)} s; listener strategy ${STRATEGY})`,
    runs: RUNS,
    rows: [
      { case: 'worker died', metric: 'failed requests', unit: 'requests', higherIsBetter: false, series: series((figures) => figures.failed) },
      { case: 'worker died', metric: 'tunnel unavailable', unit: 'ms', higherIsBetter: false, series: unavailable },
      { case: 'worker died', metric: 'listener accepting again', unit: 'ms', higherIsBetter: false, series: series((figures) => figures.acceptingMs) },
    ],
    targets:
      bystander === undefined
        ? []
        : [{ target: 'a tunnel whose agent is on the surviving worker keeps serving (unavailable < 500 ms)', measured: `${Math.round(bystander)} ms`, met: bystander < 500 }],
    notes: [
      REPLACED_IN_PLACE
        ? 'reuse-port: a worker thread of the engine (in the scenario\'s process) is terminated and replaced in place after a 500 ms guard against crash loops; only its connections and control channels are lost.'
        : 'shared-fd: a dead worker takes the shared listening descriptor with it and the engine exits, so the engine process is killed and started again on the same port at once (as a process supervisor would), and every agent reconnects.',
      'Failed requests are autocannon\'s errors and non-2xx answers; it re-dials a lost connection at once, so while nothing listens every refused dial counts.',
      `Agents reconnect after ${AGENT_RETRY_MS} ms ±20 % (\`--retry-interval ${AGENT_RETRY_MS}\`; the default is 5000). "Tunnel unavailable" runs from the death to the first of ${PROBES_TO_RECOVER} answered probes in a row, one every ${PROBE_EVERY_MS} ms on a fresh connection.`,
    ],
  };
  writeResult('worker-death', { ...result });
}

await main();
