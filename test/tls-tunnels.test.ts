import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { createDevCertificates } from '../src/certs/dev-ca.js';
import { startTestEngine, type TestEngine } from './helpers/engine.js';
import { startForward } from './helpers/forward.js';
import type { RunningCli } from './helpers/process.js';
import { mintToken } from './helpers/rstrm-agent.js';

/** Published TLS tunnels served through `rivulet forward --tls`, with real TLS clients. */
let t: TestEngine;
let token: string;
let plainEcho: net.Server;
const agents: RunningCli[] = [];

before(async () => {
  t = await startTestEngine();
  token = await mintToken();
  plainEcho = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => plainEcho.listen(0, '127.0.0.1', resolve));
});
after(async () => {
  for (const agent of agents) {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
  plainEcho.close();
  await t.stop();
});

/** `rivulet forward` with these flags; resolves once its tunnel is live. */
async function forward(port: number, flags: string[]): Promise<string> {
  const agent = await startForward(t, token, port, ['--tls', ...flags]);
  agents.push(agent);
  return String(agent.logs.find((line) => line.status === 'online')!.forwarding);
}

function connect(servername: string, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: t.engine.publicPort, servername, ...options });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the handshake')));
  });
}

async function echo(socket: tls.TLSSocket, size = 100_000): Promise<void> {
  const payload = crypto.randomBytes(size);
  const received: Buffer[] = [];
  let length = 0;
  const done = new Promise<void>((resolve) =>
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      length += chunk.length;
      if (length >= size) resolve();
    }),
  );
  socket.write(payload);
  await done;
  assert.ok(Buffer.concat(received).equals(payload));
}

describe('published TLS tunnels', () => {
  test('passthrough: the client completes TLS with the upstream and sees its certificate', async () => {
    const upstreamPair = await createDevCertificates({ host: 'pt.t.localhost', extraSans: [], days: 2 });
    const upstream = tls.createServer({ cert: upstreamPair.leafCertPem, key: upstreamPair.leafKeyPem }, (socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    try {
      const address = await forward((upstream.address() as net.AddressInfo).port, ['--tls-mode', 'passthrough', '--host', 'pt']);
      assert.equal(address, `pt.t.localhost:${t.engine.publicPort} (tls)`);
      const socket = await connect('pt.t.localhost', { ca: upstreamPair.caCertPem });
      assert.equal(socket.getPeerCertificate().fingerprint256, new crypto.X509Certificate(upstreamPair.leafCertPem).fingerprint256);
      await echo(socket);
      socket.destroy();
    } finally {
      upstream.close();
    }
  });

  test('terminated with tls_min_version tls1.3: a TLS 1.2 client is refused, a TLS 1.3 client gets the plaintext relayed', async () => {
    await forward((plainEcho.address() as net.AddressInfo).port, ['--tls-min-version', 'tls1.3', '--host', 'strict']);
    await assert.rejects(connect('strict.t.localhost', { ca: t.ca, maxVersion: 'TLSv1.2' }));
    const socket = await connect('strict.t.localhost', { ca: t.ca });
    assert.equal(socket.getProtocol(), 'TLSv1.3');
    assert.equal(socket.getPeerCertificate().fingerprint256, t.engine.certificates.current.fingerprint256);
    await echo(socket);
    socket.destroy();
  });

  test('tls_alpns: the tunnel picks its first entry the client offers; no match fails the handshake', async () => {
    await forward((plainEcho.address() as net.AddressInfo).port, ['--tls-alpn', 'x-proto,h2', '--host', 'alpn']);
    const chosen = await connect('alpn.t.localhost', { ca: t.ca, ALPNProtocols: ['h2', 'x-proto'] });
    assert.equal(chosen.alpnProtocol, 'x-proto');
    chosen.destroy();
    await assert.rejects(connect('alpn.t.localhost', { ca: t.ca, ALPNProtocols: ['http/1.1'] }), /no application protocol/i);
    const none = await connect('alpn.t.localhost', { ca: t.ca });
    assert.equal(none.alpnProtocol, false);
    none.destroy();
  });

  test('terminated with upstream_tls: TLS again towards the upstream, SNI the public name, ALPN the negotiated one', async () => {
    const upstreamPair = await createDevCertificates({ host: 'upstream.internal', extraSans: [], days: 2 });
    const seen: Array<{ servername: string | false; alpn: string | false | null }> = [];
    const upstream = tls.createServer({ cert: upstreamPair.leafCertPem, key: upstreamPair.leafKeyPem, ALPNProtocols: ['x-proto'] }, (socket) => {
      seen.push({ servername: socket.servername ?? false, alpn: socket.alpnProtocol });
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    try {
      await forward((upstream.address() as net.AddressInfo).port, ['--upstream-tls', '--tls-alpn', 'x-proto', '--host', 'retls']);
      const socket = await connect('retls.t.localhost', { ca: t.ca, ALPNProtocols: ['x-proto'] });
      assert.equal(socket.getPeerCertificate().fingerprint256, t.engine.certificates.current.fingerprint256, 'the client sees the engine certificate');
      await echo(socket);
      assert.deepEqual(seen, [{ servername: 'retls.t.localhost', alpn: 'x-proto' }]);
      socket.destroy();
    } finally {
      upstream.close();
    }
  });

  test('trusted_ips: a peer outside the list is closed before any TLS byte', async () => {
    await forward((plainEcho.address() as net.AddressInfo).port, ['--trusted-ips', '10.0.0.0/8,2001:db8::/32', '--host', 'guarded']);
    const hello = await new Promise<number>((resolve) => {
      let bytes = 0;
      const raw = net.connect(t.engine.publicPort, '127.0.0.1', () => {
        const client = tls.connect({ socket: raw, servername: 'guarded.t.localhost', ca: t.ca });
        client.on('error', () => {});
      });
      raw.on('data', (chunk: Buffer) => (bytes += chunk.length));
      raw.on('error', () => {});
      raw.on('close', () => resolve(bytes));
    });
    assert.equal(hello, 0);
    await forward((plainEcho.address() as net.AddressInfo).port, ['--trusted-ips', '127.0.0.0/8', '--host', 'welcome']);
    const socket = await connect('welcome.t.localhost', { ca: t.ca });
    await echo(socket, 1000);
    socket.destroy();
  });
});
