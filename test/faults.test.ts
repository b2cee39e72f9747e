import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { emptyTunnelProperties } from '../src/protocol/messages.js';
import { apiRequest } from './helpers/api-client.js';
import { edgeRequest } from './helpers/edge-client.js';
import { servedFingerprint, sleep, waitFor, type TestEngine } from './helpers/engine.js';
import { configTree, devCertificates, writeConfig } from './helpers/fixtures.js';
import { spawnCli, type RunningCli } from './helpers/process.js';
import { publishTestTunnel, type PublishedTunnel } from './helpers/published-tunnel.js';
import { RawConnection, mintToken } from './helpers/rstrm-agent.js';

/**
 * Faults the engine must ride out: an agent killed or frozen mid-traffic, every agent reconnecting at
 * once after a restart, the Engine API's socket file removed, the certificate files deleted.
 */
let t: TestEngine;
let port: number;
let upstreamPort: number;
/** Another tenant, whose traffic must not notice anything; its upstream serves the CLI agents too. */
let steady: PublishedTunnel;

before(async () => {
  steady = await publishTestTunnel('steady', { engine: { dataplane: { workers: 2 } } });
  ({ t, port } = steady);
  upstreamPort = (steady.upstream.address() as net.AddressInfo).port;
});
after(() => steady.stop());

const host = (label: string): string => `${label}.t.localhost`;

/** `rivulet forward` publishing the upstream at `<label>.t.localhost`, online. */
async function cliAgent(label: string): Promise<RunningCli> {
  const agent = spawnCli(['forward', String(upstreamPort), '--host', label, '--retry-interval', '300', '-o', 'json'], {
    env: {
      RSTREAM_ENGINE: `127.0.0.1:${port}`,
      RSTREAM_AUTHENTICATION_TOKEN: await mintToken({ sub: label }),
      NODE_EXTRA_CA_CERTS: t.certs.caCert,
      RSTREAM_CONFIG: '/nonexistent/rstream.yaml',
    },
  });
  await waitFor(() => agent.logs.some((line) => line.status === 'online'), 15_000);
  return agent;
}

const tunnelLive = (hostname: string): boolean =>
  [...t.engine.control.registry.tunnels.values()].some((tunnel) => tunnel.properties.hostname === host(hostname));

/** A response that stays open (the upstream's `/sse`): resolves once its first event arrived. */
function openStreamingResponse(hostname: string): Promise<{ outcome: Promise<'complete' | 'cut'> }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, servername: hostname, ca: t.ca, path: '/sse', headers: { host: hostname }, agent: new https.Agent() }, (res) => {
      const outcome = new Promise<'complete' | 'cut'>((settle) => res.once('close', () => settle(res.complete ? 'complete' : 'cut')));
      res.once('data', () => resolve({ outcome }));
      res.on('error', () => {});
    });
    req.on('error', reject);
  });
}

/** A pause between the other tenant's requests: a tenant that keeps using the engine, not a load test (that is bench/). */
const STEADY_PACE_MS = 10;

/** Requests to the other tenant, each on a new connection, until stopped: every one must succeed. */
function steadyTraffic(): { stop: () => Promise<number> } {
  let running = true;
  let served = 0;
  const loop = (async () => {
    while (running) {
      const reply = await edgeRequest(port, t.ca, host('steady'), { path: '/echo', agent: new https.Agent() });
      assert.equal(reply.status, 200, `the other tenant got ${reply.status}: ${reply.body.toString()}`);
      served++;
      await sleep(STEADY_PACE_MS);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return served;
    },
  };
}

describe('agents that fail', () => {
  test('an agent SIGKILLed with 20 transfers running: those downstreams are cut at once, its tunnel withdrawn, the other tenant unaffected', async () => {
    const agent = await cliAgent('doomed');
    const transfers = await Promise.all(Array.from({ length: 20 }, () => openStreamingResponse(host('doomed'))));
    const traffic = steadyTraffic();
    await sleep(200);
    const killedAt = Date.now();
    agent.child.kill('SIGKILL');
    const outcomes = await Promise.all(transfers.map((transfer) => transfer.outcome));
    const cutAfterMs = Date.now() - killedAt;
    assert.deepEqual(new Set(outcomes), new Set(['cut']), 'every transfer was cut, none looked complete');
    assert.ok(cutAfterMs < 2000, `the transfers were cut ${cutAfterMs} ms after the kill`);
    await waitFor(() => !tunnelLive('doomed'), 2000);
    const gone = await edgeRequest(port, t.ca, host('doomed'), { path: '/echo', agent: new https.Agent() });
    assert.deepEqual([gone.status, gone.headers['x-rivulet-error']], [404, 'tunnel_not_found']);
    await sleep(200);
    assert.ok((await traffic.stop()) > 0);
  });

  test('an agent SIGSTOPped: its tunnel is withdrawn within the liveness bound, and back once SIGCONT lets it reconnect', async () => {
    const agent = await cliAgent('frozen');
    try {
      const stoppedAt = Date.now();
      agent.child.kill('SIGSTOP');
      const traffic = steadyTraffic();
      // The CLI offers 5 s heartbeats without a timeout: the engine allows 15 s of silence (+1 s slack).
      await waitFor(() => !tunnelLive('frozen'), 20_000);
      const withdrawnAfter = (Date.now() - stoppedAt) / 1000;
      assert.ok(withdrawnAfter >= 14 && withdrawnAfter < 18, `withdrawn after ${withdrawnAfter} s`);
      assert.ok((await traffic.stop()) > 0);
      agent.child.kill('SIGCONT');
      await waitFor(() => tunnelLive('frozen'), 10_000);
      const reply = await edgeRequest(port, t.ca, host('frozen'), { path: '/echo', agent: new https.Agent() });
      assert.equal(reply.status, 200, reply.body.toString());
    } finally {
      agent.child.kill('SIGCONT');
      agent.child.kill('SIGINT');
      await agent.exited;
    }
  });
});

/**
 * An agent like `rivulet forward --retry-interval 250`: keeps one private tunnel open and, whenever its
 * control channel closes, reconnects every 250 ms until the engine takes it again.
 */
class ReconnectingAgent {
  readonly failures: string[] = [];
  connected = false;
  private stopped = false;

  constructor(
    private readonly enginePort: () => number,
    private readonly ca: () => Buffer,
    private readonly name: string,
    private readonly token: string,
  ) {}

  async run(): Promise<void> {
    while (!this.stopped) {
      let channel: RawConnection;
      try {
        channel = await RawConnection.connect(this.enginePort(), this.ca());
      } catch {
        await sleep(250); // the engine is not listening (yet): what a restart looks like
        continue;
      }
      try {
        channel.send({ type: 'open_control_channel_req', client_details: { agent: 'test', token: this.token, protocol_version: '1.4.5' } });
        const opened = await channel.next('open_control_channel_rsp', 30_000);
        if ('error' in opened.result) throw new Error(`control channel refused: ${JSON.stringify(opened.result.error)}`);
        channel.send({ type: 'open_tunnel_req', request_id: '1', tunnel_properties: { ...emptyTunnelProperties(), publish: false, name: this.name } });
        const tunnel = await channel.next('open_tunnel_rsp', 30_000);
        if ('error' in tunnel.result) throw new Error(`tunnel refused: ${JSON.stringify(tunnel.result.error)}`);
        this.connected = true;
        this.current = channel;
        await channel.closed;
        this.connected = false;
      } catch (error) {
        // A channel the shutdown closed under the handshake is part of a restart; anything else is a failure.
        if (!channel.socket.destroyed) this.failures.push((error as Error).message);
        channel.close();
        this.connected = false;
      }
    }
  }

  private current: RawConnection | undefined;

  stop(): void {
    this.stopped = true;
    this.current?.close();
  }
}

describe('restarts', () => {
  test('1,000 agents reconnecting at once after an engine restart are all back, with no refusal', async (context) => {
    const AGENTS = 1000;
    // The engine runs in its own process here, so that the agents' work in this one does not slow it.
    const certs = await devCertificates();
    const ca = fs.readFileSync(certs.caCert);
    const start = async (listen: string): Promise<{ engine: RunningCli; port: number }> => {
      const engine = spawnCli(['engine', '-c', writeConfig(configTree(certs, { engine: { host: 'localhost', log_level: 'info' }, tls: { enabled: true, listen_addr: listen } }))]);
      return { engine, port: Number((await engine.waitForLog('ready')).public_port) };
    };
    const token = await mintToken({ sub: 'fleet' });
    const tunnelCount = async (enginePort: number): Promise<number> => {
      const reply = await apiRequest(enginePort, ca, '/api/tunnels', { token });
      return reply.status === 200 ? (reply.json() as unknown[]).length : -1;
    };
    const untilAllBack = async (enginePort: number): Promise<void> => {
      const deadline = Date.now() + 60_000;
      while ((await tunnelCount(enginePort)) < AGENTS) {
        assert.ok(Date.now() < deadline, 'the tunnels did not all come back');
        await sleep(100);
      }
    };
    let { engine, port: enginePort } = await start('127.0.0.1:0');
    const agents = Array.from({ length: AGENTS }, (_, index) => new ReconnectingAgent(() => enginePort, () => ca, `fleet-${index}`, token));
    const running = agents.map((agent) => agent.run());
    try {
      await untilAllBack(enginePort);
      engine.child.kill('SIGTERM');
      await engine.exited;
      const restartedAt = Date.now();
      ({ engine } = await start(`127.0.0.1:${enginePort}`));
      const listeningAfter = Date.now() - restartedAt;
      await untilAllBack(enginePort);
      const backAfter = Date.now() - restartedAt;
      assert.ok(agents.every((agent) => agent.connected));
      assert.deepEqual(agents.flatMap((agent) => agent.failures), [], 'no agent was refused');
      context.diagnostic(`engine ready again after ${listeningAfter} ms; all ${AGENTS} tunnels back after ${backAfter} ms`);
    } finally {
      for (const agent of agents) agent.stop();
      engine.child.kill('SIGKILL');
      await Promise.all(running);
    }
  });
});

describe('the engine’s own files', () => {
  test('the Engine API’s Unix socket removed: the engine listens on a new one within a second, and the API answers', async () => {
    const token = await mintToken();
    const before = t.engine.apiSocketPath;
    assert.equal((await apiRequest(port, t.ca, '/api/tunnels', { token })).status, 200);
    fs.rmSync(path.dirname(before), { recursive: true, force: true });
    await waitFor(() => t.engine.apiSocketPath !== before, 3000);
    assert.ok(fs.existsSync(t.engine.apiSocketPath));
    await sleep(100); // the workers have the new path
    for (let request = 0; request < 5; request++) {
      const reply = await apiRequest(port, t.ca, '/api/tunnels', { token });
      assert.equal(reply.status, 200, reply.text);
    }
  });

  test('the certificate files deleted while serving: the pair in use keeps serving, one failed reload is counted; new files are taken', async () => {
    const served = await servedFingerprint(port, t.ca);
    const { cert, key } = t.certs;
    const failedBefore = t.engine.certificates.reloads.failed;
    fs.rmSync(cert);
    fs.rmSync(key);
    for (let handshake = 0; handshake < 3; handshake++) {
      await sleep(1100); // the files are compared at most once a second
      assert.equal(await servedFingerprint(port, t.ca), served);
      assert.equal((await edgeRequest(port, t.ca, host('steady'), { path: '/echo', agent: new https.Agent() })).status, 200);
    }
    assert.equal(t.engine.certificates.reloads.failed, failedBefore + 1, 'the missing files are reported once, not on every check');

    const replacement = await devCertificates();
    fs.copyFileSync(replacement.cert, cert);
    fs.copyFileSync(replacement.key, key);
    await sleep(1100);
    await servedFingerprint(port, fs.readFileSync(replacement.caCert)); // this handshake notices the files
    assert.notEqual(await servedFingerprint(port, fs.readFileSync(replacement.caCert)), served, 'the new pair is served');
  });
});
