// Mutex: exclusion across processes, the three flavours, placement, and owner death.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Mutex, Semaphore, SharedMemory, isIpcError } from 'interprocess';
import { expectCode, expectGivingUp, startChild, uniqueName, watchdog } from './helpers.mjs';

const STRESS = process.env.INTERPROCESS_STRESS === '1';

function named(fn) {
  return async () => {
    const name = uniqueName('mutex');
    try {
      await fn(name);
    } finally {
      Mutex.remove(name);
    }
  };
}

test('tryLock, lockSync and lock exclude each other in one thread; unlock hands on', named(async (name) => {
  const m = Mutex.create(name);
  assert.equal(m.created, true);
  assert.equal(m.tryLock(), true);
  assert.equal(m.tryLock(), false);
  await expectCode(() => m.lockSync(), 'IPC_ERR_DEADLOCK'); // this thread holds it
  const order = [];
  const waiters = [1, 2, 3].map((i) => m.lock().then(() => { order.push(i); m.unlock(); }));
  m.unlock();
  await watchdog(Promise.all(waiters), 5000, 'async waiters');
  assert.deepEqual(order.sort(), [1, 2, 3]);
  m.lockSync();
  m.unlock();
  m.close();
  m.close();
  assert.equal(m.closed, true);
  await expectCode(() => m.lock(), 'IPC_ERR_CLOSED');
  await expectCode(() => m.tryLock(), 'IPC_ERR_CLOSED');
}));

test('timeouts and aborts give their codes and leave the mutex usable', named(async (name) => {
  const holder = Mutex.create(name);
  const other = Mutex.open(name);
  const child = startChild('sync-child.mjs', ['hold', name, 'sync']);
  try {
    await watchdog(child.next('holding'), 10_000, 'child holding');
    await expectGivingUp((o) => other.lock(o), (o) => other.lockSync(o));
    assert.equal(other.tryLock(), false);
    // Many concurrent async waiters in this thread, all timing out, none left behind.
    const many = Array.from({ length: 50 }, () => other.lock({ timeout: 20 }).then(() => 'locked', (e) => e.code));
    assert.deepEqual(new Set(await watchdog(Promise.all(many), 5000, 'many waiters')), new Set(['IPC_ERR_TIMEOUT']));
  } finally {
    child.kill();
    await child.exited;
  }
  // The holder was killed: the next locker recovers it.
  await expectCode(() => holder.lock({ timeout: 5000 }), 'IPC_ERR_OWNER_DEAD');
  holder.markConsistent();
  holder.unlock();
  assert.equal(other.tryLock(), true);
  other.unlock();
}));

test('bad arguments and misuse', named(async (name) => {
  const m = Mutex.create(name);
  assert.throws(() => m.unlock(), (e) => isIpcError(e, 'IPC_ERR_NOT_OWNER'));
  assert.throws(() => m.markConsistent(), (e) => isIpcError(e, 'IPC_ERR_NOT_OWNER'));
  await assert.rejects(m.lock({ timeout: -1 }), RangeError);
  await assert.rejects(m.lock({ bogus: 1 }), TypeError);
  assert.throws(() => m.lockSync({ signal: AbortSignal.abort() }), TypeError);
  await expectCode(() => Mutex.create(name), 'IPC_ERR_EXISTS');
  await expectCode(() => Mutex.open(uniqueName('missing')), 'IPC_ERR_NOT_FOUND');
  await expectCode(() => Mutex.open('../bad'), 'IPC_ERR_INVALID_NAME');
  await expectCode(() => Semaphore.open(name), 'IPC_ERR_INCOMPATIBLE');
  const raw = uniqueName('raw');
  SharedMemory.create(raw, { byteLength: 4096 }).close();
  try {
    await expectCode(() => Mutex.open(raw, { initTimeout: 0 }), 'IPC_ERR_INCOMPATIBLE');
  } finally {
    SharedMemory.remove(raw);
  }
  assert.equal(Mutex.remove(name), true);
  assert.equal(Mutex.remove(name), false);
}));

test('placed in SharedMemory: createAt claims once, openAt validates kind', async () => {
  const name = uniqueName('placed');
  const shm = SharedMemory.create(name, { byteLength: 4096 });
  try {
    const a = Mutex.createAt(shm, 128);
    await expectCode(() => Mutex.createAt(shm, 128), 'IPC_ERR_EXISTS');
    const b = Mutex.openOrCreateAt(shm.buffer, 128);
    assert.equal(b.created, false);
    assert.equal(a.tryLock(), true);
    assert.equal(b.tryLock(), false); // same thread, same lock
    a.unlock();
    await expectCode(() => Semaphore.openAt(shm, 128), 'IPC_ERR_INCOMPATIBLE');
    await expectCode(() => Mutex.openAt(shm, 1024, { initTimeout: 0 }), 'IPC_ERR_INCOMPATIBLE');
    assert.throws(() => Mutex.createAt(shm, 4), RangeError);
    assert.throws(() => Mutex.createAt(shm, 4096 - 64), RangeError);
    assert.throws(() => Mutex.createAt({}, 0), TypeError);
    assert.equal(Mutex.byteLength, 128);
  } finally {
    SharedMemory.remove(name);
  }
});

test('N processes x M increments under the lock: the total is exact', async () => {
  const name = uniqueName('count');
  const shm = SharedMemory.create(name, { byteLength: 4096 });
  const counter = new Uint32Array(shm.buffer, Mutex.byteLength, 1);
  Mutex.createAt(shm, 0);
  const perChild = STRESS ? 100_000 : 4000;
  const plans = [0, 4, 0, 8]; // lockSync, and async with 4 and 8 concurrent tasks per process
  const children = plans.map((tasks) => startChild('sync-child.mjs', ['count', name, perChild, tasks]));
  try {
    await watchdog(Promise.all(children.map((c) => c.next('ready'))), 20_000, 'children ready');
    for (const c of children) c.send({ cmd: 'go' });
    const done = await watchdog(Promise.all(children.map((c) => c.next())), STRESS ? 600_000 : 60_000, 'increments');
    for (const d of done) assert.equal(d.state, 'done', d.message);
    assert.equal(counter[0], perChild * plans.length);
  } finally {
    for (const c of children) c.kill();
    SharedMemory.remove(name);
  }
});

test('owner killed while holding: next locker gets OWNER_DEAD; markConsistent recovers', async (t) => {
  // Several mutexes, many rounds under INTERPROCESS_STRESS=1; the parent may already be parked
  // on the lock when the kill comes (odd rounds) or lock after it (even rounds).
  const names = [uniqueName('mutex'), uniqueName('mutex'), uniqueName('mutex')];
  const mutexes = names.map((n) => Mutex.create(n));
  const recoveryMs = { parked: [], after: [] };
  try {
    for (let round = 0; round < (STRESS ? 200 : 6); round++) {
      const k = round % names.length;
      const m = mutexes[k];
      const child = startChild('sync-child.mjs', ['hold', names[k], round % 2 ? 'async' : 'sync']);
      await watchdog(child.next('holding'), 10_000, 'holding');
      assert.equal(m.tryLock(), false);
      const parked = round % 2 ? m.lock({ timeout: 10_000 }).then(() => 'ok', (e) => e) : undefined;
      const killedAt = performance.now();
      child.kill('SIGKILL');
      let err;
      if (parked) err = await watchdog(parked, 10_000, 'parked locker');
      else {
        await child.exited;
        try {
          m.lockSync({ timeout: 10_000 });
        } catch (e) {
          err = e;
        }
      }
      recoveryMs[parked ? 'parked' : 'after'].push(performance.now() - killedAt);
      assert.equal(err?.code, 'IPC_ERR_OWNER_DEAD', String(err));
      assert.match(err.message, /markConsistent/);
      m.markConsistent();
      m.unlock();
      assert.equal(m.tryLock(), true); // consistent again: no more owner-dead
      m.unlock();
      await child.exited;
    }
    const pct = (xs, p) => xs.sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * p))].toFixed(1);
    for (const [kind, xs] of Object.entries(recoveryMs)) {
      t.diagnostic(`${kind === 'parked' ? 'waiter parked before the kill' : 'locker after the kill'}: ${xs.length} rounds, ` +
        `recovery after SIGKILL p50 ${pct(xs, 0.5)} ms, p99 ${pct(xs, 0.99)} ms, hangs 0`);
    }
  } finally {
    for (const n of names) Mutex.remove(n);
  }
});

test('tryLock recovers a dead owner too', named(async (name) => {
  const m = Mutex.create(name);
  const child = startChild('sync-child.mjs', ['hold', name, 'sync']);
  await watchdog(child.next('holding'), 10_000, 'holding');
  child.kill('SIGKILL');
  await child.exited;
  await expectCode(() => m.tryLock(), 'IPC_ERR_OWNER_DEAD');
  m.markConsistent();
  m.unlock();
}));

test('unlock without markConsistent makes the mutex NOT_RECOVERABLE for everyone', named(async (name) => {
  const m = Mutex.create(name);
  const child = startChild('sync-child.mjs', ['hold', name, 'sync']);
  await watchdog(child.next('holding'), 10_000, 'holding');
  const parked = Mutex.open(name).lock({ timeout: 10_000 }).then(() => 'locked', (e) => e.code);
  child.kill('SIGKILL');
  await child.exited;
  const first = await Promise.race([parked, m.lock({ timeout: 10_000 }).then(() => 'locked', (e) => e.code)]);
  // Whichever of the two recovered it holds it, with OWNER_DEAD.
  assert.equal(first, 'IPC_ERR_OWNER_DEAD');
  const holderIsM = (() => { try { m.unlock(); return true; } catch { return false; } })();
  if (!holderIsM) {
    // The other instance recovered it; it is the same thread, so unlock through m works too.
    assert.fail('the recovering thread should be able to unlock');
  }
  const second = await watchdog(parked, 10_000, 'second waiter');
  assert.ok(second === 'IPC_ERR_NOT_RECOVERABLE' || second === 'IPC_ERR_OWNER_DEAD', second);
  await expectCode(() => m.lock(), 'IPC_ERR_NOT_RECOVERABLE');
  await expectCode(() => m.lockSync(), 'IPC_ERR_NOT_RECOVERABLE');
  await expectCode(() => m.tryLock(), 'IPC_ERR_NOT_RECOVERABLE');
  await expectCode(() => Mutex.open(name).tryLock(), 'IPC_ERR_NOT_RECOVERABLE');
}));

test('owner killed while other processes wait: every waiter returns, exactly one sees owner-dead', named(async (name) => {
  const m = Mutex.create(name);
  for (let round = 0; round < 3; round++) {
    const holder = startChild('sync-child.mjs', ['hold', name, 'sync']);
    await watchdog(holder.next('holding'), 10_000, 'holding');
    const waiters = [startChild('sync-child.mjs', ['waitLock', name, 'async']), startChild('sync-child.mjs', ['waitLock', name, 'sync'])];
    await watchdog(Promise.all(waiters.map((w) => w.next('waiting'))), 10_000, 'waiting');
    // The parent is a third waiter; like the children it lets go as soon as it has the lock.
    const mine = m.lock({ timeout: 20_000 }).then(
      () => 'ok',
      (e) => e.code,
    ).then((code) => {
      if (code === 'IPC_ERR_OWNER_DEAD') m.markConsistent();
      if (code === 'ok' || code === 'IPC_ERR_OWNER_DEAD') m.unlock();
      return code;
    });
    holder.kill('SIGKILL');
    const results = await watchdog(Promise.all(waiters.map((w) => w.next('acquired'))), 20_000, 'waiters acquire');
    const own = await watchdog(mine, 20_000, 'parent acquires');
    const codes = [...results.map((r) => r.code), own];
    assert.equal(codes.filter((c) => c === 'IPC_ERR_OWNER_DEAD').length, 1, codes.join());
    assert.equal(codes.filter((c) => c === 'ok').length, 2, codes.join());
    await Promise.all(waiters.map((w) => w.exited));
    await holder.exited;
  }
}));

test('a worker thread is an owner of its own: terminated while holding, it is recovered', named(async (name) => {
  const { Worker } = await import('node:worker_threads');
  const m = Mutex.create(name);
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const { Mutex } = require(workerData.entry);
     const m = Mutex.open(workerData.name);
     m.lockSync();
     parentPort.postMessage('holding');
     setInterval(() => {}, 1 << 30);`,
    { eval: true, workerData: { name, entry: new URL('../dist/cjs/index.js', import.meta.url).pathname } },
  );
  const holding = new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  assert.equal(await watchdog(holding, 10_000, 'worker holding'), 'holding');
  await expectCode(() => m.lockSync({ timeout: 30 }), 'IPC_ERR_TIMEOUT'); // another thread holds it
  await worker.terminate();
  await expectCode(() => m.lock({ timeout: 5000 }), 'IPC_ERR_OWNER_DEAD');
  m.markConsistent();
  m.unlock();
}));
