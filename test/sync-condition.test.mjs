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

test('wait: timeouts and aborts relock the mutex and give their codes; misuse is refused', async () => {
  const name = uniqueName('cond');
  const mname = uniqueName('cond-mutex');
  const c = Condition.create(name);
  const m = Mutex.create(mname);
  try {
    await expectCode(() => c.wait(m), 'IPC_ERR_NOT_OWNER'); // not holding the mutex
    await assert.rejects(c.wait({}), TypeError);
    m.lockSync();
    await expectCode(() => c.wait(m, { timeout: 20 }), 'IPC_ERR_TIMEOUT');
    assert.equal(m.tryLock(), false); // held again
    await expectCode(() => c.waitSync(m, { timeout: 20 }), 'IPC_ERR_TIMEOUT');
    const ac = new AbortController();
    const p = c.wait(m, { signal: ac.signal });
    ac.abort();
    await expectCode(() => p, 'IPC_ERR_ABORTED');
    // Still usable: a notify after the wait began wakes it.
    const woken = c.wait(m, { timeout: 10_000 });
    await m.lock().then(() => {
      c.notify();
      m.unlock();
    });
    await watchdog(woken, 10_000, 'woken');
    m.unlock();
    // Many waiters in one thread, woken by one notifyAll.
    const waiters = [];
    for (let i = 0; i < 10; i++) {
      await m.lock();
      waiters.push(c.wait(m, { timeout: 10_000 }).then(() => m.unlock()));
    }
    await m.lock();
    c.notifyAll();
    m.unlock();
    await watchdog(Promise.all(waiters), 10_000, 'notifyAll');
    c.close();
    await expectCode(() => c.wait(m), 'IPC_ERR_CLOSED');
  } finally {
    Condition.remove(name);
    Mutex.remove(mname);
  }
});
