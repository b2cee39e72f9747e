import type { CounterRow, ResponseOrigin } from '../../metrics/counters.js';
import type { EdgeResponse } from './generated-response.js';

/** Responses the edge made itself (sendGenerated marks them), as opposed to relayed upstream ones. */
const generatedResponses = new WeakSet<EdgeResponse>();

export function markGenerated(res: EdgeResponse): void {
  generatedResponses.add(res);
}

export function countResponse(counters: CounterRow, status: number, origin: ResponseOrigin): void {
  const klass = Math.min(5, Math.max(1, Math.floor(status / 100)));
  counters.add(`http_responses_${klass as 1 | 2 | 3 | 4 | 5}xx_${origin}`);
}

/**
 * Counts `res` once it is over, by the status it sent, if it sent one (an exchange aborted before its
 * head sends none). One listener per response; nothing on the byte path.
 */
export function countWhenDone(counters: CounterRow, res: EdgeResponse): void {
  res.once('close', () => {
    if (res.headersSent) countResponse(counters, res.statusCode, generatedResponses.has(res) ? 'edge' : 'upstream');
  });
}
