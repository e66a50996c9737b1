// The lifecycle every sync primitive shares (sync/lifecycle.ts): named and placed factories,
// option checks, close / closed / dispose, and a closed handle refusing every method. One table
// drives all five primitives, so a primitive that drifts from the others fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Barrier, Condition, Mutex, RWLock, Semaphore, SharedMemory } from 'interprocess';
import { LONG_TIMEOUTS, expectCode, settlesAfterLongWait, uniqueName } from './helpers.mjs';

/**
 * Per primitive: options to create one (own options and what each factory accepts besides the
 * common ones), its async and sync waits, and every method with arguments that would work.
 */
const kinds = [
  {
    type: Mutex,
    create: {},
    own: { create: [], open: [] },
    waits: { lock: (x, o) => x.lock(o) },
    syncWaits: { lockSync: (x, o) => x.lockSync(o) },
    methods: { tryLock: (x) => x.tryLock(), unlock: (x) => x.unlock(), markConsistent: (x) => x.markConsistent() },
  },
  {
    type: Semaphore,
    create: { initial: 1 },
    own: { create: ['initial'], open: [] },
    waits: { acquire: (x, o) => x.acquire(o) },
    syncWaits: { acquireSync: (x, o) => x.acquireSync(o) },
    methods: { tryAcquire: (x) => x.tryAcquire(), release: (x) => x.release(), value: (x) => x.value },
  },
  {
    type: Condition,
    create: {},
    own: { create: [], open: [] },
    waits: { wait: (x, o, m) => x.wait(m, o) },
    syncWaits: { waitSync: (x, o, m) => x.waitSync(m, o) },
    methods: { notify: (x) => x.notify(), notifyAll: (x) => x.notifyAll() },
  },
  {
    type: RWLock,
    create: {},
    own: { create: [], open: [] },
    waits: { readLock: (x, o) => x.readLock(o), writeLock: (x, o) => x.writeLock(o) },
    syncWaits: { readLockSync: (x, o) => x.readLockSync(o), writeLockSync: (x, o) => x.writeLockSync(o) },
    methods: {
      tryReadLock: (x) => x.tryReadLock(),
      readUnlock: (x) => x.readUnlock(),
      tryWriteLock: (x) => x.tryWriteLock(),
      writeUnlock: (x) => x.writeUnlock(),
      markConsistent: (x) => x.markConsistent(),
    },
  },
  {
    type: Barrier,
    create: { parties: 2 },
    own: { create: ['parties'], open: ['parties'] },
    waits: { wait: (x, o) => x.wait(o) },
    syncWaits: { waitSync: (x, o) => x.waitSync(o) },
    methods: { tryWait: (x) => x.tryWait() },
  },
];

for (const kind of kinds) {
  const X = kind.type;
  const label = X.name;

  test(`${label}: create, open, openOrCreate and remove by name`, async () => {
    const name = uniqueName(label);
    try {
      const a = X.create(name, kind.create);
      assert.equal(a.name, name);
      assert.equal(a.created, true);
      assert.equal(a.closed, false);
      const b = X.open(name);
      assert.equal(b.created, false);
      const c = X.openOrCreate(name, kind.create);
      assert.equal(c.created, false);
      await expectCode(() => X.create(name, kind.create), 'IPC_ERR_EXISTS');
      assert.equal(X.remove(name), true);
      assert.equal(X.remove(name), false);
      await expectCode(() => X.open(name), 'IPC_ERR_NOT_FOUND');
      await expectCode(() => X.create('bad/name', kind.create), 'IPC_ERR_INVALID_NAME');
      const d = X.openOrCreate(name, kind.create);
      assert.equal(d.created, true);
      for (const handle of [a, b, c, d]) handle.close();
    } finally {
      X.remove(name);
    }
  });

  test(`${label}: createAt, openAt and openOrCreateAt inside shared memory`, async () => {
    const sab = new SharedArrayBuffer(4 * X.byteLength);
    assert.ok(X.byteLength >= 128 && X.byteLength % 64 === 0, `byteLength ${X.byteLength}`);
    const a = X.createAt(sab, X.byteLength, kind.create);
    assert.equal(a.name, undefined);
    assert.equal(a.created, true);
    assert.equal(X.openAt(sab, X.byteLength).created, false);
    assert.equal(X.openOrCreateAt(sab, X.byteLength, kind.create).created, false);
    assert.equal(X.openOrCreateAt(sab, 0, kind.create).created, true);
    await expectCode(() => X.createAt(sab, 0, kind.create), 'IPC_ERR_EXISTS');
    await expectCode(() => X.openAt(sab, 2 * X.byteLength, { initTimeout: 0 }), 'IPC_ERR_INCOMPATIBLE');
    // Another kind at the offset: refused by both openers, never reinitialized.
    const other = kinds.find((k) => k.type !== X);
    const foreign = new SharedArrayBuffer(1024);
    other.type.createAt(foreign, 0, other.create);
    await expectCode(() => X.openAt(foreign, 0), 'IPC_ERR_INCOMPATIBLE');
    await expectCode(() => X.openOrCreateAt(foreign, 0, kind.create), 'IPC_ERR_INCOMPATIBLE');
    // Memory that is not zero and holds no object is never claimed.
    const garbage = new SharedArrayBuffer(1024);
    new Uint8Array(garbage).fill(7);
    await expectCode(() => X.createAt(garbage, 0, kind.create), 'IPC_ERR_INCOMPATIBLE');
    assert.throws(() => X.createAt(sab, 4, kind.create), { name: 'RangeError', message: /multiple of 8/ });
    assert.throws(() => X.createAt(sab, 3 * X.byteLength + 8, kind.create), { name: 'RangeError', message: /byteOffset/ });
    assert.throws(() => X.createAt({}, 0, kind.create), { name: 'TypeError', message: /SharedMemory or a SharedArrayBuffer/ });
    const name = uniqueName(label);
    const shm = SharedMemory.create(name, { byteLength: 4096 });
    try {
      assert.equal(X.createAt(shm, 64, kind.create).created, true);
      assert.equal(X.openAt(shm, 64).created, false);
    } finally {
      SharedMemory.remove(name);
    }
  });

  test(`${label}: every factory and every wait refuses an unknown option, naming it and the accepted ones`, async () => {
    const refused = (where, allowed) => ({ name: 'TypeError', message: `${where}: unknown option 'colour' (allowed: ${allowed.join(', ')})` });
    const name = uniqueName(label);
    const sab = new SharedArrayBuffer(2 * X.byteLength);
    for (const how of ['create', 'open', 'openOrCreate']) {
      const own = how === 'open' ? kind.own.open : kind.own.create;
      const options = { ...Object.fromEntries(own.map((key) => [key, kind.create[key]])), colour: 'red' };
      assert.throws(() => X[how](name, options), refused(`${label}.${how}`, [...own, 'mode', 'initTimeout', 'allowOtherOwner']));
      assert.throws(() => X[`${how}At`](sab, 0, options), refused(`${label}.${how}At`, [...own, 'initTimeout']));
    }
    assert.equal(SharedMemory.exists(name), false, 'a refused factory creates nothing');
    const x = X.createAt(sab, 0, kind.create);
    const m = Mutex.createAt(sab, X.byteLength);
    for (const [what, wait] of Object.entries(kind.waits)) {
      await assert.rejects(wait(x, { colour: 'red' }, m), refused(`${label}.${what}`, ['timeout', 'signal']));
      await assert.rejects(wait(x, { timeout: -1 }, m), RangeError);
      await assert.rejects(wait(x, { signal: 'stop' }, m), TypeError);
    }
    for (const [what, wait] of Object.entries(kind.syncWaits)) {
      assert.throws(() => wait(x, { colour: 'red' }, m), refused(`${label}.${what}`, ['timeout']));
      assert.throws(() => wait(x, { signal: AbortSignal.abort() }, m), { name: 'TypeError', message: /unknown option 'signal' \(allowed: timeout\)/ });
    }
  });

  test(`${label}: close is idempotent, dispose closes, and a closed handle refuses every method`, async () => {
    const sab = new SharedArrayBuffer(2 * X.byteLength);
    const x = X.createAt(sab, 0, kind.create);
    const m = Mutex.createAt(sab, X.byteLength);
    x.close();
    x.close();
    assert.equal(x.closed, true);
    for (const [what, wait] of Object.entries(kind.waits)) await expectCode(() => wait(x, undefined, m), 'IPC_ERR_CLOSED').catch((e) => assert.fail(`${what}: ${e.message}`));
    for (const [what, wait] of Object.entries(kind.syncWaits)) await expectCode(() => wait(x, undefined, m), 'IPC_ERR_CLOSED').catch((e) => assert.fail(`${what}: ${e.message}`));
    for (const [what, call] of Object.entries(kind.methods)) await expectCode(() => call(x), 'IPC_ERR_CLOSED').catch((e) => assert.fail(`${what}: ${e.message}`));
    // The memory is untouched: another handle still works.
    const y = X.openAt(sab, 0);
    y[Symbol.dispose]();
    assert.equal(y.closed, true);
    const name = uniqueName(label);
    try {
      const named = X.create(name, kind.create);
      named.close();
      const again = X.open(name);
      assert.equal(again.closed, false);
      again.close();
    } finally {
      X.remove(name);
    }
  });

  test(`${label}: the constructor is not public`, () => {
    assert.throws(() => new X(Symbol('x'), 'x', {}, {}), { name: 'TypeError', message: new RegExp(`use ${label}\\.create, open, openOrCreate, createAt, openAt or openOrCreateAt`) });
  });
}

test('a wait with a timeout of 2^31 or 2^32 ms waits, then settles normally', async () => {
  const s = Semaphore.createAt(new SharedArrayBuffer(Semaphore.byteLength), 0);
  for (const timeout of LONG_TIMEOUTS) {
    await settlesAfterLongWait(() => s.acquire({ timeout }), () => s.release(), `acquire({ timeout: ${timeout} })`);
    assert.equal(s.value, 0);
  }
});
