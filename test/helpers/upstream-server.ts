import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

/** What the upstream saw of one request. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  httpVersion: string;
}

/**
 * The request handler of the test upstream, usable by HTTP/1.1, h2c and TLS servers alike:
 * - `/echo`: JSON of the method, url, body length and SHA-256;
 * - `/bytes?n=N`: N pseudo-random bytes, `x-sha256` trailer-free checksum in a header;
 * - `/sse`: one event now, a second when `/sse-release` is requested, then the end;
 * - `/slow?ms=M`: answers after M ms.
 */
export function upstreamHandler(seen: SeenRequest[]) {
  let releaseSse: (() => void) | undefined;
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, httpVersion: req.httpVersion });
    const url = new URL(req.url!, 'http://upstream');
    if (url.pathname === '/bytes') {
      const body = patternBytes(Number(url.searchParams.get('n')));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-sha256': sha256(body), 'content-length': body.length });
      res.end(body);
      return;
    }
    if (url.pathname === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: first\n\n');
      releaseSse = () => res.end('data: second\n\n');
      return;
    }
    if (url.pathname === '/sse-release') {
      releaseSse?.();
      res.end('released');
      return;
    }
    if (url.pathname === '/slow') {
      setTimeout(() => res.end('slow'), Number(url.searchParams.get('ms')));
      return;
    }
    digestBody(req, (length, sha256) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, length, sha256, version: req.httpVersion }));
    });
  };
}

/** Reads a request body to its end; `done` gets its length and SHA-256 (hex). */
export function digestBody(req: http.IncomingMessage, done: (length: number, sha256: string) => void): void {
  const hash = crypto.createHash('sha256');
  let length = 0;
  req.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    length += chunk.length;
  });
  req.on('end', () => done(length, hash.digest('hex')));
}

export async function listenUpstream(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** Deterministic bytes, cheap to produce for large sizes. */
export function patternBytes(length: number): Buffer {
  const block = crypto.createHash('sha512').update('rivulet').digest();
  const body = Buffer.allocUnsafe(length);
  for (let offset = 0; offset < length; offset += block.length) block.copy(body, offset, 0, Math.min(block.length, length - offset));
  return body;
}

export function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}
