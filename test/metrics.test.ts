import assert from 'node:assert/strict';
import http from 'node:http';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { mintToken, openControlChannel } from './helpers/rstrm-agent.js';

/** The Prometheus listener (engine.md §16): emitter rules and values read from the engine's state. */
let open: TestEngine;
let guarded: TestEngine;

before(async () => {
  open = await startTestEngine({ metrics: { prometheus: { enabled: true, listen_addr: '127.0.0.1:0', path: 'stats' } } });
  guarded = await startTestEngine({ metrics: { prometheus: { enabled: true, listen_addr: '127.0.0.1:0', bearer_token: 'scrape-secret' } } });
});
after(async () => {
  await open.stop();
  await guarded.stop();
});

function scrape(port: number, path: string, options: { method?: string; token?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, method: options.method ?? 'GET', headers: options.token ? { authorization: `Bearer ${options.token}` } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
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
