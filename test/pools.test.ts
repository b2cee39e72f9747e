import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { emptyTunnelProperties, ErrorCode, type TunnelProperties } from '../src/protocol/messages.js';
import { apiRequest } from './helpers/api-client.js';
import { edgeRequest, edgeSession, h2Request } from './helpers/edge-client.js';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { startForward } from './helpers/forward.js';
import { spawnCli, type RunningCli } from './helpers/process.js';
import { mintToken, openControlChannel, type RawConnection } from './helpers/rstrm-agent.js';

/**
 * Endpoint pools (docs/pools.md): real `rivulet forward` agents sharing a hostname on an engine with
 * tunnels.pooling.enabled and two workers; each agent forwards to an upstream of its own, which counts
 * what it served.
 */

/** An HTTP upstream that names itself in every answer and counts its requests; WebSockets echo. */
async function countingUpstream(name: string): Promise<{ server: http.Server; port: number; served: () => number }> {
  let served = 0;
  const server = http.createServer((req, res) => {
    served++;
    req.resume();
    req.on('end', () => res.end(name));
  });
  new WebSocketServer({ server }).on('connection', (socket) => socket.on('message', (data) => socket.send(`${name}:${data}`)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as net.AddressInfo).port, served: () => served };
}

/** A TCP server that says its name and ends, for TLS tunnels and private dials. */
async function namedEcho(name: string): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.end(name);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as net.AddressInfo).port };
}

describe('endpoint pools (pooling on, 2 workers)', () => {
  let t: TestEngine;
  let token: string;
  const agents: RunningCli[] = [];
  const servers: Array<http.Server | net.Server> = [];

  before(async () => {
    t = await startTestEngine({ dataplane: { workers: 2 }, tunnels: { pooling: { enabled: true } } });
    token = await mintToken();
  });
  after(async () => {
    for (const agent of agents) {
      agent.child.kill('SIGTERM');
      await agent.exited;
    }
    for (const server of servers) {
      if (server instanceof http.Server) server.closeAllConnections();
      server.close();
    }
    await t.stop();
  });

  const port = (): number => t.engine.publicPort;

  async function member(target: number, flags: string[]): Promise<RunningCli & { tunnelId: string }> {
    const agent = await startForward(t, token, target, flags);
    agents.push(agent);
    return agent;
  }

  async function upstreams(names: string[]): Promise<Array<Awaited<ReturnType<typeof countingUpstream>>>> {
    const started = await Promise.all(names.map(countingUpstream));
    servers.push(...started.map((upstream) => upstream.server));
    return started;
  }

  /** `count` GETs over `connections` kept-alive connections; the bodies (who answered). */
  async function spread(host: string, count: number, connections: number): Promise<string[]> {
    const agent = new https.Agent({ keepAlive: true, maxSockets: connections });
    try {
      const replies = await Promise.all(Array.from({ length: count }, () => edgeRequest(port(), t.ca, host, { path: '/', agent })));
      assert.ok(replies.every((reply) => reply.status === 200), replies.map((reply) => reply.status).join(','));
      return replies.map((reply) => reply.body.toString());
    } finally {
      agent.destroy();
    }
  }

  const tally = (answers: string[]): Record<string, number> => answers.reduce<Record<string, number>>((counts, name) => ({ ...counts, [name]: (counts[name] ?? 0) + 1 }), {});
  const within = (actual: number, expected: number, share = 0.2): boolean => Math.abs(actual - expected) <= expected * share;

  test('two members, equal weights: requests spread over both (h1 and h2), 300 one after another within 20 % of even; forward prints the pool', async () => {
    const [a, b] = await upstreams(['a', 'b']);
    const first = await member(a!.port, ['--host', 'even', '--pool', 'web']);
    const second = await member(b!.port, ['--host', 'even', '--pool', 'web']);
    assert.deepEqual([first.logs.find((line) => line.status === 'online')?.pool_members, second.logs.find((line) => line.status === 'online')?.pool_members], [1, 2]);
    assert.equal(second.logs.find((line) => line.status === 'online')?.pool, 'web');
    // Concurrent requests go to the member with fewer in flight: one that answers faster (its streams on
    // the worker that serves, its agent less busy) gets more, so the split follows speed here (4:1 seen
    // under a loaded test run), and both members still get traffic.
    const concurrent = tally(await spread('even.t.localhost', 300, 10));
    assert.ok((concurrent.a ?? 0) >= 30 && (concurrent.b ?? 0) >= 30, `10 connections: ${JSON.stringify(concurrent)}`);
    const session = edgeSession(port(), t.ca, 'even.t.localhost');
    try {
      const replies = await Promise.all(Array.from({ length: 300 }, () => h2Request(session, 'even.t.localhost', { path: '/' })));
      const h2 = tally(replies.map((reply) => reply.body.toString()));
      assert.ok((h2.a ?? 0) >= 30 && (h2.b ?? 0) >= 30, `h2: ${JSON.stringify(h2)}`);
    } finally {
      session.close();
    }
    // One connection, requests one after another: every choice is a tie (nothing in flight), so they
    // alternate rather than stick to a pooled stream. Also shows that no request above left its member
    // counted as busy (that member would get none of these).
    const sequential = tally(await spread('even.t.localhost', 300, 1));
    assert.ok(within(sequential.a ?? 0, 150) && within(sequential.b ?? 0, 150), `one connection: ${JSON.stringify(sequential)}`);
    // Each member is its own tunnel in the API, with the same hostname; the label filter finds them.
    const params = encodeURIComponent(JSON.stringify({ filters: { labels: { 'rivulet.pool': 'web' } } }));
    const listed = (await apiRequest(port(), t.ca, `/api/tunnels?params=${params}`, { token })).json() as Array<{ id: string; hostname: string }>;
    assert.deepEqual(listed.map((tunnel) => tunnel.id).sort(), [first.tunnelId, second.tunnelId].sort());
    assert.ok(listed.every((tunnel) => tunnel.hostname === 'even.t.localhost'));
    assert.deepEqual(t.engine.control.poolCounts(), { pools: 1, members: 2 });
  });

  test('three members, weights 1, 1 and 2: 300 requests one after another in shares of 75, 75 and 150 (within 20 %)', async () => {
    const upstream = await upstreams(['x', 'y', 'z']);
    await member(upstream[0]!.port, ['--host', 'weighted', '--pool', 'w']);
    await member(upstream[1]!.port, ['--host', 'weighted', '--pool', 'w']);
    const heavy = await member(upstream[2]!.port, ['--host', 'weighted', '--pool', 'w', '--pool-weight', '2']);
    assert.equal(heavy.logs.find((line) => line.status === 'online')?.pool_members, 3);
    const counts = tally(await spread('weighted.t.localhost', 300, 1));
    assert.ok(within(counts.x ?? 0, 75) && within(counts.y ?? 0, 75) && within(counts.z ?? 0, 150), JSON.stringify(counts));
  });

  test('a member SIGKILLed under load (20 clients, GETs, 10 s): no GET fails, the survivor takes it all, the tunnel leaves the API, a new member joins', async () => {
    const [a, b] = await upstreams(['killed', 'survivor']);
    const doomed = await member(a!.port, ['--host', 'failover', '--pool', 'f']);
    await member(b!.port, ['--host', 'failover', '--pool', 'f']);
    const failoversBefore = t.engine.counters.totals().pool_failovers;
    const clients = new https.Agent({ keepAlive: true, maxSockets: 20 });
    const outcomes = { ok: 0, failed: [] as string[] };
    const stopAt = Date.now() + 10_000;
    const servedByKilled = (): number => a!.served();
    const load = Array.from({ length: 20 }, async () => {
      while (Date.now() < stopAt) {
        try {
          const reply = await edgeRequest(port(), t.ca, 'failover.t.localhost', { path: '/', agent: clients });
          if (reply.status === 200) outcomes.ok++;
          else outcomes.failed.push(`${reply.status} ${reply.body.toString().trim()}`);
        } catch (error) {
          outcomes.failed.push((error as Error).message);
        }
      }
    });
    await sleep(3000);
    const beforeKill = servedByKilled();
    doomed.child.kill('SIGKILL');
    await waitFor(() => !t.engine.control.registry.tunnels.has(doomed.tunnelId), 10_000);
    const servedAtRemoval = servedByKilled();
    await Promise.all(load);
    clients.destroy();
    const failovers = t.engine.counters.totals().pool_failovers - failoversBefore;
    process.stdout.write(`# failover: ${outcomes.ok} GETs answered, ${outcomes.failed.length} failed, ${failovers} moved to the survivor\n`);
    assert.deepEqual(outcomes.failed, [], 'no GET fails');
    assert.ok(beforeKill > 100, `the killed member served ${beforeKill} before`);
    assert.equal(servedByKilled(), servedAtRemoval, 'nothing reached the killed member after its tunnel went');

    const listed = (await apiRequest(port(), t.ca, '/api/tunnels', { token })).json() as Array<{ id: string; hostname?: string }>;
    assert.equal(listed.filter((tunnel) => tunnel.hostname === 'failover.t.localhost').length, 1);
    // A restarted member rejoins the pool and gets its share again.
    const restarted = await member(a!.port, ['--host', 'failover', '--pool', 'f']);
    assert.equal(restarted.logs.find((line) => line.status === 'online')?.pool_members, 2);
    const counts = tally(await spread('failover.t.localhost', 100, 1));
    assert.ok(within(counts.killed ?? 0, 50), JSON.stringify(counts));
  });

  test('WebSocket: each upgrade goes to a member, and the connections spread', async () => {
    const [a, b] = await upstreams(['wa', 'wb']);
    await member(a!.port, ['--host', 'sockets', '--pool', 's']);
    await member(b!.port, ['--host', 'sockets', '--pool', 's']);
    const answers: string[] = [];
    for (let i = 0; i < 10; i++) {
      const socket = new WebSocket(`wss://127.0.0.1:${port()}/`, { ca: t.ca, servername: 'sockets.t.localhost', headers: { host: 'sockets.t.localhost' } } as WebSocket.ClientOptions);
      await new Promise<void>((resolve, reject) => {
        socket.once('open', resolve);
        socket.once('error', reject);
      });
      socket.send('hi');
      answers.push(await new Promise<string>((resolve) => socket.once('message', (data) => resolve(String(data)))));
      socket.close();
    }
    const counts = tally(answers.map((answer) => answer.split(':')[0]!));
    assert.ok((counts.wa ?? 0) >= 3 && (counts.wb ?? 0) >= 3, JSON.stringify(counts));
  });

  test('TLS connections and private dials by name spread over the members; a dial by id reaches that member', async () => {
    const echoes = await Promise.all(['ta', 'tb'].map(namedEcho));
    servers.push(...echoes.map((echo) => echo.server));
    await member(echoes[0]!.port, ['--tls', '--host', 'tlspool', '--pool', 't']);
    await member(echoes[1]!.port, ['--tls', '--host', 'tlspool', '--pool', 't']);
    const tlsAnswers = await Promise.all(Array.from({ length: 20 }, () => tlsEcho(port(), t.ca, 'tlspool.t.localhost')));
    const tlsCounts = tally(tlsAnswers);
    assert.ok((tlsCounts.ta ?? 0) >= 3 && (tlsCounts.tb ?? 0) >= 3, JSON.stringify(tlsCounts));
    const dialFirst = await member(echoes[0]!.port, ['--no-publish', '--name', 'db', '--pool', 'd']);
    await member(echoes[1]!.port, ['--no-publish', '--name', 'db', '--pool', 'd']);
    const dialAnswers: string[] = [];
    for (let i = 0; i < 10; i++) dialAnswers.push(await dial(t, token, 'db'));
    const dialCounts = tally(dialAnswers);
    assert.ok((dialCounts.ta ?? 0) >= 3 && (dialCounts.tb ?? 0) >= 3, JSON.stringify(dialCounts));
    for (let i = 0; i < 3; i++) assert.equal(await dial(t, token, dialFirst.tunnelId), 'ta');
  });

  /** A member whose agent refuses every stream the engine asks of it (ProxyConnRsp with an error). */
  async function refusingMember(properties: Partial<TunnelProperties>): Promise<RawConnection> {
    const { agent } = await openControlChannel(port(), t.ca, token);
    agent.send({ type: 'open_tunnel_req', request_id: 'r', tunnel_properties: { ...emptyTunnelProperties(), ...properties } });
    const reply = await agent.next('open_tunnel_rsp');
    assert.ok(!('error' in reply.result), JSON.stringify(reply.result));
    void (async () => {
      for (;;) {
        const request = await agent.next('proxy_conn_req', 60_000).catch(() => undefined);
        if (!request) return;
        agent.send({ type: 'proxy_conn_rsp', stream_id: request.stream_id, error: { code: ErrorCode.ServiceUnavailable, message: 'not today' } });
      }
    })();
    return agent;
  }

  test('a member that refuses every stream: TLS connections (terminated and passthrough) and private dials by name all reach the other member', async () => {
    const good = await namedEcho('good');
    const tlsGood = tls.createServer({ cert: fs.readFileSync(t.certs.cert), key: fs.readFileSync(t.certs.key) }, (socket) => socket.end('good over tls'));
    await new Promise<void>((resolve) => tlsGood.listen(0, '127.0.0.1', resolve));
    servers.push(good.server, tlsGood);
    const refusing = [
      await refusingMember({ protocol: 'tls', hostname: 'refusing', labels: { 'rivulet.pool': 'r' } }),
      await refusingMember({ protocol: 'tls', tls_mode: 'passthrough', hostname: 'refusing-pass', labels: { 'rivulet.pool': 'rp' } }),
      await refusingMember({ publish: false, name: 'cache', labels: { 'rivulet.pool': 'c' } }),
    ];
    try {
      await member(good.port, ['--tls', '--host', 'refusing', '--pool', 'r']);
      await member((tlsGood.address() as net.AddressInfo).port, ['--tls', '--tls-mode', 'passthrough', '--host', 'refusing-pass', '--pool', 'rp']);
      await member(good.port, ['--no-publish', '--name', 'cache', '--pool', 'c']);
      const failoversBefore = t.engine.counters.totals().pool_failovers;
      for (let i = 0; i < 6; i++) assert.equal(await tlsEcho(port(), t.ca, 'refusing.t.localhost'), 'good');
      for (let i = 0; i < 6; i++) assert.equal(await tlsEcho(port(), t.ca, 'refusing-pass.t.localhost'), 'good over tls');
      for (let i = 0; i < 6; i++) assert.equal(await dial(t, token, 'cache'), 'good');
      // Ties alternate, so about half of the 18 went to the refusing members first.
      assert.ok(t.engine.counters.totals().pool_failovers - failoversBefore >= 6, `${t.engine.counters.totals().pool_failovers - failoversBefore} moved`);
    } finally {
      for (const agent of refusing) agent.close();
    }
  });

  test('joining needs the same pool key and the same routing properties; each refusal says why (2000)', async () => {
    const { agent } = await openControlChannel(port(), t.ca, token);
    try {
      const open = async (overrides: Partial<TunnelProperties>): Promise<{ ok: boolean; message: string }> => {
        agent.send({ type: 'open_tunnel_req', request_id: 'r', tunnel_properties: { ...emptyTunnelProperties(), ...overrides } });
        const reply = await agent.next('open_tunnel_rsp');
        const result = reply.result as { error?: { code: number; message: string } };
        if (result.error) assert.equal(result.error.code, 2000, result.error.message);
        return { ok: !result.error, message: result.error?.message ?? '' };
      };
      const pooled = (key: string): Record<string, string> => ({ 'rivulet.pool': key });
      assert.ok((await open({ hostname: 'rules', labels: pooled('k') })).ok);
      assert.match((await open({ hostname: 'rules' })).message, /belongs to pool "k": join it with the label rivulet\.pool=k/);
      assert.match((await open({ hostname: 'rules', labels: pooled('other') })).message, /belongs to pool "k", not "other"/);
      assert.match((await open({ hostname: 'rules', labels: pooled('k'), token_auth: true })).message, /must agree on token_auth/);
      assert.match((await open({ hostname: 'rules', labels: pooled('k'), trusted_ips: ['10.0.0.0/8'] })).message, /must agree on trusted_ips/);
      assert.match((await open({ hostname: 'rules', labels: pooled('k'), protocol: 'tls' })).message, /must agree on protocol/);
      assert.ok((await open({ hostname: 'rules', labels: { ...pooled('k'), 'rivulet.pool.weight': '5' } })).ok, 'a weight is each member\'s own');
      assert.ok((await open({ hostname: 'plain' })).ok);
      assert.match((await open({ hostname: 'plain', labels: pooled('k') })).message, /already used by another live tunnel, which is not in a pool/);
      assert.match((await open({ hostname: 'bad-key', labels: pooled('no spaces') })).message, /label rivulet\.pool: 1-64 characters/);
      assert.match((await open({ hostname: 'bad-weight', labels: { ...pooled('k2'), 'rivulet.pool.weight': '101' } })).message, /rivulet\.pool\.weight: an integer from 1 to 100/);
      assert.ok((await open({ name: 'Shared', publish: false, labels: pooled('p') })).ok);
      assert.ok((await open({ name: 'shared', publish: false, labels: pooled('p') })).ok, 'names compare without case');
      assert.match((await open({ name: 'SHARED', publish: false })).message, /name "SHARED" belongs to pool "p"/);
    } finally {
      agent.close();
    }
  });
});

describe('pooling off (the default)', () => {
  let t: TestEngine;
  let agent: RawConnection;

  before(async () => {
    t = await startTestEngine();
    ({ agent } = await openControlChannel(t.engine.publicPort, t.ca, await mintToken()));
  });
  after(async () => {
    agent.close();
    await t.stop();
  });

  test('a taken hostname or name is refused as rstream does, pool key or not; the labels are only labels', async () => {
    const open = async (overrides: Partial<TunnelProperties>): Promise<{ error?: { code: number; message: string }; tunnel_properties?: TunnelProperties }> => {
      agent.send({ type: 'open_tunnel_req', request_id: 'r', tunnel_properties: { ...emptyTunnelProperties(), ...overrides } });
      return (await agent.next('open_tunnel_rsp')).result as { error?: { code: number; message: string }; tunnel_properties?: TunnelProperties };
    };
    const first = await open({ hostname: 'solo', labels: { 'rivulet.pool': 'k', 'rivulet.pool.weight': 'heavy' } });
    assert.equal(first.error, undefined, 'a malformed weight is just a label');
    assert.deepEqual(first.tunnel_properties!.labels, { 'rivulet.pool': 'k', 'rivulet.pool.weight': 'heavy' }, 'no member count is echoed');
    assert.deepEqual((await open({ hostname: 'solo', labels: { 'rivulet.pool': 'k' } })).error, {
      code: 2000,
      message: 'hostname "solo.t.localhost" is already used by another live tunnel',
    });
    assert.equal((await open({ name: 'db', publish: false, labels: { 'rivulet.pool': 'k' } })).error, undefined);
    assert.deepEqual((await open({ name: 'db', publish: false, labels: { 'rivulet.pool': 'k' } })).error, { code: 2000, message: 'name "db" is already used by another live tunnel' });
    assert.deepEqual(t.engine.control.poolCounts(), { pools: 0, members: 0 });
  });

  test('rivulet forward --pool on such an engine warns that the key means nothing there', async () => {
    const upstream = http.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const forward = await startForward(t, await mintToken(), (upstream.address() as net.AddressInfo).port, ['--host', 'lonely', '--pool', 'k']);
    try {
      await waitFor(() => forward.stderr().includes('keeps no endpoint pools'));
      assert.equal(forward.logs.find((line) => line.status === 'online')?.pool, undefined);
    } finally {
      forward.child.kill('SIGTERM');
      await forward.exited;
      upstream.close();
    }
  });
});

/** One TLS connection to a TLS tunnel: what the echo behind it answers. */
function tlsEcho(port: number, ca: Buffer, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca }, () => socket.write('hello'));
    let answer = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => {
      socket.end();
      resolve(answer);
    });
    socket.on('error', reject);
  });
}

/** `rivulet nc <target>` with nothing on stdin: what the server behind the private tunnel says. */
async function dial(t: TestEngine, token: string, target: string): Promise<string> {
  const nc = spawnCli(['nc', target, '--engine', `127.0.0.1:${t.engine.publicPort}`, '--token', token], {
    env: { NODE_EXTRA_CA_CERTS: t.certs.caCert, RSTREAM_CONFIG: '/nonexistent/rstream.yaml' },
  });
  let out = '';
  nc.child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await nc.exited;
  return out;
}
