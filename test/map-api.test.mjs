// SharedMap in one process: lifecycle, every error code it can produce, codecs, TTLs, both
// eviction policies, iteration, update/increment semantics and what `interprocess inspect` shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, SharedMap, SharedMemory } from 'interprocess';
import { expectCode, uniqueName, watchdog } from './helpers.mjs';

const require = createRequire(import.meta.url);
const { describeMap } = require('../dist/cjs/map/layout.js');
const here = path.dirname(fileURLToPath(import.meta.url));

function named(t, tag = 'm') {
  const name = uniqueName(tag);
  t.after(() => SharedMap.remove(name));
  return name;
}

const bytes = (...values) => Uint8Array.from(values);
/** Waits until the wall clock has passed `ms` (TTLs are wall-clock deadlines). */
async function pastNow(ms) {
  const until = Date.now() + ms;
  while (Date.now() <= until) await new Promise((resolve) => setTimeout(resolve, Math.max(1, until - Date.now() + 1)));
}
function details(name) {
  const raw = SharedMemory.open(name);
  try {
    return describeMap(raw.buffer);
  } finally {
    raw.close();
  }
}

test('create / open / openOrCreate / remove, the geometry and the handle properties', (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 100, maxKeyBytes: 64, maxValueBytes: 64 });
  t.after(() => m.close());
  assert.equal(m.name, name);
  assert.equal(m.capacity, 100);
  assert.equal(m.maxKeyBytes, 64);
  assert.equal(m.maxValueBytes, 64);
  assert.equal(m.eviction, 'none');
  assert.equal(m.ttl, Infinity);
  assert.equal(m.size, 0);
  // 100 entries of 32 + 64 + 2 * (16 + 64) bytes, 128 stripes, 128 buckets, a 256-byte head.
  assert.equal(m.byteLength, 256 + 128 * 64 + 128 * 4 + 100 * 256);
  m.set('a', bytes(1, 2, 3));
  const o = SharedMap.open(name);
  t.after(() => o.close());
  assert.deepEqual([...o.get('a')], [1, 2, 3]);
  const oc = SharedMap.openOrCreate(name, { capacity: 100, maxKeyBytes: 64, maxValueBytes: 64 });
  t.after(() => oc.close());
  assert.equal(oc.size, 1);
  assert.throws(() => SharedMap.create(name, { capacity: 100 }), { code: 'IPC_ERR_EXISTS' });
  assert.equal(SharedMap.remove(name), true);
  assert.equal(SharedMap.remove(name), false);
  assert.throws(() => SharedMap.open(name), { code: 'IPC_ERR_NOT_FOUND' });
  // Handles opened before the remove keep working.
  o.set('b', bytes(4));
  assert.deepEqual([...m.get('b')], [4]);
  const fresh = SharedMap.openOrCreate(name, { capacity: 10, eviction: 'lru', ttl: 5000 });
  t.after(() => fresh.close());
  assert.equal(fresh.size, 0);
  assert.equal(fresh.eviction, 'lru');
  assert.equal(fresh.ttl, 5000);
  assert.equal(fresh.maxKeyBytes, 256);
  assert.equal(fresh.maxValueBytes, 1024);
});

test('bad names, bad options and foreign objects', (t) => {
  assert.throws(() => SharedMap.create('bad/name', { capacity: 1 }), { code: 'IPC_ERR_INVALID_NAME' });
  const name = named(t);
  assert.throws(() => SharedMap.create(name, {}), /capacity' is required/);
  assert.throws(() => SharedMap.create(name), TypeError);
  assert.throws(() => SharedMap.create(name, { capacity: 0 }), RangeError);
  assert.throws(() => SharedMap.create(name, { capacity: 1.5 }), TypeError);
  assert.throws(() => SharedMap.create(name, { capacity: 2 ** 27 + 1 }), RangeError);
  assert.throws(() => SharedMap.create(name, { capacity: 1, maxKeyBytes: 0 }), RangeError);
  assert.throws(() => SharedMap.create(name, { capacity: 1, maxValueBytes: -1 }), RangeError);
  assert.throws(() => SharedMap.create(name, { capacity: 1, eviction: 'fifo' }), /eviction must be 'lru' or 'none'/);
  assert.throws(() => SharedMap.create(name, { capacity: 1, ttl: 0 }), RangeError);
  assert.throws(() => SharedMap.create(name, { capacity: 1, ttl: 'soon' }), TypeError);
  assert.throws(() => SharedMap.create(name, { capacity: 1, codec: 'yaml' }), /unknown codec/);
  assert.throws(() => SharedMap.create(name, { capacity: 1, capacty: 2 }), /unknown option 'capacty'/);
  // Too big for one map: a RangeError naming what does not fit, before anything is created.
  assert.throws(() => SharedMap.create(name, { capacity: 2 ** 20, maxValueBytes: 1 << 20 }), /need \d+ bytes/);
  assert.equal(SharedMemory.exists(name), false);

  const m = SharedMap.create(name, { capacity: 8, maxKeyBytes: 16, maxValueBytes: 16, eviction: 'lru', ttl: 1000 });
  t.after(() => m.close());
  assert.throws(() => SharedMap.open(name, { capacity: 9 }), { code: 'IPC_ERR_INCOMPATIBLE', message: /capacity is 8, expected 9/ });
  assert.throws(() => SharedMap.openOrCreate(name, { capacity: 8, maxKeyBytes: 17 }), { code: 'IPC_ERR_INCOMPATIBLE' });
  assert.throws(() => SharedMap.openOrCreate(name, { capacity: 8, maxValueBytes: 17 }), { code: 'IPC_ERR_INCOMPATIBLE' });
  assert.throws(() => SharedMap.openOrCreate(name, { capacity: 8, eviction: 'none' }), { code: 'IPC_ERR_INCOMPATIBLE' });
  assert.throws(() => SharedMap.openOrCreate(name, { capacity: 8, ttl: 999 }), { code: 'IPC_ERR_INCOMPATIBLE' });

  // Another kind under the name, and a map whose geometry was corrupted.
  const q = named(t, 'q');
  Queue.create(q, { capacity: 2 }).close();
  assert.throws(() => SharedMap.open(q), { code: 'IPC_ERR_INCOMPATIBLE', message: /kind is Queue, expected Map/ });
  const raw = SharedMemory.open(name);
  t.after(() => raw.close());
  const i32 = new Int32Array(raw.buffer);
  i32[64 / 4] = 9; // capacity
  assert.throws(() => SharedMap.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /bucketCount 8 does not fit capacity 9/ });
  i32[64 / 4] = 7;
  assert.throws(() => SharedMap.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /need \d+ bytes, the segment has/ });
  i32[64 / 4] = 8;
  i32[84 / 4] += 8; // entryBytes
  assert.throws(() => SharedMap.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /entryBytes/ });
  i32[84 / 4] -= 8;
  i32[88 / 4] = 6; // flags
  assert.throws(() => SharedMap.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /flags/ });
  i32[88 / 4] = 1;
  SharedMap.open(name).close();
});

test('get / set / has / delete / size, keys as UTF-8, and the limits', (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 50, maxKeyBytes: 8, maxValueBytes: 10 });
  t.after(() => m.close());
  assert.equal(m.get('a'), undefined);
  assert.equal(m.has('a'), false);
  assert.equal(m.set('a', bytes(1)), m);
  assert.deepEqual([...m.get('a')], [1]);
  // get returns a private copy: changing it changes nothing in the map.
  m.get('a')[0] = 99;
  assert.deepEqual([...m.get('a')], [1]);
  m.set('a', bytes(2, 2));
  m.set('a', new Uint8Array(0));
  assert.deepEqual([...m.get('a')], []);
  assert.equal(m.has('a'), true);
  assert.equal(m.size, 1);
  assert.equal(m.delete('a'), true);
  assert.equal(m.delete('a'), false);
  assert.equal(m.get('a'), undefined);
  assert.equal(m.size, 0);

  // Keys are compared as UTF-8 bytes, up to maxKeyBytes (8 here).
  m.set('', bytes(0));
  m.set('12345678', bytes(8));
  m.set('é€', bytes(5)); // 2 + 3 bytes
  m.set('😀😀', bytes(4)); // 4 + 4 bytes: exactly the limit
  assert.deepEqual([...m.get('')], [0]);
  assert.deepEqual([...m.get('12345678')], [8]);
  assert.deepEqual([...m.get('é€')], [5]);
  assert.deepEqual([...m.get('😀😀')], [4]);
  assert.equal(m.get('e€'), undefined);
  assert.deepEqual(new Set(m.keys()), new Set(['', '12345678', 'é€', '😀😀']));
  const tooLong = (fn) => expectCode(fn, 'IPC_ERR_MESSAGE_TOO_LARGE');
  return Promise.all([
    tooLong(() => m.set('123456789', bytes(1))),
    tooLong(() => m.set('😀😀a', bytes(1))),
    tooLong(() => m.set('ok', new Uint8Array(11))),
    tooLong(() => m.update('123456789', () => bytes(1))),
  ]).then(() => {
    // Nothing changed, and reads of a key that cannot be stored simply miss.
    assert.equal(m.get('ok'), undefined);
    assert.equal(m.get('123456789'), undefined);
    assert.equal(m.has('😀😀a'), false);
    assert.equal(m.delete('123456789'), false);
    assert.equal(m.size, 4);
    assert.throws(() => m.get(1), TypeError);
    assert.throws(() => m.set(null, bytes(1)), TypeError);
    assert.throws(() => m.has({}), TypeError);
    assert.throws(() => m.delete(undefined), TypeError);
    assert.throws(() => m.set('x', 'text'), /codec 'bytes' sends Uint8Array/);
    assert.throws(() => m.set('x', bytes(1), { ttl: -1 }), RangeError);
    assert.throws(() => m.set('x', bytes(1), { tll: 5 }), /unknown option 'tll'/);
    assert.equal(m.has('x'), false);
  });
});

test('codecs decide the value type; a value the codec cannot decode is IPC_ERR_PROTOCOL', (t) => {
  const name = named(t);
  const json = SharedMap.create(name, { capacity: 10, codec: 'json' });
  t.after(() => json.close());
  json.set('o', { a: [1, 'two'] });
  assert.deepEqual(json.get('o'), { a: [1, 'two'] });
  assert.throws(() => json.set('u', undefined), /cannot encode/);
  const msgpack = SharedMap.open(name, { codec: 'msgpack' });
  t.after(() => msgpack.close());
  msgpack.set('m', { n: 1 });
  assert.deepEqual(msgpack.get('m'), { n: 1 });
  // The codec is per handle: a msgpack value read as JSON is a protocol error, not a crash.
  assert.throws(() => json.get('m'), { code: 'IPC_ERR_PROTOCOL' });
  const structured = SharedMap.open(name, { codec: 'structured' });
  t.after(() => structured.close());
  structured.set('s', new Map([[1, new Date(0)]]));
  assert.deepEqual(structured.get('s'), new Map([[1, new Date(0)]]));
  const upper = SharedMap.open(name, {
    codec: { name: 'upper', encode: (s) => new TextEncoder().encode(s.toUpperCase()), decode: (b) => new TextDecoder().decode(b) },
  });
  t.after(() => upper.close());
  upper.set('t', 'hello');
  assert.equal(upper.get('t'), 'HELLO');
  assert.deepEqual(new Map(upper.entries()).get('t'), 'HELLO');
});

test('increment and update are read-modify-writes of one key', (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 10, codec: 'json', maxValueBytes: 64 });
  t.after(() => m.close());
  assert.equal(m.increment('n'), 1);
  assert.equal(m.increment('n', 41), 42);
  assert.equal(m.increment('n', -2.5), 39.5);
  assert.equal(m.get('n'), 39.5);
  m.set('s', 'text');
  assert.throws(() => m.increment('s'), /is not a number/);
  assert.equal(m.get('s'), 'text');
  assert.throws(() => m.increment('n', NaN), TypeError);
  assert.throws(() => m.increment('n', '1'), TypeError);

  assert.deepEqual(m.update('u', (old) => ({ seen: old === undefined })), { seen: true });
  assert.deepEqual(m.update('u', (old) => ({ ...old, again: true })), { seen: true, again: true });
  assert.equal(m.update('u', () => undefined), undefined);
  assert.equal(m.has('u'), false);
  assert.equal(m.update('never', () => undefined), undefined);
  assert.equal(m.has('never'), false);
  // fn throws: nothing changes, and the lock is released (the next write goes through).
  m.set('k', 1);
  assert.throws(() => m.update('k', () => {
    throw new Error('no');
  }), /no/);
  assert.equal(m.get('k'), 1);
  m.set('k', 2);
  // Inside fn: reads of any key are fine; writes to any map are IPC_ERR_DEADLOCK.
  const other = SharedMap.open(name, { codec: 'json' });
  t.after(() => other.close());
  m.update('k', (old) => {
    assert.equal(m.get('n'), 39.5);
    assert.equal(other.get('k'), 2);
    for (const write of [() => m.set('z', 1), () => other.set('k', 3), () => m.delete('n'), () => m.increment('n'), () => m.update('n', (x) => x), () => m.clear()]) {
      assert.throws(write, { code: 'IPC_ERR_DEADLOCK' });
    }
    return old + 1;
  });
  assert.equal(m.get('k'), 3);
  assert.throws(() => m.update('k', 'fn'), TypeError);
  // A value over maxValueBytes from fn: nothing changes.
  assert.throws(() => m.update('k', () => 'x'.repeat(100)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.equal(m.get('k'), 3);
  const raw = SharedMap.open(name);
  t.after(() => raw.close());
  assert.throws(() => raw.increment('n'), /needs a codec that carries numbers/);
  assert.deepEqual([...raw.update('b', () => bytes(7))], [7]);
});

test('ttl: expired entries are never returned and their space is reused', async (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 4, codec: 'json', maxValueBytes: 32 });
  t.after(() => m.close());
  m.set('short', 1, { ttl: 20 });
  m.set('long', 2, { ttl: 60_000 });
  m.set('forever', 3);
  m.increment('counter', 1, { ttl: 20 });
  assert.equal(m.get('short'), 1);
  assert.equal(m.size, 4);
  await pastNow(25);
  assert.equal(m.get('short'), undefined);
  assert.equal(m.has('short'), false);
  assert.equal(m.get('counter'), undefined);
  assert.equal(m.get('long'), 2);
  assert.deepEqual(new Set(m.keys()), new Set(['long', 'forever']));
  // The map is full with eviction 'none', but two entries expired: their space takes new keys.
  m.set('a', 4);
  m.set('b', 5);
  assert.deepEqual(new Set(m.keys()), new Set(['long', 'forever', 'a', 'b']));
  assert.throws(() => m.set('c', 6), { code: 'IPC_ERR_FULL' });
  assert.equal(m.delete('nope'), false);
  // A counter re-created after expiry counts from 0 again; an existing one keeps its expiry.
  m.delete('a');
  assert.equal(m.increment('a', 1, { ttl: 20 }), 1);
  assert.equal(m.increment('a', 1, { ttl: 60_000 }), 2);
  await pastNow(25);
  assert.equal(m.get('a'), undefined);
  assert.equal(m.increment('a'), 1);
  // delete of an expired key says false, and frees its entry.
  m.set('b', 1, { ttl: 1 });
  await pastNow(3);
  assert.equal(m.delete('b'), false);
  m.set('c', 6);
  assert.equal(m.size, 4);
  assert.ok(details(name).expiredReclaimed >= 2);

  const withDefault = named(t, 'ttl');
  const d = SharedMap.create(withDefault, { capacity: 4, codec: 'json', ttl: 20 });
  t.after(() => d.close());
  d.set('x', 1);
  d.set('y', 2, { ttl: Infinity });
  await pastNow(25);
  assert.equal(d.get('x'), undefined);
  assert.equal(d.get('y'), 2);
});

test("eviction 'none': IPC_ERR_FULL at exactly capacity; 'lru': the least recently used go first", (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 200, maxValueBytes: 8 });
  t.after(() => m.close());
  for (let i = 0; i < 200; i++) m.set(`k${i}`, bytes(i & 255));
  assert.equal(m.size, 200);
  assert.throws(() => m.set('one-more', bytes(1)), { code: 'IPC_ERR_FULL' });
  // Overwriting needs no room; a delete makes room for exactly one.
  m.set('k5', bytes(5, 5));
  m.delete('k7');
  m.set('one-more', bytes(1));
  assert.throws(() => m.set('two-more', bytes(1)), { code: 'IPC_ERR_FULL' });
  assert.equal(m.size, 200);

  const lruName = named(t, 'lru');
  const lru = SharedMap.create(lruName, { capacity: 1000, maxValueBytes: 8, eviction: 'lru' });
  t.after(() => lru.close());
  const hot = [];
  for (let i = 0; i < 100; i++) hot.push(`hot${i}`);
  for (const k of hot) lru.set(k, bytes(1));
  // A stream of 20 000 new keys through a map of 1000, reading the hot keys all along.
  for (let i = 0; i < 20_000; i++) {
    lru.set(`cold${i}`, bytes(2));
    lru.get(hot[i % hot.length]);
    assert.ok(lru.size <= 1000);
  }
  const hotLeft = hot.filter((k) => lru.has(k)).length;
  const coldLeft = [...lru.keys()].filter((k) => k.startsWith('cold')).length;
  assert.equal(hotLeft, hot.length, 'every key read between two sweeps of the CLOCK hand survives');
  assert.ok(coldLeft > 700, `the map stays nearly full (${coldLeft} cold keys left)`);
  assert.ok(details(lruName).evictions >= 19_000);
});

test('clear, keys, entries, values and iteration', (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 300, codec: 'msgpack', maxValueBytes: 32 });
  t.after(() => m.close());
  const want = new Map();
  for (let i = 0; i < 300; i++) want.set(`key-${i}`, { i });
  for (const [k, v] of want) m.set(k, v);
  assert.deepEqual(new Map(m), want);
  assert.deepEqual(new Map(m.entries()), want);
  assert.deepEqual(new Set(m.keys()), new Set(want.keys()));
  assert.equal([...m.values()].length, 300);
  // Writes while iterating do not break the iteration (weakly consistent, never locks).
  let seen = 0;
  for (const [k] of m) {
    m.delete(k);
    if (seen++ % 2 === 0) m.set(`new-${seen}`, { seen });
    if (seen > 200) break;
  }
  m.clear();
  assert.equal(m.size, 0);
  assert.deepEqual([...m], []);
  for (let i = 0; i < 300; i++) m.set(`again-${i}`, i); // every entry is usable again
  assert.equal(m.size, 300);
});

test('close, dispose and use after close', (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 4 });
  m.close();
  m.close();
  assert.equal(m.closed, true);
  for (const use of [() => m.get('a'), () => m.set('a', bytes(1)), () => m.has('a'), () => m.delete('a'), () => m.size, () => m.clear(), () => [...m.keys()], () => m.update('a', () => undefined)]) {
    assert.throws(use, { code: 'IPC_ERR_CLOSED' });
  }
  const d = SharedMap.open(name);
  d.set('a', bytes(1));
  assert.equal(typeof d[Symbol.dispose], 'function');
  d[Symbol.dispose]();
  assert.equal(d.closed, true);
  const again = SharedMap.open(name);
  t.after(() => again.close());
  assert.equal(again.size, 1);
});

test('inspect shows entries, capacity, bytes per entry and the stripe locks', async (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 1000, maxKeyBytes: 64, maxValueBytes: 64, eviction: 'lru', ttl: 60_000 });
  t.after(() => m.close());
  for (let i = 0; i < 10; i++) m.set(`k${i}`, bytes(i));
  const d = details(name);
  assert.deepEqual(
    { entries: d.entries, capacity: d.capacity, eviction: d.eviction, ttl: d.ttl, locksHeld: d.locksHeld, stripes: d.stripes },
    { entries: 10, capacity: 1000, eviction: 'lru', ttl: 60_000, locksHeld: 0, stripes: 1024 },
  );
  assert.equal(d.bytesPerEntry, Math.round((m.byteLength / 1000) * 10) / 10);
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, [path.join(here, '..', 'bin', 'interprocess.js'), 'inspect', name, '--json'], (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  const shown = JSON.parse(out);
  assert.equal(shown.kind, 'Map');
  assert.equal(shown.details.entries, 10);
  assert.equal(shown.details.bytesPerEntry, d.bytesPerEntry);
});

test('worker threads: each thread owns stripe locks on its own, increments add up exactly', async (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 64, codec: 'json', maxValueBytes: 32 });
  t.after(() => m.close());
  const rounds = 3000;
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { SharedMap } = require(workerData.lib);
    const m = SharedMap.open(workerData.name, { codec: 'json' });
    for (let i = 0; i < workerData.rounds; i++) {
      m.increment('shared');
      m.update('list-' + (i % 4), (old) => (old ?? 0) + 1);
    }
    m.close();
    parentPort.postMessage('done');
  `;
  const lib = new URL('../dist/cjs/index.js', import.meta.url).pathname;
  const workers = [0, 1].map(() => new Worker(source, { eval: true, workerData: { name, lib, rounds } }));
  const done = workers.map((w) => new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); }));
  for (let i = 0; i < rounds; i++) m.increment('shared');
  await watchdog(Promise.all(done), 60_000, 'workers');
  assert.equal(m.get('shared'), 3 * rounds);
  let listed = 0;
  for (let k = 0; k < 4; k++) listed += m.get(`list-${k}`);
  assert.equal(listed, 2 * rounds);
});

test('a corrupt entry is IPC_ERR_INCOMPATIBLE, never an out-of-bounds read', (t) => {
  const name = named(t);
  const m = SharedMap.create(name, { capacity: 4, maxKeyBytes: 8, maxValueBytes: 8 });
  t.after(() => m.close());
  m.set('a', bytes(1, 2));
  const raw = SharedMemory.open(name);
  t.after(() => raw.close());
  const i32 = new Int32Array(raw.buffer);
  const entries = i32[112 / 4];
  const entryBytes = i32[84 / 4];
  let base = -1;
  for (let e = 0; e < 4; e++) if (i32[(entries + e * entryBytes) / 4 + 1] !== 0) base = (entries + e * entryBytes) / 4;
  const current = i32[base] & 1;
  // The current buffer's length word: 32-byte entry header, 8 key bytes, 16 + 8 per buffer.
  const lengthWord = base + (32 + 8 + current * 24 + 8) / 4;
  assert.equal(i32[lengthWord], 2);
  i32[lengthWord] = 1 << 20;
  assert.throws(() => m.get('a'), { code: 'IPC_ERR_INCOMPATIBLE', message: /corrupt entry/ });
  assert.throws(() => [...m.entries()], { code: 'IPC_ERR_INCOMPATIBLE' });
  i32[lengthWord] = 2;
  assert.deepEqual([...m.get('a')], [1, 2]);
});
