// The peer side of bench/mechanisms/sync.mjs. argv: shm name, role ('handoff-sync' |
// 'handoff-async' | 'sem-sync' | 'sem-async'), count.
import { createRequire } from 'node:module';
import { pinSelf } from '../util.mjs';
import { handoff, layout } from '../mechanisms/sync.mjs';

const require = createRequire(import.meta.url);
const { SharedMemory, Mutex, Semaphore } = require('../../dist/cjs/index.js');

pinSelf();
const [name, role, countArg] = process.argv.slice(2);
const count = Number(countArg);
const shm = SharedMemory.open(name);

if (role.startsWith('handoff')) {
  const m = Mutex.openAt(shm, layout.mutex);
  process.send({ type: 'ready' });
  await handoff(m, shm, 2 * count, false, role === 'handoff-async', null);
} else {
  const ping = Semaphore.openAt(shm, layout.ping);
  const pong = Semaphore.openAt(shm, layout.pong);
  const stop = new Int32Array(shm.buffer, layout.intent, 1);
  process.send({ type: 'ready' });
  for (;;) {
    if (role === 'sem-async') await ping.acquire();
    else ping.acquireSync();
    if (Atomics.load(stop, 0) !== 0) break;
    pong.release();
  }
}
process.exit(0);
