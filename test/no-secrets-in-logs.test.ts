import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { after, before, test } from 'node:test';
import type { DevCertificateFiles } from '../src/certs/dev-ca.js';
import { emptyTunnelProperties } from '../src/protocol/messages.js';
import { apiRequest } from './helpers/api-client.js';
import { serveForward } from './helpers/echo-agent.js';
import { edgeRequest } from './helpers/edge-client.js';
import { servedFingerprint, sleep } from './helpers/engine.js';
import { configTree, devCertificates, TEST_SECRET, writeConfig } from './helpers/fixtures.js';
import { FORGED_TOKENS } from './helpers/forged-tokens.js';
import { CLI, spawnCli, type RunningCli } from './helpers/process.js';
import { RawConnection, mintToken, openControlChannel } from './helpers/rstrm-agent.js';
import { listenUpstream, upstreamHandler, type SeenRequest } from './helpers/upstream-server.js';

/**
 * An engine at `log_level: debug`, driven through every path that carries a secret (good and forged
 * tokens on the control channel, the Engine API, the event streams and token_auth; proxy-connection
 * secrets; a private dial; the CLI agent; a certificate rotation to a broken pair), then every line it
 * and the agents wrote is searched for those secrets.
 */
let certs: DevCertificateFiles;
let engine: RunningCli;
let port: number;
let ca: Buffer;
let upstream: http.Server;
let upstreamPort: number;
const seen: SeenRequest[] = [];

before(async () => {
  certs = await devCertificates();
  ca = fs.readFileSync(certs.caCert);
  upstream = http.createServer(upstreamHandler(seen));
  upstreamPort = await listenUpstream(upstream);
  engine = spawnCli(['engine', '-c', writeConfig(configTree(certs, { engine: { host: 'localhost', log_level: 'debug' }, dataplane: { workers: 2 } }))]);
  port = Number((await engine.waitForLog('ready')).public_port);
});
after(async () => {
  engine.child.kill('SIGKILL');
  upstream.closeAllConnections();
  upstream.close();
});

/** Runs `rivulet <args>` with `input` on stdin; resolves with everything it printed. */
function runAgentCli(args: string[], env: NodeJS.ProcessEnv, input: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.on('close', () => resolve(output));
    child.stdin.end(input);
  });
}

/** The base64 lines of a PEM private key: any one of them in a log is a leak. */
function keyLines(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.length >= 40 && !line.startsWith('-----'));
}

test('at log_level debug, no line written by the engine or the agents holds a secret', async () => {
  const secrets = new Map<string, string>([['the JWT secret', TEST_SECRET]]);
  const remember = (what: string, token: string): string => {
    secrets.set(what, token);
    return token;
  };

  // A raw agent with a token_auth tunnel, recording the proxy secrets the engine hands it.
  const { agent: control } = await openControlChannel(port, ca, remember('control-channel token', await mintToken({ sub: 'raw-agent' })));
  control.send({ type: 'open_tunnel_req', request_id: '1', tunnel_properties: { ...emptyTunnelProperties(), protocol: 'http', hostname: 'vault', token_auth: true } });
  assert.ok('tunnel_properties' in (await control.next('open_tunnel_rsp')).result);
  let proxySecrets = 0;
  serveForward(control, port, ca, () => upstreamPort, (request) => {
    remember(`proxy secret ${++proxySecrets}`, request.secret!);
    return port;
  });
  const host = 'vault.t.localhost';
  const fresh = () => new https.Agent();
  const bearer = remember('token_auth Bearer token', await mintToken({ sub: 'visitor' }));
  assert.equal((await edgeRequest(port, ca, host, { path: '/echo', headers: { authorization: `Bearer ${bearer}` }, agent: fresh() })).status, 200);
  const inQuery = remember('token_auth query token', await mintToken({ sub: 'linked' }));
  assert.equal((await edgeRequest(port, ca, host, { path: `/echo?rstream.token=${inQuery}`, agent: fresh() })).status, 200);
  assert.equal((await edgeRequest(port, ca, host, { path: '/echo', headers: { authorization: 'Bearer not-a-token' }, agent: fresh() })).status, 401);

  // The Engine API and its event streams with a good token.
  const apiToken = remember('Engine API token', await mintToken({ sub: 'operator' }));
  assert.equal((await apiRequest(port, ca, '/api/tunnels', { token: apiToken })).status, 200);
  const sseToken = remember('event-stream token', await mintToken({ sub: 'watcher' }));
  await new Promise<void>((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, servername: 'localhost', ca, path: `/api/sse?rstream.token=${sseToken}` }, (res) => {
      assert.equal(res.statusCode, 200);
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? resolve() : reject(error)));
  });

  // Every forged token on every surface.
  for (const [name, make] of FORGED_TOKENS) {
    const token = remember(`forged token: ${name}`, await make());
    const agent = await RawConnection.connect(port, ca);
    agent.send({ type: 'open_control_channel_req', client_details: { token } });
    await agent.next('open_control_channel_rsp');
    agent.close();
    assert.equal((await apiRequest(port, ca, '/api/tunnels', { token })).status, 401);
    assert.equal((await apiRequest(port, ca, `/api/sse?rstream.token=${encodeURIComponent(token)}`)).status, 401);
    assert.equal((await edgeRequest(port, ca, host, { path: '/echo', headers: { authorization: `Bearer ${token}` }, agent: fresh() })).status, 401);
  }

  // The CLI agent serving a private tunnel, dialed by the CLI with another token, and a dial with a forged one.
  const cliEnv = {
    RSTREAM_ENGINE: `127.0.0.1:${port}`,
    NODE_EXTRA_CA_CERTS: certs.caCert,
    RSTREAM_CONFIG: '/nonexistent/rstream.yaml',
  };
  const forwardToken = remember('CLI agent token', await mintToken({ sub: 'cli-agent' }));
  const forward = spawnCli(['forward', String(upstreamPort), '--no-publish', '--name', 'quiet', '-o', 'json'], {
    env: { ...cliEnv, RSTREAM_AUTHENTICATION_TOKEN: forwardToken },
  });
  try {
    const deadline = Date.now() + 15_000;
    while (!forward.logs.some((line) => line.status === 'online')) {
      assert.ok(Date.now() < deadline, `the CLI agent did not come online: ${forward.stderr()}`);
      await sleep(50);
    }
    const dialToken = remember('dial token', await mintToken({ sub: 'dialer' }));
    const dialOutput = await runAgentCli(['nc', 'quiet'], { ...cliEnv, RSTREAM_AUTHENTICATION_TOKEN: dialToken }, 'GET /echo HTTP/1.0\r\n\r\n');
    assert.match(dialOutput, /HTTP\/1\.1 200/);
    const forgedDial = await FORGED_TOKENS[0]![1]();
    await runAgentCli(['nc', 'quiet'], { ...cliEnv, RSTREAM_AUTHENTICATION_TOKEN: forgedDial }, '');
  } finally {
    forward.child.kill('SIGINT');
    await forward.exited;
  }

  // A rotation to a pair that does not match: the engine says why, and keeps the old pair.
  const before = await servedFingerprint(port, ca);
  const goodKey = fs.readFileSync(certs.key);
  fs.writeFileSync(certs.key, fs.readFileSync(certs.caKey));
  await sleep(1100);
  assert.equal(await servedFingerprint(port, ca), before);
  await engine.waitForLog(/certificate reload failed/);
  fs.writeFileSync(certs.key, goodKey);

  control.close();
  await sleep(300); // the last lines (client disconnected) reach the pipe
  const engineOutput = engine.logs.map((line) => JSON.stringify(line)).join('\n') + engine.stderr();
  const agentOutput = forward.logs.map((line) => JSON.stringify(line)).join('\n') + forward.stderr();
  const debugLines = engine.logs.filter((line) => line.level === 'debug').length;
  assert.ok(debugLines >= FORGED_TOKENS.length, `the engine wrote only ${debugLines} debug lines`);
  for (const [what, secret] of secrets) {
    // A token's signature alone is enough to find a token cut or reformatted in a log line.
    const needles = [secret, ...secret.split('.').slice(2).filter((part) => part.length >= 16)];
    for (const needle of needles) {
      assert.ok(!engineOutput.includes(needle), `the engine logged the ${what}`);
      assert.ok(!agentOutput.includes(needle), `the CLI agent printed the ${what}`);
    }
  }
  for (const file of [certs.key, certs.caKey]) {
    for (const line of keyLines(file)) assert.ok(!engineOutput.includes(line), `the engine logged a line of ${file}`);
  }
  assert.ok(secrets.size > FORGED_TOKENS.length + 8, `${secrets.size} secrets checked`);
});
