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
  private busy = false;

  constructor(readonly stream: Duplex) {
    const socketLike = stream as Duplex & Record<(typeof SOCKET_TUNING)[number], unknown>;
    for (const method of SOCKET_TUNING) {
      if (typeof socketLike[method] !== 'function') socketLike[method] = () => stream;
    }
    this.agent = new SingleStreamAgent(stream);
    this.agent.on('free', () => {
      this.busy = false;
      if (this.alive) this.onReusable?.();
      else stream.destroy(); // ended during the exchange: the slot is not held by a stream no one can use
    });
    // The agent ended the stream (its upstream closed the keep-alive connection). Proxy connections
    // are half-open and Node's client does not watch a free socket's end, so an idle stream would stay
    // writable and take the next request into a void: close it. During an exchange the client's own
    // end handling applies.
    stream.on('end', () => {
      if (!this.busy) stream.destroy();
    });
  }

  /** Usable for another request: open both ways (a stream the agent ended can carry no response). */
  get alive(): boolean {
    return !this.stream.destroyed && this.stream.writable && !this.stream.readableEnded;
  }

  request(options: { method: string; path: string; headers: http.OutgoingHttpHeaders }): http.ClientRequest {
    this.busy = true;
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
