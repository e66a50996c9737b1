// Four processes increment one counter in shared memory under a Mutex that sits next to it.
// A fifth is killed while it holds the lock: the next locker is told (IPC_ERR_OWNER_DEAD),
// checks the data, and accepts it with markConsistent().
import { fork } from 'node:child_process';
import { SharedMemory, Mutex } from 'interprocess';

const name_ = process.argv[2] ?? `example-mutex-${process.pid}`;
const role = process.argv[3];

if (role === 'worker') {
  const shm = SharedMemory.open(name_);
  const lock = Mutex.openAt(shm, 0);
  const counter = new Int32Array(shm.buffer, Mutex.byteLength, 1);
  for (let i = 0; i < 10_000; i++) {
    await lock.lock();
    counter[0] = counter[0] + 1; // a plain read-modify-write: only the lock makes it safe
    lock.unlock();
  }
} else if (role === 'doomed') {
  const lock = Mutex.openAt(SharedMemory.open(name_), 0);
  lock.lockSync();
  process.send('holding'); // ...and never unlocks: the parent kills this process now
  setInterval(() => {}, 1000);
} else {
  const shm = SharedMemory.create(name_, { byteLength: 4096 });
  try {
    const lock = Mutex.createAt(shm, 0);
    const counter = new Int32Array(shm.buffer, Mutex.byteLength, 1);
    const run = (r) => new Promise((resolve) => fork(new URL(import.meta.url).pathname, [name_, r]).on('exit', resolve));
    await Promise.all([1, 2, 3, 4].map(() => run('worker')));
    console.log(`counter: ${counter[0]} (expected 40000)`);

    const doomed = fork(new URL(import.meta.url).pathname, [name_, 'doomed']);
    await new Promise((resolve) => doomed.once('message', resolve));
    doomed.kill('SIGKILL');
    try {
      await lock.lock({ timeout: 10_000 });
    } catch (err) {
      if (err.code !== 'IPC_ERR_OWNER_DEAD') throw err;
      console.log('previous owner died holding the lock: data checked, state accepted');
      lock.markConsistent();
    }
    lock.unlock();
  } finally {
    SharedMemory.remove(name_);
  }
}
