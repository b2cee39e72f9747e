import http2 from 'node:http2';

/** How many events a session may cause at once, and how many a second after that. */
interface Rate {
  burst: number;
  perSecond: number;
}

/**
 * PING and SETTINGS frames from a client. nghttp2 acknowledges each one; its only bound (1,000
 * acknowledgements waiting to be sent) trips when more than that arrive in one read, so a client that
 * sends them a little slower has the edge answer for as long as it likes. A real client sends one
 * SETTINGS and a few PINGs a minute.
 */
const CONTROL_FRAMES: Rate = { burst: 500, perSecond: 50 };

/**
 * Streams that close before their response is complete (rapid reset: HEADERS then RST_STREAM, each
 * costing the edge a request). nghttp2 sends GOAWAY INTERNAL_ERROR after 1,000 resets (33 a second
 * after that) but keeps the connection open, reading and discarding; this budget runs out first, so
 * the connection closes. A browser leaving a page resets a few dozen.
 */
const EARLY_CLOSED_STREAMS: Rate = { burst: 500, perSecond: 33 };

/** A token bucket: `take` is false once the events outrun the rate. */
class Budget {
  private tokens: number;
  private filledAt = performance.now();

  constructor(private readonly rate: Rate) {
    this.tokens = rate.burst;
  }

  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.rate.burst, this.tokens + ((now - this.filledAt) / 1000) * this.rate.perSecond);
    this.filledAt = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

/**
 * Closes a downstream h2 session with GOAWAY ENHANCE_YOUR_CALM once its client floods it with frames
 * Node's HTTP/2 server answers without limit.
 */
export function guardAgainstFloods(session: http2.ServerHttp2Session): void {
  const controlFrames = new Budget(CONTROL_FRAMES);
  const earlyClosedStreams = new Budget(EARLY_CLOSED_STREAMS);
  let closing = false;
  const flooded = (what: string): void => {
    if (closing) return;
    closing = true;
    // The GOAWAY now: nghttp2 takes no stream past it (and stops counting resets for its own GOAWAY).
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // The close once out of nghttp2's frame callback: a session destroyed in there never writes its GOAWAY.
    setImmediate(() => session.destroy(new Error(`h2 client flooded the session with ${what}`), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM));
  };
  session.on('ping', () => controlFrames.take() || flooded('PING frames'));
  session.on('remoteSettings', () => controlFrames.take() || flooded('SETTINGS frames'));
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    // 'aborted': the stream closed (the client's RST_STREAM, mostly) while its response was still open.
    stream.once('aborted', () => earlyClosedStreams.take() || flooded('streams reset before their response'));
  });
}
