// `npm run fuzz [-- --runs N] [--target framing|segment|natsLink|shmRecords|shmConnection]`:
// runs each fuzz target (targets.mjs) for N inputs (default 10^6) with fast-check, and prints
// executions, failures, time, the resident memory before and after, and the JavaScript heap
// after a full GC at the end (it must stay flat: a parser that keeps what it was fed would grow
// with the runs; RSS also holds what the allocator keeps for reuse).
import * as fc from 'fast-check';
import { targets } from './targets.mjs';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const runs = Number(flag('--runs', 1_000_000));
const only = flag('--target', undefined);
const seed = Number(flag('--seed', Date.now() % 2 ** 31));
const BATCH = 20_000;

let failures = 0;
for (const [id, target] of Object.entries(targets)) {
  if (only !== undefined && id !== only) continue;
  const mib = () => process.memoryUsage().rss / 2 ** 20;
  const rssBefore = mib();
  const started = performance.now();
  let executions = 0;
  const outcomes = new Map();
  // In batches, with a turn of the event loop between them: a target may defer work with
  // process.nextTick or a promise (the nats:// link delivers what arrived before start on the
  // next tick), and a million synchronous runs would keep every deferred closure, and the input
  // it holds, alive until the end: memory growth of the harness, not of the code under test.
  let result = { failed: false };
  for (let done = 0, batch = 0; done < runs && !result.failed; done += BATCH, batch++) {
    result = fc.check(
      fc.property(target.arbitrary, (input) => {
        executions++;
        const outcome = target.run(input);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }),
      { numRuns: Math.min(BATCH, runs - done), seed: seed + batch, endOnFailure: true },
    );
    await new Promise((resolve) => setImmediate(resolve));
  }
  const seconds = (performance.now() - started) / 1000;
  globalThis.gc?.();
  const heap = process.memoryUsage().heapUsed / 2 ** 20;
  console.log(
    `${id}: ${target.name}: ${executions} executions in ${seconds.toFixed(1)} s, ` +
      `${result.failed ? 'FAILED' : '0 failures'}; RSS ${rssBefore.toFixed(0)} -> ${mib().toFixed(0)} MiB, heap after GC ${heap.toFixed(0)} MiB (seed ${seed}, batches of ${BATCH} with seeds seed, seed+1, ...)`,
  );
  for (const [outcome, n] of [...outcomes].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(9)}  ${outcome}`);
  if (result.failed) {
    failures++;
    console.log(fc.defaultReportMessage(result));
  }
}
process.exit(failures === 0 ? 0 : 1);
