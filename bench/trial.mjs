// One benchmark trial in a fresh process (the harness starts one per mechanism, mode and size):
//   node bench/trial.mjs <mechanism-file> <id> <roundTrip|throughput|idle> <size> <count> <cpuA> <cpuB>
// Pins itself to cpuA, runs the mechanism (whose peer goes to cpuB) and prints one JSON line.
import { pathToFileURL } from 'node:url';
import { pinSelf, warmupFor } from './util.mjs';

const [file, id, mode, size, count, cpuA, cpuB] = process.argv.slice(2);
const cpus = [cpuA === '-' ? undefined : Number(cpuA), cpuB === '-' ? undefined : Number(cpuB)];
pinSelf(cpus[0]);
const mechanisms = (await import(pathToFileURL(file).href)).default;
const mechanism = mechanisms.find((m) => m.id === id);
if (mechanism === undefined) throw new Error(`no mechanism ${id} in ${file}`);
const args = { size: Number(size), count: Number(count), cpus };

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

let result;
if (mode === 'roundTrip') {
  const out = await mechanism.roundTrip(args);
  // A mechanism returns its samples, or (for an external program) the percentiles it computed.
  const samples = ArrayBuffer.isView(out) || Array.isArray(out) ? Float64Array.from(out).sort() : undefined;
  if (samples === undefined) result = out;
  else if (samples.length !== args.count) throw new Error(`${id}: ${samples.length} samples for ${args.count} round trips`);
  else result = {
    n: samples.length,
    p50: percentile(samples, 0.5),
    p99: percentile(samples, 0.99),
    p999: percentile(samples, 0.999),
    max: samples[samples.length - 1],
  };
} else if (mode === 'idle') {
  result = { n: 1, ...(await mechanism.idle(args)) };
} else {
  // `note` (why a figure is what it is) and anything else a mechanism reports (a fan-out's
  // per-subscriber rates) are kept as they are.
  // Timed warm: `warmup` messages first, untimed (util.mjs warmupFor). A mechanism that takes
  // no warm-up (one process's loop of map or mutex operations) reports none.
  const { messages, seconds, warmup = 0, ...extra } = await mechanism.throughput({ ...args, warmup: warmupFor(args.count, args.size) });
  if (messages !== args.count) throw new Error(`${id}: ${messages} messages counted for ${args.count} sent`);
  result = { n: messages, seconds, warmup, messagesPerSecond: messages / seconds, bytesPerSecond: (messages * args.size) / seconds, ...extra };
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(0);
