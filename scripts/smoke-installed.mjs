// Run inside a project that installed the packed tarball (scripts/check-package.sh): the library
// works from node_modules, through both entry points, across processes. Prints one line per
// check and exits non-zero on the first failure.
//   node smoke-installed.mjs            the parent
//   node smoke-installed.mjs child ...  the child roles it starts
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { Mutex, Queue, SharedMemory, futex, listen, connect } from 'interprocess';

const self = fileURLToPath(import.meta.url);
const [role, name] = process.argv.slice(2);

// Under qemu-user (an arm64 Node on an x64 machine) children are started through a wrapper
// that runs them under qemu too: the kernel cannot exec an arm64 binary by itself.
const execPath = process.env.INTERPROCESS_SMOKE_EXEC || process.execPath;

function child(...args) {
  const p = fork(self, ['child', ...args], { execPath, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })));
  const next = () => new Promise((resolve) => p.once('message', resolve));
  return { p, exited, next };
}

if (role === 'child') {
  const what = process.argv[4];
  if (what === 'shm') {
    const word = new Int32Array(SharedMemory.open(name).buffer);
    Atomics.store(word, 0, 42);
    futex.notify(word, 0);
  } else if (what === 'queue') {
    const q = Queue.open(name, { codec: 'json' });
    for (let i = 0; i < 100; i++) await q.send({ i });
    q.close();
  } else if (what === 'lock') {
    Mutex.open(name).lockSync();
    process.send('holding');
    setInterval(() => {}, 1000); // killed while holding
  }
  process.disconnect?.();
} else {
  const tag = `smoke-${process.pid}`;
  // CommonJS and ESM are one copy of the library.
  const cjs = createRequire(import.meta.url)('interprocess');
  assert.equal(cjs.SharedMemory, SharedMemory);
  console.log(`ok  loaded from ${createRequire(import.meta.url).resolve('interprocess')}`);

  const shmName = `${tag}-shm`;
  const shm = SharedMemory.create(shmName, { byteLength: 4096 });
  const word = new Int32Array(shm.buffer);
  const c1 = child(shmName, 'shm');
  while (Atomics.load(word, 0) === 0) await futex.waitAsync(word, 0, 0, 10_000);
  assert.equal(Atomics.load(word, 0), 42);
  assert.deepEqual(await c1.exited, { code: 0, signal: null });
  SharedMemory.remove(shmName);
  console.log('ok  shared memory and futex.waitAsync across processes');

  const qName = `${tag}-q`;
  const q = Queue.create(qName, { byteLength: 1 << 16, codec: 'json' });
  const c2 = child(qName, 'queue');
  for (let i = 0; i < 100; i++) assert.deepEqual(await q.receive({ timeout: 10_000 }), { i });
  assert.deepEqual(await c2.exited, { code: 0, signal: null });
  q.close();
  Queue.remove(qName);
  console.log('ok  queue: 100 messages in order from another process');

  const mName = `${tag}-mutex`;
  const m = Mutex.create(mName);
  const c3 = child(mName, 'lock');
  assert.equal(await c3.next(), 'holding');
  c3.p.kill('SIGKILL');
  await c3.exited;
  await assert.rejects(m.lock({ timeout: 10_000 }), { code: 'IPC_ERR_OWNER_DEAD' });
  m.markConsistent();
  m.unlock();
  m.close();
  Mutex.remove(mName);
  console.log('ok  mutex: an owner killed while holding is recovered with IPC_ERR_OWNER_DEAD');

  const server = await listen(`shm://${tag}-ch`);
  const accepted = server.accept();
  const client = await connect(`shm://${tag}-ch`);
  const conn = await accepted;
  await client.send(new Uint8Array([1, 2, 3]));
  assert.deepEqual([...(await conn.receive())], [1, 2, 3]);
  await client.close();
  await conn.close();
  await server.close();
  console.log('ok  shm:// channel');
  console.log(`smoke ok on Node ${process.version} ${process.platform}-${process.arch}`);
}
