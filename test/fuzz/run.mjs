// `npm run fuzz [-- --runs N] [--target framing|segment]`: runs each fuzz target (targets.mjs)
// for N inputs (default 10^6) with fast-check, and prints executions, failures, time and the
// resident memory before and after (it must stay flat: a parser that keeps what it was fed
// would grow with the runs).
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

let failures = 0;
for (const [id, target] of Object.entries(targets)) {
  if (only !== undefined && id !== only) continue;
  const mib = () => process.memoryUsage().rss / 2 ** 20;
  const rssBefore = mib();
  const started = performance.now();
  let executions = 0;
  const outcomes = new Map();
  const result = fc.check(
    fc.property(target.arbitrary, (input) => {
      executions++;
      const outcome = target.run(input);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }),
    { numRuns: runs, seed, endOnFailure: true },
  );
  const seconds = (performance.now() - started) / 1000;
  globalThis.gc?.();
  console.log(
    `${id}: ${target.name}: ${executions} executions in ${seconds.toFixed(1)} s, ` +
      `${result.failed ? 'FAILED' : '0 failures'}; RSS ${rssBefore.toFixed(0)} -> ${mib().toFixed(0)} MiB (seed ${seed})`,
  );
  for (const [outcome, n] of [...outcomes].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(9)}  ${outcome}`);
  if (result.failed) {
    failures++;
    console.log(fc.defaultReportMessage(result));
  }
}
process.exit(failures === 0 ? 0 : 1);
