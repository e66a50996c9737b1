// Condition: no notification is lost between processes; timeouts relock the mutex.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Condition, Mutex, SharedMemory } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';

test('producer and consumer processes: every item is consumed, no wake-up lost', async () => {
  const name = uniqueName('cond');
  const shm = SharedMemory.create(name, { byteLength: 4096 });
  const items = new Int32Array(shm.buffer, 0, 2);
  const m = Mutex.createAt(shm, 64);
  const c = Condition.createAt(shm, 64 + Mutex.byteLength);
  const perConsumer = process.env.INTERPROCESS_STRESS === '1' ? 30_000 : 1500;
  const hows = ['async', 'sync', 'async'];
  const consumers = hows.map((how) => startChild('sync-child.mjs', ['consume', name, perConsumer, how]));
  try {
    await watchdog(Promise.all(consumers.map((k) => k.next('ready'))), 20_000, 'ready');
    const total = perConsumer * hows.length;
    for (let i = 0; i < total; i++) {
      await m.lock();
      items[0]++;
      // Alternate single and broadcast wake-ups: each must reach a waiter.
      if (i % 3 === 0) c.notifyAll();
      else c.notify();
      m.unlock();
      if (i % 16 === 0) await new Promise((r) => setImmediate(r));
    }
    const done = await watchdog(Promise.all(consumers.map((k) => k.next())), process.env.INTERPROCESS_STRESS === '1' ? 600_000 : 60_000, 'consumers');
    for (const d of done) assert.equal(d.state, 'done', d.message);
    assert.equal(items[1], total);
    assert.equal(items[0], 0);
  } finally {
    for (const k of consumers) k.kill();
    SharedMemory.remove(name);
  }
});

/** A named Condition and Mutex for one test, removed after it. */
function withPair(fn) {
  return async () => {
    const name = uniqueName('cond');
    const mname = uniqueName('cond-mutex');
    const c = Condition.create(name);
    const m = Mutex.create(mname);
    try {
      await fn(c, m, mname);
    } finally {
      Condition.remove(name);
      Mutex.remove(mname);
    }
  };
}

test('wait without holding the mutex is IPC_ERR_NOT_OWNER; anything but a Mutex is a TypeError', withPair(async (c, m) => {
  await expectCode(() => c.wait(m), 'IPC_ERR_NOT_OWNER');
  await expectCode(() => c.waitSync(m), 'IPC_ERR_NOT_OWNER');
  await assert.rejects(c.wait({}), { name: 'TypeError', message: /expected a Mutex/ });
  assert.throws(() => c.waitSync(undefined), { name: 'TypeError', message: /expected a Mutex/ });
  assert.equal(m.tryLock(), true, 'a refused wait leaves the mutex alone');
  m.unlock();
}));

test('a timed-out wait returns holding the mutex, async and sync', withPair(async (c, m) => {
  m.lockSync();
  await expectCode(() => c.wait(m, { timeout: 20 }), 'IPC_ERR_TIMEOUT');
  assert.equal(m.tryLock(), false, 'held again');
  await expectCode(() => c.waitSync(m, { timeout: 20 }), 'IPC_ERR_TIMEOUT');
  await expectCode(() => c.waitSync(m, { timeout: 0 }), 'IPC_ERR_TIMEOUT');
  m.unlock(); // would be IPC_ERR_NOT_OWNER had a wait returned without relocking
}));

test('an aborted wait returns holding the mutex, and a later notify still wakes a waiter', withPair(async (c, m) => {
  m.lockSync();
  const ac = new AbortController();
  const p = c.wait(m, { signal: ac.signal });
  ac.abort();
  await expectCode(() => p, 'IPC_ERR_ABORTED');
  await expectCode(() => c.wait(m, { signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
  const woken = c.wait(m, { timeout: 10_000 });
  await m.lock().then(() => {
    c.notify();
    m.unlock();
  });
  await watchdog(woken, 10_000, 'woken');
  m.unlock();
}));

test('one notifyAll wakes every waiter of a thread', withPair(async (c, m) => {
  const waiters = [];
  for (let i = 0; i < 10; i++) {
    await m.lock();
    waiters.push(c.wait(m, { timeout: 10_000 }).then(() => m.unlock()));
  }
  await m.lock();
  c.notifyAll();
  m.unlock();
  await watchdog(Promise.all(waiters), 10_000, 'notifyAll');
}));

test('relocking a mutex whose owner died: IPC_ERR_OWNER_DEAD, then IPC_ERR_NOT_RECOVERABLE once poisoned', withPair(async (c, m, mname) => {
  // The waiter released the mutex; a process takes it and dies holding it; the notified
  // waiter relocks it as Mutex.lock would: owner-dead, with the mutex held.
  m.lockSync();
  const first = c.wait(m);
  let holder = startChild('sync-child.mjs', ['hold', mname, 'sync']);
  await watchdog(holder.next('holding'), 10_000, 'holding');
  holder.kill();
  await holder.exited;
  c.notify();
  await watchdog(expectCode(() => first, 'IPC_ERR_OWNER_DEAD'), 10_000, 'owner-dead relock');
  m.markConsistent();
  // Again, and this time another thread (this one, by another call) recovers the mutex and
  // unlocks it without accepting the state: the waiter's relock finds it not recoverable.
  const second = c.wait(m);
  holder = startChild('sync-child.mjs', ['hold', mname, 'sync']);
  await watchdog(holder.next('holding'), 10_000, 'holding');
  holder.kill();
  await holder.exited;
  await watchdog(expectCode(() => m.lock(), 'IPC_ERR_OWNER_DEAD'), 10_000, 'recovery');
  m.unlock(); // without markConsistent: poisoned for everyone
  c.notify();
  await watchdog(expectCode(() => second, 'IPC_ERR_NOT_RECOVERABLE'), 10_000, 'not-recoverable relock');
}));
