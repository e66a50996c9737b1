// The peer side of bench/mechanisms/sync.mjs. argv: shm name, then
//   handoff <kind> <sync|async> <holdNs> <count>   the other side of a hand-off trial
//   pingpong <sync|async>                          the other side of the Semaphore ping-pong
//   idle <kind> <sync|async|poll>                  waits once (poll: tryLock in a loop, mutex
//                                                  only), says 'done' when let go (bench/sync-cpu.mjs)
import { createRequire } from 'node:module';
import { pinSelf } from '../util.mjs';
import { handoff, layout, openSide } from '../mechanisms/sync.mjs';

const require = createRequire(import.meta.url);
const { SharedMemory, Semaphore, Mutex } = require('../../dist/cjs/index.js');

pinSelf();
const [name, role, ...args] = process.argv.slice(2);
const shm = SharedMemory.open(name);

if (role === 'handoff') {
  const [kind, how, holdNs, count] = args;
  const side = openSide(kind, shm, 1, how === 'async');
  process.send({ type: 'ready' });
  await handoff(side, shm, 2 * Number(count), false, BigInt(holdNs), null);
} else if (role === 'idle') {
  const [kind, how] = args;
  const side = openSide(kind, shm, 1, how === 'async');
  process.send({ type: 'ready' });
  if (how === 'poll') {
    const m = Mutex.openAt(shm, layout.first);
    while (!m.tryLock());
  } else {
    const waiting = side.wait();
    if (waiting !== undefined) await waiting;
  }
  process.send({ type: 'done' });
} else {
  const useAsync = args[0] === 'async';
  const ping = Semaphore.openAt(shm, layout.first);
  const pong = Semaphore.openAt(shm, layout.second);
  const stop = new Int32Array(shm.buffer, layout.flags, 1);
  process.send({ type: 'ready' });
  for (;;) {
    if (useAsync) await ping.acquire();
    else ping.acquireSync();
    if (Atomics.load(stop, 0) !== 0) break;
    pong.release();
  }
}
process.exit(0);
