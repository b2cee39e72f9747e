import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { PATTERN } from './pattern.js';

/**
 * The upstream service of the HTTP benchmarks, in its own process: plain HTTP for the tunnel's agent
 * and HTTPS for the direct reference, same handler, plus an "impatient" plain port that closes idle
 * keep-alive connections after 20 ms. `/small`: a 100-byte body; `/bytes?n=N`: N bytes streamed with
 * backpressure; `/upload`: reads the request body and answers with its length; `/mix`: the keep-alive
 * scenario's endpoint (see `mix`). Prints `{"http":…,"https":…,"impatient":…}` once all listen.
 * Usage: node dist/bench/bench-upstream.js <cert.pem> <key.pem>
 */
const SMALL = Buffer.alloc(100, 'x');
const CHUNK = Buffer.alloc(256 * 1024, 0x61);

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.url!.startsWith('/mix?')) {
    mix(req, res, new URL(req.url!, 'http://x').searchParams);
    return;
  }
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

/**
 * `/mix?status=S&n=N&framing=length|chunked&close=1&offset=K`: reads the request body and checks it
 * against PATTERN from K; then answers S (204 and 304 without a body), with `{"received":…,"intact":…}`
 * for a request that had a body, else PATTERN[0, N); by Content-Length or chunked in 16 KiB pieces;
 * `close=1` adds `Connection: close` (the upstream ends the keep-alive connection itself).
 */
function mix(req: http.IncomingMessage, res: http.ServerResponse, query: URLSearchParams): void {
  const offset = Number(query.get('offset') ?? 0);
  let received = 0;
  let intact = true;
  req.on('data', (chunk: Buffer) => {
    if (intact) intact = chunk.equals(PATTERN.subarray(offset + received, offset + received + chunk.length));
    received += chunk.length;
  });
  req.on('end', () => {
    const status = Number(query.get('status') ?? 200);
    const headers: http.OutgoingHttpHeaders = query.get('close') === '1' ? { connection: 'close' } : {};
    if (status === 204 || status === 304) {
      res.writeHead(status, headers).end();
      return;
    }
    const hadBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const body = hadBody ? Buffer.from(JSON.stringify({ received, intact })) : PATTERN.subarray(0, Number(query.get('n') ?? 0));
    if (query.get('framing') !== 'chunked') {
      res.writeHead(status, { ...headers, 'content-length': body.length }).end(body);
      return;
    }
    res.writeHead(status, headers);
    let sent = 0;
    const pump = (): void => {
      while (sent < body.length) {
        const piece = body.subarray(sent, sent + 16 * 1024);
        sent += piece.length;
        if (!res.write(piece)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
}

const [certFile, keyFile] = process.argv.slice(2);
const plain = http.createServer({ keepAliveTimeout: 60_000 }, handler);
const secure = https.createServer({ cert: fs.readFileSync(certFile!), key: fs.readFileSync(keyFile!), keepAliveTimeout: 60_000 }, handler);
const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
const impatient = http.createServer({ keepAliveTimeout: 20 }, handler);
const ports = { http: await listen(plain), https: await listen(secure), impatient: await listen(impatient) };
process.stdout.write(`${JSON.stringify(ports)}\n`);
process.on('SIGTERM', () => process.exit(0));
