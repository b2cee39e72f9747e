import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { FuzzEngine } from './fuzz-engine.js';
import { codecProperties, connectionProperties } from './properties.js';

/**
 * `npm run fuzz -- --minutes N`: the properties of test/protocol-fuzz.test.ts for N minutes in all,
 * split evenly between them, against one engine. Prints the cases each ran and, for a failure, its
 * counterexample with the seed and path that replay it:
 * `npm run fuzz -- --property=NAME --seed=S --path=P` (a seed may be negative, hence the `=`).
 */

const USAGE = 'usage: npm run fuzz -- [--minutes=N] [--property=NAME [--seed=S [--path=P]]]';
const { values: options } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    property: { type: 'string' },
    seed: { type: 'string' },
    path: { type: 'string' },
  },
});
const minutes = Number(options.minutes);
if (!(minutes > 0) || (options.path !== undefined && options.seed === undefined)) {
  console.error(USAGE);
  process.exit(2);
}
const collectGarbage = globalThis.gc;
if (!collectGarbage) {
  console.error('run with node --expose-gc, as npm run fuzz does');
  process.exit(2);
}

/** For information (what fails a run is the engine's holdings after each case): RSS, and the main thread's heap after a full GC. */
function memory(): string {
  collectGarbage!();
  const { rss, heapUsed } = process.memoryUsage();
  return `RSS ${(rss / 2 ** 20).toFixed(0)} MiB, main-thread heap ${(heapUsed / 2 ** 20).toFixed(0)} MiB`;
}

const engine = new FuzzEngine();
await engine.start();
const every = [...codecProperties, ...connectionProperties(engine)];
const selected = every.filter((fuzz) => options.property === undefined || fuzz.name === options.property);
if (selected.length === 0) {
  console.error(`no property ${options.property}; there are ${every.map((fuzz) => fuzz.name).join(', ')}`);
  await engine.stop();
  process.exit(2);
}

const budgetMs = (minutes * 60_000) / selected.length;
const memoryBefore = memory();
console.log(`fuzzing ${selected.length} properties for ${minutes} min (${(budgetMs / 1000).toFixed(0)} s each)`);
let failed = 0;
for (const fuzz of selected) {
  const started = Date.now();
  const details = await fc.check(fuzz.property, {
    // Cases until the time is up; a replay runs its one case.
    numRuns: options.path === undefined ? Number.MAX_SAFE_INTEGER : 1,
    ...(options.seed === undefined ? {} : { seed: Number(options.seed) }),
    ...(options.path === undefined ? {} : { path: options.path }),
    includeErrorInReport: true,
    plugins: [fc.interruptAfterTimeLimit(budgetMs)],
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`${fuzz.name}: ${details.numRuns} cases in ${seconds} s, ${details.failed ? 'FAILED' : 'passed'}`);
  if (details.failed) {
    failed++;
    console.log(fc.defaultReportMessage(details)?.replace(/^/gm, '    '));
    console.log(`    replay: npm run fuzz -- --property=${fuzz.name} --seed=${details.seed} --path=${details.counterexamplePath}`);
  }
}

try {
  await engine.settle();
  await engine.checkHealthy();
  await engine.checkServing();
  console.log('afterwards: the engine holds only the healthy agent, which still serves');
} catch (error) {
  failed++;
  console.log(`afterwards: ${(error as Error).message}`);
}
console.log(`memory before: ${memoryBefore}; after: ${memory()}`);
console.log(failed === 0 ? 'outcome: no counterexample' : `outcome: ${failed} failure(s)`);
await engine.stop();
process.exitCode = failed === 0 ? 0 : 1;
