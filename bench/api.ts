import fs from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { SignJWT } from 'jose';
import { emptyTunnelProperties } from '../src/protocol/messages.js';
import { BENCH_SECRET, benchCertificates, numberArgument, startEngineProcess, summary, writeResult, type Summary } from './harness.js';
import type { ScenarioResult } from './report.js';
import { RawAgent } from './raw-agent.js';

/**
 * The control plane and Engine API at scale, against an engine in its own process (2 workers):
 *   creation – 10,000 tunnels from 100 agents (100 each, pipelined per agent): tunnels/s;
 *   list     – GET /api/tunnels with 10,000 live tunnels (the whole array, ~4 MB), and with a filter
 *              matching one label, sequential over one keep-alive connection: p50/p99 ms;
 *   fan-out  – 1,000 SSE subscribers watching tunnels labelled `fanout` (so each one's snapshot is
 *              small; the hub still runs every subscriber's filter on every event); each new labelled
 *              tunnel's tunnel.created is timed from the OpenTunnelReq to its arrival at every
 *              subscriber: p50/p99 ms over all (event, subscriber) pairs.
 * Usage: node dist/bench/api.js [--tunnels N] [--agents A] [--subscribers S] [--lists L] [--events E]
 */

const TUNNELS = numberArgument('tunnels', 10_000);
const AGENTS = numberArgument('agents', 100);
const SUBSCRIBERS = numberArgument('subscribers', 1000);
const LISTS = numberArgument('lists', 30);
const EVENTS = numberArgument('events', 20);

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const { port, engine } = await startEngineProcess(certs, () => `{ workers: 2, max_tunnels_per_client: ${Math.ceil(TUNNELS / AGENTS) + EVENTS + 10} }`);
  const ca = fs.readFileSync(certs.caCert);
  const agents: RawAgent[] = [];
  const subscribers: tls.TLSSocket[] = [];
  try {
    const token = await new SignJWT({ sub: 'bench' }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(BENCH_SECRET));

    // Creation: 100 agents, each pipelining its share of OpenTunnelReqs.
    for (let i = 0; i < AGENTS; i++) agents.push(await RawAgent.open(port, ca, token));
    const perAgent = Math.ceil(TUNNELS / AGENTS);
    const createStart = performance.now();
    await Promise.all(
      agents.map(async (agent, a) => {
        for (let i = 0; i < perAgent && a * perAgent + i < TUNNELS; i++) {
          agent.send({ type: 'open_tunnel_req', request_id: String(i), tunnel_properties: { ...emptyTunnelProperties(), publish: false, labels: { agent: String(a), n: String(i) } } });
        }
        for (let i = 0; i < perAgent && a * perAgent + i < TUNNELS; i++) await agent.next('open_tunnel_rsp');
      }),
    );
    const createSeconds = (performance.now() - createStart) / 1000;
    process.stderr.write(`created ${TUNNELS} tunnels in ${createSeconds.toFixed(2)} s\n`);

    // List latency over one keep-alive connection.
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    // Timed to the last byte; the bench's own JSON.parse of ~4 MB is not the engine's latency.
    const list = async (query: string): Promise<{ ms: number; count: number }> => {
      const started = performance.now();
      const body = await get(port, ca, token, `/api/tunnels${query}`, keepAlive);
      const ms = performance.now() - started;
      return { ms, count: (JSON.parse(body) as unknown[]).length };
    };
    const whole: number[] = [];
    const filtered: number[] = [];
    const oneLabel = `?params=${encodeURIComponent(JSON.stringify({ filters: { labels: { agent: '7', n: '7' } } }))}`;
    for (let i = 0; i < LISTS; i++) {
      const all = await list('');
      if (all.count !== TUNNELS) throw new Error(`listed ${all.count} tunnels`);
      whole.push(all.ms);
      filtered.push((await list(oneLabel)).ms);
    }
    keepAlive.destroy();
    process.stderr.write(`list p50 ${summary(whole).median.toFixed(1)} ms (filtered ${summary(filtered).median.toFixed(1)} ms)\n`);

    // Fan-out: subscribers connect, take their (large) snapshot, then wait for new tunnels.
    const arrivals = new Map<string, number[]>();
    const snapshotsDone = new Set<tls.TLSSocket>();
    for (let i = 0; i < SUBSCRIBERS; i++) subscribers.push(await subscribe(port, ca, token, arrivals, snapshotsDone));
    const deadline = Date.now() + 120_000;
    while (snapshotsDone.size < SUBSCRIBERS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    process.stderr.write(`${snapshotsDone.size} subscribers have their snapshot\n`);
    const latencies: number[] = [];
    const probe = agents[0]!;
    for (let e = 0; e < EVENTS; e++) {
      const name = `fanout-${e}`;
      arrivals.set(name, []);
      const sent = performance.now();
      probe.send({ type: 'open_tunnel_req', request_id: name, tunnel_properties: { ...emptyTunnelProperties(), publish: false, name, labels: { fanout: 'yes' } } });
      const reply = await probe.next('open_tunnel_rsp');
      if ('result' in reply && 'error' in (reply.result as object)) throw new Error(`tunnel ${name} refused: ${JSON.stringify(reply.result)}`);
      const until = Date.now() + 10_000;
      while (arrivals.get(name)!.length < SUBSCRIBERS && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 5));
      for (const at of arrivals.get(name)!) latencies.push(at - sent);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const delivered = latencies.length / (EVENTS * SUBSCRIBERS);
    const sorted = [...latencies].sort((a, b) => a - b);
    const percentile = (p: number): number => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! * 10) / 10;

    const one = (value: number): Summary => ({ median: value, min: value, max: value });
    const result: ScenarioResult = {
      scenario: 'control-plane',
      title: `Control plane: ${TUNNELS.toLocaleString('en-US')} tunnels from ${AGENTS} agents, Engine API and event fan-out`,
      runs: 1,
      rows: [
        { case: `${TUNNELS.toLocaleString('en-US')} tunnels`, metric: 'creation rate', unit: 'tunnels/s', higherIsBetter: true, series: { rivulet: one(Math.round(TUNNELS / createSeconds)) } },
        { case: `GET /api/tunnels × ${LISTS}`, metric: 'latency', unit: 'ms', higherIsBetter: false, series: { 'all tunnels': round(summary(whole)), 'one-label filter': round(summary(filtered)) } },
        { case: `tunnel.created to ${SUBSCRIBERS.toLocaleString('en-US')} SSE subscribers × ${EVENTS}`, metric: 'fan-out latency', unit: 'ms', higherIsBetter: false, series: { p50: one(percentile(0.5)), p99: one(percentile(0.99)) } },
      ],
      targets: [
        { target: `${TUNNELS.toLocaleString('en-US')} tunnels created in < 10 s`, measured: `${createSeconds.toFixed(2)} s`, met: createSeconds < 10 },
        { target: `GET /api/tunnels with ${TUNNELS.toLocaleString('en-US')} tunnels: p50 < 50 ms`, measured: `${summary(whole).median.toFixed(1)} ms`, met: summary(whole).median < 50 },
        { target: `event fan-out to ${SUBSCRIBERS.toLocaleString('en-US')} subscribers: p99 < 100 ms`, measured: `${percentile(0.99)} ms`, met: percentile(0.99) < 100 },
      ],
      notes: [`Creation is one pass (${AGENTS} agents pipelining OpenTunnelReqs); ${Math.round(delivered * 100)} % of events delivered to every subscriber.`],
    };
    writeResult('api', { ...result });
  } finally {
    for (const socket of subscribers) socket.destroy();
    for (const agent of agents) agent.close();
    await engine.stop();
  }
}


function get(port: number, ca: Buffer, token: string, apiPath: string, agent: https.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, servername: 'localhost', ca, path: apiPath, agent, headers: { authorization: `Bearer ${token}`, host: 'localhost' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve(Buffer.concat(chunks).toString()));
      })
      .on('error', reject);
  });
}

/** One SSE subscriber on a raw TLS socket; records when each `fanout-*` tunnel.created arrives. */
async function subscribe(port: number, ca: Buffer, token: string, arrivals: Map<string, number[]>, snapshotsDone: Set<tls.TLSSocket>): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    const now = performance.now();
    const lines = (pending + chunk).split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith('data: ')) continue;
      if (line.includes('"type":"state.initial"')) snapshotsDone.add(socket);
      const created = /"type":"tunnel\.created".*"name":"(fanout-\d+)"/.exec(line);
      if (created) arrivals.get(created[1]!)?.push(now);
    }
  });
  const watch = encodeURIComponent(JSON.stringify({ tunnels: { labels: { fanout: null } }, clients: { id: 'none' } }));
  socket.write(`GET /api/sse?params=${watch} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  return socket;
}

function round(values: { median: number; min: number; max: number }): { median: number; min: number; max: number } {
  return { median: Math.round(values.median * 10) / 10, min: Math.round(values.min * 10) / 10, max: Math.round(values.max * 10) / 10 };
}

await main();
