import assert from 'node:assert/strict';
import http from 'node:http';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { loadUws, type us_listen_socket } from '../src/api/uws.js';

/** glibc of this process, e.g. 2.36 on Debian 12, 2.41 on Debian 13. */
function glibc(): number {
  const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header;
  return Number(header.glibcVersionRuntime ?? 0);
}

test("uWS loads the native build that matches this Node and glibc, and serves HTTP with it", async () => {
  const uws = loadUws();
  // v20.57 (btc-vision) needs glibc >= 2.38 and is the only build for Node >= 22; v20.30 (trufflesuite) serves Node 20 on older glibc.
  const abi = Number(process.versions.modules);
  const expected = abi > 115 || glibc() >= 2.38 ? '@btc-vision/uwebsockets.js' : '@trufflesuite/uws-js-unofficial';
  const binaries = Object.keys(createRequire(import.meta.url).cache).filter((file) => /uws_linux_\w+_\d+\.node$/.test(file));
  assert.equal(binaries.length, 1, `one native uWS binary loaded: ${binaries.join(', ')}`);
  assert.ok(binaries[0]!.includes(`/node_modules/${expected}/`), `${binaries[0]} is ${expected} (Node ${process.version}, glibc ${glibc()})`);

  const app = uws.App();
  app.get('/*', (res) => void res.end(`uws on ${process.version}`));
  const socket = await new Promise<us_listen_socket | false>((resolve) => app.listen('127.0.0.1', 0, resolve));
  assert.ok(socket, 'listens');
  try {
    const port = uws.us_socket_local_port(socket as never);
    const body = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/' }, (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        response.on('end', () => resolve(text));
      }).on('error', reject);
    });
    assert.equal(body, `uws on ${process.version}`);
  } finally {
    uws.us_listen_socket_close(socket as never);
  }
});
