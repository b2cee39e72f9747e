import fc from 'fast-check';
import { after, before, describe, test } from 'node:test';
import { FuzzEngine } from './fuzz/fuzz-engine.js';
import { codecProperties, connectionProperties } from './fuzz/properties.js';

// A few seconds of the fuzzer on every `npm test`; `npm run fuzz -- --minutes N` runs the same properties for longer.

describe('rstrm/1 codec under fuzzing', () => {
  for (const fuzz of codecProperties) test(fuzz.claim, () => fc.assert(fuzz.property, { numRuns: fuzz.testRuns, includeErrorInReport: true }));
});

describe('hostile rstrm/1 connections against a live engine', () => {
  const engine = new FuzzEngine();
  before(() => engine.start());
  after(() => engine.stop());
  for (const fuzz of connectionProperties(engine)) test(fuzz.claim, () => fc.assert(fuzz.property, { numRuns: fuzz.testRuns, includeErrorInReport: true }));
  test('afterwards the engine still serves: the Engine API lists the healthy tunnel and a dial reaches its agent', () => engine.checkServing());
});
