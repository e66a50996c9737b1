// RWLock: readers share, writers exclude, across processes; dead writers and dead readers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Mutex, RWLock, SharedMemory } from 'interprocess';
import { createRequire } from 'node:module';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';

test('readers and writers in several processes: never a writer beside anyone', async () => {
  const name = uniqueName('rw');
  const shmName = uniqueName('rw-stats');
  RWLock.create(name);
  const shm = SharedMemory.create(shmName, { byteLength: 64 });
  const stats = new Int32Array(shm.buffer, 0, 5);
  const rounds = process.env.INTERPROCESS_STRESS === '1' ? 30_000 : 1200;
  const every = [3, 5, 4];
  const children = every.map((e) => startChild('sync-child.mjs', ['rw', name, shmName, rounds, e]));
  try {
    await watchdog(Promise.all(children.map((c) => c.next('ready'))), 20_000, 'ready');
    for (const c of children) c.send({ cmd: 'go' });
    const done = await watchdog(Promise.all(children.map((c) => c.next())), process.env.INTERPROCESS_STRESS === '1' ? 600_000 : 60_000, 'rounds');
    for (const d of done) assert.equal(d.state, 'done', d.message);
    assert.equal(stats[2], 0, 'violations');
    const writes = every.reduce((n, e) => n + Math.ceil(rounds / e), 0);
    assert.equal(stats[3], writes);
    assert.equal(stats[4], rounds * every.length - writes);
  } finally {
    for (const c of children) c.kill();
    RWLock.remove(name);
    SharedMemory.remove(shmName);
  }
});

test('flavours in one thread, timeouts, aborts, misuse', async () => {
  const name = uniqueName('rw');
  const rw = RWLock.create(name);
  const other = RWLock.open(name);
  try {
    assert.equal(rw.tryReadLock(), true);
    assert.equal(other.tryReadLock(), true);
    assert.equal(other.tryWriteLock(), false);
    await expectCode(() => other.writeLock({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
    // The timed-out writer let go of the writer word: readers are admitted again.
    assert.equal(other.tryReadLock(), true);
    other.readUnlock();
    // A waiting writer stops new readers (writer preference) and gets in once readers leave.
    const writer = other.writeLock({ timeout: 10_000 });
    await null;
    assert.equal(rw.tryReadLock(), false);
    rw.readUnlock();
    other.readUnlock();
    await watchdog(writer, 10_000, 'writer');
    assert.equal(rw.tryReadLock(), false);
    await expectCode(() => rw.readLock({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
    await expectCode(() => rw.readLockSync(), 'IPC_ERR_DEADLOCK'); // this thread writes
    const ac = new AbortController();
    const aborted = rw.readLock({ signal: ac.signal });
    ac.abort();
    await expectCode(() => aborted, 'IPC_ERR_ABORTED');
    const reader = rw.readLock({ timeout: 10_000 });
    other.writeUnlock();
    await watchdog(reader, 10_000, 'reader');
    rw.readUnlock();
    assert.throws(() => rw.readUnlock(), (e) => e.code === 'IPC_ERR_NOT_OWNER');
    assert.throws(() => rw.writeUnlock(), (e) => e.code === 'IPC_ERR_NOT_OWNER');
    rw.writeLockSync();
    rw.markConsistent(); // harmless when consistent
    rw.writeUnlock();
    await expectCode(() => Mutex.open(name), 'IPC_ERR_INCOMPATIBLE');
    rw.close();
    await expectCode(() => rw.readLock(), 'IPC_ERR_CLOSED');
  } finally {
    RWLock.remove(name);
  }
});

test('writer killed while holding: the next writer gets OWNER_DEAD; without markConsistent it is not recoverable', async () => {
  const name = uniqueName('rw');
  const rw = RWLock.create(name);
  try {
    const child = startChild('sync-child.mjs', ['rwHold', name, 'write']);
    await watchdog(child.next('holding'), 10_000, 'holding');
    child.kill('SIGKILL');
    await child.exited;
    await expectCode(() => rw.writeLock({ timeout: 5000 }), 'IPC_ERR_OWNER_DEAD');
    rw.markConsistent();
    rw.writeUnlock();
    assert.equal(rw.tryReadLock(), true);
    rw.readUnlock();
    // A reader that finds the writer dead recovers it as a writer.
    const again = startChild('sync-child.mjs', ['rwHold', name, 'write']);
    await watchdog(again.next('holding'), 10_000, 'holding');
    const reader = rw.readLock({ timeout: 10_000 }).then(() => 'read', (e) => e.code);
    again.kill('SIGKILL');
    assert.equal(await watchdog(reader, 10_000, 'reader'), 'IPC_ERR_OWNER_DEAD');
    assert.throws(() => rw.readUnlock(), (e) => e.code === 'IPC_ERR_NOT_OWNER'); // holds the write side
    rw.writeUnlock(); // without markConsistent
    await expectCode(() => rw.readLock(), 'IPC_ERR_NOT_RECOVERABLE');
    await expectCode(() => rw.writeLockSync(), 'IPC_ERR_NOT_RECOVERABLE');
    await expectCode(() => rw.tryWriteLock(), 'IPC_ERR_NOT_RECOVERABLE');
  } finally {
    RWLock.remove(name);
  }
});

test('reader killed while holding: a writer gets in, without OWNER_DEAD', async () => {
  const name = uniqueName('rw');
  const rw = RWLock.create(name);
  try {
    const readers = [startChild('sync-child.mjs', ['rwHold', name, 'read']), startChild('sync-child.mjs', ['rwHold', name, 'read'])];
    await watchdog(Promise.all(readers.map((r) => r.next('holding'))), 10_000, 'holding');
    assert.equal(rw.tryWriteLock(), false);
    const writer = rw.writeLock({ timeout: 10_000 });
    for (const r of readers) r.kill('SIGKILL');
    await watchdog(writer, 10_000, 'writer');
    rw.writeUnlock();
    rw.writeLockSync();
    rw.writeUnlock();
  } finally {
    RWLock.remove(name);
  }
});

test('a writer killed while readers drain: the lock is handed on as owner-dead, even after a timed-out recovery', async () => {
  const name = uniqueName('rw');
  const rw = RWLock.create(name);
  try {
    const reader = startChild('sync-child.mjs', ['rwHold', name, 'read']);
    await watchdog(reader.next('holding'), 10_000, 'reader holding');
    const writer = startChild('sync-child.mjs', ['rwWrite', name]);
    await watchdog(writer.next('draining'), 10_000, 'writer draining');
    writer.kill('SIGKILL');
    await writer.exited;
    // We recover the writer word, but the live reader keeps us out: time out, and hand the
    // recovered state on instead of forgetting it.
    await expectCode(() => rw.writeLock({ timeout: 200 }), 'IPC_ERR_TIMEOUT');
    assert.equal(rw.tryReadLock(), false); // still no readers admitted
    reader.kill('SIGKILL');
    await reader.exited;
    await expectCode(() => rw.writeLock({ timeout: 5000 }), 'IPC_ERR_OWNER_DEAD');
    rw.markConsistent();
    rw.writeUnlock();
    assert.equal(rw.tryReadLock(), true);
    rw.readUnlock();
  } finally {
    RWLock.remove(name);
  }
});

test('the try and sync forms recover a dead writer too, and refuse a lock that is not recoverable', async () => {
  const name = uniqueName('rw');
  const rw = RWLock.create(name);
  const killedWriter = async () => {
    const child = startChild('sync-child.mjs', ['rwHold', name, 'write']);
    await watchdog(child.next('holding'), 10_000, 'holding');
    child.kill('SIGKILL');
    await child.exited;
  };
  try {
    await killedWriter();
    await expectCode(() => rw.tryReadLock(), 'IPC_ERR_OWNER_DEAD'); // recovered as the writer
    assert.throws(() => rw.writeLockSync(), (e) => e.code === 'IPC_ERR_DEADLOCK'); // this thread writes
    rw.markConsistent();
    rw.writeUnlock();
    await killedWriter();
    await expectCode(() => rw.tryWriteLock(), 'IPC_ERR_OWNER_DEAD');
    rw.markConsistent();
    rw.writeUnlock();
    assert.throws(() => rw.markConsistent(), (e) => e.code === 'IPC_ERR_NOT_OWNER');
    rw.readLockSync();
    assert.throws(() => rw.writeLockSync(), (e) => e.code === 'IPC_ERR_DEADLOCK'); // this thread reads
    rw.readUnlock();
    await killedWriter();
    await expectCode(() => rw.readLockSync({ timeout: 10_000 }), 'IPC_ERR_OWNER_DEAD');
    rw.writeUnlock(); // without markConsistent: not recoverable for everyone
    await expectCode(() => rw.tryReadLock(), 'IPC_ERR_NOT_RECOVERABLE');
    await expectCode(() => rw.readLockSync(), 'IPC_ERR_NOT_RECOVERABLE');
    await expectCode(() => rw.writeLock(), 'IPC_ERR_NOT_RECOVERABLE');
  } finally {
    RWLock.remove(name);
  }
});

// Beyond the 32 slots that tag read locks with their thread's lifeline token, a reader waits for
// a slot: every read lock has an owner whose death the kernel reports, so a dead reader never
// blocks writers (layout version 1 counted the 33rd reader untagged, and its death did).
const require = createRequire(import.meta.url);
const { rwlockLayout } = require('../dist/cjs/sync/rwlock.js');
const SLOTS = 32;

/** Readers registered as waiting for a slot of named RWLock `name` (what `inspect` shows). */
function slotWaiters(name) {
  const shm = SharedMemory.open(name);
  try {
    return rwlockLayout.describe(shm.buffer).slotWaiters ?? 0;
  } finally {
    shm.close();
  }
}

/** Resolves once `predicate()` holds (polled; a watchdog bounds it). */
async function until(predicate, what) {
  await watchdog(
    (async () => {
      while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 2));
    })(),
    10_000,
    what,
  );
}

test('a 33rd reader killed never keeps a writer out: it waits for a slot, and a freed slot goes to it', async () => {
  const name = uniqueName('rw');
  const rw = RWLock.create(name);
  const children = [];
  const start = (...args) => {
    const child = startChild('sync-child.mjs', args);
    children.push(child);
    return child;
  };
  try {
    const holders = start('rwReaders', name, SLOTS);
    await watchdog(holders.next('holding'), 20_000, 'holding 32 read locks');
    // The 33rd reader: killed while it holds a read lock (if it got one) or waits for one.
    const first = start('rwReadWait', name);
    const tried = await watchdog(first.next('tried'), 10_000, 'tried');
    if (!tried.got) await until(() => slotWaiters(name) === 1, 'registered as a slot waiter');
    first.kill('SIGKILL');
    await first.exited;
    holders.send({ cmd: 'release', n: SLOTS });
    assert.equal((await watchdog(holders.next('released'), 10_000, 'released')).left, 0);
    // Every live reader has left: the writer must get in (an untracked dead reader kept it out).
    await rw.writeLock({ timeout: 10_000 });
    rw.writeUnlock();
    assert.equal(tried.got, false, 'a read lock beyond the slots was granted without an owner');

    // Another 33rd reader waits; a freed slot goes to it; then every reader dies holding.
    const more = start('rwReaders', name, SLOTS);
    await watchdog(more.next('holding'), 20_000, 'holding 32 read locks');
    const second = start('rwReadWait', name);
    assert.equal((await watchdog(second.next('tried'), 10_000, 'tried')).got, false);
    await until(() => slotWaiters(name) === 2, 'registered'); // the dead waiter's count stays: a spare wake-up, nothing worse
    more.send({ cmd: 'release', n: 1 });
    await watchdog(second.next('reading'), 10_000, 'the waiting reader took the freed slot');
    second.kill('SIGKILL');
    more.kill('SIGKILL');
    await Promise.all([second.exited, more.exited]);
    // The writer releases the dead readers' slots, with no owner-dead (readers change nothing).
    await rw.writeLock({ timeout: 20_000 });
    rw.writeUnlock();
    assert.equal(rw.tryReadLock(), true);
    rw.readUnlock();
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    RWLock.remove(name);
  }
});

test('a reader waiting for a slot releases the slots of dead readers itself', async () => {
  const name = uniqueName('rw');
  RWLock.create(name).close();
  const holders = startChild('sync-child.mjs', ['rwReaders', name, SLOTS]);
  let waiter;
  try {
    await watchdog(holders.next('holding'), 20_000, 'holding 32 read locks');
    waiter = startChild('sync-child.mjs', ['rwReadWait', name]);
    assert.equal((await watchdog(waiter.next('tried'), 10_000, 'tried')).got, false);
    await until(() => slotWaiters(name) === 1, 'registered as a slot waiter');
    holders.kill('SIGKILL'); // no writer comes: the waiting reader must find the dead itself
    await watchdog(waiter.next('reading'), 10_000, 'the waiter reads');
    assert.equal(slotWaiters(name), 0);
  } finally {
    holders.kill('SIGKILL');
    waiter?.kill('SIGKILL');
    await Promise.all([holders.exited, waiter?.exited]);
    RWLock.remove(name);
  }
});

test('one thread holding every slot: the 33rd handle tries, times out, aborts, and gets IPC_ERR_DEADLOCK from readLockSync', async () => {
  const name = uniqueName('rw');
  const handles = [RWLock.create(name), ...Array.from({ length: SLOTS }, () => RWLock.open(name))];
  const extra = handles.pop();
  try {
    for (const h of handles) assert.equal(h.tryReadLock(), true);
    assert.equal(extra.tryReadLock(), false);
    await expectCode(() => extra.readLock({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
    await expectCode(() => extra.readLock({ timeout: 0 }), 'IPC_ERR_TIMEOUT');
    await expectCode(() => extra.readLockSync({ timeout: 20 }), 'IPC_ERR_DEADLOCK');
    const ac = new AbortController();
    const aborted = extra.readLock({ signal: ac.signal });
    ac.abort();
    await expectCode(() => aborted, 'IPC_ERR_ABORTED');
    assert.equal(slotWaiters(name), 0, 'every waiter that gave up unregistered');
    // A handle that already reads takes more read locks through its own slot.
    assert.equal(handles[0].tryReadLock(), true);
    handles[0].readUnlock();
    // A slot freed by this thread goes to the waiting handle.
    const reading = extra.readLock({ timeout: 10_000 });
    handles[1].readUnlock();
    await watchdog(reading, 10_000, 'reader');
    extra.readUnlock();
    for (const h of handles.slice(2)) h.readUnlock();
    handles[0].readUnlock();
    assert.equal(extra.tryWriteLock(), true);
    extra.writeUnlock();
  } finally {
    for (const h of [...handles, extra]) h.close();
    RWLock.remove(name);
  }
});
