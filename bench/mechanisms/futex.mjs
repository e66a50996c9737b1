// Wake-up latency of the cross-process futex from JavaScript: two processes bounce one word of
// shared memory, the waiting side spinning (Atomics.load), blocked in futex.wait, or awaiting
// futex.waitAsync on its event loop (also through the fallback for kernels without futex_waitv).
// Compare with c-futex / c-spin in native-ref.mjs.
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { FALLBACK_ENV, forkPeer, inFallback, nextMessage, now } from '../util.mjs';

const require = createRequire(import.meta.url);
const { SharedMemory, futex } = require('../../dist/cjs/index.js');
const peer = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'peers', 'word-peer.mjs');

function pingPong(style) {
  return async ({ count, cpus }) => {
    const name = `bench-word-${process.pid}-${style}`;
    const shm = SharedMemory.create(name, { byteLength: 4096 });
    const word = new Int32Array(shm.buffer);
    const child = forkPeer(peer, [name, style], cpus[1]);
    try {
      await nextMessage(child, 'ready');
      const samples = new Float64Array(count);
      const warmup = Math.min(1000, count);
      for (let i = -warmup; i < count; i++) {
        const t0 = now();
        Atomics.store(word, 0, 1);
        if (style !== 'spin') futex.notify(word, 0, 1);
        if (style === 'spin') while (Atomics.load(word, 0) === 1);
        else if (style === 'wait') while (Atomics.load(word, 0) === 1) futex.wait(word, 0, 1);
        else while (Atomics.load(word, 0) === 1) await futex.waitAsync(word, 0, 1);
        if (i >= 0) samples[i] = Number(now() - t0);
      }
      Atomics.store(word, 0, 2);
      futex.notify(word, 0);
      await new Promise((resolve) => child.once('exit', resolve));
      return samples;
    } finally {
      child.kill();
      shm.close();
      SharedMemory.remove(name);
    }
  };
}

export default [
  { id: 'word-spin', label: 'JS word ping-pong, spinning', family: 'primitive', waits: 'spin', sizes: [64], roundTrip: pingPong('spin') },
  { id: 'futex-wait', label: 'futex.wait ping-pong (blocking)', family: 'primitive', waits: 'block', sizes: [64], roundTrip: pingPong('wait') },
  { id: 'futex-waitAsync', label: 'futex.waitAsync ping-pong (event loop)', family: 'primitive', waits: 'event-loop', sizes: [64], roundTrip: pingPong('waitAsync') },
  {
    id: 'futex-waitAsync-fallback',
    label: 'futex.waitAsync ping-pong without futex_waitv (Linux < 5.16: a thread per word)',
    family: 'primitive',
    waits: 'event-loop',
    sizes: [64],
    env: FALLBACK_ENV,
    roundTrip: inFallback(pingPong('waitAsync')),
  },
];
