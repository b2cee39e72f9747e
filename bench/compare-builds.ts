import { buildsArgument, numberArgument, stringArgument } from './harness.js';
import { compareOnSmallResponses } from './side-by-side.js';

/**
 * Engine builds side by side on the small-response scenario: what a change to the byte path costs
 * when it has no switch. `--builds before=<checkout without it>/dist/src/cli/main.js,after=…`; the
 * result is named by `--scenario` (e.g. tunnel-stats-cost).
 * Usage: node dist/bench/compare-builds.js --builds a=CLI,b=CLI --scenario NAME [--title TEXT] [--runs 7] [--seconds 5]
 */
const scenario = stringArgument('scenario') ?? 'compare-builds';
await compareOnSmallResponses({
  scenario,
  title: stringArgument('title') ?? `Engine builds compared: ${scenario}`,
  variants: buildsArgument(),
  runs: numberArgument('runs', 7),
  seconds: numberArgument('seconds', 5),
});
