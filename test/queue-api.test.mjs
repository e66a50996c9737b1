// Queue in one process: lifecycle, every error code it can produce, codecs, zero-copy paths,
// timeouts, aborts, close, iteration, and worker threads sharing a queue by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { Queue, SharedMemory } from 'interprocess';
import { LONG_TIMEOUTS, expectCode, receiveSyncAfterLongWait, settlesAfterLongWait, uniqueName, watchdog } from './helpers.mjs';

const require = createRequire(import.meta.url);

function named(t, tag = 'q') {
  const name = uniqueName(tag);
  t.after(() => Queue.remove(name));
  return name;
}

const bytes = (...values) => Uint8Array.from(values);

test('create / open / openOrCreate / remove and the geometry', (t) => {
  const name = named(t);
  const q = Queue.create(name, { byteLength: 1 << 20 });
  t.after(() => q.close());
  // 1 MiB less 512 + 64 * 64 bytes of header and claims table: 4112-byte slots fit 253 times,
  // rounded down to 128 slots widened to 8144 bytes.
  assert.equal(q.capacity, 128);
  assert.equal(q.maxMessageSize, 8128);
  assert.equal(q.name, name);
  const s = q.stats();
  assert.deepEqual(
    { byteLength: s.byteLength, depth: s.depth, skippedRecords: s.skippedRecords, reclaimedSlots: s.reclaimedSlots },
    { byteLength: 1 << 20, depth: 0, skippedRecords: 0, reclaimedSlots: 0 },
  );
  const r = Queue.open(name);
  t.after(() => r.close());
  assert.equal(r.capacity, 128);
  const o = Queue.openOrCreate(name, { byteLength: 1 << 20 });
  t.after(() => o.close());
  assert.ok(q.trySend(bytes(1, 2, 3)));
  assert.deepEqual([...o.tryReceive()], [1, 2, 3]);
  assert.throws(() => Queue.create(name, { byteLength: 1 << 20 }), { code: 'IPC_ERR_EXISTS' });
  assert.equal(Queue.remove(name), true);
  assert.equal(Queue.remove(name), false);
  assert.throws(() => Queue.open(name), { code: 'IPC_ERR_NOT_FOUND' });
  // Handles opened before the remove keep working.
  assert.ok(q.trySend(bytes(4)));
  assert.deepEqual([...r.tryReceive()], [4]);

  const c = named(t, 'cap');
  const qc = Queue.create(c, { capacity: 8, maxMessageSize: 100 });
  t.after(() => qc.close());
  assert.equal(qc.capacity, 8);
  assert.equal(qc.maxMessageSize, 100);
  assert.equal(qc.stats().byteLength, 512 + 64 * 64 + 8 * 128);
  qc.trySend(bytes(1));
  // What `interprocess ls` shows, read without a handle.
  const { describeQueue } = require('../dist/cjs/queue/layout.js');
  const raw = SharedMemory.open(c);
  t.after(() => raw.close());
  assert.deepEqual(describeQueue(raw.buffer), {
    capacity: 8, slotSize: 112, maxMessageSize: 100, depth: 1, handles: 1, maxHandles: 64, leased: 0, skippedRecords: 0, reclaimedSlots: 0, redelivered: 0,
    sleepingReceivers: 0, sleepingSenders: 0,
  });
});

test('bad names, options and geometry are refused by name', (t) => {
  assert.throws(() => Queue.create('bad/name', { capacity: 4 }), { code: 'IPC_ERR_INVALID_NAME' });
  const name = uniqueName('opts');
  assert.throws(() => Queue.create(name, { capacity: 4, colour: 'red' }), { name: 'TypeError', message: /unknown option 'colour'/ });
  assert.throws(() => Queue.create(name, {}), { name: 'TypeError', message: /byteLength/ });
  assert.throws(() => Queue.create(name, { capacity: 6 }), { name: 'RangeError', message: /power of two/ });
  assert.throws(() => Queue.create(name, { byteLength: 600, maxMessageSize: 64 }), { name: 'RangeError', message: /too small/ });
  assert.throws(() => Queue.create(name, { capacity: 4, maxMessageSize: 0 }), { name: 'RangeError', message: /maxMessageSize/ });
  assert.throws(() => Queue.create(name, { capacity: 4, wait: 'nap' }), { name: 'TypeError', message: /wait must be/ });
  assert.throws(() => Queue.create(name, { capacity: 4, spinTime: -1 }), { name: 'RangeError', message: /spinTime/ });
  assert.throws(() => Queue.create(name, { capacity: 4, stallTimeout: 0 }), { name: 'RangeError', message: /stallTimeout/ });
  assert.throws(() => Queue.create(name, { capacity: 4, codec: 'yaml' }), { name: 'TypeError', message: /unknown codec/ });
  assert.throws(() => Queue.create(name, { capacity: 8, byteLength: 1000 }), { name: 'RangeError', message: /cannot hold 8 slots/ });
  assert.equal(SharedMemory.exists(name), false, 'a refused create leaves nothing behind');
});

test('wrong kind, version, geometry or size of segment is IPC_ERR_INCOMPATIBLE', (t) => {
  const name = named(t, 'incompat');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 64 });
  t.after(() => q.close());
  const raw = SharedMemory.open(name);
  t.after(() => raw.close());
  const dv = new DataView(raw.buffer);
  dv.setUint32(4, 1, true); // kind = Mutex
  assert.throws(() => Queue.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /kind is Mutex, expected Queue/ });
  dv.setUint32(4, 6, true);
  dv.setUint32(8, 99, true);
  assert.throws(() => Queue.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /version is 99/ });
  // Version 2 (before spans): its readers would take a span's first slot for a whole message.
  dv.setUint32(8, 2, true);
  assert.throws(() => Queue.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /version is 2, this library reads version 3/ });
  dv.setUint32(8, 3, true);
  dv.setUint32(64, 3, true); // capacity not a power of two
  assert.throws(() => Queue.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /capacity 3/ });
  dv.setUint32(64, 1 << 20, true); // slots beyond the end of the segment
  assert.throws(() => Queue.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /do not fit/ });
  dv.setUint32(64, 4, true);
  dv.setUint32(72, 5000, true); // maxMessageSize larger than a slot
  assert.throws(() => Queue.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /maxMessageSize 5000/ });
  dv.setUint32(72, 64, true);
  assert.throws(() => Queue.open(name, { maxMessageSize: 65 }), { code: 'IPC_ERR_INCOMPATIBLE', message: /maxMessageSize is 64, expected 65/ });
  assert.throws(() => Queue.openOrCreate(name, { capacity: 8, maxMessageSize: 64 }), { code: 'IPC_ERR_INCOMPATIBLE' });
  Queue.open(name).close(); // restored: opens again

  const plain = named(t, 'plain');
  new Uint8Array(SharedMemory.create(plain, { byteLength: 4096 }).buffer).fill(7);
  assert.throws(() => Queue.open(plain), { code: 'IPC_ERR_INCOMPATIBLE', message: /magic/ });
});

test('corrupted cursors or sequence words never hang a call or read out of bounds', async (t) => {
  const name = named(t, 'corrupt');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 8 });
  t.after(() => q.close());
  const raw = SharedMemory.open(name);
  t.after(() => raw.close());
  const i32 = new Int32Array(raw.buffer);
  const slot = (i) => i32[76 / 4] / 4 + i * (i32[68 / 4] / 4);
  // A sequence word ahead of both cursors: send reports full, receive reports empty.
  i32[slot(0)] = 1000;
  assert.equal(q.trySend(bytes(1)), false);
  assert.equal(q.tryReceive(), undefined);
  assert.throws(() => q.sendSync(bytes(1), { timeout: 20 }), { code: 'IPC_ERR_TIMEOUT' });
  await expectCode(() => q.receive({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
  // Random cursors and sequences, and lengths beyond the slot: only in-bounds reads, no hang.
  let random = 42;
  const rand = () => (random = (random * 1103515245 + 12345) % 2 ** 31);
  for (let round = 0; round < 500; round++) {
    i32[128 / 4] = rand(); // tail
    i32[192 / 4] = rand(); // head
    for (let i = 0; i < 4; i++) {
      i32[slot(i)] = round % 3 === 0 ? rand() : (i32[192 / 4] + 1 + (rand() % 3)) | 0;
      i32[slot(i) + 2] = rand() % 3 === 0 ? rand() : rand() % 16;
    }
    q.trySend(bytes(round & 255));
    const m = q.tryReceive();
    if (m !== undefined) assert.ok(m.byteLength <= 8);
    q.tryReceiveMany(4);
  }
});

test('full, empty, too large: try forms report, nothing changes', (t) => {
  const name = named(t, 'full');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 8 });
  t.after(() => q.close());
  assert.equal(q.tryReceive(), undefined);
  for (let i = 0; i < 4; i++) assert.equal(q.trySend(bytes(i)), true);
  assert.equal(q.trySend(bytes(9)), false);
  assert.equal(q.stats().depth, 4);
  assert.throws(() => q.trySend(new Uint8Array(9)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.throws(() => q.sendSync(new Uint8Array(9)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.throws(() => q.trySendWith(9, () => {}), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.throws(() => q.trySend('text'), { name: 'TypeError', message: /Uint8Array/ });
  const before = q.stats();
  assert.equal(before.sendPosition, 4);
  for (let i = 0; i < 4; i++) assert.deepEqual([...q.tryReceive()], [i]);
  assert.equal(q.tryReceive(), undefined);
  const after = q.stats();
  assert.equal(after.receivePosition, 4);
  assert.equal(after.depth, 0);
  // Received bytes are plain Uint8Arrays of their own, small or large.
  const big = named(t, 'big');
  const b = Queue.create(big, { capacity: 2, maxMessageSize: 300_000 });
  t.after(() => b.close());
  const payload = new Uint8Array(300_000).map((_, i) => i & 255);
  b.trySend(payload);
  b.trySend(payload.subarray(0, 10));
  for (const got of [b.tryReceive(), b.tryReceive()]) {
    assert.equal(Object.getPrototypeOf(got), Uint8Array.prototype);
    assert.equal(got.byteOffset, 0);
    assert.equal(got.buffer.byteLength, got.byteLength);
    assert.ok(!(got.buffer instanceof SharedArrayBuffer));
    assert.deepEqual(got, payload.subarray(0, got.byteLength));
  }
  // An empty message is a message.
  assert.ok(q.trySend(new Uint8Array(0)));
  assert.equal(q.tryReceive().byteLength, 0);
});

test('received copies from 65 B to 4 KiB (the receive arena) stay private and intact, also when one is transferred', async (t) => {
  const name = named(t, 'arena');
  const q = Queue.create(name, { capacity: 64, maxMessageSize: 5000 });
  t.after(() => q.close());
  // Sizes on both sides of the arena's bounds, enough bytes to fill several 64 KiB chunks.
  const sizes = [];
  for (let i = 0; sizes.length < 200; i++) sizes.push([64, 65, 100, 1000, 4095, 4096, 4097, 3000][i % 8]);
  const fill = (size, seq) => new Uint8Array(size).map((_, k) => (seq * 31 + k) & 255);
  const kept = [];
  for (let seq = 0; seq < sizes.length; seq++) {
    assert.ok(q.trySend(fill(sizes[seq], seq)));
    // Receive in between, so every copy is carved while earlier ones are still held.
    const got = seq % 3 === 0 ? q.tryReceiveMany(64) : [q.tryReceive()];
    kept.push(...got);
  }
  kept.push(...q.tryReceiveMany(64));
  assert.equal(kept.length, sizes.length);
  // Nothing received later overwrote anything received earlier.
  for (let seq = 0; seq < sizes.length; seq++) {
    assert.equal(Object.getPrototypeOf(kept[seq]), Uint8Array.prototype);
    assert.ok(!(kept[seq].buffer instanceof SharedArrayBuffer));
    assert.deepEqual(kept[seq], fill(sizes[seq], seq), `message ${seq}`);
  }
  // A caller that writes into its copy changes only its copy.
  kept[1].fill(0xee);
  assert.deepEqual(kept[2], fill(sizes[2], 2));
  // A transfer list naming one message's buffer never touches another message: Node 20 copies
  // the untransferable chunk it was carved from, later Nodes throw DataCloneError (as for a
  // pooled Buffer); a copy (slice) transfers on every Node.
  const refuses = Number(process.versions.node.split('.')[0]) >= 21;
  for (const viaPort of [false, true]) {
    assert.ok(q.trySend(fill(1000, 7)));
    assert.ok(q.trySend(fill(1000, 8)));
    const latest = q.tryReceive();
    const neighbour = q.tryReceive();
    assert.ok(latest.buffer.byteLength > latest.byteLength, 'carved from a chunk');
    const transfer = async (m) => {
      if (!viaPort) return structuredClone(m, { transfer: [m.buffer] });
      const { port1, port2 } = new MessageChannel();
      try {
        const got = new Promise((resolve) => port2.once('message', resolve));
        port1.postMessage(m, [m.buffer]);
        return await got;
      } finally {
        port1.close();
      }
    };
    if (refuses) await assert.rejects(transfer(latest), { name: 'DataCloneError' });
    else assert.deepEqual(new Uint8Array(await transfer(latest)), fill(1000, 7));
    assert.deepEqual(latest, fill(1000, 7), refuses ? 'refused, unchanged' : 'copied, unchanged');
    assert.deepEqual(neighbour, fill(1000, 8));
    // What to do instead: transfer a copy.
    const own = latest.slice();
    assert.deepEqual(new Uint8Array(await transfer(own)), fill(1000, 7));
    assert.equal(own.byteLength, 0, 'the copy moved');
  }
  for (let seq = 0; seq < 40; seq++) {
    assert.ok(q.trySend(fill(1000, seq)));
    assert.deepEqual(q.tryReceive(), fill(1000, seq));
  }
});

test('received copies from 8 KiB on (the addon pool) are private, exact at the bounds, and transfer like a fresh buffer', async (t) => {
  const name = named(t, 'pooled');
  const q = Queue.create(name, { capacity: 8, maxMessageSize: 140000 });
  t.after(() => q.close());
  // Both sides of LARGE_RECEIVE (8 KiB, src/os/copy.ts) and of the pool's power-of-two blocks.
  const sizes = [8191, 8192, 8193, 16384, 16385, 65536, 131071, 8192, 5000, 32769];
  const fill = (size, seq) => new Uint8Array(size).map((_, k) => (seq * 131 + k * 7 + (k >> 11)) & 255);
  const kept = [];
  for (let seq = 0; seq < sizes.length; seq++) {
    assert.ok(q.trySend(fill(sizes[seq], seq)));
    kept.push(seq % 2 === 0 ? q.tryReceive() : q.receiveSync());
  }
  for (let seq = 0; seq < sizes.length; seq++) {
    const m = kept[seq];
    assert.equal(Object.getPrototypeOf(m), Uint8Array.prototype);
    assert.ok(!(m.buffer instanceof SharedArrayBuffer));
    // A buffer of its own, exactly the message: nothing of the block beyond it is reachable.
    assert.equal(m.byteOffset, 0);
    assert.equal(m.buffer.byteLength, sizes[seq]);
    assert.deepEqual(m, fill(sizes[seq], seq), `message ${seq} (${sizes[seq]} B)`);
  }
  kept[1].fill(0);
  assert.deepEqual(kept[7], fill(sizes[7], 7), 'a write into one copy changes no other');
  // Each is its own ArrayBuffer, so a transfer moves it and touches no other message.
  const moved = structuredClone(kept[5], { transfer: [kept[5].buffer] });
  assert.equal(kept[5].byteLength, 0, 'detached');
  assert.deepEqual(new Uint8Array(moved), fill(sizes[5], 5));
  assert.deepEqual(kept[6], fill(sizes[6], 6));
  assert.deepEqual(await new Promise((resolve) => {
    const { port1, port2 } = new MessageChannel();
    port2.once('message', (m) => {
      port1.close();
      resolve(m);
    });
    port1.postMessage(kept[2], [kept[2].buffer]);
  }), fill(sizes[2], 2));
  // Later receives reuse returned blocks, never a block still held.
  for (let seq = 20; seq < 120; seq++) {
    assert.ok(q.trySend(fill(65536, seq)));
    assert.deepEqual(q.tryReceive(), fill(65536, seq));
  }
  for (const seq of [0, 3, 4, 6, 9]) assert.deepEqual(kept[seq], fill(sizes[seq], seq), `held message ${seq}`);
});

test('the send position wraps past 2^32 without losing order', (t) => {
  const name = named(t, 'wrap');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 8 });
  t.after(() => q.close());
  // Start every cursor and slot sequence just below 2^32, as after four billion messages.
  const raw = SharedMemory.open(name);
  t.after(() => raw.close());
  const i32 = new Int32Array(raw.buffer);
  const start = 2 ** 32 - 6;
  i32[128 / 4] = start | 0;
  i32[192 / 4] = start | 0;
  const slotInts = i32[68 / 4] / 4;
  for (let p = start; p < start + 4; p++) i32[i32[76 / 4] / 4 + (p & 3) * slotInts] = p | 0;
  const out = [];
  for (let i = 0; i < 20; i++) {
    assert.ok(q.trySend(bytes(i)));
    if (i % 3 === 2) while (true) { const m = q.tryReceive(); if (m === undefined) break; out.push(m[0]); }
  }
  for (let m = q.tryReceive(); m !== undefined; m = q.tryReceive()) out.push(m[0]);
  assert.deepEqual(out, Array.from({ length: 20 }, (_, i) => i));
  assert.equal(q.stats().sendPosition, (start + 20) % 2 ** 32);
});

test('codecs: json, structured, msgpack, custom; a bad frame is IPC_ERR_PROTOCOL', (t) => {
  const name = named(t, 'codec');
  const raw = Queue.create(name, { capacity: 8, maxMessageSize: 256 });
  t.after(() => raw.close());
  const json = Queue.open(name, { codec: 'json' });
  const structured = Queue.open(name, { codec: 'structured' });
  const msgpack = Queue.open(name, { codec: 'msgpack' });
  const custom = Queue.open(name, { codec: { encode: (s) => new TextEncoder().encode(s.toUpperCase()), decode: (b) => new TextDecoder().decode(b) } });
  t.after(() => [json, structured, msgpack, custom].forEach((q) => q.close()));
  json.trySend({ a: [1, 'x', null] });
  assert.deepEqual(json.tryReceive(), { a: [1, 'x', null] });
  const value = { m: new Map([[1, 'one']]), s: new Set([2]), d: new Date(5), b: 10n ** 20n, u: new Float64Array([1.5]) };
  structured.trySend(value);
  assert.deepEqual(structured.tryReceive(), value);
  msgpack.trySend({ id: 1, tags: ['a', 'b'], n: 1.25 });
  assert.deepEqual(msgpack.tryReceive(), { id: 1, tags: ['a', 'b'], n: 1.25 });
  custom.trySend('hello');
  assert.equal(custom.tryReceive(), 'HELLO');
  assert.throws(() => json.trySend({ big: 'x'.repeat(300) }), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.equal(raw.stats().depth, 0);
  raw.trySend(bytes(0x7b, 0x7b)); // '{{' is not JSON
  raw.trySend(bytes(0x31)); // '1' is
  assert.throws(() => json.tryReceive(), { code: 'IPC_ERR_PROTOCOL' });
  assert.equal(json.tryReceive(), 1, 'the bad message was consumed, the next one is intact');
});

test('zero-copy sendWith / receiveWith; a writer that throws sends nothing', async (t) => {
  const name = named(t, 'zc');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 64 });
  t.after(() => q.close());
  assert.ok(q.trySendWith(3, (view) => view.set([7, 8, 9])));
  assert.throws(() => q.trySendWith(5, () => { throw new Error('writer failed'); }), /writer failed/);
  await q.sendWith(1, (view) => { view[0] = 42; });
  q.sendWithSync(2, (view) => view.fill(5));
  const seen = [];
  assert.ok(q.tryReceiveWith((view) => seen.push([...view])));
  await q.receiveWith((view) => seen.push([...view]));
  q.receiveWithSync((view) => seen.push([...view]));
  assert.deepEqual(seen, [[7, 8, 9], [42], [5, 5]]);
  assert.equal(q.tryReceiveWith(() => assert.fail('empty')), false);
  assert.equal(q.stats().depth, 0);
  await expectCode(() => q.receiveWith(() => {}, { timeout: 5 }), 'IPC_ERR_TIMEOUT');
});

test('loans: copies carved from a reused buffer, never overwritten: detached before their memory is used again', async (t) => {
  const name = named(t, 'loan');
  const q = Queue.create(name, { capacity: 8, maxMessageSize: 1 << 17 });
  t.after(() => q.close());
  const fill = (size, seq) => new Uint8Array(size).map((_, k) => (seq * 31 + k) & 255);
  assert.equal(q.tryReceiveLoan(), undefined, 'empty');
  q.trySend(fill(100, 1));
  q.trySend(fill(40000, 2));
  q.trySend(fill(3, 3));
  const first = q.tryReceiveLoan();
  assert.equal(Object.getPrototypeOf(first), Uint8Array.prototype);
  assert.ok(!(first.buffer instanceof SharedArrayBuffer), 'private memory, not the slot');
  assert.deepEqual(first, fill(100, 1));
  // Loans are carved one after another from the buffer (64 KiB at least): the second goes after
  // the first (8-byte aligned), which keeps reading its own message.
  const second = q.receiveLoanSync();
  assert.equal(second.buffer, first.buffer);
  assert.equal(second.byteOffset, 104);
  assert.deepEqual(second, fill(40000, 2));
  assert.deepEqual(first, fill(100, 1), 'never overwritten');
  const third = await q.receiveLoan();
  assert.deepEqual(third, fill(3, 3));
  // releaseLoan detaches every view of the buffer: they read as empty, not as a later message.
  q.releaseLoan();
  for (const view of [first, second, third]) assert.equal(view.length, 0, 'releaseLoan detaches');
  assert.equal(first.buffer.byteLength, 0);
  q.releaseLoan(); // no loan out: nothing to do
  // A loan that does not fit in the rest of the buffer detaches it first (here the buffer also
  // grows to the next power of two, 128 KiB); the memory is reused, so no allocation per fill.
  q.trySend(fill(50000, 10));
  q.trySend(fill(100000, 11));
  const a = q.tryReceiveLoan();
  const b = q.tryReceiveLoan();
  assert.equal(a.length, 0, 'detached by the loan that did not fit');
  assert.deepEqual(b, fill(100000, 11));
  assert.equal(b.buffer.byteLength, 1 << 17);
  // Small loans share one detach per fill: 1024 loans of 64 B fill 64 KiB; every view reads its
  // own message until the loan that does not fit, which detaches them all.
  const small = Queue.open(name);
  t.after(() => small.close());
  const views = [];
  for (let i = 0; i < 2048; i++) {
    small.trySend(fill(64, i));
    views.push(small.tryReceiveLoan());
  }
  const detached = views.filter((v) => v.length === 0).length;
  for (const [i, v] of views.entries()) if (v.length !== 0) assert.deepEqual(v, fill(64, i), `loan ${i} reads its own message`);
  assert.ok(detached >= 1024 && detached < 2048, `${detached} of 2048 small loans detached`);
  assert.ok(views.slice(0, 1024).every((v) => v.length === 0), 'the first fill detached whole');
  small.releaseLoan();
  assert.ok(views.every((v) => v.length === 0));
  // A loan the user transfers away is theirs; the next loan gets a new buffer.
  q.trySend(fill(500, 4));
  q.trySend(fill(500, 5));
  const moved = q.tryReceiveLoan();
  const { port1, port2 } = new MessageChannel();
  const arrived = new Promise((resolve) => port2.once('message', resolve));
  port1.postMessage(moved, [moved.buffer]);
  assert.deepEqual(new Uint8Array(await arrived), fill(500, 4));
  port1.close();
  assert.deepEqual(q.tryReceiveLoan(), fill(500, 5));
  // A zero-length message right after the loan buffer was transferred away: an empty loan in a
  // new buffer (until stop 28 it threw: a view of the detached one).
  q.trySend(fill(8, 13));
  const away = q.tryReceiveLoan();
  const channel = new MessageChannel();
  channel.port1.postMessage(away, [away.buffer]);
  channel.port1.close();
  assert.equal(away.buffer.byteLength, 0);
  q.trySend(new Uint8Array(0));
  const empty = q.tryReceiveLoan();
  assert.equal(empty.length, 0);
  assert.ok(empty.buffer.byteLength > 0, 'a new buffer, not the transferred one');
  // A loan made untransferable cannot be detached: it is left to the user unchanged.
  const { markAsUntransferable } = await import('node:worker_threads');
  q.trySend(fill(64, 6));
  q.trySend(fill(64, 7));
  const kept = q.tryReceiveLoan();
  markAsUntransferable(kept.buffer);
  const next = q.tryReceiveLoan();
  assert.deepEqual(next, fill(64, 7));
  q.releaseLoan();
  assert.deepEqual(kept, fill(64, 6), 'never overwritten, never detached');
  assert.deepEqual(next, fill(64, 7), 'carved from the same buffer: the caller\'s too');
  q.trySend(fill(64, 12));
  const fresh = q.tryReceiveLoan();
  assert.notEqual(fresh.buffer, kept.buffer, 'the next loan takes a new buffer');
  assert.deepEqual(fresh, fill(64, 12));
  // Skip records (a writer that threw) are passed over; loans ignore the codec, as receiveWith does.
  assert.throws(() => q.trySendWith(4, () => { throw new Error('writer failed'); }), /writer failed/);
  const json = Queue.open(name, { codec: 'json' });
  t.after(() => json.close());
  json.trySend({ a: 1 });
  assert.equal(new TextDecoder().decode(json.tryReceiveLoan()), '{"a":1}');
  assert.equal(q.stats().depth, 0);
  // Waiting forms: timeout, abort, a message sent later.
  assert.throws(() => q.receiveLoanSync({ timeout: 5 }), { code: 'IPC_ERR_TIMEOUT' });
  await expectCode(() => q.receiveLoan({ timeout: 5 }), 'IPC_ERR_TIMEOUT');
  await expectCode(() => q.receiveLoan({ signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
  const later = q.receiveLoan({ timeout: 5000 });
  setImmediate(() => q.trySend(fill(10, 8)));
  assert.deepEqual(await watchdog(later, 6000, 'receiveLoan'), fill(10, 8));
  // close() ends the loan too, and every loan form then fails with IPC_ERR_CLOSED.
  q.trySend(fill(10, 9));
  const last = q.tryReceiveLoan();
  const pending = json.receiveLoan();
  json.close();
  await expectCode(() => pending, 'IPC_ERR_CLOSED');
  q.close();
  assert.equal(last.length, 0);
  assert.throws(() => q.tryReceiveLoan(), { code: 'IPC_ERR_CLOSED' });
  assert.throws(() => q.receiveLoanSync(), { code: 'IPC_ERR_CLOSED' });
  await expectCode(() => q.receiveLoan(), 'IPC_ERR_CLOSED');
  q.releaseLoan(); // harmless after close
});

test('large messages (copied by the addon from 64 KiB on) arrive byte-exact through every path', (t) => {
  const name = named(t, 'large');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 1 << 20 });
  t.after(() => q.close());
  const fill = (size, seq) => {
    const out = new Uint8Array(size);
    for (let k = 0; k < size; k++) out[k] = (seq * 131 + k * 7 + (k >> 11)) & 255;
    return out;
  };
  const sizes = [65535, 65536, 65537, 300001, 1 << 20];
  for (const [i, size] of sizes.entries()) {
    // A Buffer, and a view that does not start at its buffer's start, are sent as they are.
    const payload = i % 2 === 0 ? Buffer.from(fill(size, i)) : new Uint8Array(fill(size + 3, i).buffer, 3, size);
    const want = new Uint8Array(payload);
    assert.ok(q.trySend(payload));
    const got = q.tryReceive();
    assert.equal(got.byteLength, size);
    assert.ok(Buffer.from(got).equals(Buffer.from(want)), `plain ${size}`);
    q.sendManySync([want, want]);
    for (const m of q.tryReceiveMany(2)) assert.ok(Buffer.from(m).equals(Buffer.from(want)), `batch ${size}`);
    q.sendSync(want);
    assert.ok(Buffer.from(q.receiveLoanSync()).equals(Buffer.from(want)), `loan ${size}`);
  }
  // The addon's copy refuses what is not two Uint8Arrays of one length. (An addon built before
  // it existed, such as an old prebuild, has none: the queue then copies with set.)
  const { native } = require('../dist/cjs/os/native.js');
  const copyBytes = native().copyBytes;
  if (copyBytes === undefined) return t.diagnostic('this addon has no copyBytes');
  assert.throws(() => copyBytes(new Uint8Array(4), new Uint8Array(5)), RangeError);
  assert.throws(() => copyBytes(new Uint16Array(4), new Uint8Array(8)), TypeError);
  assert.throws(() => copyBytes(new Uint8Array(4)), TypeError);
  const target = new Uint8Array(4);
  copyBytes(target, new Uint8Array(new SharedArrayBuffer(4)).fill(9));
  assert.deepEqual([...target], [9, 9, 9, 9]);
  // Into shared memory from 256 KiB on, x86 copies either with ordinary or with streaming
  // stores, whichever this thread measures faster now, and tries the other now and then: each
  // way, whatever the alignment of either side and the length's tail, copies exactly the bytes
  // asked for, and not one byte around them.
  const shared = new Uint8Array(new SharedArrayBuffer((1 << 20) + 256));
  const { copyWays } = native();
  for (const [size, at, from] of [[262144, 0, 0], [262144 + 1, 1, 3], [300001, 63, 17], [(1 << 20) - 5, 64, 1], [1 << 20, 100, 0]]) {
    const source = fill(size + from, size).subarray(from);
    const ways = new Set();
    for (let copy = 0; copy < 1000 && ways.size < (copyWays === undefined ? 1 : 2); copy++) {
      const before = copyWays?.();
      shared.fill(0xee);
      copyBytes(shared.subarray(at, at + size), source);
      const after = copyWays?.();
      const way = after === undefined ? 'memmove' : after[1] > before[1] ? 'streaming' : 'ordinary';
      ways.add(way);
      assert.ok(Buffer.from(shared.subarray(at, at + size)).equals(Buffer.from(source)), `${size} bytes at ${at} (${way})`);
      assert.ok(shared.subarray(0, at).every((b) => b === 0xee) && shared.subarray(at + size).every((b) => b === 0xee), `${size} bytes at ${at} (${way}): nothing around`);
    }
    if (copyWays !== undefined) assert.deepEqual([...ways].sort(), ['ordinary', 'streaming'], `${size} bytes at ${at}: both ways tried`);
  }
  // Under 256 KiB no copy is timed or streamed.
  if (copyWays !== undefined) {
    const before = copyWays();
    copyBytes(shared.subarray(0, 262143), fill(262143, 262143));
    assert.deepEqual(copyWays().slice(0, 2), before.slice(0, 2));
  }
});

test('large received copies come from a pool of pre-faulted blocks that collected messages give back', async (t) => {
  // In a child with --expose-gc, so that the collections (and so the pool) are deterministic.
  const script = `
    const assert = require('node:assert/strict');
    const { Worker } = require('node:worker_threads');
    const { Queue } = require(${JSON.stringify(require.resolve('../dist/cjs/index.js'))});
    const { native } = require(${JSON.stringify(require.resolve('../dist/cjs/os/native.js'))});
    const { copyOut, copyOutPoolBytes } = native();
    if (copyOut === undefined) { console.log(JSON.stringify({ missing: true })); process.exit(0); }
    assert.throws(() => copyOut(new Uint16Array(4)), TypeError);
    assert.equal(copyOut(new Uint8Array(0)).byteLength, 0);
    (async () => {
    const q = Queue.create(process.argv[1], { capacity: 2, maxMessageSize: 1 << 20 });
    const seen = [];
    for (let round = 0; round < 3; round++) {
      for (const size of [300001, 1 << 20]) {
        const want = new Uint8Array(size);
        for (let k = 0; k < size; k++) want[k] = (round * 31 + k * 7 + (k >> 12)) & 255;
        q.sendSync(want);
        const got = q.receiveSync();
        // Exactly the message, though the block it lives in held an earlier one.
        assert.ok(Buffer.from(got).equals(Buffer.from(want)), 'round ' + round + ', ' + size + ' bytes');
        assert.equal(got.buffer.byteLength, size);
      }
      gc();
      // V8 frees array buffers on a sweeper thread: wait (up to 2 s) for both blocks.
      for (let k = 0; k < 200 && copyOutPoolBytes() < 3 << 19 && process.env.INTERPROCESS_RECEIVE_POOL_MB !== '0'; k++) {
        await new Promise((r) => setTimeout(r, 10));
        if (k % 20 === 19) gc();
      }
      seen.push(copyOutPoolBytes());
    }
    // A pooled copy is an ordinary ArrayBuffer: it moves to a worker and lives on there.
    q.sendSync(new Uint8Array(1 << 20).fill(5));
    const moved = q.receiveSync();
    const sum = await new Promise((resolve, reject) => {
      const w = new Worker('require("node:worker_threads").parentPort.once("message", (m) => { let s = 0; for (const b of m) s += b; require("node:worker_threads").parentPort.postMessage(s); })', { eval: true });
      w.once('message', (s) => { w.terminate(); resolve(s); });
      w.once('error', reject);
      w.postMessage(moved, [moved.buffer]);
    });
    assert.equal(moved.byteLength, 0); // detached here
    q.close();
    Queue.remove(process.argv[1]);
    console.log(JSON.stringify({ seen, sum }));
    })().catch((e) => { console.error(e); process.exit(1); });
  `;
  const run = (env) => {
    const name = named(t, 'pool');
    const out = execFileSync(process.execPath, ['--expose-gc', '-e', script, name], { env: { ...process.env, ...env }, encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop());
  };
  const on = run({});
  if (on.missing) return t.diagnostic('this addon has no copyOut (an old prebuild): the queue uses allocUnsafeSlow');
  assert.equal(on.sum, 5 * (1 << 20));
  // Collected messages' blocks (512 KiB and 1 MiB) came back to the pool after each round, and
  // were reused by the next: never reused, three rounds would leave 4.5 MiB. (Not exactly one
  // round's two blocks: a V8 that scans stacks conservatively may keep the last message of a
  // round alive until a later collection.)
  assert.ok(on.seen.every((bytes) => bytes > 0 && bytes <= 3 << 20), JSON.stringify(on.seen));
  const off = run({ INTERPROCESS_RECEIVE_POOL_MB: '0' });
  assert.deepEqual(off.seen, [0, 0, 0]);
  assert.equal(off.sum, 5 * (1 << 20));
});

test("the pool is refilled at V8's own pace for buffers: a stream of 1 MiB receives stays within ~2 semi-spaces of memory", (t) => {
  // No explicit gc() here: V8 collects young buffers once they hold twice the semi-space (fixed
  // at 16 MiB below), but looks only when its own allocator allocates one; copyOut makes it look
  // (native/copyout.cc, NudgeCollector). Without that, this loop grew the process by ~79 MiB
  // (collections every 64-100 MiB of messages); with it, by ~36 MiB (Node 20, 22, and 24 with
  // the flag below).
  const script = `
    const { Queue } = require(${JSON.stringify(require.resolve('../dist/cjs/index.js'))});
    const { native } = require(${JSON.stringify(require.resolve('../dist/cjs/os/native.js'))});
    if (native().copyOut === undefined) { console.log(JSON.stringify({ missing: true })); process.exit(0); }
    const q = Queue.create(process.argv[1], { capacity: 2, maxMessageSize: 1 << 20 });
    const m = new Uint8Array(1 << 20).fill(3);
    const rss = process.memoryUsage().rss;
    let pooled = 0;
    let sum = 0;
    for (let i = 0; i < 400; i++) {
      q.sendSync(m);
      sum += q.receiveSync()[i];
      pooled = Math.max(pooled, native().copyOutPoolBytes());
    }
    q.close();
    Queue.remove(process.argv[1]);
    console.log(JSON.stringify({ growth: process.memoryUsage().rss - rss, pooled, sum }));
  `;
  // Node 24's V8 takes the size of that check from its own flag (the young generation's limit,
  // larger by default: without it the nudge changes nothing there, ~80 MiB either way). Node
  // 26's has no such flag and its own pace (~78 MiB here): there only the pool's refill is checked.
  const flags = ['--max-semi-space-size=16'];
  const young = '--scavenger-max-new-space-capacity-mb=8';
  const hasYoung = spawnSync(process.execPath, [young, '-e', '0']).status === 0;
  if (hasYoung) flags.push(young);
  const paced = hasYoung || Number(process.versions.node.split('.')[0]) <= 22;
  const out = execFileSync(process.execPath, [...flags, '-e', script, named(t, 'pace')], { env: { ...process.env, INTERPROCESS_RECEIVE_POOL_MB: '' }, encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop());
  if (r.missing) return t.diagnostic('this addon has no copyOut (an old prebuild)');
  assert.equal(r.sum, 1200);
  assert.ok(r.pooled > 0, 'blocks came back while the loop ran, with no explicit collection');
  const grew = `the process grew by ${(r.growth / 2 ** 20).toFixed(0)} MiB for 400 MiB received`;
  if (!paced) return t.diagnostic(`${grew} (this V8 sets its own pace)`);
  assert.ok(r.growth < 56 << 20, grew);
});

for (const wait of ['spin', 'block', 'spin-then-block']) {
  test(`timeouts, aborts and waiting senders/receivers (wait: ${wait})`, async (t) => {
    const name = named(t, `wait-${wait}`);
    const q = Queue.create(name, { capacity: 2, maxMessageSize: 8, wait });
    t.after(() => q.close());
    assert.throws(() => q.receiveSync({ timeout: 10 }), { code: 'IPC_ERR_TIMEOUT' });
    await expectCode(() => q.receive({ timeout: 10 }), 'IPC_ERR_TIMEOUT');
    // A timeout shorter than the spin (20 µs), or none at all: the spin counts toward it.
    for (const timeout of [0, 0.005]) await expectCode(() => q.receive({ timeout }), 'IPC_ERR_TIMEOUT');
    const ac = new AbortController();
    const pending = q.receive({ signal: ac.signal });
    ac.abort(new Error('stop'));
    await expectCode(() => pending, 'IPC_ERR_ABORTED');
    await expectCode(() => q.receive({ signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
    // A waiting receive gets a message sent later.
    const later = q.receive({ timeout: 5000 });
    setImmediate(() => q.trySend(bytes(1)));
    assert.deepEqual([...(await watchdog(later, 6000, 'receive'))], [1]);
    // Backpressure: a full queue makes send wait until a receive makes room.
    q.trySend(bytes(2));
    q.trySend(bytes(3));
    assert.throws(() => q.sendSync(bytes(4), { timeout: 10 }), { code: 'IPC_ERR_TIMEOUT' });
    await expectCode(() => q.send(bytes(4), { timeout: 10 }), 'IPC_ERR_TIMEOUT');
    const blocked = q.send(bytes(4), { timeout: 5000 });
    setImmediate(() => q.tryReceive());
    await watchdog(blocked, 6000, 'send');
    assert.deepEqual([...q.tryReceive()], [3]);
    assert.deepEqual([...q.tryReceive()], [4]);
    const st = q.stats();
    assert.equal(st.sleepingReceivers, 0, 'every sleeper deregistered');
    assert.equal(st.sleepingSenders, 0);
    // Bad arguments reject (async methods never throw synchronously).
    const bad = q.receive({ timeout: -1 });
    await assert.rejects(bad, RangeError);
    await assert.rejects(q.send(bytes(1), { signal: 'no' }), TypeError);
  });
}

test('zero-copy views: right length and bytes when one slot carries messages of changing sizes', (t) => {
  const name = named(t, 'views');
  const q = Queue.create(name, { capacity: 2, maxMessageSize: 16 });
  t.after(() => q.close());
  const lengths = [3, 5, 3, 3, 16, 0, 7, 7, 1, 16];
  for (let i = 0; i < lengths.length; i++) {
    const n = lengths[i];
    assert.ok(q.trySendWith(n, (view) => {
      assert.equal(view.length, n);
      view.fill(i + 1);
    }));
    let seen;
    assert.ok(q.tryReceiveWith((view) => (seen = Array.from(view))));
    assert.deepEqual(seen, new Array(n).fill(i + 1), `message ${i}`);
  }
});

test('close: idempotent, pending operations reject IPC_ERR_CLOSED, iteration ends', async (t) => {
  const name = named(t, 'close');
  const q = Queue.create(name, { capacity: 2, maxMessageSize: 8 });
  const pending = q.receive();
  const sender = Queue.open(name);
  t.after(() => sender.close());
  sender.trySend(bytes(1));
  sender.trySend(bytes(2));
  assert.deepEqual([...(await pending)], [1]);
  const collected = [];
  const loop = (async () => {
    for await (const m of q) collected.push(m[0]);
  })();
  const blockedSend = sender.send(bytes(3));
  const blockedSend2 = sender.send(bytes(4));
  await watchdog(blockedSend, 5000, 'send');
  await watchdog(blockedSend2, 5000, 'send');
  q.close();
  q.close();
  await watchdog(loop, 5000, 'iteration end');
  assert.equal(q.closed, true);
  assert.deepEqual(collected.slice(0, 1), [2]);
  assert.throws(() => q.trySend(bytes(1)), { code: 'IPC_ERR_CLOSED' });
  assert.throws(() => q.tryReceive(), { code: 'IPC_ERR_CLOSED' });
  assert.throws(() => q.stats(), { code: 'IPC_ERR_CLOSED' });
  await expectCode(() => q.receive(), 'IPC_ERR_CLOSED');
  await expectCode(() => q.send(bytes(1)), 'IPC_ERR_CLOSED');
  // A send waiting on a full queue is rejected by close.
  const full = Queue.open(name);
  while (full.trySend(bytes(9)));
  const waiting = full.send(bytes(9));
  full.close();
  await expectCode(() => waiting, 'IPC_ERR_CLOSED');
  // Every message went to exactly one of the two receivers.
  const rest = [];
  for (let m = sender.tryReceive(); m !== undefined; m = sender.tryReceive()) rest.push(m[0]);
  assert.deepEqual([...collected, ...rest].filter((x) => x !== 9).sort(), [2, 3, 4]);
  const { [Symbol.dispose]: dispose } = Queue.open(name);
  assert.equal(typeof dispose, 'function');
});

test('a hundred concurrent async receives on one handle: each gets one message, no warnings', async (t) => {
  const name = named(t, 'many-waiters');
  const q = Queue.create(name, { capacity: 128, maxMessageSize: 8, wait: 'block' });
  t.after(() => q.close());
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const pending = Array.from({ length: 100 }, () => q.receive({ timeout: 20_000 }));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(q.stats().sleepingReceivers, 100);
  for (let i = 0; i < 100; i++) q.trySend(bytes(i));
  const got = (await watchdog(Promise.all(pending), 25_000, 'receives')).map((m) => m[0]).sort((a, b) => a - b);
  assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => i));
  assert.equal(q.stats().sleepingReceivers, 0);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(warnings.map(String), []);
});

test('worker threads share a queue by name: each message exactly once, every sleeper woken', async (t) => {
  const name = named(t, 'workers');
  const q = Queue.create(name, { capacity: 16, maxMessageSize: 16 });
  t.after(() => q.close());
  const count = 20000;
  // The workers sleep in the kernel without a timeout ('block'): a wake-up that went missing
  // would leave one asleep with messages queued, and the watchdog would fire.
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { Queue } = require(workerData.lib);
    const q = Queue.open(workerData.name, { wait: 'block' });
    const seen = [];
    for (;;) {
      const m = q.receiveSync();
      const v = m[0] | (m[1] << 8) | (m[2] << 16);
      if (v === 0xffffff) break;
      seen.push(v);
    }
    q.close();
    parentPort.postMessage(seen);
  `;
  const lib = new URL('../dist/cjs/index.js', import.meta.url).pathname;
  const workers = [0, 1, 2].map(() => new Worker(source, { eval: true, workerData: { name, lib } }));
  const results = workers.map((w) => new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); }));
  const message = (i) => bytes(i & 255, (i >> 8) & 255, i >> 16);
  for (let i = 0; i < count; ) {
    // Bursts of 1 to 5 (one wake per message committed), single sends and batches.
    const n = Math.min(count - i, 1 + (i % 5));
    if (n === 1) await q.send(message(i));
    else await q.sendMany(Array.from({ length: n }, (_, k) => message(i + k)));
    i += n;
    if (i % 997 < 5) await new Promise((resolve) => setImmediate(resolve)); // let them all fall asleep now and then
  }
  for (const _ of workers) await q.send(bytes(255, 255, 255));
  const seen = await watchdog(Promise.all(results), 60_000, 'workers');
  for (const list of seen) for (let i = 1; i < list.length; i++) assert.ok(list[i] > list[i - 1], 'FIFO per producer');
  const all = seen.flat().sort((x, y) => x - y);
  assert.equal(all.length, count);
  assert.deepEqual(all, Array.from({ length: count }, (_, i) => i));
});

test('batches: sendMany / receiveMany keep order, wait for room, and survive a bad frame', async (t) => {
  const name = named(t, 'batch');
  const q = Queue.create(name, { capacity: 8, maxMessageSize: 8 });
  t.after(() => q.close());
  const values = Array.from({ length: 20 }, (_, i) => bytes(i));
  assert.equal(q.trySendMany(values), 8, 'as many as fit');
  assert.deepEqual(q.tryReceiveMany(3).map((m) => m[0]), [0, 1, 2]);
  assert.deepEqual(q.tryReceiveMany(100).map((m) => m[0]), [3, 4, 5, 6, 7]);
  assert.deepEqual(q.tryReceiveMany(5), []);
  assert.throws(() => q.trySendMany([bytes(1), new Uint8Array(9)]), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.equal(q.stats().depth, 0, 'a too-large value sends nothing');
  assert.throws(() => q.tryReceiveMany(0), RangeError);
  // sendMany waits for room while a receiver drains in batches.
  const sending = q.sendMany(values, { timeout: 10_000 });
  const got = [];
  while (got.length < 20) got.push(...(await q.receiveMany(6, { timeout: 10_000 })).map((m) => m[0]));
  await watchdog(sending, 10_000, 'sendMany');
  assert.deepEqual(got, values.map((m) => m[0]));
  q.sendManySync(values.slice(0, 4));
  assert.deepEqual(q.receiveManySync(10).map((m) => m[0]), [0, 1, 2, 3]);
  assert.throws(() => q.receiveManySync(1, { timeout: 5 }), { code: 'IPC_ERR_TIMEOUT' });
  await expectCode(() => q.receiveMany(1, { timeout: 5 }), 'IPC_ERR_TIMEOUT');
  // A frame the codec cannot read fails the batch with IPC_ERR_PROTOCOL; what followed it is
  // delivered next, in order.
  const json = Queue.open(name, { codec: 'json' });
  t.after(() => json.close());
  q.trySendMany([bytes(0x31), bytes(0x7b), bytes(0x32), bytes(0x33)]);
  assert.deepEqual(json.tryReceiveMany(10), [1], 'what came before the bad frame');
  assert.throws(() => json.tryReceiveMany(10), { code: 'IPC_ERR_PROTOCOL' });
  assert.deepEqual(json.tryReceiveMany(10), [2, 3]);
  q.trySendMany([bytes(0x7b), bytes(0x34), bytes(0x35)]);
  assert.throws(() => json.tryReceiveMany(10), { code: 'IPC_ERR_PROTOCOL' });
  assert.equal(json.tryReceive(), 4);
  assert.deepEqual(json.tryReceiveMany(10), [5]);
  assert.equal(json.tryReceive(), undefined);
});

test('skip records (a zero-copy writer that threw) never hide the messages behind them', async (t) => {
  const name = named(t, 'skips');
  const q = Queue.create(name, { capacity: 8, maxMessageSize: 8 });
  t.after(() => q.close());
  for (let i = 0; i < 3; i++) assert.throws(() => q.trySendWith(1, () => { throw new Error('no'); }), /no/);
  q.trySend(bytes(7));
  assert.deepEqual(q.tryReceiveMany(2).map((m) => m[0]), [7]);
  for (let i = 0; i < 3; i++) assert.throws(() => q.trySendWith(1, () => { throw new Error('no'); }), /no/);
  q.trySend(bytes(8));
  assert.deepEqual((await q.receiveMany(3, { timeout: 5000 })).map((m) => m[0]), [8]);
  assert.equal(q.stats().depth, 0);
});

test('every operation that takes options refuses an unknown key, naming it and the accepted ones', async (t) => {
  const name = named(t, 'keys');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 8 });
  t.after(() => q.close());
  const write = (view) => view.fill(1);
  const read = () => {};
  // With the bug (keys ignored) a send would succeed, and a receive would take the message
  // that is there, instead of blocking forever on an empty queue: the test fails, not hangs.
  q.trySend(bytes(9));
  // Each operation as [async form, sync form].
  const forms = {
    send: [(o) => q.send(bytes(1), o), (o) => q.sendSync(bytes(1), o)],
    sendWith: [(o) => q.sendWith(1, write, o), (o) => q.sendWithSync(1, write, o)],
    sendMany: [(o) => q.sendMany([bytes(1)], o), (o) => q.sendManySync([bytes(1)], o)],
    receive: [(o) => q.receive(o), (o) => q.receiveSync(o)],
    receiveWith: [(o) => q.receiveWith(read, o), (o) => q.receiveWithSync(read, o)],
    receiveLoan: [(o) => q.receiveLoan(o), (o) => q.receiveLoanSync(o)],
    receiveMany: [(o) => q.receiveMany(4, o), (o) => q.receiveManySync(4, o)],
  };
  for (const [what, [asyncForm, syncForm]] of Object.entries(forms)) {
    const refused = (where, allowed) => ({ name: 'TypeError', message: `Queue.${where}: unknown option 'timout' (allowed: ${allowed})` });
    await assert.rejects(asyncForm({ timout: 5 }), refused(what, 'timeout, signal'), what);
    await assert.rejects(asyncForm(null), TypeError, what);
    await assert.rejects(asyncForm({ timeout: -1 }), RangeError, what);
    assert.throws(() => syncForm({ timout: 5 }), refused(`${what}Sync`, 'timeout'), what);
    assert.throws(() => syncForm({ signal: AbortSignal.timeout(5) }), { name: 'TypeError', message: /unknown option 'signal'/ }, what);
    assert.throws(() => syncForm(null), TypeError, what);
  }
  assert.equal(q.stats().depth, 1, 'no refused call sent or took anything');
  assert.deepEqual(q.tryReceive(), bytes(9));
});

test('a receive with a timeout of 2^31 or 2^32 ms waits, then settles with its message', async (t) => {
  for (const wait of ['spin-then-block', 'block', 'spin']) {
    const name = named(t, 'long');
    const q = Queue.create(name, { capacity: 4, maxMessageSize: 8, wait });
    t.after(() => q.close());
    for (const [i, timeout] of LONG_TIMEOUTS.entries()) {
      const got = await settlesAfterLongWait(() => q.receive({ timeout }), () => q.trySend(bytes(i)), `${wait}: receive({ timeout: ${timeout} })`);
      assert.deepEqual(got, bytes(i));
    }
  }
});

test('receiveSync with a timeout of 2^32 ms blocks until a message comes', async (t) => {
  const name = named(t, 'longsync');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 8 });
  t.after(() => q.close());
  assert.deepEqual(await receiveSyncAfterLongWait('Queue', name, () => q.trySend(bytes(7))), { got: [7] });
});
