import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { spawn } from 'node:child_process';
import { sleep, startTestEngine, waitFor, type TestEngine } from './helpers/engine.js';
import { devCertificates } from './helpers/fixtures.js';
import { CLI, runCli, spawnCli } from './helpers/process.js';
import { mintToken } from './helpers/rstrm-agent.js';
import type { DevCertificateFiles } from '../src/certs/dev-ca.js';
import { requestedHostname, stableHostname } from '../src/agent/forward.js';
import { TargetFailureReport } from '../src/agent/target-failures.js';

let certs: DevCertificateFiles;
let t: TestEngine;
let env: NodeJS.ProcessEnv;
let upstream: net.Server;
let upstreamPort: number;

/** A TCP service that answers each connection with "echo:" + what it read, after the client's end. */
before(async () => {
  certs = await devCertificates('edge.localhost');
  t = await startTestEngine({ engine: { host: 'edge.localhost', log_level: 'error' } }, certs);
  upstream = net.createServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => socket.end(Buffer.concat([Buffer.from('echo:'), ...chunks])));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamPort = (upstream.address() as net.AddressInfo).port;
  env = {
    RSTREAM_ENGINE: `127.0.0.1:${t.engine.publicPort}`,
    RSTREAM_AUTHENTICATION_TOKEN: await mintToken(),
    NODE_EXTRA_CA_CERTS: certs.caCert,
    RSTREAM_CONFIG: '/nonexistent/rstream.yaml',
  };
});
after(async () => {
  upstream.close();
  await t.stop();
});

/** `rivulet nc` with `input` on stdin; resolves with its exit status and output. */
function nc(args: string[], input: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'nc', ...args], { env: { ...process.env, ...env, ...extraEnv } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe('rivulet forward and rivulet nc', () => {
  test('a private tunnel round-trips through forward and nc, in both zero_rtt modes, with half-close', async () => {
    const forward = spawnCli(['forward', String(upstreamPort), '--no-publish', '--name', 'cli-svc', '-o', 'json'], { env });
    try {
      const online = await waitForStatus(forward, 'online');
      assert.equal(online.forwarding, 'rstrm://cli-svc (unpublished)');
      assert.match(String(online.tunnel_id), /^[0-9a-f]{24}$/);
      assert.equal(online.forwarded, `localhost:${upstreamPort}`);
      for (const args of [['rstrm://cli-svc'], ['cli-svc', '--no-zero-rtt']]) {
        const result = await nc(args, 'ping');
        assert.equal(result.stdout, 'echo:ping', result.stderr);
        assert.equal(result.code, 0);
      }
      const client = [...t.engine.control.registry.clients.values()].find((c) => c.details.agent === 'rivulet')!;
      assert.equal(client.details.channel, 'cli');
      assert.equal(client.details.protocol_version, '1.4.5');
    } finally {
      forward.child.kill('SIGINT');
      assert.equal((await forward.exited).code, 0);
    }
  });

  test('a failing local target is reported with ProxyConnRsp, so nc --no-zero-rtt sees code 6000', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadPort = (closed.address() as net.AddressInfo).port;
    closed.close();
    const forward = spawnCli(['forward', String(deadPort), '--no-publish', '--name', 'dead-svc', '-o', 'json'], { env });
    try {
      await waitForStatus(forward, 'online');
      const result = await nc(['dead-svc', '--no-zero-rtt'], 'x');
      assert.equal(result.code, 1);
      assert.match(result.stderr, /^dial failed: agent refused the stream: upstream dial failed: ECONNREFUSED \(code 6000\)\n$/);
    } finally {
      forward.child.kill('SIGTERM');
      await forward.exited;
    }
  });

  test('nc --no-zero-rtt reports an unknown tunnel with its code and exits 1', async () => {
    const result = await nc(['rstrm://no-such', '--no-zero-rtt'], '');
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'dial failed: tunnel "no-such" not found (code 3000)\n');
  });

  test(
    'nc with zero-RTT reports a refused dial (the engine resets it) as a refusal it cannot explain, exit 1',
    { todo: 'known bug: now and then Node reports a clean end instead of the reset, and nc exits 0 (docs/cli.md#rivulet-nc-name-or-id)' },
    async () => {
      const zeroRtt = await nc(['rstrm://no-such'], 'hello');
      assert.equal(zeroRtt.stdout, '');
      assert.equal(zeroRtt.code, 1);
      assert.equal(zeroRtt.stderr, 'dial failed: the engine refused the stream (ECONNRESET); rerun with --no-zero-rtt to see why\n');
    },
  );

  test(
    'nc with zero-RTT and no input still gets what the remote says first (a banner): the dial ended before its stream was joined',
    async () => {
      const greeter = net.createServer((socket) => {
        socket.on('error', () => {});
        socket.end('banner');
      });
      await new Promise<void>((resolve) => greeter.listen(0, '127.0.0.1', resolve));
      const forward = spawnCli(['forward', String((greeter.address() as net.AddressInfo).port), '--no-publish', '--name', 'greeter', '-o', 'json'], { env });
      try {
        await waitForStatus(forward, 'online');
        const answers: string[] = [];
        for (let i = 0; i < 10; i++) answers.push((await nc(['greeter'], '')).stdout);
        assert.deepEqual(answers, Array(10).fill('banner'));
      } finally {
        forward.child.kill('SIGINT');
        await forward.exited;
        greeter.close();
      }
    },
  );

  test('nc piped into head: the reader leaving ends the dial quietly (exit 0, nothing on stderr)', async () => {
    const firehose = net.createServer((socket) => {
      socket.on('error', () => {});
      const chunk = Buffer.alloc(64 * 1024, 0x66);
      const pump = (): void => {
        while (socket.writable && socket.write(chunk));
        if (socket.writable) socket.once('drain', pump);
      };
      pump();
    });
    await new Promise<void>((resolve) => firehose.listen(0, '127.0.0.1', resolve));
    const forward = spawnCli(['forward', String((firehose.address() as net.AddressInfo).port), '--no-publish', '--name', 'firehose', '-o', 'json'], { env });
    try {
      await waitForStatus(forward, 'online');
      const result = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
        const child = spawn('bash', ['-c', `"${process.execPath}" "${CLI}" nc firehose < /dev/null | head -c 10; echo " exit=\${PIPESTATUS[0]}"`], { env: { ...process.env, ...env } });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
        child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
        child.on('close', () => resolve({ stdout, stderr }));
      });
      assert.equal(result.stdout, 'ffffffffff exit=0\n');
      assert.equal(result.stderr, '');
    } finally {
      forward.child.kill('SIGINT');
      await forward.exited;
      firehose.close();
    }
  });

  test('killing the agent removes its client and tunnels from the registry', async () => {
    const forward = spawnCli(['forward', String(upstreamPort), '--no-publish', '--name', 'doomed', '-o', 'json'], { env });
    const online = await waitForStatus(forward, 'online');
    const tunnelId = String(online.tunnel_id);
    assert.ok(t.engine.control.registry.tunnels.has(tunnelId));
    forward.child.kill('SIGKILL');
    await forward.exited;
    await waitFor(() => !t.engine.control.registry.tunnels.has(tunnelId), 2000);
  });

  test('missing engine or token: exit 1 with the documented message', async () => {
    const noEngine = await runCli(['forward', '8080'], { env: { RSTREAM_CONFIG: '/nonexistent' } });
    assert.equal(noEngine.code, 1);
    assert.equal(noEngine.stderr, 'engine is required but not configured (use --engine, RSTREAM_ENGINE or a context)\n');
    const noToken = await runCli(['nc', 'x', '--engine', 'localhost:1'], { env: { RSTREAM_CONFIG: '/nonexistent' } });
    assert.equal(noToken.code, 1);
    assert.equal(noToken.stderr, 'missing authentication token (use --token, RSTREAM_AUTHENTICATION_TOKEN or a context)\n');
    const clash = await runCli(['forward', '--http', '--tls', '--engine', 'e:1', '--token', 't']);
    assert.equal(clash.code, 2);
    const foreignHost = await runCli(['forward', '8080', '--host', 'shop.example.com', '--engine', 'edge.localhost:1', '--token', 't']);
    assert.equal(foreignHost.code, 2);
    assert.match(foreignHost.stderr, /--host "shop\.example\.com": .* pass the label \(--host shop\) or shop\.t\.edge\.localhost/);
  });

  test('an engine that does not negotiate rstrm/1 is refused', async () => {
    const server = tls.createServer({ cert: fs.readFileSync(certs.cert), key: fs.readFileSync(certs.key) }, (s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const result = await runCli(['forward', '1', '--no-retry', '--engine', `127.0.0.1:${(server.address() as net.AddressInfo).port}`], { env });
      assert.equal(result.code, 1);
      assert.match(result.stdout, /connection failed \(127\.0\.0\.1:\d+ is not an engine's agent port \(engine did not negotiate rstrm\/1/);
    } finally {
      server.close();
    }
  });

  describe('failures the operator must fix stop the agent (exit 1) with what to do, even with retries on', () => {
    const cases: Array<[string, () => Promise<{ args?: string[]; env: NodeJS.ProcessEnv }>, RegExp]> = [
      ['a malformed token', async () => ({ env: { ...env, RSTREAM_AUTHENTICATION_TOKEN: 'not-a-token' } }), /the engine refused the token; mint a new one/],
      ['an expired token', async () => ({ env: { ...env, RSTREAM_AUTHENTICATION_TOKEN: await mintToken({ exp: Math.floor(Date.now() / 1000) - 120 }) } }), /expired.*the engine refused the token/],
      ['an engine certificate nobody told it to trust', async () => ({ env: { ...env, NODE_EXTRA_CA_CERTS: '' } }), /cannot verify the engine's certificate .*--engine-tls-ca-file <ca\.pem> or set NODE_EXTRA_CA_CERTS/],
    ];
    for (const [name, setup, expected] of cases) {
      test(name, async () => {
        const { env: caseEnv } = await setup();
        const started = Date.now();
        const result = await runCli(['forward', '8080', '--retry-interval', '200'], { env: caseEnv });
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.match(result.stdout, expected);
        assert.doesNotMatch(result.stdout, /retrying/);
        assert.ok(Date.now() - started < 5000);
      });
    }

    test('a port that does not speak TLS', async () => {
      const plain = net.createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
      await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
      try {
        const result = await runCli(['forward', '8080', '--engine', `127.0.0.1:${(plain.address() as net.AddressInfo).port}`], { env });
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.match(result.stdout, /does not speak TLS: use the engine's TLS port/);
      } finally {
        plain.close();
      }
    });
  });

  test('a target that refuses: the agent says so on stderr, once, then at most once per ten seconds with a count', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadPort = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const forward = spawnCli(['forward', String(deadPort), '--no-publish', '--name', 'refusing', '-o', 'json'], { env });
    try {
      await waitForStatus(forward, 'online');
      for (let dial = 0; dial < 5; dial++) await nc(['refusing'], 'x');
      await waitFor(() => /cannot reach the target/.test(forward.stderr()));
      await sleep(300);
      const lines = forward.stderr().trim().split('\n');
      assert.equal(lines.length, 1, forward.stderr());
      assert.match(lines[0]!, new RegExp(`^cannot reach the target localhost:${deadPort} \\(.*ECONNREFUSED`));
    } finally {
      forward.child.kill('SIGINT');
      await forward.exited;
    }
  });

  test('an unreachable engine is retried, waiting longer each time, and says so', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const forward = spawnCli(['forward', '8080', '--engine', `127.0.0.1:${port}`, '--retry-interval', '100'], { env });
    try {
      await waitFor(() => forward.logs.filter((line) => line.msg.startsWith('retrying in')).length >= 4, 10_000);
      const waits = forward.logs.filter((line) => line.msg.startsWith('retrying in')).map((line) => Number(/retrying in ([\d.]+) s/.exec(line.msg)![1]));
      assert.ok(waits[3]! > waits[0]! * 3, `waits ${waits.join(', ')} s do not back off`);
      assert.ok(forward.logs.some((line) => /connection failed \(connect ECONNREFUSED/.test(line.msg)));
    } finally {
      forward.child.kill('SIGINT');
      assert.equal((await forward.exited).code, 0);
    }
  });
});

test('stable hostnames for every engine host (the official form where it fits); --host is a label or <label>.t.<engine host>, anything else refused with what to pass', () => {
  assert.match(stableHostname('edge.example.com')!, /^r[0-9a-f]{8}-edge\.t\.example\.com$/);
  assert.match(stableHostname('localhost'), /^r[0-9a-f]{8}-localhost$/);
  assert.match(stableHostname('127.0.0.1'), /^r[0-9a-f]{8}$/);
  assert.equal(requestedHostname('Web', 'edge.example.com'), 'web');
  assert.equal(requestedHostname('web.t.edge.example.com', 'edge.example.com'), 'web.t.edge.example.com');
  assert.deepEqual(requestedHostname('web.example.com', 'edge.example.com'), {
    problem: '--host "web.example.com": a published tunnel\'s hostname is <label>.t.<engine host>; pass the label (--host web) or web.t.edge.example.com',
  });
  assert.deepEqual(requestedHostname('web.example.com', '127.0.0.1'), {
    problem: '--host "web.example.com": a published tunnel\'s hostname is <label>.t.<engine host>; pass the label (--host web) or web.t.<engine host>',
  });
});

// The generated name needs an engine host with two labels that resolves here; none does on these machines
// (only `localhost`), so the restart test names its hostname, which goes through the same recreate path.
test('after an engine restart, forward reconnects and recreates its tunnel with the same hostname', async () => {
  const first = await startTestEngine({ engine: { host: 'edge.localhost', log_level: 'error' } }, certs);
  const port = first.engine.publicPort;
  const forward = spawnCli(['forward', String(upstreamPort), '--host', 'stable-name', '--retry-interval', '300', '-o', 'json'], {
    env: { ...env, RSTREAM_ENGINE: `127.0.0.1:${port}` },
  });
  let second: TestEngine | undefined;
  try {
    const online = await waitForStatus(forward, 'online');
    const hostname = String(online.forwarding);
    assert.equal(hostname, `https://stable-name.t.edge.localhost:${port}`);
    await first.stop();
    await waitForStatus(forward, 'disconnected');
    second = await startTestEngine(
      { engine: { host: 'edge.localhost', log_level: 'error' }, tls: { enabled: true, listen_addr: `127.0.0.1:${port}` } },
      certs,
    );
    const again = await waitForStatus(forward, 'online', 10_000, online);
    assert.equal(again.forwarding, hostname);
  } finally {
    forward.child.kill('SIGTERM');
    await forward.exited;
    await second?.stop();
  }
});

/** The next `-o json` status line with this status (after `previous`, if given). */
async function waitForStatus(
  cli: ReturnType<typeof spawnCli>,
  status: string,
  timeoutMs = 10_000,
  previous?: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const start = previous ? cli.logs.indexOf(previous as never) + 1 : 0;
    const found = cli.logs.slice(start).find((line) => line.status === status);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no status "${status}"; got ${JSON.stringify(cli.logs)}; stderr ${cli.stderr()}`);
    await sleep(50);
  }
}

test('target failures are reported at once, then once per ten seconds with the count since', () => {
  let now = 0;
  const lines: string[] = [];
  const report = new TargetFailureReport('localhost:8080', (line) => lines.push(line), () => now);
  report.failed('ECONNREFUSED');
  for (let second = 1; second <= 9; second++) {
    now = second * 1000;
    report.failed('ECONNREFUSED');
    report.failed('ECONNREFUSED');
  }
  now = 10_000;
  report.failed('connect timed out');
  assert.deepEqual(lines, [
    'cannot reach the target localhost:8080 (ECONNREFUSED)',
    'cannot reach the target localhost:8080 (connect timed out); 19 streams failed since the last report',
  ]);
});
