import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { serveForward } from './helpers/echo-agent.js';
import { edgeRequest } from './helpers/edge-client.js';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { mintToken, openControlChannel, type RawConnection } from './helpers/rstrm-agent.js';
import { listenUpstream, patternBytes, upstreamHandler } from './helpers/upstream-server.js';

/** The Prometheus listener (docs/metrics.md): emitter rules and values read from the engine's state. */
let open: TestEngine;
let guarded: TestEngine;
let upstream: http.Server;
let upstreamPort: number;
/** Every connection the upstream accepted: its raw byte counts are what crossed the proxy connections. */
const upstreamSockets: net.Socket[] = [];
const agents: RawConnection[] = [];

before(async () => {
  open = await startTestEngine({ metrics: { prometheus: { enabled: true, listen_addr: '127.0.0.1:0', path: 'stats' } } });
  guarded = await startTestEngine({ metrics: { prometheus: { enabled: true, listen_addr: '127.0.0.1:0', bearer_token: 'scrape-secret' } } });
  upstream = http.createServer(upstreamHandler([]));
  upstream.on('connection', (socket: net.Socket) => upstreamSockets.push(socket));
  upstreamPort = await listenUpstream(upstream);
});
after(async () => {
  for (const agent of agents) agent.close();
  upstream.closeAllConnections();
  upstream.close();
  await open.stop();
  await guarded.stop();
});

/** A published HTTP tunnel at `<hostname>.t.localhost` whose agent forwards every stream to the upstream. */
async function httpTunnel(t: TestEngine, hostname: string, properties: { trusted_ips?: string[]; token_auth?: boolean } = {}): Promise<void> {
  const { agent } = await openControlChannel(t.engine.publicPort, t.ca, await mintToken());
  agents.push(agent);
  agent.send({
    type: 'open_tunnel_req',
    request_id: hostname,
    tunnel_properties: { labels: {}, geoip: [], trusted_ips: properties.trusted_ips ?? [], tls_alpns: [], tls_ciphers: [], hostname, protocol: 'http', token_auth: properties.token_auth },
  });
  const reply = await agent.next('open_tunnel_rsp');
  assert.ok('tunnel_properties' in reply.result, JSON.stringify(reply.result));
  serveForward(agent, t.engine.publicPort, t.ca, () => upstreamPort);
}

function scrape(
  port: number,
  path: string,
  options: { method?: string; token?: string; agent?: http.Agent } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const headers = options.token ? { authorization: `Bearer ${options.token}` } : {};
    const req = http.request({ host: '127.0.0.1', port, path, agent: options.agent ?? false, method: options.method ?? 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample line, e.g. `rivulet_tunnels{protocol="http",publish="true"}`. */
function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('emitter rules', () => {
  test('off by default: no metrics listener at all', async () => {
    const plain = await startTestEngine();
    try {
      assert.equal(plain.engine.metricsPort, undefined);
    } finally {
      await plain.stop();
    }
  });

  test('the path gains its leading slash; other paths 404, other methods 405, HEAD has no body', async () => {
    const port = open.engine.metricsPort!;
    const ok = await scrape(port, '/stats');
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal((await scrape(port, '/metrics')).status, 404);
    const post = await scrape(port, '/stats', { method: 'POST' });
    assert.equal(post.status, 405);
    const head = await scrape(port, '/stats', { method: 'HEAD' });
    assert.deepEqual([head.status, head.body], [200, '']);
    assert.ok(Number(head.headers['content-length']) > 1000, 'HEAD reports the length GET would send');
    // The connection stays usable after a HEAD (uWS 20.30's endWithoutBody(length) used to drop it).
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await scrape(port, '/stats', { method: 'HEAD', agent: keepAlive });
      const second = await scrape(port, '/stats', { agent: keepAlive });
      assert.deepEqual([first.status, second.status, second.reused], [200, 200, true]);
    } finally {
      keepAlive.destroy();
    }
  });

  test('with a bearer token: 401 with WWW-Authenticate without it or with a wrong one, 200 with it', async () => {
    const port = guarded.engine.metricsPort!;
    const none = await scrape(port, '/metrics');
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    assert.equal((await scrape(port, '/metrics', { token: 'wrong' })).status, 401);
    assert.equal((await scrape(port, '/metrics', { token: 'scrape-secret' })).status, 200);
  });
});

describe('values', () => {
  test('clients, tunnels and handshake failures move with what happens; build info and process metrics are there', async () => {
    const port = open.engine.metricsPort!;
    const before = (await scrape(port, '/stats')).body;
    assert.match(before, /^rivulet_build_info\{version="[^"]+"\} 1$/m);
    assert.match(before, /^rivulet_process_resident_memory_bytes \d+/m);
    assert.match(before, /^# HELP rivulet_tunnels /m);
    const clients = sample(before, 'rivulet_clients_connected')!;
    const unknownSni = sample(before, 'rivulet_tls_handshake_failures_total{reason="unknown_sni"}')!;

    const { agent } = await openControlChannel(open.engine.publicPort, open.ca, await mintToken());
    agent.send({ type: 'open_tunnel_req', request_id: 'r', tunnel_properties: { labels: {}, geoip: [], trusted_ips: [], tls_alpns: [], tls_ciphers: [], hostname: 'metered' } });
    await agent.next('open_tunnel_rsp');
    await new Promise<void>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: open.engine.publicPort, servername: 'unknown.example.com', ca: open.ca });
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
    });
    await waitFor(() => open.engine.counters.totals().handshake_failures_unknown_sni > unknownSni);
    const after = (await scrape(port, '/stats')).body;
    assert.equal(sample(after, 'rivulet_clients_connected'), clients + 1);
    assert.equal(sample(after, 'rivulet_tunnels{protocol="http",publish="true"}'), 1);
    assert.equal(sample(after, 'rivulet_tls_handshake_failures_total{reason="unknown_sni"}'), unknownSni + 1);
    assert.ok(sample(after, `rivulet_cert_expiry_timestamp_seconds`)! > Date.now() / 1000);
    assert.equal(sample(after, 'rivulet_worker_connections{worker="0"}')! + sample(after, 'rivulet_worker_connections{worker="1"}')!, 1, 'the control channel');
    agent.close();
  });
});

describe('data-path counters', () => {
  test('N requests and M bytes through a tunnel move the response, stream and byte counters by exactly N and M', async () => {
    const port = open.engine.metricsPort!;
    await httpTunnel(open, 'counted');
    const before = (await scrape(port, '/stats')).body;
    const upstreamBefore = rawUpstreamBytes();
    const requests = 12;
    // One kept-alive downstream connection, as a browser would use.
    const keptAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < requests; i++) {
      const reply =
        i % 2 === 0
          ? await edgeRequest(open.engine.publicPort, open.ca, 'counted.t.localhost', { path: `/bytes?n=${50_000 + i}`, agent: keptAlive })
          : await edgeRequest(open.engine.publicPort, open.ca, 'counted.t.localhost', { path: '/echo', method: 'POST', body: patternBytes(30_000 + i), agent: keptAlive });
      assert.equal(reply.status, 200);
    }
    keptAlive.destroy();
    const missing = await edgeRequest(open.engine.publicPort, open.ca, 'nothing-here.t.localhost');
    assert.equal(missing.status, 404);

    // Payload bytes are exactly what the upstream's sockets carried (the agent forwards them raw): the
    // rstrm/1 frames that set a proxy connection up are not counted. Sampled each second, so wait.
    const upstreamAfter = rawUpstreamBytes();
    const sent = upstreamAfter.read - upstreamBefore.read;
    const received = upstreamAfter.written - upstreamBefore.written;
    assert.ok(sent > requests / 2 * 30_000 && received > requests / 2 * 50_000);
    let after = '';
    const moved = (series: string): number => sample(after, series)! - (sample(before, series) ?? 0);
    const deadline = Date.now() + 5000;
    do {
      await sleep(250);
      after = (await scrape(port, '/stats')).body;
    } while (Date.now() < deadline && (moved('rivulet_stream_bytes_total{kind="http",direction="upstream"}') !== sent || moved('rivulet_stream_bytes_total{kind="http",direction="downstream"}') !== received));

    assert.equal(moved('rivulet_stream_bytes_total{kind="http",direction="upstream"}'), sent);
    assert.equal(moved('rivulet_stream_bytes_total{kind="http",direction="downstream"}'), received);
    assert.equal(moved('rivulet_http_responses_total{class="2xx",origin="upstream"}'), requests);
    assert.equal(moved('rivulet_http_responses_total{class="4xx",origin="edge"}'), 1);
    assert.equal(moved('rivulet_http_responses_total{class="5xx",origin="edge"}'), 0);
    const connected = moved('rivulet_streams_total{kind="http",outcome="connected"}');
    assert.ok(connected >= 1 && connected <= requests, `${connected} streams for ${requests} requests (pooled)`);
    assert.equal(sample(after, 'rivulet_streams_active{kind="http"}'), upstreamSockets.filter((socket) => !socket.destroyed).length);
    assert.equal(moved('rivulet_streams_total{kind="http",outcome="refused"}'), 0);
  });

  test('stream failures, access denials and upstream 5xx are counted by outcome', async () => {
    const port = open.engine.metricsPort!;
    await httpTunnel(open, 'walled', { trusted_ips: ['10.0.0.0/8'] });
    await httpTunnel(open, 'locked', { token_auth: true });
    // An agent that refuses every stream.
    const { agent } = await openControlChannel(open.engine.publicPort, open.ca, await mintToken());
    agents.push(agent);
    agent.send({ type: 'open_tunnel_req', request_id: 'r', tunnel_properties: { labels: {}, geoip: [], trusted_ips: [], tls_alpns: [], tls_ciphers: [], hostname: 'refuser', protocol: 'http' } });
    await agent.next('open_tunnel_rsp');
    void (async () => {
      for (;;) {
        const request = await agent.next('proxy_conn_req', 60_000).catch(() => undefined);
        if (!request) return;
        agent.send({ type: 'proxy_conn_rsp', stream_id: request.stream_id, error: { code: 6000, message: 'no' } });
      }
    })();
    const before = (await scrape(port, '/stats')).body;
    assert.equal((await edgeRequest(open.engine.publicPort, open.ca, 'walled.t.localhost')).status, 403);
    assert.equal((await edgeRequest(open.engine.publicPort, open.ca, 'locked.t.localhost')).status, 401);
    assert.equal((await edgeRequest(open.engine.publicPort, open.ca, 'refuser.t.localhost')).status, 502);
    const after = (await scrape(port, '/stats')).body;
    const moved = (series: string): number => sample(after, series)! - (sample(before, series) ?? 0);
    assert.equal(moved('rivulet_access_denied_total{reason="trusted_ips"}'), 1);
    assert.equal(moved('rivulet_access_denied_total{reason="token_auth"}'), 1);
    assert.equal(moved('rivulet_streams_total{kind="http",outcome="refused"}'), 1);
    assert.equal(moved('rivulet_http_responses_total{class="4xx",origin="edge"}'), 2);
    assert.equal(moved('rivulet_http_responses_total{class="5xx",origin="edge"}'), 1);
  });

  test('control-channel opens, tunnel requests and API requests by outcome', async () => {
    const port = open.engine.metricsPort!;
    const before = (await scrape(port, '/stats')).body;
    await assert.rejects(openControlChannel(open.engine.publicPort, open.ca, 'not-a-token'));
    const { agent } = await openControlChannel(open.engine.publicPort, open.ca, await mintToken());
    agents.push(agent);
    const properties = { labels: {}, geoip: [], trusted_ips: [], tls_alpns: [], tls_ciphers: [], protocol: 'http' as const };
    agent.send({ type: 'open_tunnel_req', request_id: 'a', tunnel_properties: { ...properties, hostname: 'twice' } });
    await agent.next('open_tunnel_rsp');
    agent.send({ type: 'open_tunnel_req', request_id: 'b', tunnel_properties: { ...properties, hostname: 'twice' } });
    const taken = await agent.next('open_tunnel_rsp');
    assert.ok('error' in taken.result);
    const token = await mintToken();
    assert.equal((await apiGet(open, '/api/tunnels', token)).status, 200);
    assert.equal((await apiGet(open, '/api/tunnels', undefined)).status, 401);
    assert.equal((await apiGet(open, '/api/clients/nope', token)).status, 404);
    const after = (await scrape(port, '/stats')).body;
    const moved = (series: string): number => sample(after, series)! - (sample(before, series) ?? 0);
    assert.equal(moved('rivulet_control_channel_opens_total{result="ok"}'), 1);
    assert.equal(moved('rivulet_control_channel_opens_total{result="unauthorized"}'), 1);
    assert.equal(moved('rivulet_tunnel_requests_total{result="ok"}'), 1);
    assert.equal(moved('rivulet_tunnel_requests_total{result="invalid"}'), 1);
    assert.equal(moved('rivulet_api_requests_total{endpoint="tunnels",class="2xx"}'), 1);
    assert.equal(moved('rivulet_api_requests_total{endpoint="tunnels",class="4xx"}'), 1);
    assert.equal(moved('rivulet_api_requests_total{endpoint="client",class="4xx"}'), 1);
  });
});

describe('Prometheus itself', () => {
  const promtool = commandPath('promtool');
  const prometheus = commandPath('prometheus');

  test('the exposition passes promtool check metrics', { skip: promtool ? false : 'promtool not installed (.ci/run installs Debian prometheus)' }, async () => {
    const body = (await scrape(open.engine.metricsPort!, '/stats')).body;
    const result = await run(promtool!, ['check', 'metrics'], body);
    assert.equal(result.code, 0, result.output);
    // …and the Grafana dashboard only uses metrics the engine exposes.
    const exposed = new Set([...body.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]!));
    for (const expression of dashboardQueries()) {
      for (const [name] of expression.matchAll(/rivulet_[a-z0-9_]+/g)) assert.ok(exposed.has(name), `${name} (dashboard) is not exposed`);
    }
  });

  test('a Prometheus server scrapes the engine with its bearer token: up == 1 and streams counted', { skip: prometheus ? false : 'prometheus not installed (.ci/run installs it)' }, async () => {
    await httpTunnel(guarded, 'scraped');
    assert.equal((await edgeRequest(guarded.engine.publicPort, guarded.ca, 'scraped.t.localhost', { path: '/echo' })).status, 200);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-prometheus-'));
    fs.writeFileSync(
      path.join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'scrape_configs:',
        '  - job_name: rivulet',
        '    authorization: { credentials: scrape-secret }',
        `    static_configs: [{ targets: ["127.0.0.1:${guarded.engine.metricsPort}"] }]`,
        '',
      ].join('\n'),
    );
    const webPort = await freePort();
    const server = spawn(prometheus!, [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${webPort}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    server.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
    try {
      const query = async (expression: string): Promise<number | undefined> => {
        const reply = await fetch(`http://127.0.0.1:${webPort}/api/v1/query?query=${encodeURIComponent(expression)}`).catch(() => undefined);
        if (!reply?.ok) return undefined;
        const result = ((await reply.json()) as { data: { result: Array<{ value: [number, string] }> } }).data.result;
        return result.length === 0 ? undefined : Number(result[0]!.value[1]);
      };
      let up: number | undefined;
      let streams: number | undefined;
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && (up !== 1 || !(streams! > 0))) {
        await sleep(500);
        up = await query('up{job="rivulet"}');
        streams = await query('sum(rivulet_streams_total{outcome="connected"})');
      }
      assert.equal(up, 1, log.slice(-2000));
      assert.ok(streams! > 0, `streams counter ${streams}`);
      // Every query of the shipped Grafana dashboard is valid PromQL that this Prometheus accepts.
      for (const expression of dashboardQueries()) {
        const reply = await fetch(`http://127.0.0.1:${webPort}/api/v1/query?query=${encodeURIComponent(expression.replaceAll('$job', 'rivulet'))}`);
        assert.equal(reply.status, 200, `${expression}: ${await reply.text()}`);
      }
    } finally {
      server.kill('SIGTERM');
      await new Promise((resolve) => server.once('exit', resolve));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The PromQL of every panel of config/grafana-dashboard.json, and of its variable. */
function dashboardQueries(): string[] {
  const dashboard = JSON.parse(fs.readFileSync(new URL('../../config/grafana-dashboard.json', import.meta.url), 'utf8')) as {
    panels: Array<{ targets?: Array<{ expr: string }> }>;
  };
  const queries = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
  assert.ok(queries.length > 15);
  return queries;
}

function rawUpstreamBytes(): { read: number; written: number } {
  let read = 0;
  let written = 0;
  for (const socket of upstreamSockets) {
    read += socket.bytesRead;
    written += socket.bytesWritten;
  }
  return { read, written };
}

function apiGet(t: TestEngine, path: string, token: string | undefined): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: t.engine.publicPort, servername: 'localhost', ca: t.ca, path, agent: false, headers: { host: 'localhost', ...(token ? { authorization: `Bearer ${token}` } : {}) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode! }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function commandPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = path.join(dir, name);
    if (fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

function run(command: string, args: string[], input: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('close', (code) => resolve({ code, output }));
    child.stdin.end(input);
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = http.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
