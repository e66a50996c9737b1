// Node's own in-box baseline between threads: MessagePort (a worker echoing or counting).
import { Worker } from 'node:worker_threads';
import { check, now, stamp } from '../util.mjs';

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { mode } = workerData;
let expected = 0;
parentPort.on('message', (msg) => {
  if (mode === 'echo') return parentPort.postMessage(msg);
  const seq = (msg[0] | (msg[1] << 8) | (msg[2] << 16) | (msg[3] << 24)) >>> 0;
  if (seq !== expected) throw new Error('message ' + seq + ' out of order, expected ' + expected);
  if (++expected === workerData.count) parentPort.postMessage('done');
});
parentPort.postMessage('ready');
`;

async function start(mode, count) {
  const worker = new Worker(workerSource, { eval: true, workerData: { mode, count } });
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
    async throughput({ size, count }) {
      const worker = await start('count', count);
      try {
        const payload = new Uint8Array(size);
        const done = new Promise((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
        });
        const t0 = now();
        for (let i = 0; i < count; i++) worker.postMessage(stamp(payload, i));
        await done;
        return { messages: count, seconds: Number(now() - t0) / 1e9 };
      } finally {
        await worker.terminate();
      }
    },
  },
];
