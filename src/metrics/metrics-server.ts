import crypto from 'node:crypto';
import net from 'node:net';
import type { Registry } from 'prom-client';
import { endHead, loadUws, type us_listen_socket } from '../api/uws.js';
import { formatListenAddress, type ListenAddress } from '../config/address.js';

const EXPOSITION_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** uWS's LIBUS_LISTEN_EXCLUSIVE_PORT; its typings only declare the flag on the port-only overload. */
const EXCLUSIVE_PORT = 1;
type ListenWithOptions = (host: string, port: number, options: number, done: (socket: us_listen_socket | false) => void) => void;

/** uWS says only that a listen failed: a plain bind of the same address tells why (EADDRINUSE, EACCES…). */
async function bindFailure(address: ListenAddress): Promise<string> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    probe.listen({ host: address.host, port: address.port, exclusive: true }, () => probe.close(() => resolve('cannot listen')));
  });
}

/**
 * The Prometheus listener (docs/metrics.md): plain HTTP/1.1 on its own address, served by uWS in the
 * main thread. `GET`/`HEAD` on the path → the exposition; with a bearer token configured, a scrape
 * without it (compared in constant time) → 401; other paths → 404; other methods → 405.
 */
export class MetricsServer {
  private constructor(
    private readonly listenSocket: us_listen_socket,
    readonly port: number,
  ) {}

  static async start(options: { address: ListenAddress; path: string; bearerToken: string | undefined; registry: Registry }): Promise<MetricsServer> {
    const uws = loadUws();
    const app = uws.App();
    const expected = options.bearerToken === undefined ? undefined : digest(`Bearer ${options.bearerToken}`);
    app.any('/*', (res, req) => {
      const method = req.getMethod();
      const url = req.getUrl();
      const authorization = req.getHeader('authorization');
      if (url !== options.path) {
        res.writeStatus('404 Not Found').writeHeader('content-type', 'text/plain; charset=utf-8').end('not found\n');
        return;
      }
      if (method !== 'get' && method !== 'head') {
        res.writeStatus('405 Method Not Allowed').writeHeader('allow', 'GET, HEAD').end();
        return;
      }
      if (expected && !crypto.timingSafeEqual(digest(authorization), expected)) {
        res.writeStatus('401 Unauthorized').writeHeader('www-authenticate', 'Bearer').writeHeader('content-type', 'text/plain; charset=utf-8').end('unauthorized\n');
        return;
      }
      let aborted = false;
      res.onAborted(() => (aborted = true));
      void options.registry.metrics().then((text) => {
        if (aborted) return;
        res.cork(() => {
          res.writeStatus('200 OK').writeHeader('content-type', EXPOSITION_TYPE);
          if (method === 'head') endHead(res, Buffer.byteLength(text));
          else res.end(text);
        });
      });
    });
    // Exclusive: uWS binds with SO_REUSEPORT by default, and a second engine on the same port would then
    // take half the scrapes instead of failing.
    const listenSocket = await new Promise<us_listen_socket | false>((resolve) =>
      (app.listen as unknown as ListenWithOptions)(options.address.host, options.address.port, EXCLUSIVE_PORT, (socket) => resolve(socket)),
    );
    if (!listenSocket) {
      const code = await bindFailure(options.address);
      throw Object.assign(new Error(`cannot listen on ${formatListenAddress(options.address)}: ${code}`), { code });
    }
    return new MetricsServer(listenSocket, uws.us_socket_local_port(listenSocket as never));
  }

  /** Must run before the thread exits (uWS). */
  close(): void {
    loadUws().us_listen_socket_close(this.listenSocket);
  }
}

/** Fixed-length digests, so the comparison takes the same time whatever the offered token's length. */
function digest(text: string): Buffer {
  return crypto.createHash('sha256').update(text).digest();
}
