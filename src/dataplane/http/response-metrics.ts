import { RESPONSE_CLASSES, type CounterColumn, type CounterRow, type ResponseOrigin } from '../../threads/counters.js';
import { wasGenerated, type EdgeResponse } from './generated-response.js';

/** The counter of each status class (1xx at 0 … 5xx at 4) by origin, named once rather than per response. */
const RESPONSE_COLUMNS: Record<ResponseOrigin, CounterColumn[]> = {
  upstream: RESPONSE_CLASSES.map((klass) => `http_responses_${klass}_upstream` as const),
  edge: RESPONSE_CLASSES.map((klass) => `http_responses_${klass}_edge` as const),
};

export function countResponse(counters: CounterRow, status: number, origin: ResponseOrigin): void {
  counters.add(RESPONSE_COLUMNS[origin][Math.min(4, Math.max(0, Math.floor(status / 100) - 1))]!);
}

/**
 * Counts `res` once it is over, by the status it sent, if it sent one (an exchange aborted before its
 * head sends none). One listener per response; nothing on the byte path.
 */
export function countWhenDone(counters: CounterRow, res: EdgeResponse): void {
  res.once('close', () => {
    if (res.headersSent) countResponse(counters, res.statusCode, wasGenerated(res) ? 'edge' : 'upstream');
  });
}
