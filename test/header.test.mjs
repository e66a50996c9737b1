import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { SharedMemory } from 'interprocess';
import { startChild, uniqueName, watchdog } from './helpers.mjs';

const require = createRequire(import.meta.url);
const { openObject } = require('../dist/cjs/shm/segment.js');
const { HEADER_BYTES, MAGIC, readHeader } = require('../dist/cjs/shm/header.js');

const layout = (over = {}) => ({ kind: 99, version: 3, byteLength: 256, init(buf) { new Uint8Array(buf)[HEADER_BYTES] = 0xab; }, ...over });

function named(t, tag = 'hdr') {
  const name = uniqueName(tag);
  t.after(() => SharedMemory.remove(name));
  return name;
}

test('create writes and publishes the header; open validates it', (t) => {
  const name = named(t);
  const a = openObject(name, 'create', 'Test', layout(), {});
  const h = readHeader(a.buffer);
  assert.deepEqual(
    { magic: h.magic, kind: h.kind, version: h.version, state: h.state, byteLength: h.byteLength, creatorPid: h.creatorPid },
    { magic: MAGIC, kind: 99, version: 3, state: 1, byteLength: 256, creatorPid: process.pid },
  );
  const b = openObject(name, 'open', 'Test', layout(), {});
  assert.equal(new Uint8Array(b.buffer)[HEADER_BYTES], 0xab);
  const c = openObject(name, 'openOrCreate', 'Test', layout(), {});
  assert.equal(c.created, false);
  assert.throws(() => openObject(name, 'create', 'Test', layout(), {}), { code: 'IPC_ERR_EXISTS' });
});

test('each wrong field is refused with IPC_ERR_INCOMPATIBLE naming it', (t) => {
  const name = named(t);
  const shm = openObject(name, 'create', 'Test', layout(), {});
  assert.throws(() => openObject(name, 'open', 'Test', layout({ kind: 98 }), {}), { code: 'IPC_ERR_INCOMPATIBLE', message: /kind is unknown\(99\), expected unknown\(98\)/ });
  assert.throws(() => openObject(name, 'open', 'Test', layout({ version: 4 }), {}), { code: 'IPC_ERR_INCOMPATIBLE', message: /version is 3/ });
  const view = new DataView(shm.buffer);
  view.setBigUint64(16, 1000n, true);
  assert.throws(() => openObject(name, 'open', 'Test', layout(), {}), { code: 'IPC_ERR_INCOMPATIBLE', message: /byteLength in the header is 1000, but 256/ });
  view.setBigUint64(16, 256n, true);
  view.setUint32(0, 0xdeadbeef, true);
  assert.throws(() => openObject(name, 'open', 'Test', layout(), {}), { code: 'IPC_ERR_INCOMPATIBLE', message: /magic is 0xdeadbeef/ });
  view.setUint32(0, MAGIC, true);
  view.setInt32(12, 7, true);
  assert.throws(() => openObject(name, 'open', 'Test', layout(), {}), { code: 'IPC_ERR_INCOMPATIBLE', message: /state is 7/ });
});

test('a raw segment, or one smaller than the header, is not a library object', (t) => {
  const raw = named(t, 'raw');
  new Uint8Array(SharedMemory.create(raw, { byteLength: 4096 }).buffer).fill(0x5a);
  assert.throws(() => openObject(raw, 'open', 'Test', layout(), {}), { code: 'IPC_ERR_INCOMPATIBLE', message: /magic/ });
  const tiny = named(t, 'tiny');
  SharedMemory.create(tiny, { byteLength: 16 });
  assert.throws(() => openObject(tiny, 'open', 'Test', layout(), {}), { code: 'IPC_ERR_INCOMPATIBLE', message: /size is 16 bytes/ });
});

test('a creator killed during initialization makes openers fail within initTimeout', async (t) => {
  const name = named(t, 'init');
  const child = startChild('header-child.mjs', [name]);
  await watchdog(child.next('initializing'), 10_000, 'creator');
  child.kill('SIGKILL');
  await child.exited;
  const started = process.hrtime.bigint();
  assert.throws(() => openObject(name, 'open', 'Test', layout(), { initTimeout: 100 }), {
    code: 'IPC_ERR_INCOMPATIBLE',
    message: /initialized flag still unset after 100 ms/,
  });
  assert.throws(() => openObject(name, 'openOrCreate', 'Test', layout(), { initTimeout: 0 }), { code: 'IPC_ERR_INCOMPATIBLE' });
  // The message names the caller's initTimeout even when opening the object itself took part of
  // it (a loaded machine): here every clock read is 7 ms later than the one before.
  const realNow = Date.now;
  let skew = 0;
  Date.now = () => realNow() + (skew += 7);
  try {
    assert.throws(() => openObject(name, 'open', 'Test', layout(), { initTimeout: 100 }), {
      code: 'IPC_ERR_INCOMPATIBLE',
      message: /initialized flag still unset after 100 ms/,
    });
  } finally {
    Date.now = realNow;
  }
  t.diagnostic(`refused after ${Number(process.hrtime.bigint() - started) / 1e6} ms`);
});

test('fuzz: random bit flips in the header only ever give IPC_ERR_INCOMPATIBLE or a valid open', (t) => {
  const name = named(t, 'fuzz');
  const shm = openObject(name, 'create', 'Test', layout(), {});
  const bytes = new Uint8Array(shm.buffer);
  const pristine = bytes.slice(0, HEADER_BYTES);
  let refused = 0;
  let opened = 0;
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < 2000; i++) {
    bytes.set(pristine);
    for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) bytes[Math.floor(rand() * 40)] ^= 1 << Math.floor(rand() * 8);
    try {
      openObject(name, 'open', 'Test', layout(), { initTimeout: 0 });
      opened++;
    } catch (err) {
      assert.equal(err.code, 'IPC_ERR_INCOMPATIBLE', err.message);
      refused++;
    }
  }
  t.diagnostic(`cases 2000: refused ${refused}, opened ${opened} (flips in informational fields)`);
  assert.equal(refused + opened, 2000);
  assert.ok(refused > 1000);
});
