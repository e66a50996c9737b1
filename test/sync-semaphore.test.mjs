// Semaphore: a semaphore of k never admits k+1, across processes; the three flavours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Mutex, Semaphore, SharedMemory } from 'interprocess';
import { expectCode, expectGivingUp, startChild, uniqueName, watchdog } from './helpers.mjs';

test('k permits: processes never hold more than k at once, and every round completes', async () => {
  const name = uniqueName('sem');
  const shmName = uniqueName('sem-stats');
  const k = 2;
  const s = Semaphore.create(name, { initial: k });
  const shm = SharedMemory.create(shmName, { byteLength: 64 });
  const stats = new Int32Array(shm.buffer);
  const rounds = process.env.INTERPROCESS_STRESS === '1' ? 50_000 : 1500;
  const hows = ['sync', 'async', 'sync', 'async'];
  const children = hows.map((how) => startChild('sync-child.mjs', ['sem', name, shmName, rounds, how]));
  try {
    await watchdog(Promise.all(children.map((c) => c.next('ready'))), 20_000, 'ready');
    for (const c of children) c.send({ cmd: 'go' });
    const done = await watchdog(Promise.all(children.map((c) => c.next())), process.env.INTERPROCESS_STRESS === '1' ? 600_000 : 60_000, 'rounds');
    for (const d of done) assert.equal(d.state, 'done', d.message);
    assert.equal(stats[2], rounds * hows.length);
    assert.ok(stats[1] <= k, `max inside ${stats[1]} > ${k}`);
    assert.equal(s.value, k);
  } finally {
    for (const c of children) c.kill();
    Semaphore.remove(name);
    SharedMemory.remove(shmName);
  }
});

test('flavours, timeouts, aborts, release limits', async () => {
  const name = uniqueName('sem');
  const s = Semaphore.create(name, { initial: 1 });
  try {
    assert.equal(s.tryAcquire(), true);
    assert.equal(s.tryAcquire(), false);
    await expectGivingUp((o) => s.acquire(o), (o) => s.acquireSync(o));
    assert.equal(s.value, 0, 'a waiter that gave up took nothing');
    // Many async waiters in one thread; releases wake exactly as many as there are permits.
    const other = Semaphore.open(name);
    let got = 0;
    const waiters = Array.from({ length: 20 }, () => other.acquire({ timeout: 10_000 }).then(() => got++));
    await null;
    s.release(20);
    await watchdog(Promise.all(waiters), 10_000, 'waiters');
    assert.equal(got, 20);
    assert.equal(s.value, 0);
    s.release();
    assert.equal(s.value, 1);
    assert.throws(() => s.release(0), RangeError);
    assert.throws(() => s.release(2 ** 31), RangeError);
    await expectCode(() => s.release(2 ** 31 - 1), 'IPC_ERR_LIMIT');
    const opened = Semaphore.openOrCreate(name, { initial: 9 });
    assert.equal(opened.created, false);
    assert.equal(opened.value, 1); // initial applies only to a new semaphore
    assert.throws(() => Semaphore.create(uniqueName('x'), { initial: -1 }), RangeError);
    await expectCode(() => Mutex.open(name), 'IPC_ERR_INCOMPATIBLE');
    s.close();
    await expectCode(() => s.acquire(), 'IPC_ERR_CLOSED');
  } finally {
    Semaphore.remove(name);
  }
});

test('placed in SharedMemory', async () => {
  const name = uniqueName('sem-placed');
  const shm = SharedMemory.create(name, { byteLength: 4096 });
  try {
    const a = Semaphore.createAt(shm, 0, { initial: 3 });
    const b = Semaphore.openAt(shm, 0);
    assert.equal(b.value, 3);
    assert.equal(b.tryAcquire(), true);
    assert.equal(a.value, 2);
  } finally {
    SharedMemory.remove(name);
  }
});
