import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { Mutex, SharedMemory, IpcError } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';
import { stageForOtherUser } from './stage.mjs';

const require = createRequire(import.meta.url);
const tool = new URL('./fixtures/shm-tool.mjs', import.meta.url).pathname;
const run = (command, args) => JSON.parse(execFileSync(command, args, { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] }));
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

test('a write in a child process is seen by the parent, and the other way round', async () => {
  const name = uniqueName('shm');
  const shm = SharedMemory.create(name, { byteLength: 65536 });
  try {
    assert.ok(shm.buffer instanceof SharedArrayBuffer);
    assert.equal(shm.byteLength, 65536);
    assert.equal(shm.created, true);
    const writer = startChild('shm-child.mjs', ['write', name, 7]);
    const msg = await watchdog(writer.next('written'), 10_000, 'child write');
    assert.equal(msg.byteLength, 65536);
    assert.ok(new Uint8Array(shm.buffer).every((b) => b === 7));
    writer.send({ cmd: 'exit' });
    await writer.exited;

    new Uint8Array(shm.buffer).fill(3);
    const reader = startChild('shm-child.mjs', ['sum', name]);
    assert.equal((await watchdog(reader.next('sum'), 10_000, 'child sum')).sum, 3 * 65536);
    reader.send({ cmd: 'exit' });
    await reader.exited;
  } finally {
    shm.close();
    SharedMemory.remove(name);
  }
});

test('Atomics work on the buffer, and posting it to a worker shares the same bytes', async () => {
  const name = uniqueName('shm');
  const shm = SharedMemory.create(name, { byteLength: 4096 });
  try {
    const i32 = new Int32Array(shm.buffer);
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const v = new Int32Array(workerData);
       for (let i = 0; i < 100000; i++) Atomics.add(v, 0, 1);
       parentPort.postMessage('done');`,
      { eval: true, workerData: shm.buffer },
    );
    for (let i = 0; i < 100000; i++) Atomics.add(i32, 0, 1);
    await watchdog(new Promise((resolve) => worker.once('message', resolve)), 10_000, 'worker');
    assert.equal(Atomics.load(i32, 0), 200000);
    await worker.terminate();
  } finally {
    SharedMemory.remove(name);
  }
});

test('create is exclusive, open needs the name, openOrCreate does either', () => {
  const name = uniqueName('shm');
  const a = SharedMemory.create(name, { byteLength: 100 });
  try {
    assert.throws(() => SharedMemory.create(name, { byteLength: 100 }), { code: 'IPC_ERR_EXISTS' });
    const b = SharedMemory.openOrCreate(name, { byteLength: 100 });
    assert.equal(b.created, false);
    assert.equal(b.byteLength, 100);
    new Uint8Array(a.buffer)[99] = 42;
    assert.equal(new Uint8Array(b.buffer)[99], 42);
    assert.throws(() => SharedMemory.openOrCreate(name, { byteLength: 200 }), { code: 'IPC_ERR_INCOMPATIBLE' });
    assert.throws(() => SharedMemory.open(name, { byteLength: 99 }), { code: 'IPC_ERR_INCOMPATIBLE' });
    assert.equal(SharedMemory.open(name, { byteLength: 100 }).byteLength, 100);
    assert.ok(SharedMemory.exists(name));
    assert.ok(SharedMemory.list().includes(name));
  } finally {
    assert.equal(SharedMemory.remove(name), true);
  }
  assert.equal(SharedMemory.remove(name), false);
  assert.equal(SharedMemory.exists(name), false);
  assert.ok(!SharedMemory.list().includes(name));
  assert.throws(() => SharedMemory.open(name), (err) => err instanceof IpcError && err.code === 'IPC_ERR_NOT_FOUND' && err.errno === 'ENOENT');
  const c = SharedMemory.openOrCreate(name, { byteLength: 10 });
  assert.equal(c.created, true);
  SharedMemory.remove(name);
  // The memory outlives the name while this process still holds it.
  new Uint8Array(a.buffer)[0] = 1;
  assert.equal(new Uint8Array(a.buffer)[0], 1);
});

test('names are validated in one place', () => {
  for (const bad of ['', '-lead', '.hidden', 'a/b', 'sp ace', 'x'.repeat(201), 'é', '../etc']) {
    for (const call of [
      () => SharedMemory.create(bad, { byteLength: 8 }),
      () => SharedMemory.open(bad),
      () => SharedMemory.remove(bad),
      () => SharedMemory.exists(bad),
    ]) {
      assert.throws(call, { code: 'IPC_ERR_INVALID_NAME' }, JSON.stringify(bad));
    }
  }
  assert.throws(() => SharedMemory.open(42), TypeError);
  const longest = 'a'.repeat(200);
  assert.doesNotThrow(() => SharedMemory.remove(longest));
});

test('bad sizes and options are TypeError / RangeError naming the option', () => {
  const name = uniqueName('shm');
  assert.throws(() => SharedMemory.create(name, { byteLength: 0 }), RangeError);
  assert.throws(() => SharedMemory.create(name, { byteLength: -1 }), RangeError);
  assert.throws(() => SharedMemory.create(name, { byteLength: 1.5 }), TypeError);
  assert.throws(() => SharedMemory.create(name, {}), /byteLength/);
  assert.throws(() => SharedMemory.create(name), TypeError);
  assert.throws(() => SharedMemory.create(name, { byteLength: 8, size: 8 }), /unknown option 'size'/);
  assert.throws(() => SharedMemory.create(name, { byteLength: 8, mode: 0o1777 }), RangeError);
  assert.equal(SharedMemory.exists(name), false);
});

test('objects are created 0o600 regardless of umask, or with the mode asked for', () => {
  const old = process.umask(0);
  const names = [uniqueName('mode'), uniqueName('mode')];
  try {
    SharedMemory.create(names[0], { byteLength: 8 }).close();
    assert.equal(fs.statSync(`/dev/shm/interprocess.${names[0]}`).mode & 0o777, 0o600);
    process.umask(0o077);
    SharedMemory.create(names[1], { byteLength: 8, mode: 0o640 }).close();
    assert.equal(fs.statSync(`/dev/shm/interprocess.${names[1]}`).mode & 0o777, 0o640);
  } finally {
    process.umask(old);
    names.forEach((n) => SharedMemory.remove(n));
  }
});

test('a full /dev/shm is IPC_ERR_NO_SPACE, not SIGBUS, and leaves nothing behind', () => {
  const name = uniqueName('full');
  const st = fs.statfsSync('/dev/shm');
  const tooBig = st.blocks * st.bsize + 2 ** 30;
  const err = assert.throws(() => SharedMemory.create(name, { byteLength: tooBig }), { code: 'IPC_ERR_NO_SPACE', syscall: 'posix_fallocate' });
  assert.equal(SharedMemory.exists(name), false);
});

test('a name squatted by a symlink is refused by create, open and openOrCreate', () => {
  const name = uniqueName('squat');
  const target = `/tmp/interprocess-${uniqueName('target')}`;
  fs.writeFileSync(target, 'x');
  fs.symlinkSync(target, `/dev/shm/interprocess.${name}`);
  try {
    assert.throws(() => SharedMemory.create(name, { byteLength: 8 }), { code: 'IPC_ERR_EXISTS' });
    assert.equal(fs.readFileSync(target, 'utf8'), 'x');
    // never followed (shm_open opens with O_NOFOLLOW), even with the opt-in for other owners
    assert.throws(() => SharedMemory.open(name, { allowOtherOwner: true }), { code: 'IPC_ERR_PERMISSION', errno: 'ELOOP' });
    assert.throws(() => SharedMemory.openOrCreate(name, { byteLength: 8 }), { code: 'IPC_ERR_PERMISSION', errno: 'ELOOP' });
    assert.equal(fs.readFileSync(target, 'utf8'), 'x');
  } finally {
    fs.unlinkSync(`/dev/shm/interprocess.${name}`);
    fs.unlinkSync(target);
  }
});

test('a name that is not a regular file (a FIFO) is refused, and left alone', async () => {
  const name = uniqueName('fifo');
  const { execFileSync } = await import('node:child_process');
  execFileSync('mkfifo', ['-m', '600', `/dev/shm/interprocess.${name}`]);
  try {
    assert.throws(() => SharedMemory.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /not a regular file/ });
    assert.throws(() => SharedMemory.openOrCreate(name, { byteLength: 8 }), { code: 'IPC_ERR_INCOMPATIBLE' });
    assert.ok(fs.statSync(`/dev/shm/interprocess.${name}`).isFIFO());
  } finally {
    fs.unlinkSync(`/dev/shm/interprocess.${name}`);
  }
});

test('allowOtherOwner must be a boolean, and only open and openOrCreate take it', () => {
  const name = uniqueName('opt');
  assert.throws(() => SharedMemory.open(name, { allowOtherOwner: 'yes' }), { name: 'TypeError', message: /allowOtherOwner must be a boolean/ });
  assert.throws(() => SharedMemory.openOrCreate(name, { byteLength: 8, allowOtherOwner: 1 }), { name: 'TypeError', message: /allowOtherOwner/ });
  assert.throws(() => SharedMemory.create(name, { byteLength: 8, allowOtherOwner: true }), { name: 'TypeError', message: /unknown option 'allowOtherOwner'/ });
  assert.equal(SharedMemory.exists(name), false, 'nothing was created');
});

test('an object its creator never sized is refused after sizeWait', () => {
  const name = uniqueName('zero');
  fs.writeFileSync(`/dev/shm/interprocess.${name}`, '', { mode: 0o600 });
  try {
    assert.throws(() => SharedMemory.open(name, { sizeWait: 20 }), { code: 'IPC_ERR_INCOMPATIBLE', message: /size is 0/ });
  } finally {
    SharedMemory.remove(name);
  }
});

test('close is idempotent; the buffer getter then throws IPC_ERR_CLOSED but views stay valid', () => {
  const name = uniqueName('close');
  const shm = SharedMemory.create(name, { byteLength: 16 });
  const view = new Uint8Array(shm.buffer);
  shm.close();
  shm.close();
  shm[Symbol.dispose]();
  assert.equal(shm.closed, true);
  assert.throws(() => shm.buffer, { code: 'IPC_ERR_CLOSED' });
  SharedMemory.remove(name);
  view[15] = 9;
  assert.equal(view[15], 9);
});

test('many create/close cycles never crash and unmap once unreachable', () => {
  const name = uniqueName('cycle');
  for (let i = 0; i < 2000; i++) {
    const shm = SharedMemory.create(name, { byteLength: 1 << 16 });
    new Uint8Array(shm.buffer)[i % 65536] = 1;
    shm.close();
    SharedMemory.remove(name);
  }
  if (global.gc) global.gc();
});

test('ESM and CommonJS entry points share one copy of every class', async () => {
  const cjs = require('interprocess');
  const esm = await import('interprocess');
  assert.equal(cjs.SharedMemory, esm.SharedMemory);
  assert.equal(cjs.IpcError, esm.IpcError);
  assert.deepEqual(Object.keys(cjs).filter((k) => k !== '__esModule').sort(), Object.keys(esm).sort());
});

test('IPC_ERR_NATIVE_UNAVAILABLE says why when the addon cannot load', async () => {
  const child = startChild('shm-child.mjs', ['native-missing', uniqueName('nat')], {
    env: { INTERPROCESS_NATIVE: '/nonexistent/interprocess.node' },
  });
  const msg = await watchdog(child.next('error'), 10_000, 'child');
  assert.equal(msg.code, 'IPC_ERR_NATIVE_UNAVAILABLE');
  assert.match(msg.message, /\/nonexistent\/interprocess\.node/);
  assert.match(msg.message, /npm rebuild/);
  child.send({ cmd: 'exit' });
  await child.exited;
});

test('another user cannot open or remove a 0o600 object: IPC_ERR_PERMISSION, for SharedMemory and a named Mutex alike', (t) => {
  if (process.getuid() !== 0) return t.skip('needs root to run a child as another user');
  const shmName = uniqueName('perm');
  const mutexName = uniqueName('perm-mutex');
  // Staged where that user can read it: the checkout (or Node) may be in a private folder.
  const staged = stageForOtherUser(t);
  SharedMemory.create(shmName, { byteLength: 64 }).close();
  Mutex.create(mutexName).close();
  try {
    const viaShm = JSON.parse(staged.run('shm-tool.mjs', ['open', shmName], { timeout: 60_000 }));
    const viaMutex = JSON.parse(staged.run('shm-tool.mjs', ['open', mutexName], { timeout: 60_000 }));
    assert.deepEqual([viaShm.shm.code, viaShm.shm.errno], ['IPC_ERR_PERMISSION', 'EACCES'], viaShm.shm.message);
    assert.deepEqual([viaMutex.mutex.code, viaMutex.mutex.errno], ['IPC_ERR_PERMISSION', 'EACCES'], viaMutex.mutex.message);
    // /dev/shm is sticky: only the owner may unlink a name.
    assert.deepEqual([viaShm.remove.code, viaShm.remove.errno], ['IPC_ERR_PERMISSION', 'EACCES'], viaShm.remove.message);
    assert.equal(SharedMemory.exists(shmName), true);
  } finally {
    SharedMemory.remove(shmName);
    Mutex.remove(mutexName);
  }
});

test('creating where /dev/shm is not writable is IPC_ERR_PERMISSION (another user, private /dev/shm)', (t) => {
  if (process.getuid() !== 0) return t.skip('needs root to mount a private /dev/shm');
  const staged = stageForOtherUser(t);
  let out;
  try {
    // A private tmpfs over /dev/shm in a mount namespace of its own: nobody else sees it.
    out = run('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
      'mount -t tmpfs -o mode=0755 tmpfs /dev/shm && exec setpriv "$@"', 'sh', ...NOBODY, staged.node, `${staged.dir}/fixtures/shm-tool.mjs`, 'create', uniqueName('ro')]);
  } catch (err) {
    return t.skip(`cannot mount a private /dev/shm here: ${String(err.stderr ?? err.message).split('\n')[0]}`);
  }
  for (const call of ['create', 'openOrCreate', 'mutex']) {
    assert.deepEqual([out[call].code, out[call].errno], ['IPC_ERR_PERMISSION', 'EACCES'], `${call}: ${out[call].message}`);
  }
});

test('out of file descriptors is IPC_ERR_LIMIT for creating and opening (child under prlimit --nofile)', (t) => {
  const name = uniqueName('nofile');
  SharedMemory.create(name, { byteLength: 64 }).close();
  let out;
  try {
    out = run('prlimit', ['--nofile=64', process.execPath, tool, 'exhaust', name]);
  } catch (err) {
    if (err.code === 'ENOENT') return t.skip('prlimit (util-linux) is not installed');
    throw err;
  } finally {
    SharedMemory.remove(name);
  }
  for (const call of ['create', 'open', 'mutex']) {
    assert.deepEqual([out[call].code, out[call].errno], ['IPC_ERR_LIMIT', 'EMFILE'], `${call}: ${out[call].message}`);
  }
  assert.equal(SharedMemory.exists(`${name}-new`), false, 'a refused create leaves nothing behind');
  assert.equal(SharedMemory.exists(`${name}-mutex`), false);
});

test('close() gives back the descriptor at once, while the buffer lives on; a new lock on a closed handle\'s buffer is IPC_ERR_CLOSED', async () => {
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  const before = fds();
  const kept = [];
  for (let i = 0; i < 200; i++) {
    const name = uniqueName('release');
    const shm = SharedMemory.create(name, { byteLength: 4096 });
    new Int32Array(shm.buffer)[0] = i;
    kept.push(shm.buffer); // the memory stays reachable: the garbage collector frees nothing
    shm.close();
    SharedMemory.remove(name);
  }
  assert.ok(fds() - before < 5, `descriptors grew from ${before} to ${fds()} with every handle closed`);
  assert.equal(new Int32Array(kept[199])[0], 199, 'the memory itself stays valid');
  const name = uniqueName('release');
  const shm = SharedMemory.create(name, { byteLength: Mutex.byteLength });
  try {
    const held = Mutex.createAt(shm, 0); // opened while the handle was open: keeps working
    const { buffer } = shm;
    shm.close();
    held.lockSync();
    held.unlock();
    held.close();
    await expectCode(() => Mutex.openAt(buffer, 0), 'IPC_ERR_CLOSED');
  } finally {
    SharedMemory.remove(name);
  }
});
