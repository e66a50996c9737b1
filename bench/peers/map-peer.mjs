// The other process of the SharedMap benchmarks (bench/mechanisms/map.mjs):
//   reader NAME COUNT   opens map NAME, warms up (200 000 gets), waits for word 0 of NAME-go to
//                       be 1, does COUNT gets of the benchmark's keys in 10 slices, and reports
//                       { type: 'done', seconds: the median slice's time x COUNT }
//   writer NAME         sets the benchmark's keys round and round until word 0 of NAME-go is 2,
//                       and reports { type: 'done', sets, seconds }
//   cluster-worker      a node:cluster worker asking the primary's Map for values over IPC:
//                       COUNT gets, one awaited at a time, then { type: 'done', seconds }
import cluster from 'node:cluster';
import { createRequire } from 'node:module';
import { pinSelf } from '../util.mjs';
import { KEY_COUNT, VALUE_BYTES, keyOf } from './map-keys.mjs';

const require = createRequire(import.meta.url);
const { SharedMap, SharedMemory } = require('../../dist/cjs/index.js');
pinSelf();

if (cluster.isWorker) {
  const count = Number(process.env.MAP_BENCH_COUNT);
  let next = 0;
  const pending = new Map();
  process.on('message', (msg) => {
    if (msg?.type !== 'value') return;
    pending.get(msg.id)(msg.value);
    pending.delete(msg.id);
  });
  const get = (key) =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      process.send({ type: 'get', id, key });
    });
  for (let i = 0; i < 1000; i++) await get(keyOf(i % KEY_COUNT));
  // The median of 10 slices, as the one-process trials of map.mjs measure.
  const times = [];
  for (let k = 0, from = 0; k < 10; k++) {
    const n = Math.floor((count * (k + 1)) / 10) - from;
    const t0 = process.hrtime.bigint();
    for (let i = from; i < from + n; i++) {
      const value = await get(keyOf(i % KEY_COUNT));
      if (value.length !== VALUE_BYTES) throw new Error(`cluster peer: bad value for ${keyOf(i % KEY_COUNT)}`);
    }
    times.push(Number(process.hrtime.bigint() - t0) / 1e9 / n);
    from += n;
  }
  times.sort((a, b) => a - b);
  process.send({ type: 'done', seconds: times[5] * count });
  process.disconnect();
} else {
  const [role, name, countArg] = process.argv.slice(2);
  const m = SharedMap.open(name);
  const go = new Int32Array(SharedMemory.open(`${name}-go`).buffer);
  const gets = (from, n) => {
    let bytes = 0;
    for (let i = from; i < from + n; i++) bytes += m.get(keyOf(i % KEY_COUNT)).length;
    if (bytes !== n * VALUE_BYTES) throw new Error('reader peer: a value was missing');
  };
  // A reader warms up as map.mjs's own reader does (the JIT settles before the clock starts).
  if (role === 'reader') gets(0, 200_000);
  process.send({ type: 'ready' });
  while (Atomics.load(go, 0) === 0);
  const t0 = process.hrtime.bigint();
  if (role === 'reader') {
    // Timed as map.mjs's one-process rows are: the median of 10 slices, times 10.
    const count = Number(countArg);
    const times = [];
    for (let k = 0, from = 0; k < 10; k++) {
      const n = Math.floor((count * (k + 1)) / 10) - from;
      const t = process.hrtime.bigint();
      gets(from, n);
      times.push(Number(process.hrtime.bigint() - t) / 1e9 / n);
      from += n;
    }
    times.sort((a, b) => a - b);
    process.send({ type: 'done', seconds: times[5] * count });
  } else {
    const value = new Uint8Array(VALUE_BYTES).fill(2);
    let sets = 0;
    while (Atomics.load(go, 0) === 1) {
      for (let i = 0; i < 256; i++) m.set(keyOf((sets + i) % KEY_COUNT), value);
      sets += 256;
    }
    process.send({ type: 'done', sets, seconds: Number(process.hrtime.bigint() - t0) / 1e9 });
  }
  m.close();
  process.disconnect();
}
