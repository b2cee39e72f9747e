import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import type { DevCertificateFiles } from '../src/certs/dev-ca.js';
import { SHUTDOWN_DRAIN_MS } from '../src/engine.js';
import { claimAddress } from '../src/control/address-claim.js';
import { promisify } from 'node:util';
import { handshake, startTestEngine, waitFor } from './helpers/engine.js';
import { configTree, devCertificates, tempDir, writeConfig } from './helpers/fixtures.js';
import { runCli, spawnCli } from './helpers/process.js';

let certs: DevCertificateFiles;
before(async () => {
  certs = await devCertificates();
});

describe('startup errors exit 1 with one line naming the key', () => {
  const cases: Array<[string, () => Record<string, unknown> | string, RegExp]> = [
    ['missing engine.host', () => ({ ...configTree(certs), engine: { log_level: 'info' } }), /^config error: engine\.host: required$/m],
    ['host with scheme', () => configTree(certs, { engine: { host: 'https://edge.example.com' } }), /^config error: engine\.host: must be a bare DNS name/m],
    ['unknown key', () => configTree(certs, { timeouts: { stream_request: 5 } }), /^config error: unknown key "timeouts\.stream_request"$/m],
    ['bad log level', () => configTree(certs, { engine: { log_level: 'loud' } }), /^config error: engine\.log_level: must be one of debug, info, warn, error$/m],
    ['tls disabled', () => configTree(certs, { tls: { enabled: false } }), /^config error: tls\.enabled: must be true/m],
    ['metrics without token', () => configTree(certs, { metrics: { prometheus: { enabled: true, listen_addr: '[::]:9090' } } }), /^config error: metrics\.prometheus\.bearer_token: required when listen_addr is not a loopback address$/m],
    ['missing certificate', () => configTree({ cert: '/nonexistent/cert.pem', key: certs.key }), /^certificate error: certs\.static\.cert_file "\/nonexistent\/cert\.pem": cannot read file \(ENOENT\)$/m],
    ['unreadable key (a directory)', () => configTree({ cert: certs.cert, key: tempDir() }), /^certificate error: certs\.static\.key_file ".*": cannot read file \(EISDIR\)$/m],
    ['mismatched pair', () => configTree({ cert: certs.cert, key: certs.caKey }), /^certificate error: certs\.static\.key_file ".*ca\.key": private key does not match certificate$/m],
    ['not PEM', () => configTree({ cert: certs.key, key: certs.key }), /^certificate error: certs\.static\.cert_file ".*key\.pem": no PEM certificate found$/m],
  ];
  for (const [name, tree, expected] of cases) {
    test(name, async () => {
      const result = await runCli(['engine', '--config', writeConfig(tree())]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, expected);
      assert.equal(result.stdout, '', 'nothing was started, nothing logged');
    });
  }

  test('--check prints "config ok" for a good config, and RSTREAM_ENGINE_CONFIG names the file', async () => {
    const file = writeConfig(configTree(certs));
    const result = await runCli(['engine', '--check'], { env: { RSTREAM_ENGINE_CONFIG: file } });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'config ok\n');
    assert.equal(result.stderr, '');
  });

  test('--check warns about an RSTREAM_ENGINE_* variable that names no key, as a run does', async () => {
    const result = await runCli(['engine', '--check', '-c', writeConfig(configTree(certs))], { env: { RSTREAM_ENGINE_TIMEOUTS__STREAM_REQUEST: '5' } });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'config ok\n');
    assert.equal(result.stderr, 'warning: ignoring environment variable RSTREAM_ENGINE_TIMEOUTS__STREAM_REQUEST: no config key "timeouts.stream_request"\n');
  });

  test('config/engine.example.yaml passes --check with its secret from the environment', async () => {
    const example = fs.readFileSync(new URL('../../config/engine.example.yaml', import.meta.url), 'utf8');
    const dir = path.dirname(certs.cert);
    const file = writeConfig(example.replace(/\/etc\/rivulet\/tls\/(cert|key)\.pem/g, (_, name: string) => path.join(dir, `${name}.pem`)));
    const result = await runCli(['engine', '--check', '-c', file], {
      env: { RSTREAM_ENGINE_AUTH__JWT__TOKEN_JWT_SECRET: 'x'.repeat(32) },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'config ok\n');
  });

  test('a port already in use is a listen error', async () => {
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => blocker.once('listening', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const file = writeConfig(configTree(certs, { tls: { listen_addr: `127.0.0.1:${port}` } }));
      const result = await runCli(['engine', '-c', file]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, new RegExp(`^listen error: tls\\.listen_addr "127\\.0\\.0\\.1:${port}": EADDRINUSE$`, 'm'));
    } finally {
      blocker.close();
    }
  });

  test('a second engine on the first one\'s metrics port fails naming metrics.prometheus.listen_addr (no shared port)', async () => {
    const first = await startTestEngine({ metrics: { prometheus: { enabled: true, listen_addr: '127.0.0.1:0' } } }, certs);
    const port = first.engine.metricsPort!;
    try {
      const file = writeConfig(configTree(certs, { metrics: { prometheus: { enabled: true, listen_addr: `127.0.0.1:${port}` } } }));
      const result = await runCli(['engine', '-c', file]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^listen error: metrics\\.prometheus\\.listen_addr "127\\.0\\.0\\.1:${port}": EADDRINUSE$`, 'm'));
    } finally {
      await first.stop();
    }
  });

  test('a second engine on the first one\'s TLS port fails with EADDRINUSE, whatever the listener strategy', async () => {
    const first = await startTestEngine({}, certs);
    const port = first.engine.publicPort;
    try {
      const result = await runCli(['engine', '-c', writeConfig(configTree(certs, { tls: { enabled: true, listen_addr: `127.0.0.1:${port}` } }))]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^listen error: tls\\.listen_addr "127\\.0\\.0\\.1:${port}": EADDRINUSE$`, 'm'));
    } finally {
      await first.stop();
    }
  });

  test('an address claim (what keeps SO_REUSEPORT engines apart) is held by one process at a time', async () => {
    const claim = await claimAddress('127.0.0.1', 1);
    await assert.rejects(claimAddress('127.0.0.1', 1), { code: 'EADDRINUSE' });
    const other = await claimAddress('127.0.0.1', 2);
    claim.close();
    other.close();
    await new Promise((resolve) => setImmediate(resolve));
    (await claimAddress('127.0.0.1', 1)).close();
  });

  test('an affinity port in use is a listen error naming dataplane.affinity.port_base', async () => {
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => blocker.once('listening', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const file = writeConfig(configTree(certs, { dataplane: { workers: 1, affinity: { enabled: true, port_base: port } } }));
      const result = await runCli(['engine', '-c', file]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, new RegExp(`^listen error: dataplane\\.affinity\\.port_base "127\\.0\\.0\\.1:${port}": EADDRINUSE$`, 'm'));
    } finally {
      blocker.close();
    }
  });

  test('a usage error exits 2', async () => {
    assert.equal((await runCli(['engine', '--no-such-flag'])).code, 2);
  });
});

test('the redirect listener answers 308 to https on the public port', async () => {
  const file = writeConfig(configTree(certs, { http: { enabled: true, listen_addr: '127.0.0.1:0' }, engine: { log_level: 'info' } }));
  const engine = spawnCli(['engine', '-c', file]);
  try {
    const ready = await engine.waitForLog('ready');
    const httpPort = Number(String(ready.http).split(':').pop());
    const publicPort = Number(ready.public_port);
    const get = (headers: Record<string, string>, requestPath: string) =>
      new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get({ host: '127.0.0.1', port: httpPort, path: requestPath, headers }, resolve).on('error', reject),
      );
    const redirected = await get({ host: 'App.T.Localhost:8080' }, '/a/b?c=d&e');
    assert.equal(redirected.statusCode, 308);
    assert.equal(redirected.headers.location, `https://app.t.localhost:${publicPort}/a/b?c=d&e`);
    const v6 = await get({ host: '[::1]:80' }, '/');
    assert.equal(v6.headers.location, `https://[::1]:${publicPort}/`);
    const bad = await get({ host: 'bad host!' }, '/');
    assert.equal(bad.statusCode, 400);
  } finally {
    engine.child.kill('SIGTERM');
    await engine.exited;
  }
});

test('SIGTERM: stops accepting, lets an open connection run until the bound, exits 0', async () => {
  const file = writeConfig(configTree(certs, { engine: { log_level: 'info' } }));
  const engine = spawnCli(['engine', '-c', file]);
  const ready = await engine.waitForLog('ready');
  const port = Number(ready.public_port);
  const ca = fs.readFileSync(certs.caCert);
  const open = await handshake(port, { servername: 'localhost', ALPNProtocols: ['http/1.1'], ca });
  const closedByEngine = new Promise<void>((resolve) => open.socket.once('close', () => resolve()));

  const started = Date.now();
  engine.child.kill('SIGTERM');
  await engine.waitForLog(/^stopped accepting/);
  await assert.rejects(handshake(port, { servername: 'localhost', ca }), 'new connections are refused once shutdown begins');
  const { code } = await engine.exited;
  const elapsed = Date.now() - started;
  assert.equal(code, 0, engine.stderr());
  assert.ok(elapsed >= SHUTDOWN_DRAIN_MS - 500, `the open connection was given the drain time (${elapsed} ms)`);
  assert.ok(elapsed < SHUTDOWN_DRAIN_MS + 3000, `exited within the bound (${elapsed} ms)`);
  await closedByEngine;
  assert.equal(engine.logs.find((line) => line.msg === 'stopped')?.connections_cut, 1);
});

test('SIGTERM with nothing open exits 0 at once', async () => {
  const engine = spawnCli(['engine', '-c', writeConfig(configTree(certs, { engine: { log_level: 'info' } }))]);
  await engine.waitForLog('ready');
  const started = Date.now();
  engine.child.kill('SIGINT');
  assert.equal((await engine.exited).code, 0);
  assert.ok(Date.now() - started < 2000);
});

test('the development profile creates its CA, certificate and secret once and serves curl --cacert', async () => {
  const cwd = tempDir();
  const env = { RSTREAM_ENGINE_TLS__LISTEN_ADDR: '127.0.0.1:0', RSTREAM_ENGINE_METRICS__PROMETHEUS__ENABLED: 'false' };
  const first = spawnCli(['engine'], { cwd, env });
  const ready = await first.waitForLog('ready');
  const next = await first.waitForLog(/^next steps/);
  const devDir = fs.realpathSync(path.join(cwd, '.rivulet', 'dev'));
  assert.equal(next.mint_token, `rivulet token mint --secret-file ${devDir}/jwt-secret`);
  assert.match(String(next.publish), new RegExp(`^RSTREAM_ENGINE=localhost:${ready.public_port} NODE_EXTRA_CA_CERTS=${devDir}/ca\\.crt .* rivulet forward 3000$`));
  assert.ok(first.logs.some((line) => line.level === 'warn' && /not for production/.test(line.msg)));
  const dev = path.join(cwd, '.rivulet', 'dev');
  for (const [file, mode] of [['ca.crt', 0o644], ['cert.pem', 0o644], ['key.pem', 0o600], ['jwt-secret', 0o600]] as const) {
    assert.equal(fs.statSync(path.join(dev, file)).mode & 0o777, mode, file);
  }
  const url = `https://localhost:${ready.public_port}/api/openapi.json`;
  const curl = execFileSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{content_type}', '--cacert', path.join(dev, 'ca.crt'), url]);
  assert.equal(curl.toString(), '200 application/vnd.oai.openapi+json;version=3.1');
  first.child.kill('SIGTERM');
  await first.exited;

  const secret = fs.readFileSync(path.join(dev, 'jwt-secret'), 'utf8');
  const ca = fs.readFileSync(path.join(dev, 'ca.crt'), 'utf8');
  const second = spawnCli(['engine'], { cwd, env });
  await second.waitForLog('ready');
  assert.equal(fs.readFileSync(path.join(dev, 'jwt-secret'), 'utf8'), secret, 'the secret is kept');
  assert.equal(fs.readFileSync(path.join(dev, 'ca.crt'), 'utf8'), ca, 'the CA is kept');
  assert.ok(!second.logs.some((line) => line.msg === 'created development files'));
  second.child.kill('SIGTERM');
  await second.exited;
});

test('on the development profile, rivulet forward publishes a local service that curl reaches over the dev CA', async () => {
  const cwd = tempDir();
  const env = { RSTREAM_ENGINE_TLS__LISTEN_ADDR: '127.0.0.1:0', RSTREAM_ENGINE_METRICS__PROMETHEUS__ENABLED: 'false' };
  const engine = spawnCli(['engine'], { cwd, env });
  const ready = await engine.waitForLog('ready');
  const dev = path.join(cwd, '.rivulet', 'dev');
  const service = http.createServer((req, res) => res.end(`hello from ${req.url}\n`));
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
  const minted = await runCli(['token', 'mint', '--secret-file', path.join(dev, 'jwt-secret')], { cwd });
  const agent = spawnCli(
    ['forward', String((service.address() as net.AddressInfo).port), '--host', 'devapp', '-o', 'json', '--engine', `localhost:${ready.public_port}`, '--token', minted.stdout.trim(), '--engine-tls-ca-file', path.join(dev, 'ca.crt')],
    { cwd, env: { RSTREAM_CONFIG: '/nonexistent/rstream.yaml' } },
  );
  try {
    await waitFor(() => agent.logs.some((line) => line.status === 'online'), 15_000);
    const online = agent.logs.find((line) => line.status === 'online')!;
    assert.equal(online.forwarding, `https://devapp.t.localhost:${ready.public_port}`);
    // Not execFileSync: the service answering curl lives in this process.
    const { stdout } = await promisify(execFile)('curl', ['-sS', '--cacert', path.join(dev, 'ca.crt'), `${String(online.forwarding)}/hi`]);
    assert.equal(stdout, 'hello from /hi\n');
  } finally {
    agent.child.kill('SIGTERM');
    await agent.exited;
    engine.child.kill('SIGTERM');
    await engine.exited;
    service.close();
  }
});
