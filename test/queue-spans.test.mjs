// Spanning records (issue 14): a message longer than slotSize occupies k consecutive slots,
// claimed and taken whole. Round trips between processes (1 B to maxMessageSize, byte-exact, in
// order, across the ring's wrap), batches that never split a span, leases refused without a
// loss, zero-copy forms, and SIGKILLs at announced points inside a span (producer after its
// claim, between interior commits, before its first-slot commit; consumer after its claim and
// half-way through its releases) with exact counts afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Queue, SharedMemory, futex } from 'interprocess';
import { startChild, uniqueName, watchdog } from './helpers.mjs';
import { named } from './queue-common.mjs';
import { spanCheck, spanFill, spanSize } from './fixtures/span-data.mjs';

const require = createRequire(import.meta.url);
const MiB = 1 << 20;

/** A message of `size` bytes with message number i's bytes. */
const message = (i, size) => spanFill(new Uint8Array(size), i);

/** Asserts that `view` is exactly message i of `size` bytes. */
function assertMessage(view, i, size, what = `message ${i}`) {
  assert.ok(view instanceof Uint8Array, `${what}: a Uint8Array`);
  assert.equal(view.length, size, `${what}: length`);
  assert.equal(spanCheck(view, i), -1, `${what}: every byte`);
}

/** True once word `slot` of `i32` is 1 (the fixture reached its point); false if it exited. */
async function reaches(i32, slot, child) {
  for (let v = Atomics.load(i32, slot); v !== 1; v = Atomics.load(i32, slot)) {
    if (child.child.exitCode !== null || child.child.signalCode !== null) return false;
    await futex.waitAsync(i32, slot, v, 200);
  }
  return true;
}

/** Starts queue-span.mjs stopped at `point` (its nth occurrence), for a SIGKILL there. */
async function stoppedAt(t, queueName, role, arg, point, nth) {
  const rvName = named(t, 'rv');
  const rv = SharedMemory.create(rvName, { byteLength: 64 });
  t.after(() => rv.close());
  const env = {
    INTERPROCESS_TEST_QUEUE_PAUSE: '1',
    QUEUE_PAUSE_POINT: point,
    QUEUE_PAUSE_NTH: String(nth),
    QUEUE_PAUSE_RV: rvName,
    QUEUE_PAUSE_SLOT: '0',
    QUEUE_STALL_MS: '200',
  };
  const child = startChild('queue-span.mjs', [queueName, role, arg ?? ''], { env });
  t.after(() => child.kill('SIGKILL'));
  await watchdog(child.next('ready'), 10_000, `${role} ready`);
  assert.ok(await watchdog(reaches(new Int32Array(rv.buffer), 0, child), 10_000, `${role} reaches ${point}`), `${role} reached ${point}`);
  return child;
}

test('slotSize: geometry, defaults, stats / describe, and bad options refused by name', (t) => {
  const name = uniqueName('span-opts');
  assert.throws(() => Queue.create(name, { capacity: 8, slotSize: 40 }), { name: 'RangeError', message: /slotSize must be a multiple of 16/ });
  assert.throws(() => Queue.create(name, { capacity: 8, slotSize: 0 }), { name: 'RangeError', message: /slotSize/ });
  assert.throws(() => Queue.create(name, { capacity: 8, slotSize: 1.5 }), { name: 'TypeError', message: /slotSize must be an integer/ });
  assert.throws(() => Queue.create(name, { capacity: 8, slotSize: '64' }), { name: 'TypeError', message: /slotSize/ });
  // The largest message must fit the ring: 200 bytes in 32-byte slots is 7 slots.
  assert.throws(() => Queue.create(name, { capacity: 4, slotSize: 32, maxMessageSize: 200 }), {
    name: 'RangeError',
    message: /maxMessageSize 200 spans 7 slots of slotSize 32, more than capacity 4/,
  });
  assert.throws(() => Queue.create(name, { byteLength: 4096 + 512 + 64 * 64, slotSize: 1008, maxMessageSize: MiB }), { name: 'RangeError', message: /spans 1041 slots/ });
  assert.throws(() => Queue.open(name, { slotSize: 64 }), { name: 'TypeError', message: /unknown option 'slotSize'/ });
  assert.equal(SharedMemory.exists(name), false, 'a refused create leaves nothing behind');

  // capacity + slotSize: maxMessageSize defaults to slotSize (no spans unless asked).
  const a = named(t, 'span-geo');
  const qa = Queue.create(a, { capacity: 8, slotSize: 64 });
  t.after(() => qa.close());
  assert.deepEqual([qa.capacity, qa.slotSize, qa.maxMessageSize, qa.stats().byteLength], [8, 64, 64, 512 + 64 * 64 + 8 * 80]);
  // byteLength + slotSize: as many slots as fit, rounded down to a power of two.
  const b = named(t, 'span-geo');
  const qb = Queue.create(b, { byteLength: 512 + 64 * 64 + 100 * 128, slotSize: 112, maxMessageSize: 5000 });
  t.after(() => qb.close());
  assert.deepEqual([qb.capacity, qb.slotSize, qb.maxMessageSize], [64, 112, 5000]);
  // openOrCreate of an existing queue checks what it was asked for.
  assert.throws(() => Queue.openOrCreate(b, { byteLength: 512 + 64 * 64 + 100 * 128, slotSize: 96, maxMessageSize: 5000 }), {
    code: 'IPC_ERR_INCOMPATIBLE',
    message: /slotSize is 112, expected 96/,
  });
  Queue.openOrCreate(b, { byteLength: 512 + 64 * 64 + 100 * 128, slotSize: 112, maxMessageSize: 5000 }).close();
  // Without slotSize, as before: every slot holds maxMessageSize.
  const c = named(t, 'span-geo');
  const qc = Queue.create(c, { capacity: 4, maxMessageSize: 100 });
  t.after(() => qc.close());
  assert.equal(qc.slotSize, 112);
  assert.equal(qc.stats().slotSize, 112);

  const s = qb.stats();
  assert.equal(s.slotSize, 112);
  const { describeQueue } = require('../dist/cjs/queue/layout.js');
  const raw = SharedMemory.open(b);
  t.after(() => raw.close());
  assert.equal(qb.trySend(new Uint8Array(300)), true); // 3 slots
  assert.deepEqual(
    (({ capacity, slotSize, maxMessageSize, depth }) => ({ capacity, slotSize, maxMessageSize, depth }))(describeQueue(raw.buffer)),
    { capacity: 64, slotSize: 112, maxMessageSize: 5000, depth: 3 },
  );
  assert.rejects(() => qb.send(new Uint8Array(5001)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.throws(() => qb.trySend(new Uint8Array(5001)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.throws(() => qb.trySendWith(5001, () => {}), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.equal(qb.tryReceive().length, 300);
});

test('memory follows the bytes in flight: mostly 100 B and a rare 1 MiB in 1 KiB slots', (t) => {
  const name = named(t, 'span-mem');
  // 1 MiB in 1008-byte slots is 1041 slots: 2048 slots hold it and 2047 more 100 B messages.
  const q = Queue.create(name, { capacity: 2048, slotSize: 1008, maxMessageSize: MiB });
  t.after(() => q.close());
  const { byteLength } = q.stats();
  const fixed = 2048 * (MiB + 16);
  t.diagnostic(`segment ${byteLength} bytes (${(byteLength / MiB).toFixed(2)} MiB) for capacity 2048 and maxMessageSize 1 MiB; slots sized for 1 MiB: ${fixed / MiB} MiB`);
  assert.equal(byteLength, 512 + 64 * 64 + 2048 * 1024);
  let sent = 0;
  while (q.trySend(message(sent, 100))) sent++;
  assert.equal(sent, 2048, 'one 100 B message per slot');
  for (let i = 0; i < 1041; i++) assertMessage(q.tryReceive(), i, 100);
  assert.ok(q.trySend(message(9999, MiB)), 'the 1 MiB message fits in the 1041 freed slots');
  assert.equal(q.trySend(message(0, 1)), false, 'and then the queue is full');
  for (let i = 1041; i < 2048; i++) assertMessage(q.tryReceive(), i, 100);
  assertMessage(q.tryReceive(), 9999, MiB, 'the 1 MiB message');
  assert.equal(q.tryReceive(), undefined);
});

test('spans between processes: 1 B to maxMessageSize, byte-exact, in order, across the wrap, through every send and receive form', async (t) => {
  const name = named(t, 'span-rt');
  const q = Queue.create(name, { capacity: 512, slotSize: 4096, maxMessageSize: MiB, stallTimeout: 200 });
  t.after(() => q.close());
  const count = 240;
  const child = startChild('queue-span.mjs', [name, 'send-sizes', count]);
  t.after(() => child.kill('SIGKILL'));
  const sizes = Array.from({ length: count }, (_, i) => spanSize(i, 4096, MiB));
  let next = 0;
  let spans = 0;
  const check = (view) => {
    assertMessage(view, next, sizes[next]);
    if (view.length > 4096) spans++;
    next++;
  };
  const receiving = (async () => {
    for (let turn = 0; next < count; turn++) {
      switch (turn % 5) {
        case 0: check(q.receiveSync({ timeout: 20_000 })); break;
        case 1: check(await q.receive({ timeout: 20_000 })); break;
        case 2: for (const m of q.receiveManySync(3, { timeout: 20_000 })) check(m); break;
        case 3: q.receiveWithSync((view) => check(view), { timeout: 20_000 }); break;
        default: check(q.receiveLoanSync({ timeout: 20_000 }));
      }
    }
  })();
  await watchdog(receiving, 120_000, 'receiving');
  await watchdog(child.next('done'), 10_000, 'sender done');
  const stats = q.stats();
  const slots = sizes.reduce((n, size) => n + Math.max(1, Math.ceil(size / 4096)), 0);
  t.diagnostic(`${count} messages (${spans} spans, up to ${Math.max(...sizes)} bytes) over ${slots} slot positions of a 512-slot ring (${(slots / 512).toFixed(1)} laps)`);
  assert.equal(next, count);
  assert.ok(spans > 20 && slots > 2 * 512, 'spans, and the ring wrapped');
  assert.equal(stats.receivePosition, slots, 'positions: one per slot a message took');
  assert.equal(stats.depth, 0);
  assert.equal(stats.skippedRecords, 0);
  assert.equal(q.tryReceive(), undefined);
});

test('receiveMany never splits a span: it takes a span whole or stops before it', (t) => {
  const name = named(t, 'span-many');
  const q = Queue.create(name, { capacity: 256, slotSize: 16, maxMessageSize: 16 * 100 });
  t.after(() => q.close());
  // 1 slot, 60 slots, 60 slots, 1 slot, 100 slots, 1 slot.
  const sizes = [10, 16 * 60, 16 * 59 + 1, 16, 16 * 100, 3];
  assert.equal(q.trySendMany(sizes.map((size, i) => message(i, size))), sizes.length);
  const got = [];
  // Each call stops after a whole message: the receive position never lands inside a span.
  const take = (max, position) => {
    const batch = q.tryReceiveMany(max);
    got.push(...batch);
    assert.equal(q.stats().receivePosition, position, `after receiveMany(${max})`);
    return batch.map((m) => m.length);
  };
  assert.deepEqual(take(2, 61), [10, 960]);
  assert.deepEqual(take(2, 122), [945, 16]);
  // A 100-slot span is more than one claim's 64-slot budget: at the head it is taken whole.
  assert.deepEqual(take(1, 222), [1600]);
  assert.deepEqual(take(5, 223), [3]);
  sizes.forEach((size, i) => assertMessage(got[i], i, size));
  // Spans between one-slot messages in one batch, across the ring's wrap (position 223 of 256).
  const more = [16, 16 * 63, 2 * 16, 1, 16 * 40];
  assert.equal(q.trySendMany(more.map((size, i) => message(10 + i, size))), more.length);
  const back = q.tryReceiveMany(10);
  assert.deepEqual(back.map((m) => m.length), more);
  more.forEach((size, i) => assertMessage(back[i], 10 + i, size));
  assert.equal(q.stats().receivePosition, 223 + 1 + 63 + 2 + 1 + 40);
});

test('lease of a span: IPC_ERR_MESSAGE_TOO_LARGE, and the message stays for a receive', async (t) => {
  const name = named(t, 'span-lease');
  const q = Queue.create(name, { capacity: 16, slotSize: 32, maxMessageSize: 256 });
  t.after(() => q.close());
  q.trySend(message(1, 20));
  q.trySend(message(2, 200));
  q.trySend(message(3, 30));
  const first = q.tryLease();
  assertMessage(first.value, 1, 20);
  first.ack();
  assert.throws(() => q.tryLease(), { code: 'IPC_ERR_MESSAGE_TOO_LARGE', message: /spans slots of slotSize 32.*cannot be leased/ });
  await assert.rejects(q.lease({ timeout: 100 }), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.throws(() => q.leaseSync(), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.equal(q.stats().leased, 0, 'no lease counted');
  assertMessage(q.tryReceive(), 2, 200, 'the span, delivered once');
  const last = q.tryLease();
  assertMessage(last.value, 3, 30);
  last.release();
  const again = q.tryLease();
  assertMessage(again.value, 3, 30);
  again.ack();
  assert.equal(q.tryReceive(), undefined);
  assert.equal(q.stats().depth, 0);
});

test('zero-copy forms on spans: sendWith / receiveWith through the scratch copy; a writer that throws sends nothing', async (t) => {
  const name = named(t, 'span-with');
  const q = Queue.create(name, { capacity: 32, slotSize: 32, maxMessageSize: 400 });
  t.after(() => q.close());
  assert.equal(q.trySendWith(300, (view) => spanFill(view, 1)), true);
  assert.throws(() => q.trySendWith(200, () => { throw new Error('writer failed'); }), /writer failed/);
  await q.sendWith(33, (view) => spanFill(view, 2));
  q.sendWithSync(7, (view) => spanFill(view, 3));
  let seen;
  assert.equal(q.tryReceiveWith((view) => (seen = spanCheck(view, 1) === -1 && view.length === 300)), true);
  assert.ok(seen);
  await q.receiveWith((view) => assertMessage(view, 2, 33));
  const loan = q.tryReceiveLoan();
  assertMessage(loan, 3, 7);
  assert.equal(q.tryReceive(), undefined, 'the thrown writer\'s span was never delivered');
  const stats = q.stats();
  assert.equal(stats.depth, 0);
  assert.equal(stats.receivePosition, 10 + 7 + 2 + 1);
  // Codecs encode first and span the same way.
  const j = named(t, 'span-json');
  const qj = Queue.create(j, { capacity: 32, slotSize: 16, maxMessageSize: 500, codec: 'json' });
  t.after(() => qj.close());
  const value = { text: 'x'.repeat(300), list: [1, 2, 3] };
  qj.trySend(value);
  assert.deepEqual(qj.tryReceive(), value);
});

// A producer SIGKILLed inside a span of 4 slots: after its claim (nothing written), after one
// of its 3 interior commits, and after all of them (before the first slot's commit, which is
// the commit of the whole span). Every time none of its 4 positions is delivered, the messages
// around it are, exactly, and all 16 slots come back.
for (const [point, nth, skipped, what] of [
  ['send-claimed', 1, 4, 'after its claim'],
  ['span-commit', 2, 3, 'between interior commits'],
  ['send-commit', 1, 1, 'after its interior commits, before the first slot\'s'],
]) {
  test(`a producer killed inside a span (${what}): none of it is delivered, the messages around it are, every slot comes back`, async (t) => {
    const name = named(t, 'span-pkill');
    const q = Queue.create(name, { capacity: 16, slotSize: 32, maxMessageSize: 32 * 6, stallTimeout: 200 });
    t.after(() => q.close());
    assert.ok(q.trySend(message(1, 40)));
    const child = await stoppedAt(t, name, 'send', 32 * 4, point, nth);
    assert.ok(q.trySend(message(2, 100)));
    assert.ok(q.trySend(message(3, 5)));
    assertMessage(q.receiveSync({ timeout: 5000 }), 1, 40);
    // The producer is alive (stopped at its point): its span is waited for, not skipped.
    assert.throws(() => q.receiveSync({ timeout: 500 }), { code: 'IPC_ERR_TIMEOUT' });
    assert.equal(q.stats().skippedRecords, 0);
    child.kill('SIGKILL');
    await watchdog(child.exited, 10_000, 'producer exit');
    assertMessage(q.receiveSync({ timeout: 5000 }), 2, 100);
    assertMessage(q.receiveSync({ timeout: 5000 }), 3, 5);
    assert.equal(q.tryReceive(), undefined);
    const stats = q.stats();
    assert.equal(stats.skippedRecords, skipped, 'positions skipped: the uncommitted ones of the dead span');
    assert.equal(stats.depth, 0);
    assert.equal(stats.receivePosition, 2 + 4 + 4 + 1);
    for (let i = 0; i < 16; i++) assert.ok(q.trySend(message(i, 1 + i)), `slot ${i} usable`);
    assert.equal(q.trySend(message(0, 1)), false);
    for (let i = 0; i < 16; i++) assertMessage(q.tryReceive(), i, 1 + i);
  });
}

// A consumer SIGKILLed holding a span of 4 slots: after its claim, and after releasing its
// first slot. The span is the documented at-most-once loss; its slots come back to producers
// (which wait while it lives), and nothing else is lost.
for (const [point, nth, reclaimed, what] of [
  ['receive-claimed', 1, 4, 'after its claim'],
  ['receive-release', 2, 3, 'half-way through its releases'],
]) {
  test(`a consumer killed while taking a span (${what}): its slots come back, nothing else is lost`, async (t) => {
    const name = named(t, 'span-ckill');
    const q = Queue.create(name, { capacity: 8, slotSize: 32, maxMessageSize: 32 * 6, stallTimeout: 200 });
    t.after(() => q.close());
    assert.ok(q.trySend(message(1, 128))); // positions 0-3
    assert.ok(q.trySend(message(2, 40))); // 4-5
    const child = await stoppedAt(t, name, 'receive', undefined, point, nth);
    assertMessage(q.tryReceive(), 2, 40);
    // Positions 6 and 7 are free, 8 and 9 are slots 0 and 1, which the living consumer holds
    // (slot 1 at least): a 4-slot span waits, however long.
    assert.equal(q.trySend(message(3, 128)), false);
    assert.throws(() => q.sendSync(message(3, 128), { timeout: 500 }), { code: 'IPC_ERR_TIMEOUT' });
    assert.equal(q.stats().reclaimedSlots, 0);
    child.kill('SIGKILL');
    await watchdog(child.exited, 10_000, 'consumer exit');
    q.sendSync(message(3, 128), { timeout: 5000 }); // 6-9
    for (let i = 4; i < 8; i++) q.sendSync(message(i, i), { timeout: 5000 }); // 10-13
    assert.equal(q.trySend(message(0, 1)), false, 'exactly capacity slots');
    assertMessage(q.tryReceive(), 3, 128);
    for (let i = 4; i < 8; i++) assertMessage(q.tryReceive(), i, i);
    assert.equal(q.tryReceive(), undefined);
    const stats = q.stats();
    assert.equal(stats.reclaimedSlots, reclaimed);
    assert.equal(stats.skippedRecords, 0);
    assert.equal(stats.depth, 0);
  });
}
