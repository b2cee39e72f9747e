import { RESPONSE_CLASSES, type CounterColumn, type CounterRow, type ResponseOrigin } from '../../threads/counters.js';
import type { TunnelStatsWriter } from '../../threads/tunnel-stats.js';
import { wasGenerated, type EdgeResponse } from './generated-response.js';

/** The counter of each status class (1xx at 0 … 5xx at 4) by origin, named once rather than per response. */
const RESPONSE_COLUMNS: Record<ResponseOrigin, CounterColumn[]> = {
  upstream: RESPONSE_CLASSES.map((klass) => `http_responses_${klass}_upstream` as const),
  edge: RESPONSE_CLASSES.map((klass) => `http_responses_${klass}_edge` as const),
};

/** Responses sent downstream: in the worker's counters, and in their tunnel's traffic row when they answered for one. */
export class ResponseCounts {
  constructor(
    private readonly counters: CounterRow,
    private readonly traffic: TunnelStatsWriter,
  ) {}

  /** `slot`: the tunnel the request reached (undefined: none, e.g. an unknown host or a malformed request). */
  count(status: number, origin: ResponseOrigin, slot: number | undefined): void {
    this.counters.add(RESPONSE_COLUMNS[origin][Math.min(4, Math.max(0, Math.floor(status / 100) - 1))]!);
    if (slot !== undefined) this.traffic.response(slot, status);
  }

  /**
   * Counts `res` once it is over, by the status it sent, if it sent one (an exchange aborted before its
   * head sends none), for the tunnel `slot()` names then. One listener per response; nothing on the byte path.
   */
  whenDone(res: EdgeResponse, slot: () => number | undefined): void {
    res.once('close', () => {
      if (res.headersSent) this.count(res.statusCode, wasGenerated(res) ? 'edge' : 'upstream', slot());
    });
  }
}
