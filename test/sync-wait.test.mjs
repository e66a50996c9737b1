// The one spin-then-park policy of the sync primitives (src/sync/wait.ts): how long each wait
// spins, given how the spins before it ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { SpinPolicy, FULL_SPIN_MS, SHORT_SPIN_MS, MISSES_BEFORE_SHORT } = require('../dist/cjs/sync/wait.js');

test('spins are full while they pay off, short after MISSES_BEFORE_SHORT parks in a row, with a full probe every 16th wait', () => {
  assert.ok(SHORT_SPIN_MS > 0 && SHORT_SPIN_MS < FULL_SPIN_MS);
  const policy = new SpinPolicy();
  const budgets = [];
  // Waits 1-8 miss: still full. Then short, except wait 16 (and 32), the probes.
  for (let wait = 1; wait <= 40; wait++) {
    budgets.push(policy.budget());
    policy.missed();
  }
  budgets.forEach((budget, i) => {
    const wait = i + 1;
    const expected = wait <= MISSES_BEFORE_SHORT || wait % 16 === 0 ? FULL_SPIN_MS : SHORT_SPIN_MS;
    assert.equal(budget, expected, `wait ${wait}`);
  });
  // A spin that pays off (a probe, or a short one) restores full spins at once.
  policy.budget();
  policy.paid();
  for (let i = 0; i < MISSES_BEFORE_SHORT; i++) {
    assert.equal(policy.budget(), FULL_SPIN_MS);
    policy.missed();
  }
  assert.equal(policy.budget(), SHORT_SPIN_MS);
  // Handles do not share it: another one starts full.
  assert.equal(new SpinPolicy().budget(), FULL_SPIN_MS);
});

test('a parked waiter checks the owner after 50 ms, then at doubling intervals up to a second; waits without owners never wake', () => {
  const { checkInterval, MAX_CHECK_INTERVAL_MS } = require('../dist/cjs/sync/wait.js');
  assert.deepEqual(
    Array.from({ length: 8 }, (_, backoff) => checkInterval(50, backoff)),
    [50, 100, 200, 400, 800, MAX_CHECK_INTERVAL_MS, MAX_CHECK_INTERVAL_MS, MAX_CHECK_INTERVAL_MS],
  );
  assert.equal(MAX_CHECK_INTERVAL_MS, 1000);
  assert.equal(checkInterval(Infinity, 0), Infinity);
  assert.equal(checkInterval(Infinity, 8), Infinity);
});
