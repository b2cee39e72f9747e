import { numberArgument } from './harness.js';
import { compareOnSmallResponses } from './side-by-side.js';

/**
 * The cost of the request log (`dashboard.request_log`): one build, two engines, the log off and on,
 * on the small-response scenario. With it on, every request builds a log line and keeps it.
 * Usage: node dist/bench/request-log-cost.js [--runs 7] [--seconds 5]
 */
await compareOnSmallResponses({
  scenario: 'request-log-cost',
  title: 'The cost of the request log',
  variants: [
    { name: 'off', extraYaml: ['dashboard: { request_log: "off" }'] },
    { name: 'on', extraYaml: ['dashboard: { request_log: "on" }'] },
  ],
  runs: numberArgument('runs', 7),
  seconds: numberArgument('seconds', 5),
});
