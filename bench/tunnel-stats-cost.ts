import { buildsArgument, numberArgument } from './harness.js';
import { compareOnSmallResponses } from './side-by-side.js';

/**
 * The cost of per-tunnel traffic counting on the small-response scenario. Counting has no switch (it
 * is one `Atomics.add` per response and a few per stream a second), so the comparison is between
 * builds: `--builds before=<checkout without it>/dist/src/cli/main.js,after=…`.
 * Usage: node dist/bench/tunnel-stats-cost.js --builds a=CLI,b=CLI [--runs 7] [--seconds 5]
 */
await compareOnSmallResponses({
  scenario: 'tunnel-stats-cost',
  title: 'The cost of per-tunnel traffic counting',
  variants: buildsArgument(),
  runs: numberArgument('runs', 7),
  seconds: numberArgument('seconds', 5),
});
