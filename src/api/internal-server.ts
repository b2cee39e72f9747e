import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadUws, type TemplatedApp, type us_listen_socket } from './uws.js';

/**
 * The main thread's uWS HTTP server. Workers terminate TLS for base-host HTTP connections and splice
 * the plaintext here over a Unix socket in a private directory (docs/architecture.md#the-main-thread: the Engine API lives in
 * the control plane).
 */
/** How often the main thread checks that its socket file is still there. */
const SOCKET_CHECK_MS = 1000;

export class InternalApiServer {
  private watchdog: NodeJS.Timeout | undefined;

  private constructor(
    private readonly app: TemplatedApp,
    private listenSocket: us_listen_socket,
    private directory: string,
    public socketPath: string,
  ) {}

  /** `routes` register themselves on the app (the Engine API, its event streams). */
  static async start(routes: ReadonlyArray<{ register(app: TemplatedApp): void }>): Promise<InternalApiServer> {
    const app = loadUws().App();
    for (const route of routes) route.register(app);
    const { listenSocket, directory, socketPath } = await listenInPrivateDirectory(app);
    return new InternalApiServer(app, listenSocket, directory, socketPath);
  }

  /**
   * Keeps the socket reachable when its file disappears (a temp-directory cleaner, an operator's rm):
   * the server listens again in a new private directory and `moved` tells the workers where.
   */
  keepListening(moved: (socketPath: string) => void): void {
    let relistening = false;
    this.watchdog = setInterval(() => {
      if (relistening || fs.existsSync(this.socketPath)) return;
      relistening = true;
      // A failed attempt (no room for a new directory) is tried again at the next check.
      void this.relisten()
        .then(() => moved(this.socketPath), () => {})
        .finally(() => (relistening = false));
    }, SOCKET_CHECK_MS).unref();
  }

  /** Must run before the thread exits: Node aborts when a uWS listen socket outlives its loop. */
  close(): void {
    clearInterval(this.watchdog);
    loadUws().us_listen_socket_close(this.listenSocket);
    fs.rmSync(this.directory, { recursive: true, force: true });
  }

  private async relisten(): Promise<void> {
    const next = await listenInPrivateDirectory(this.app);
    loadUws().us_listen_socket_close(this.listenSocket);
    fs.rmSync(this.directory, { recursive: true, force: true });
    ({ listenSocket: this.listenSocket, directory: this.directory, socketPath: this.socketPath } = next);
  }
}

async function listenInPrivateDirectory(app: TemplatedApp): Promise<{ listenSocket: us_listen_socket; directory: string; socketPath: string }> {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-api-'));
  fs.chmodSync(directory, 0o700);
  const socketPath = path.join(directory, 'api.sock');
  const listenSocket = await new Promise<us_listen_socket | false>((resolve) => app.listen_unix((socket) => resolve(socket), socketPath));
  if (!listenSocket) {
    fs.rmSync(directory, { recursive: true, force: true });
    throw new Error(`cannot listen on ${socketPath}`);
  }
  return { listenSocket, directory, socketPath };
}
