// Two processes share memory: the parent creates a segment and waits; the child writes a
// greeting into it and wakes the parent with a cross-process futex notify.
import { fork } from 'node:child_process';
import { SharedMemory, futex } from 'interprocess';

const name = process.argv[2] ?? `example-shm-${process.pid}`;

if (process.argv[3] === 'child') {
  const shm = SharedMemory.open(name);
  const flag = new Int32Array(shm.buffer, 0, 1);
  new TextEncoder().encodeInto('hello from the child', new Uint8Array(shm.buffer, 4));
  Atomics.store(flag, 0, 1);            // publish the text (release)...
  futex.notify(flag, 0);                // ...and wake the parent, in another process
} else {
  const shm = SharedMemory.create(name, { byteLength: 4096 });
  try {
    const flag = new Int32Array(shm.buffer, 0, 1);
    fork(new URL(import.meta.url).pathname, [name, 'child']);
    while (Atomics.load(flag, 0) === 0) await futex.waitAsync(flag, 0, 0); // the event loop stays free
    const text = new TextDecoder().decode(new Uint8Array(shm.buffer, 4, 20));
    console.log(`parent read: ${text}`);
  } finally {
    SharedMemory.remove(name);
  }
}
