// RWLock: readers share, writers exclude, across processes; dead writers and dead readers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Mutex, RWLock, SharedMemory } from 'interprocess';
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
