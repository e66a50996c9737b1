import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { SharedMemory, futex } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';

const require = createRequire(import.meta.url);
const { asyncWaitMechanism, asyncWatcherThreads } = require('../dist/cjs/os/futex.js');

/** A fresh segment, removed when test `t` ends. */
function segment(t, byteLength = 4096) {
  const name = uniqueName('futex');
  const shm = SharedMemory.create(name, { byteLength });
  t.after(() => SharedMemory.remove(name));
  return { name, shm, i32: new Int32Array(shm.buffer) };
}

test('wait returns not-equal and timed-out like Atomics.wait', (t) => {
  const s = segment(t);
  assert.equal(futex.wait(s.i32, 0, 1), 'not-equal');
  assert.equal(futex.wait(s.i32, 0, 0, 0), 'timed-out');
  assert.equal(futex.wait(s.i32, 0, 0, 5), 'timed-out');
  assert.equal(futex.notify(s.i32, 0), 0);
  assert.equal(futex.notify(s.i32, 0, 0), 0);
});

test('bad arguments are TypeError / RangeError', async (t) => {
  const s = segment(t);
  const plain = new Int32Array(4);
  assert.throws(() => futex.wait(plain, 0, 0, 1), TypeError);
  assert.throws(() => futex.wait(new Uint32Array(s.shm.buffer), 0, 0, 1), TypeError);
  assert.throws(() => futex.wait(s.i32, s.i32.length, 0, 1), RangeError);
  assert.throws(() => futex.wait(s.i32, -1, 0, 1), RangeError);
  assert.throws(() => futex.wait(s.i32, 0, 0, -1), RangeError);
  assert.throws(() => futex.wait(s.i32, 0, 'x', 1), TypeError);
  assert.throws(() => futex.notify(s.i32, 0, -1), RangeError);
  await assert.rejects(futex.waitAsync(plain, 0, 0), TypeError);
  await assert.rejects(futex.waitAsync(s.i32, 1e9, 0), RangeError);
  await assert.rejects(futex.waitAsync(s.i32, 0, 0, NaN), TypeError);
  await assert.rejects(futex.waitAsync(s.i32, 0, 0, 1, { signal: 'no' }), TypeError);
});

test('a process blocked in futex.wait is woken by a notify from another process', async (t) => {
  const s = segment(t);
  const child = startChild('futex-child.mjs', ['wait', s.name, 4]);
  await watchdog(child.next('waiting'), 10_000, 'child start');
  // Notify without changing the word until the kernel reports that it woke someone: the child is
  // then known to have been asleep, and must answer 'ok'.
  await watchdog(
    (async () => {
      while (futex.notify(s.i32, 4, 1) !== 1) await new Promise((r) => setImmediate(r));
    })(),
    10_000,
    'waking the child',
  );
  assert.equal((await watchdog(child.next('result'), 10_000, 'child result')).result, 'ok');
  await child.exited;
});

test("a child's notify resolves the parent's waitAsync while the parent's timers keep firing", async (t) => {
  const s = segment(t);
  const child = startChild('futex-child.mjs', ['notify', s.name, 1]);
  await watchdog(child.next('ready'), 10_000, 'child start');
  const waiting = futex.waitAsync(s.i32, 1, 0);
  let ticks = 0;
  let settled = false;
  waiting.then(() => (settled = true));
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      if (++ticks === 5) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  assert.equal(settled, false, 'nothing notified yet');
  // The notify must find the wait in the kernel to count it: wait until it is parked there
  // (a watcher thread may still be on its way in on a loaded machine).
  await watchdog(parkedInKernel(), 10_000, 'the async wait parked in the kernel');
  child.send({ cmd: 'notify' });
  assert.equal(await watchdog(waiting, 10_000, 'waitAsync'), 'ok');
  const notified = await child.next('notified');
  assert.equal(notified.woken, 1);
  await child.exited;
});

/**
 * Resolves once a thread of this process sleeps in the kernel the way waitAsync's threads do:
 * in futex_waitv (syscall 449) on a word besides its control word, or, in the fallback, in a
 * shared FUTEX_WAIT_BITSET (futex, 202, op 9; the runtime's own threads use private futexes).
 * Read from /proc/self/task/N/syscall (the call's number, then its arguments).
 */
async function parkedInKernel() {
  for (;;) {
    for (const tid of fs.readdirSync('/proc/self/task')) {
      let fields;
      try {
        fields = fs.readFileSync(`/proc/self/task/${tid}/syscall`, 'utf8').trim().split(' ');
      } catch {
        continue; // the thread ended
      }
      // futex_waitv's second argument counts the words: the watcher's control word and ours.
      if ((fields[0] === '449' && Number(fields[2]) >= 2) || (fields[0] === '202' && Number(fields[2]) === 9)) return;
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test('a pending waitAsync keeps its process alive until notified', async (t) => {
  const s = segment(t);
  const child = startChild('futex-child.mjs', ['wait-async', s.name, 2]);
  await watchdog(child.next('waiting'), 10_000, 'child start');
  await watchdog(
    (async () => {
      while (futex.notify(s.i32, 2) !== 1) await new Promise((r) => setImmediate(r));
    })(),
    10_000,
    'waking the child',
  );
  assert.equal((await watchdog(child.next('result'), 10_000, 'child result')).result, 'ok');
  assert.deepEqual(await child.exited, { code: 0, signal: null });
});

test('1000 concurrent waitAsync resolve from another process with few threads and a free thread pool', async (t) => {
  const s = segment(t);
  const words = 300;
  const waits = [];
  for (let i = 0; i < 1000; i++) waits.push(futex.waitAsync(s.i32, i % words, 0));
  // Distinct (word, value) pairs: 300, watched 127 per thread with futex_waitv, one per thread
  // in the fallback. Asserted once the waits are settled: a failure must not leave them pending.
  const threads = asyncWatcherThreads();
  // libuv's thread pool is not used by the waits: file reads still complete while they pend.
  for (let i = 0; i < 8; i++) await fs.promises.readFile(new URL(import.meta.url));
  const child = startChild('futex-child.mjs', ['notify-words', s.name, words]);
  await watchdog(child.next('ready'), 10_000, 'child start');
  child.send({ cmd: 'notify' });
  const results = await watchdog(Promise.all(waits), 20_000, '1000 waiters');
  assert.equal(results.filter((r) => r === 'ok').length, 1000);
  await child.exited;
  assert.ok(threads <= Math.ceil(words / (asyncWaitMechanism() === 'futex_waitv' ? 127 : 1)), `threads: ${threads}`);
});

test('waitAsync: not-equal at once, timeouts, and aborts that leave the word usable', async (t) => {
  const s = segment(t);
  assert.equal(await futex.waitAsync(s.i32, 0, 7), 'not-equal');
  assert.equal(await futex.waitAsync(s.i32, 0, 0, 0), 'timed-out');
  assert.equal(await futex.waitAsync(s.i32, 0, 0, 10), 'timed-out');
  const ac = new AbortController();
  const pending = futex.waitAsync(s.i32, 0, 0, undefined, { signal: ac.signal });
  ac.abort(new Error('stop'));
  await expectCode(() => pending, 'IPC_ERR_ABORTED');
  await expectCode(() => futex.waitAsync(s.i32, 0, 0, undefined, { signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
  // One waiter of a shared group timing out does not disturb the others.
  const long = futex.waitAsync(s.i32, 0, 0);
  assert.equal(await futex.waitAsync(s.i32, 0, 0, 5), 'timed-out');
  Atomics.store(s.i32, 0, 1);
  futex.notify(s.i32, 0);
  assert.equal(await watchdog(long, 5000, 'remaining waiter'), 'ok');
});

test('a worker thread blocked in futex.wait is woken from the main thread', async (t) => {
  const s = segment(t);
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const { futex } = require(${JSON.stringify(require.resolve('interprocess'))});
     const i32 = new Int32Array(workerData);
     parentPort.postMessage('waiting');
     parentPort.postMessage(futex.wait(i32, 3, 0));`,
    { eval: true, workerData: s.shm.buffer },
  );
  const messages = [];
  const got = new Promise((resolve) => worker.on('message', (m) => (messages.push(m), messages.length === 2 && resolve())));
  await watchdog(
    (async () => {
      while (futex.notify(s.i32, 3, 1) !== 1) await new Promise((r) => setTimeout(r, 1));
    })(),
    10_000,
    'waking the worker',
  );
  await watchdog(got, 10_000, 'worker');
  assert.deepEqual(messages, ['waiting', 'ok']);
  await worker.terminate();
});

test('a worker can use waitAsync and exit cleanly while waits are pending', async (t) => {
  const s = segment(t);
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const { futex } = require(${JSON.stringify(require.resolve('interprocess'))});
     const i32 = new Int32Array(workerData);
     futex.waitAsync(i32, 5, 0);  // never notified: terminate must still succeed
     futex.waitAsync(i32, 6, 0).then((r) => parentPort.postMessage(r));
     parentPort.postMessage('waiting');`,
    { eval: true, workerData: s.shm.buffer },
  );
  await watchdog(new Promise((resolve) => worker.once('message', resolve)), 10_000, 'worker start');
  const result = new Promise((resolve) => worker.once('message', resolve));
  Atomics.store(s.i32, 6, 1);
  futex.notify(s.i32, 6);
  assert.equal(await watchdog(result, 10_000, 'worker waitAsync'), 'ok');
  assert.equal(await watchdog(worker.terminate(), 10_000, 'worker terminate'), 1);
});

test('no lost wake-ups: 3000 rounds of ping-pong between processes, both sides parked in waits', async (t) => {
  const s = segment(t);
  const child = startChild('futex-child.mjs', ['pong', s.name, 0]);
  await watchdog(child.next('ready'), 10_000, 'child start');
  const rounds = 3000;
  await watchdog(
    (async () => {
      for (let i = 0; i < rounds; i++) {
        Atomics.store(s.i32, 0, 1);
        futex.notify(s.i32, 0);
        // Alternate the blocking and the async wait on this side.
        if (i % 2 === 0) while (Atomics.load(s.i32, 0) === 1) futex.wait(s.i32, 0, 1, 1000);
        else while (Atomics.load(s.i32, 0) === 1) await futex.waitAsync(s.i32, 0, 1);
      }
    })(),
    60_000,
    'ping-pong',
  );
  Atomics.store(s.i32, 0, 2);
  futex.notify(s.i32, 0);
  assert.equal((await watchdog(child.next('done'), 10_000, 'child done')).rounds, rounds);
  await child.exited;
});

test('timeouts too large for a deadline mean forever, not an error', async (t) => {
  const s = segment(t);
  Atomics.store(s.i32, 9, 5);
  assert.equal(futex.wait(s.i32, 9, 0, 1e300), 'not-equal');
  const pending = futex.waitAsync(s.i32, 9, 5, 1e300);
  Atomics.store(s.i32, 9, 6);
  futex.notify(s.i32, 9);
  assert.equal(await watchdog(pending, 5000, 'long-timeout wait'), 'ok');
});
