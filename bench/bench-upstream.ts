import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';

/**
 * The upstream service of the HTTP benchmarks, in its own process: plain HTTP for the tunnel's agent
 * and HTTPS for the direct reference, same handler. `/small`: a 100-byte body; `/bytes?n=N`: N bytes
 * streamed with backpressure; `/upload`: reads the request body and answers with its length. Prints `{"http":…,"https":…}` once both listen.
 * Usage: node dist/bench/bench-upstream.js <cert.pem> <key.pem>
 */
const SMALL = Buffer.alloc(100, 'x');
const CHUNK = Buffer.alloc(256 * 1024, 0x61);

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.url === '/upload') {
    let received = 0;
    req.on('data', (chunk: Buffer) => (received += chunk.length));
    req.on('end', () => res.end(String(received)));
    return;
  }
  if (req.url === '/small') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SMALL.length });
    res.end(SMALL);
    return;
  }
  const size = Number(new URL(req.url!, 'http://x').searchParams.get('n') ?? 0);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  let left = size;
  const pump = (): void => {
    while (left > 0) {
      const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= piece.length;
      if (!res.write(piece)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

const [certFile, keyFile] = process.argv.slice(2);
const plain = http.createServer({ keepAliveTimeout: 60_000 }, handler);
const secure = https.createServer({ cert: fs.readFileSync(certFile!), key: fs.readFileSync(keyFile!), keepAliveTimeout: 60_000 }, handler);
const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
const ports = { http: await listen(plain), https: await listen(secure) };
process.stdout.write(`${JSON.stringify(ports)}\n`);
process.on('SIGTERM', () => process.exit(0));
