// Lifelines (src/os/lifeline.ts, native/lifeline.cc): one per thread per object, held as a
// kernel lock on the object's own file, let go with the last handle or the thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Mutex, RWLock, SharedMemory } from 'interprocess';
import { expectCode, uniqueName, watchdog } from './helpers.mjs';

const require = createRequire(import.meta.url);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'dist', 'cjs', 'index.js');
const { openLifeline } = require('../dist/cjs/os/lifeline.js');
const { addonFile } = require('../dist/cjs/os/native.js');

/** This process's open descriptions: what each is of, and whether it holds an OFD lock (fdinfo). */
function ownDescriptions() {
  const out = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.push({ link: fs.readlinkSync(`/proc/self/fd/${fd}`), locking: fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').includes('OFDLCK') });
    } catch {
      // closed meanwhile (the descriptor readdir itself used)
    }
  }
  return out;
}

/** How many of this process's descriptions of /dev/shm/interprocess.<name> hold an OFD lock. */
function lockingDescriptions(name) {
  return ownDescriptions().filter((d) => d.locking && d.link === `/dev/shm/interprocess.${name}`).length;
}

function named(fn) {
  return async () => {
    const name = uniqueName('ll');
    try {
      await fn(name);
    } finally {
      SharedMemory.remove(name);
    }
  };
}

test('the handles of one thread on one object share its lifeline: one token, one owner', named(async (name) => {
  const a = Mutex.create(name);
  const b = Mutex.open(name);
  a.lockSync();
  await expectCode(() => b.lockSync(), 'IPC_ERR_DEADLOCK'); // the same owner: it would wait for itself
  assert.equal(b.tryLock(), false);
  b.unlock(); // the owner is the thread, not the handle
  // Two mappings of the object (two SharedMemory handles): still one lifeline for this thread.
  const [shm, shm2] = [SharedMemory.open(name), SharedMemory.open(name)];
  const [x, y] = [openLifeline(shm.buffer), openLifeline(shm2.buffer)];
  assert.equal(x.token, y.token);
  assert.equal(x.isAlive(x.token), true);
  assert.equal(x.isAlive(0), false);
  assert.equal(x.isAlive(0x0fffffff), false, 'DEAD_TOKEN is always dead');
  assert.equal(lockingDescriptions(name), 1, 'one lifeline for all handles of this thread');
  for (const handle of [x, y, a, b, shm, shm2]) handle.close();
  await expectCode(() => x.isAlive(1), 'IPC_ERR_CLOSED');
}));

test('the last close lets the lifeline go: what it held is abandoned and recovered as from a dead owner', named(async (name) => {
  const a = Mutex.create(name);
  const b = Mutex.open(name);
  a.lockSync();
  assert.equal(lockingDescriptions(name), 1);
  a.close();
  assert.equal(lockingDescriptions(name), 1, 'b still holds it: the lock is still ours');
  assert.equal(b.tryLock(), false);
  b.close();
  assert.equal(lockingDescriptions(name), 0, 'no handle left: the lifeline is closed');
  const c = Mutex.open(name);
  await expectCode(() => c.lock({ timeout: 5000 }), 'IPC_ERR_OWNER_DEAD');
  c.markConsistent();
  c.unlock();
  c.close();
}));

test('a lock in a plain SharedArrayBuffer shared with a worker: each thread is an owner of its own, and a dead worker is recovered', async () => {
  const plain = new SharedArrayBuffer(Mutex.byteLength + RWLock.byteLength);
  const m = Mutex.createAt(plain, 0);
  const rw = RWLock.createAt(plain, Mutex.byteLength);
  m.lockSync();
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const { Mutex, RWLock } = require(workerData.entry);
     const m = Mutex.openAt(workerData.plain, 0);
     const rw = RWLock.openAt(workerData.plain, workerData.rwAt);
     let seen;
     try { m.lockSync({ timeout: 50 }); seen = 'locked'; } catch (err) { seen = err.code; }
     parentPort.postMessage(seen);
     parentPort.once('message', () => {
       m.lockSync();
       rw.writeLockSync();
       parentPort.postMessage('holding');
     });
     setInterval(() => {}, 1 << 30);`,
    { eval: true, workerData: { entry, plain, rwAt: Mutex.byteLength } },
  );
  const next = () => watchdog(new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  }), 10_000, 'worker');
  assert.equal(await next(), 'IPC_ERR_TIMEOUT', 'the worker sees this thread alive');
  m.unlock();
  worker.postMessage('go');
  assert.equal(await next(), 'holding');
  assert.equal(m.tryLock(), false, 'and this thread sees the worker alive');
  await expectCode(() => rw.readLockSync({ timeout: 30 }), 'IPC_ERR_TIMEOUT');
  await worker.terminate();
  await expectCode(() => m.lock({ timeout: 5000 }), 'IPC_ERR_OWNER_DEAD');
  m.markConsistent();
  m.unlock();
  await expectCode(() => rw.writeLock({ timeout: 5000 }), 'IPC_ERR_OWNER_DEAD');
  rw.markConsistent();
  rw.writeUnlock();
});

test('shared memory that another copy of the addon mapped is refused: its other users cannot be checked', async (t) => {
  const copy = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-addon-')), 'interprocess.node');
  fs.copyFileSync(addonFile(), copy); // the build or the prebuild this Node loaded
  const name = uniqueName('foreign');
  t.after(() => {
    SharedMemory.remove(name);
    fs.rmSync(path.dirname(copy), { recursive: true, force: true });
  });
  const other = require(copy); // a second instance, with its own table of mappings
  const { buffer } = other.shmOpen(`/interprocess.${name}`, 0, 0o600, 4096, 0, false);
  await expectCode(() => Mutex.createAt(buffer, 0).lockSync(), 'IPC_ERR_INCOMPATIBLE');
  assert.throws(() => openLifeline(new ArrayBuffer(8)), TypeError);
});

test('no machine-wide file: every lock this process holds is on the objects it uses', named(async (name) => {
  const m = Mutex.create(name);
  m.lockSync();
  const plain = Mutex.createAt(new SharedArrayBuffer(Mutex.byteLength), 0);
  plain.lockSync();
  const shm = ownDescriptions()
    .filter((d) => d.locking && d.link.startsWith('/dev/shm/'))
    .map((d) => d.link);
  assert.ok(shm.includes(`/dev/shm/interprocess.${name}`));
  assert.deepEqual(shm.filter((link) => !link.startsWith('/dev/shm/interprocess.t-')), []);
  m.unlock();
  plain.unlock();
  m.close();
}));

test('a process with few descriptors can still open, lock and close objects by the thousand', async () => {
  // Each mapping keeps its object's descriptor until it is unmapped: running out of descriptors
  // collects the unreachable ones (a full GC) and tries again, instead of failing.
  const { execFileSync } = await import('node:child_process');
  const name = uniqueName('fds');
  const script = `
    const { Mutex, SharedMemory } = require(${JSON.stringify(entry)});
    for (let i = 0; i < 3000; i++) {
      const m = Mutex.create(${JSON.stringify(name)});
      m.lockSync();
      m.unlock();
      m.close();
      SharedMemory.remove(${JSON.stringify(name)});
    }
    console.log('done');`;
  try {
    const out = execFileSync('sh', ['-c', 'ulimit -n 128 && exec "$0" -e "$1"', process.execPath, script], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(out.trim(), 'done');
  } finally {
    SharedMemory.remove(name);
  }
});
