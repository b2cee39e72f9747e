import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadUws, type TemplatedApp, type us_listen_socket } from './uws.js';

/**
 * The main thread's uWS HTTP server. Workers terminate TLS for base-host HTTP connections and splice
 * the plaintext here over a Unix socket in a private directory (design.md: the Engine API lives in
 * the control plane).
 */
export class InternalApiServer {
  private constructor(
    private readonly listenSocket: us_listen_socket,
    private readonly directory: string,
    readonly socketPath: string,
  ) {}

  /** `routes` register themselves on the app (the Engine API, its event streams). */
  static async start(routes: ReadonlyArray<{ register(app: TemplatedApp): void }>): Promise<InternalApiServer> {
    const uws = loadUws();
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-api-'));
    fs.chmodSync(directory, 0o700);
    const socketPath = path.join(directory, 'api.sock');
    const app = uws.App();
    for (const route of routes) route.register(app);
    const listenSocket = await new Promise<us_listen_socket | false>((resolve) =>
      app.listen_unix((socket) => resolve(socket), socketPath),
    );
    if (!listenSocket) {
      fs.rmSync(directory, { recursive: true, force: true });
      throw new Error(`cannot listen on ${socketPath}`);
    }
    return new InternalApiServer(listenSocket, directory, socketPath);
  }

  /** Must run before the thread exits: Node aborts when a uWS listen socket outlives its loop. */
  close(): void {
    loadUws().us_listen_socket_close(this.listenSocket);
    fs.rmSync(this.directory, { recursive: true, force: true });
  }
}
