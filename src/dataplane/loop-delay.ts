import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { CounterRow } from '../threads/counters.js';

const SAMPLE_EVERY_MS = 1000;
/** Timer resolution of the delay histogram: delays shorter than this are not seen. */
const RESOLUTION_MS = 10;

/**
 * Publishes this worker's event-loop delay (p99 and max over the last second) in its counter row:
 * the figure that says whether the worker keeps up with its connections, read by metrics and
 * by the overload tests. Returns the function that stops it.
 */
export function publishLoopDelay(counters: CounterRow): () => void {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  const timer = setInterval(() => {
    // The histogram's samples include the timer's own resolution; subtract it to report the lag alone.
    const lagMs = (nanoseconds: number): number => Math.max(0, nanoseconds / 1e6 - RESOLUTION_MS);
    counters.set('event_loop_delay_p99_ms', histogram.count > 0 ? lagMs(histogram.percentile(99)) : 0);
    counters.set('event_loop_delay_max_ms', histogram.count > 0 ? lagMs(histogram.max) : 0);
    histogram.reset();
  }, SAMPLE_EVERY_MS).unref();
  return () => {
    clearInterval(timer);
    histogram.disable();
  };
}
