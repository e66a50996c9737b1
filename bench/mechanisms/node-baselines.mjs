// Node's own in-box baseline between threads: MessagePort (a worker echoing or counting).
import { Worker } from 'node:worker_threads';
import { check, now, stamp } from '../util.mjs';

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { mode, count, warmup } = workerData;
// A throughput sink's clock, as bench/util.mjs SinkClock (this eval'd worker cannot import it).
let expected = 0;
let start = warmup === 0 ? process.hrtime.bigint() : 0n;
parentPort.on('message', (msg) => {
  if (mode === 'echo') return parentPort.postMessage(msg);
  const seq = (msg[0] | (msg[1] << 8) | (msg[2] << 16) | (msg[3] << 24)) >>> 0;
  if (seq !== expected) throw new Error('message ' + seq + ' out of order, expected ' + expected);
  if (++expected === warmup) start = process.hrtime.bigint();
  if (expected === warmup + count) parentPort.postMessage({ seconds: Number(process.hrtime.bigint() - start) / 1e9 });
});
parentPort.postMessage('ready');
`;

async function start(mode, count, warmup = 0) {
  const worker = new Worker(workerSource, { eval: true, workerData: { mode, count, warmup } });
  await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return worker;
}

export default [
  {
    id: 'message-port',
    label: 'MessagePort between threads (Node baseline)',
    family: 'baseline',
    waits: 'event-loop',
    sizes: [64, 4096, 65536, 1048576],
    trials: 3, // compared with the queue at 1 MiB: the median of three (src/cli/bench.ts)
    async roundTrip({ size, count }) {
      const worker = await start('echo', count);
      try {
        const samples = new Float64Array(count);
        const payload = new Uint8Array(size);
        const warmup = Math.min(200, count);
        for (let i = -warmup; i < count; i++) {
          const t0 = now();
          worker.postMessage(stamp(payload, i >>> 0));
          const reply = await new Promise((resolve) => worker.once('message', resolve));
          check(reply, size, i >>> 0, 'message-port');
          if (i >= 0) samples[i] = Number(now() - t0);
        }
        return samples;
      } finally {
        await worker.terminate();
      }
    },
    async throughput({ size, count, warmup = 0 }) {
      const worker = await start('count', count, warmup);
      try {
        const payload = new Uint8Array(size);
        const done = new Promise((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
        });
        for (let i = 0; i < warmup + count; i++) worker.postMessage(stamp(payload, i));
        const { seconds } = await done;
        return { messages: count, seconds, warmup };
      } finally {
        await worker.terminate();
      }
    },
  },
];
