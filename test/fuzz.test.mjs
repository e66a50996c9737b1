// A short run of every fuzz target (test/fuzz/targets.mjs) in the default suite; 10^6 inputs
// each under INTERPROCESS_STRESS=1 (and with `npm run fuzz`). A failure prints the input and
// the seed that reproduce it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fc from 'fast-check';
import { targets } from './fuzz/targets.mjs';

const RUNS = process.env.INTERPROCESS_STRESS ? 1_000_000 : 3_000;

for (const [id, target] of Object.entries(targets)) {
  test(`fuzz ${id}: ${target.name} (${RUNS} inputs)`, () => {
    const outcomes = new Set();
    fc.assert(
      fc.property(target.arbitrary, (input) => {
        outcomes.add(target.run(input));
      }),
      { numRuns: RUNS },
    );
    // The inputs must reach past the first check, or the run proves little.
    assert.ok(outcomes.size >= 2, `only ${[...outcomes].join(', ')}`);
  });
}
