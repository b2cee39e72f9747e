import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { STREAM_KINDS } from '../../src/threads/counters.js';
import { emptyTunnelProperties } from '../../src/protocol/messages.js';
import { apiRequest } from '../helpers/api-client.js';
import { captureClientHello } from '../helpers/client-hello.js';
import { serveEcho } from '../helpers/echo-agent.js';
import { sleep, startTestEngine, waitFor, type TestEngine } from '../helpers/engine.js';
import { RawConnection, mintToken, openControlChannel } from '../helpers/rstrm-agent.js';

/** The private tunnel the healthy agent keeps open for the whole run; dials reach its echo. */
export const HEALTHY_TUNNEL = 'fuzz-healthy';
/** How long the engine gets to let go of a finished case's connections and streams. */
const SETTLE_MS = 3000;

/** What the engine holds: each count must come back to where it was before a case. */
export interface Holdings {
  /** TCP connections the workers hold on the public listener. */
  connections: number;
  /** Spliced proxy connections, every kind. */
  streams: number;
  /** Pending + active streams counted against the healthy tunnel's limit, in shared memory. */
  healthyTunnelStreams: number;
  clients: number;
  tunnels: number;
}

/** Between cases the engine holds the healthy agent's control channel, its client and its tunnel, and nothing else. */
const BASELINE: Holdings = { connections: 1, streams: 0, healthyTunnelStreams: 0, clients: 1, tunnels: 1 };

/**
 * A real engine (two worker threads) under fuzzing, with one healthy agent connected before any
 * hostile peer: its control channel, its tunnel and the engine's workers must outlive every case.
 */
export class FuzzEngine {
  private running: TestEngine | undefined;
  private healthyAgent: RawConnection | undefined;
  private healthyTunnelId = '';
  private heartbeats = 0;
  private workerThreadIds: number[] = [];
  /** Reasons the engine gave for stopping (a worker died under the shared-descriptor strategy). */
  private readonly fatal: string[] = [];
  /** A valid engine token (dials and control channels that must get past authentication). */
  token = '';
  /** A real ClientHello offering rstrm/1, for mutations in place of a TLS handshake. */
  clientHello: Buffer = Buffer.alloc(0);

  get port(): number {
    return this.engine.engine.publicPort;
  }

  get ca(): Buffer {
    return this.engine.ca;
  }

  private get engine(): TestEngine {
    if (!this.running) throw new Error('the fuzz engine is not started');
    return this.running;
  }

  async start(): Promise<void> {
    // A stream limit gives the healthy tunnel a shared-memory counter of its pending + active streams.
    this.running = await startTestEngine({ dataplane: { workers: 2, max_streams_per_tunnel: 64 } }, undefined, (reason) => this.fatal.push(reason));
    this.token = await mintToken();
    this.clientHello = await captureClientHello({ servername: 'localhost', ALPNProtocols: ['rstrm/1'] });
    const { agent } = await openControlChannel(this.port, this.ca, this.token, { heartbeat_interval_ms: 300_000, heartbeat_timeout_ms: 900_000 });
    this.healthyAgent = agent;
    agent.send({ type: 'open_tunnel_req', request_id: 'healthy', tunnel_properties: { ...emptyTunnelProperties(), publish: false, name: HEALTHY_TUNNEL } });
    const reply = await agent.next('open_tunnel_rsp');
    if (!('tunnel_properties' in reply.result)) throw new Error(`healthy tunnel refused: ${JSON.stringify(reply.result.error)}`);
    this.healthyTunnelId = reply.result.tunnel_properties.id!;
    serveEcho(agent, this.port, this.ca, { zeroRtt: false, order: 'go' });
    this.workerThreadIds = this.workerThreads().map((worker) => worker.threadId);
    await waitFor(() => this.engine.engine.control.registry.tunnels.has(this.healthyTunnelId));
    await this.checkServing();
    await this.settle();
  }

  async stop(): Promise<void> {
    this.healthyAgent?.close();
    await this.running?.stop();
  }

  holdings(): Holdings {
    const totals = this.engine.engine.counters.totals();
    const registry = this.engine.engine.control.registry;
    return {
      connections: totals.connections_open,
      streams: STREAM_KINDS.reduce((sum, kind) => sum + totals[`streams_active_${kind}`], 0),
      healthyTunnelStreams: this.streamsCountedOn(this.healthyTunnelId),
      clients: registry.clients.size,
      tunnels: registry.tunnels.size,
    };
  }

  /**
   * Waits until the engine holds exactly the baseline again, or throws with what it still holds: a
   * connection, stream, client or tunnel that a finished case left behind.
   */
  async settle(): Promise<void> {
    const deadline = Date.now() + SETTLE_MS;
    for (let now = this.holdings(); !isDeepStrictEqual(now, BASELINE); now = this.holdings()) {
      if (Date.now() > deadline) throw new Error(`the engine still holds ${JSON.stringify(now)} ${SETTLE_MS} ms after the case, not ${JSON.stringify(BASELINE)}`);
      await sleep(2);
    }
  }

  /**
   * The healthy agent is unharmed: its control channel answers a heartbeat, its client and tunnel are
   * registered, no worker died or was replaced, and the engine never asked to stop.
   */
  async checkHealthy(): Promise<void> {
    const agent = this.healthyAgent!;
    const sequence = ++this.heartbeats;
    agent.send({ type: 'heartbeat', sequence, acknowledgement: 0 });
    assert.equal((await agent.next('heartbeat', 2000)).acknowledgement, sequence, 'the healthy control channel acknowledges its heartbeat');
    const registry = this.engine.engine.control.registry;
    assert.ok(registry.tunnels.has(this.healthyTunnelId), 'the healthy tunnel is still registered');
    assert.deepEqual(this.fatal, [], 'the engine reported no fatal error');
    assert.deepEqual(this.workerThreads().map((worker) => worker.threadId), this.workerThreadIds, 'the same worker threads run');
  }

  /** From outside: the Engine API lists the healthy tunnel, and a private dial to it reaches its echo. */
  async checkServing(): Promise<void> {
    const reply = await apiRequest(this.port, this.ca, '/api/tunnels', { token: this.token });
    assert.equal(reply.status, 200);
    const listed = (reply.json() as Array<{ id: string }>).map((tunnel) => tunnel.id);
    assert.ok(listed.includes(this.healthyTunnelId), `the Engine API lists the healthy tunnel (${listed.join(', ')})`);
    const dialer = await RawConnection.connect(this.port, this.ca);
    try {
      dialer.send({ type: 'stream_req', client_details: { token: this.token }, tunnel_id_name: HEALTHY_TUNNEL, zero_rtt: false });
      const answer = await dialer.next('stream_rsp');
      assert.ok('stream_id' in answer.result, `dial refused: ${JSON.stringify(answer.result)}`);
      dialer.raw();
      dialer.socket.write('still serving');
      assert.equal((await dialer.readPayload(13)).toString(), 'still serving');
    } finally {
      dialer.close();
    }
  }

  /** The pool's real threads: a dead worker leaves this list or is replaced by a new thread id. */
  private workerThreads(): Worker[] {
    return (this.engine.engine.supervisor as unknown as { pool: { threads: Worker[] } }).pool.threads;
  }

  /**
   * The tunnel's slot in the engine's stream-limit counters, the one place that counts pending
   * streams (a dial waiting for its proxy connection) as well as spliced ones.
   */
  private streamsCountedOn(tunnelId: string): number {
    return this.engine.engine.control.streamsCounted(tunnelId);
  }
}
