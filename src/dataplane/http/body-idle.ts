/**
 * The request-body idle bound of an h2 request (timeouts.http_request_body_idle_seconds): the body must
 * keep arriving while the edge can take more. A pause the edge causes itself, by holding the client
 * back while the upstream is full, does not count: at the bound the timer looks again instead.
 */
export class BodyIdleWatch {
  private readonly timer: NodeJS.Timeout;

  constructor(idleMs: number, upstreamFull: () => boolean, onIdle: () => void) {
    this.timer = setTimeout(() => {
      if (upstreamFull()) this.timer.refresh();
      else onIdle();
    }, idleMs);
  }

  /** A body byte arrived. */
  activity(): void {
    this.timer.refresh();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
