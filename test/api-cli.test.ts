import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { emptyTunnelProperties, type TunnelProperties } from '../src/protocol/messages.js';
import { devCertificates } from './helpers/fixtures.js';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { runCli, spawnCli, type RunningCli } from './helpers/process.js';
import { mintToken, openControlChannel, type RawConnection } from './helpers/rstrm-agent.js';

/** `rivulet tunnel list`, `client list` and `events` (docs/cli.md) as child processes. */
let t: TestEngine;
let env: NodeJS.ProcessEnv;
let agent: RawConnection;
let clientId: string;
const running: RunningCli[] = [];

before(async () => {
  t = await startTestEngine();
  const token = await mintToken();
  env = { RSTREAM_ENGINE: `localhost:${t.engine.publicPort}`, RSTREAM_AUTHENTICATION_TOKEN: token, NODE_EXTRA_CA_CERTS: t.certs.caCert, RSTREAM_CONFIG: '/nonexistent/rstream.yaml' };
  ({ agent, clientId } = await openControlChannel(t.engine.publicPort, t.ca, token));
  await openTunnel(agent, { name: 'alpha', hostname: 'alpha', labels: { env: 'prod' } });
  await openTunnel(agent, { name: 'beta', publish: false, labels: { env: 'dev' } });
});
after(async () => {
  for (const cli of running) {
    cli.child.kill('SIGKILL');
    await cli.exited;
  }
  agent.close();
  await t.stop();
});

async function openTunnel(on: RawConnection, overrides: Partial<TunnelProperties>): Promise<string> {
  on.send({ type: 'open_tunnel_req', request_id: 'r', tunnel_properties: { ...emptyTunnelProperties(), ...overrides } });
  const reply = await on.next('open_tunnel_rsp');
  assert.ok(!('error' in reply.result), JSON.stringify(reply.result));
  const id = String((reply.result as { tunnel_properties: TunnelProperties }).tunnel_properties.id);
  await waitFor(() => t.engine.control.registry.tunnels.has(id));
  return id;
}

/** `rivulet events`, one compact JSON object per line (`-o ndjson`) unless `args` choose. */
function watch(args: string[], extraEnv: NodeJS.ProcessEnv = {}): RunningCli {
  const output = args.includes('-o') ? [] : ['-o', 'ndjson'];
  const cli = spawnCli(['events', ...output, ...args], { env: { ...env, ...extraEnv } });
  running.push(cli);
  return cli;
}

/** An independent check of the webhook signature, as the SDK verifiers do it. */
function verifySignature(header: string, body: string, secret: string, now = Math.floor(Date.now() / 1000)): boolean {
  const parts = header.split(',');
  const t = parts.find((part) => part.startsWith('t='))?.slice(2);
  const signatures = parts.filter((part) => part.startsWith('v1=')).map((part) => part.slice(3));
  if (!t || !/^\d+$/.test(t) || signatures.length === 0 || !signatures.every((v) => /^[0-9a-f]{64}$/.test(v))) return false;
  if (Math.abs(now - Number(t)) > 300) return false;
  const expected = crypto.createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return signatures.some((v) => crypto.timingSafeEqual(Buffer.from(v, 'hex'), expected));
}

describe('tunnel list and client list', () => {
  test('json prints the API array; text prints the table; filters and limit go to the API', async () => {
    const json = await runCli(['tunnel', 'list', '-o', 'json'], { env });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual((JSON.parse(json.stdout) as Array<{ name: string }>).map((tunnel) => tunnel.name), ['alpha', 'beta']);
    const filtered = await runCli(['tunnel', 'list', '-o', 'json', '--filter', 'labels.env=prod', '--filter', 'publish=true'], { env });
    assert.deepEqual((JSON.parse(filtered.stdout) as Array<{ name: string }>).map((tunnel) => tunnel.name), ['alpha']);
    const anyLabel = await runCli(['tunnel', 'list', '-o', 'json', '--filter', 'label.env=*', '--limit', '1'], { env });
    assert.deepEqual((JSON.parse(anyLabel.stdout) as Array<{ name: string }>).map((tunnel) => tunnel.name), ['alpha']);
    const text = await runCli(['tunnel', 'list'], { env });
    const [header, first] = text.stdout.split('\n');
    assert.match(header!, /^ID\s+NAME\s+PROTOCOL\s+PUBLISH\s+HOSTNAME\s+CLIENT\s+CREATED$/);
    assert.match(first!, new RegExp(`alpha\\s+http\\s+true\\s+alpha\\.t\\.localhost:${t.engine.publicPort}\\s`), 'the port is shown when it is not 443');
    const clients = await runCli(['client', 'list'], { env });
    assert.match(clients.stdout, /^ID\s+USER\s+AGENT\s+VERSION\s+OS\/ARCH\s+PROTOCOL$/m);
    assert.match(clients.stdout, new RegExp(`^${clientId}\\s+tester\\s+test\\s`, 'm'));
  });

  test('errors: an unknown filter key is a usage error (2); a refused token exits 1 with the API message', async () => {
    const bad = await runCli(['tunnel', 'list', '--filter', 'colour=red'], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown --filter key "colour"/);
    const limited = await runCli(['tunnel', 'list'], { env: { ...env, RSTREAM_AUTHENTICATION_TOKEN: await mintToken({ permissions: [] }) } });
    assert.equal(limited.code, 1);
    assert.match(limited.stderr, /403.*tunnels\.resources\.read-only/);
  });
});

/** Event-stream subscribers of the engine now, both transports. */
function subscribers(): number {
  const counts = t.engine.eventSubscribers();
  return counts.sse + counts.websocket;
}

describe('events', () => {
  for (const transport of ['websocket', 'sse'] as const) {
    test(`${transport}: state.initial then filtered events, one JSON object per line; --events filters types`, async () => {
      const subscribed = subscribers();
      const all = watch(['--transport', transport, '--tunnel-filter', 'labels.team=blue']);
      const typed = watch(['--transport', transport, '--events', 'tunnel.created']);
      // Both subscribed (the second drops state.initial itself, so its output cannot say so).
      await waitFor(() => subscribers() >= subscribed + 2, 15_000);
      await waitFor(() => all.logs.some((line) => line.type === 'state.initial'), 15_000);
      await openTunnel(agent, { name: `red-${transport}`, publish: false, labels: { team: 'red' } });
      const blue = await openTunnel(agent, { name: `blue-${transport}`, publish: false, labels: { team: 'blue' } });
      await waitFor(() => all.logs.some((line) => line.type === 'tunnel.created'));
      await waitFor(() => typed.logs.filter((line) => line.type === 'tunnel.created').length >= 2);
      await sleep(200);
      const created = all.logs.filter((line) => line.type === 'tunnel.created');
      assert.deepEqual(created.map((line) => (line.object as { id: string }).id), [blue]);
      assert.ok(typed.logs.every((line) => line.type === 'tunnel.created'), 'state.initial and client events dropped client-side');
    });
  }

  test('--webhook --forward-to: signed deliveries with the five rstream headers; the check rejects tampering and stale times', async () => {
    const deliveries: Array<{ headers: http.IncomingHttpHeaders; body: string }> = [];
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk));
      req.on('end', () => {
        deliveries.push({ headers: req.headers, body });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const secret = 'whsec_test-secret';
    try {
      const subscribed = subscribers();
      const cli = watch(['--webhook', '--webhook-secret', secret, '--webhook-id', 'we_test', '--forward-to', `http://127.0.0.1:${(receiver.address() as net.AddressInfo).port}/hook`]);
      await waitFor(() => subscribers() > subscribed, 15_000);
      const tunnelId = await openTunnel(agent, { name: 'hooked', publish: false });
      await waitFor(() => deliveries.some((delivery) => delivery.body.includes(tunnelId)), 10_000);
      assert.ok(!deliveries.some((delivery) => delivery.body.includes('state.initial')), 'state.initial is not deliverable');
      const delivery = deliveries.find((entry) => entry.body.includes(tunnelId))!;
      const body = JSON.parse(delivery.body) as Record<string, unknown>;
      assert.deepEqual(Object.keys(body), ['id', 'type', 'created_at', 'object']);
      assert.equal(delivery.headers['content-type'], 'application/json');
      assert.equal(delivery.headers['rstream-event-id'], body.id);
      assert.equal(delivery.headers['rstream-event-type'], 'tunnel.created');
      assert.equal(delivery.headers['rstream-webhook-id'], 'we_test');
      assert.match(String(delivery.headers['rstream-delivery-id']), /^cli_del_[0-9a-f]{24}$/);
      const signature = String(delivery.headers['rstream-signature']);
      assert.ok(verifySignature(signature, delivery.body, secret), signature);
      assert.ok(!verifySignature(signature, delivery.body.replace('hooked', 'hacked'), secret), 'a tampered body fails');
      assert.ok(!verifySignature(signature, delivery.body, secret, Math.floor(Date.now() / 1000) + 301), 'a stale timestamp fails');
      assert.ok(!verifySignature(signature, delivery.body, 'whsec_other'), 'another secret fails');
      assert.doesNotMatch(cli.stderr(), /raw watch events/, 'no raw-event warning with --webhook');
    } finally {
      receiver.close();
    }
  });

  test('-o json indents each event for reading; -o ndjson prints one compact object per line', async () => {
    const pretty = watch(['--events', 'state.initial', '-o', 'json']);
    const compact = watch(['--events', 'state.initial', '-o', 'ndjson']);
    await waitFor(() => pretty.logs.some((line) => line.msg === '}') && compact.logs.some((line) => line.type === 'state.initial'), 10_000);
    assert.equal(pretty.logs[0]!.msg, '{');
    assert.ok(pretty.logs.some((line) => line.msg === '  "type": "state.initial",'), JSON.stringify(pretty.logs.slice(0, 3)));
    assert.equal(compact.logs.filter((line) => line.type === 'state.initial').length, 1);
  });

  test('--webhook without a secret prints a generated one; a non-deliverable --events type is refused', async () => {
    const cli = watch(['--webhook']);
    await waitFor(() => /Webhook signing secret: whsec_[A-Za-z0-9_-]{43}\n/.test(cli.stderr()));
    const refused = await runCli(['events', '--webhook', '--events', 'state.initial'], { env });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /"state\.initial" is not deliverable as a webhook event/);
  });

  test('a non-2xx from the forward target is fatal: forward failed (<status>): <body>', async () => {
    const receiver = http.createServer((_req, res) => {
      res.statusCode = 500;
      res.end('receiver broke');
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const cli = watch(['--forward-to', `http://127.0.0.1:${(receiver.address() as net.AddressInfo).port}/`]);
      const { code } = await cli.exited;
      assert.equal(code, 1);
      assert.match(cli.stderr(), /forward failed \(500\): receiver broke/);
      assert.match(cli.stderr(), /raw watch events; use --webhook/);
    } finally {
      receiver.close();
    }
  });

  test('the stream drops (engine restart): resubscribes with backoff and gets a fresh state.initial', async () => {
    const certs = await devCertificates();
    const first = await startTestEngine({}, certs);
    const port = first.engine.publicPort;
    const cli = watch(['--transport', 'sse', '--retry-interval', '200'], { RSTREAM_ENGINE: `localhost:${port}`, NODE_EXTRA_CA_CERTS: certs.caCert });
    await waitFor(() => cli.logs.filter((line) => line.type === 'state.initial').length === 1, 15_000);
    await first.stop();
    await waitFor(() => /resubscribing in/.test(cli.stderr()), 10_000);
    const second = await startTestEngine({ tls: { listen_addr: `127.0.0.1:${port}` } }, certs);
    try {
      await waitFor(() => cli.logs.filter((line) => line.type === 'state.initial').length === 2, 20_000);
    } finally {
      await second.stop();
    }
    const noRetry = watch(['--no-retry', '--transport', 'sse'], { RSTREAM_ENGINE: `localhost:${port}`, NODE_EXTRA_CA_CERTS: certs.caCert });
    const { code } = await noRetry.exited;
    assert.equal(code, 1);
    assert.match(noRetry.stderr(), /event stream ended/);
  });
});
