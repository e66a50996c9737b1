// Three worker processes start together at a Barrier, then share two "slots" guarded by a
// Semaphore: never more than two are inside at once, which a counter in shared memory checks.
import { fork } from 'node:child_process';
import { Barrier, Semaphore, SharedMemory } from 'interprocess';

const name = process.argv[2] ?? `example-sync-${process.pid}`;
const [barrierName, slotsName] = [`${name}.start`, `${name}.slots`];

if (process.argv[3] === 'worker') {
  const start = Barrier.open(barrierName);
  const slots = Semaphore.open(slotsName);
  const inside = new Int32Array(SharedMemory.open(name).buffer);
  await start.wait(); // everybody leaves here together
  for (let i = 0; i < 200; i++) {
    await slots.acquire();
    const now = Atomics.add(inside, 0, 1) + 1;
    Atomics.store(inside, 1, Math.max(Atomics.load(inside, 1), now)); // highest occupancy seen
    Atomics.sub(inside, 0, 1);
    slots.release();
  }
} else {
  const shm = SharedMemory.create(name, { byteLength: 64 });
  Barrier.create(barrierName, { parties: 3 });
  Semaphore.create(slotsName, { initial: 2 });
  try {
    const run = () => new Promise((resolve) => fork(new URL(import.meta.url).pathname, [name, 'worker']).on('exit', resolve));
    await Promise.all([run(), run(), run()]);
    const highest = Atomics.load(new Int32Array(shm.buffer), 1);
    if (highest > 2) throw new Error(`the semaphore admitted ${highest} at once`);
    console.log(`highest occupancy: ${highest} (limit 2)`);
  } finally {
    [name, barrierName, slotsName].forEach((n) => SharedMemory.remove(n));
  }
}
