import http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Node's keep-alive machinery (one request at a time, reuse decided by the response's framing and
 * Connection header, `reusedSocket` for safe retries) bound to one stream to the agent: the agent
 * hands out that stream and nothing else, so a dead stream is never silently replaced.
 */
class SingleStreamAgent extends http.Agent {
  private handedOut = false;

  constructor(private readonly stream: Duplex) {
    super({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1, scheduling: 'lifo' });
  }

  override createConnection(_options: unknown, callback: (error: Error | null, socket?: Duplex) => void): undefined {
    if (this.handedOut || this.stream.destroyed) callback(new Error('upstream stream closed'));
    else {
      this.handedOut = true;
      callback(null, this.stream);
    }
    return undefined;
  }

  // Idle time is the pool's business (http_idle_seconds); the stream is not a TCP socket to tune.
  override keepSocketAlive(): boolean {
    return true;
  }
}

/** Methods Node's HTTP client calls on its socket; a relayed (cross-worker) stream lacks them. */
const SOCKET_TUNING = ['ref', 'unref', 'setKeepAlive', 'setNoDelay', 'setTimeout'] as const;

/** One pooled HTTP/1.1 connection to the upstream over one agent stream (engine.md §12.6). */
export class H1Upstream {
  readonly kind = 'h1';
  private readonly agent: SingleStreamAgent;
  /** Set by the pool: called when a finished exchange left the stream reusable. */
  onReusable: (() => void) | undefined;

  constructor(readonly stream: Duplex) {
    const socketLike = stream as Duplex & Record<(typeof SOCKET_TUNING)[number], unknown>;
    for (const method of SOCKET_TUNING) {
      if (typeof socketLike[method] !== 'function') socketLike[method] = () => stream;
    }
    this.agent = new SingleStreamAgent(stream);
    this.agent.on('free', () => {
      if (!stream.destroyed) this.onReusable?.();
    });
  }

  get alive(): boolean {
    return !this.stream.destroyed && this.stream.writable;
  }

  request(options: { method: string; path: string; headers: http.OutgoingHttpHeaders }): http.ClientRequest {
    const request = http.request({ ...options, agent: this.agent, host: 'upstream', setHost: false });
    // A proxy connection arrives paused (see rstrm-session.ts); the client's 'data' listener alone does
    // not restart an explicitly paused stream. 'socket' fires once that listener is attached.
    request.once('socket', (socket: Duplex) => socket.resume());
    return request;
  }

  close(): void {
    this.stream.destroy();
  }
}
