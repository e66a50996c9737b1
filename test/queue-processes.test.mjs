// Queue between real processes: many producers and consumers exchanging sequence-numbered
// messages (each exactly once, FIFO per producer), and SIGKILLs at exact and at random points.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Queue, SharedMemory, futex } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';
import { T, trackBytes, trackViews } from './fixtures/queue-track.mjs';

const STRESS = process.env.INTERPROCESS_STRESS === '1';

function named(t, tag) {
  const name = uniqueName(tag);
  t.after(() => SharedMemory.remove(name));
  return name;
}

const expectTimeout = (fn) => expectCode(fn, 'IPC_ERR_TIMEOUT');

/** Resolves once word 0 of `i32` is `value` (the children announce through it). */
async function until(i32, value) {
  for (let v = Atomics.load(i32, 0); v !== value; v = Atomics.load(i32, 0)) await futex.waitAsync(i32, 0, v, 1000);
}

/** Resolves when `check()` holds, re-checking on a short timer (a state wait, not a sleep for timing). */
async function poll(check) {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** Sends, receives and checks every message in every seen count, for one run. */
function audit(track, producers, consumerKills) {
  // A producer killed inside a batch may have delivered part of it beyond its progress word.
  const { i32, seen, perProducer } = track;
  let duplicates = 0;
  let lostCompleted = 0;
  let neverSent = 0;
  let inFlightDelivered = 0;
  for (const { id, completed, window } of producers) {
    for (let s = 0; s < perProducer; s++) {
      const n = seen[id * perProducer + s];
      if (n > 1) duplicates++;
      if (s < completed && n === 0) lostCompleted++;
      if (s >= completed && s < completed + window && n === 1) inFlightDelivered++;
      if (s >= completed + window && n !== 0) neverSent++;
    }
  }
  return {
    corrupt: Atomics.load(i32, T.corrupt),
    orderViolations: Atomics.load(i32, T.order),
    duplicates,
    lostCompleted,
    neverSent,
    inFlightDelivered,
    consumerKills,
  };
}

async function run(t, { producers, consumers, perProducer, wait = 'spin-then-block', capacity = 64, kills = 0, seed = 1, slotSize }) {
  const queueName = named(t, 'mpmc');
  const trackName = named(t, 'track');
  // With slotSize, messages (16 to 200 bytes) longer than it span slots (issue 14).
  const q = Queue.create(queueName, { capacity, maxMessageSize: 200, wait, stallTimeout: 200, ...(slotSize === undefined ? {} : { slotSize }) });
  t.after(() => q.close());
  const trackShm = SharedMemory.create(trackName, { byteLength: trackBytes(perProducer) });
  t.after(() => trackShm.close());
  const track = trackViews(trackShm.buffer, perProducer);
  let random = seed;
  const rand = () => ((random = (random * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const every = Math.max(500, Math.floor(perProducer / 10));
  const styles = ['sync', 'async', 'with', 'many'];
  const producerStyles = ['sync', 'async', 'many'];
  let lossBound = 0;
  const roster = [];
  const running = new Set();
  let nextProducer = 0;
  let producerKills = 0;
  let consumerKills = 0;
  let killsLeft = kills;
  const children = [];

  const startProducer = () => {
    const id = nextProducer++;
    const style = producerStyles[id % producerStyles.length];
    const child = startChild('queue-producer.mjs', [queueName, trackName, id, perProducer, wait, style, every, perProducer]);
    const entry = { id, child, done: false, killed: false, window: style === 'many' ? 16 : 1 };
    roster.push(entry);
    children.push(child);
    running.add(entry);
    const onReport = (msg) => {
      if (msg.state === 'done') {
        entry.done = true;
        running.delete(entry);
        return;
      }
      if (msg.state === 'progress' && killsLeft > 0 && rand() < 0.25 && nextProducer < 60) {
        killsLeft--;
        producerKills++;
        entry.killed = true;
        child.kill('SIGKILL');
        child.exited.then(() => {
          running.delete(entry);
          startProducer();
        });
        return;
      }
      child.next().then(onReport, () => {});
    };
    child.next().then(onReport, () => {});
  };

  const consumerSet = new Set();
  let consumerNo = 0;
  const startConsumer = () => {
    const style = styles[consumerNo++ % styles.length];
    const child = startChild('queue-consumer.mjs', [queueName, trackName, wait, style, perProducer, every]);
    children.push(child);
    const entry = { child, killed: false, bound: style === 'many' ? 8 : 1 };
    consumerSet.add(entry);
    const onReport = (msg) => {
      if (msg.state === 'done') return;
      if (msg.state === 'progress' && killsLeft > 0 && rand() < 0.25 && Atomics.load(track.i32, T.stop) === 0) {
        killsLeft--;
        consumerKills++;
        lossBound += entry.bound;
        entry.killed = true;
        child.kill('SIGKILL');
        child.exited.then(() => {
          consumerSet.delete(entry);
          startConsumer();
        });
        return;
      }
      child.next().then(onReport, () => {});
    };
    child.next().then(onReport, () => {});
  };

  t.after(() => children.forEach((c) => c.kill('SIGKILL')));
  for (let i = 0; i < consumers; i++) startConsumer();
  for (let i = 0; i < producers; i++) startProducer();

  // Producers finish (or are killed and replaced until the kill budget is spent).
  await watchdog(poll(() => running.size === 0 && roster.every((e) => e.done || e.killed)), STRESS ? 600_000 : 120_000, 'producers');
  await watchdog(Promise.all(roster.filter((e) => e.killed).map((e) => e.child.exited)), 10_000, 'killed producers');
  // Consumers drain what is left (stalls from killed producers are skipped after stallTimeout).
  Atomics.store(track.i32, T.stop, 1);
  await watchdog(poll(() => [...consumerSet].every((e) => e.child.child.exitCode !== null)), 60_000, 'consumers drain');
  for (const e of consumerSet) assert.equal(e.child.child.exitCode, 0, 'consumer exited cleanly');

  const completed = roster.map((e) => ({ id: e.id, window: e.window, completed: Atomics.load(track.i32, T.progress + e.id) }));
  const result = audit(track, completed, consumerKills);
  const stats = q.stats();
  const sent = completed.reduce((n, p) => n + p.completed, 0);
  t.diagnostic(
    `messages ${Atomics.load(track.i32, T.received)} received of ${sent} completed sends; producer kills ${producerKills}, ` +
      `consumer kills ${consumerKills}; skipped records ${stats.skippedRecords}, reclaimed slots ${stats.reclaimedSlots}; ` +
      `losses of completed sends ${result.lostCompleted}`,
  );
  assert.equal(result.corrupt, 0, 'no corrupt or partial message');
  assert.equal(result.orderViolations, 0, 'FIFO per producer');
  assert.equal(result.duplicates, 0, 'no message twice');
  assert.equal(result.neverSent, 0, 'nothing that was never sent');
  // Only a consumer killed while holding messages can lose them: at most the one it held (or
  // the batch of up to 8 a receiveMany consumer held).
  assert.ok(result.lostCompleted <= lossBound, `lost ${result.lostCompleted} with ${consumerKills} consumer kills (bound ${lossBound})`);
  if (kills === 0) {
    assert.equal(result.lostCompleted, 0);
    assert.equal(Atomics.load(track.i32, T.received), producers * perProducer);
  }

  // No slot is lost for good: the whole capacity can be filled and drained again (this makes
  // producers reclaim any slot a dead consumer held).
  const survivor = Queue.open(queueName, { stallTimeout: 200 });
  t.after(() => survivor.close());
  for (let i = 0; i < capacity; i++) survivor.sendSync(Uint8Array.of(i & 255, i >> 8), { timeout: 10_000 });
  assert.equal(survivor.trySend(Uint8Array.of(0)), false, 'exactly capacity slots');
  for (let i = 0; i < capacity; i++) assert.deepEqual([...survivor.receiveSync({ timeout: 10_000 })], [i & 255, i >> 8]);
  assert.equal(survivor.tryReceive(), undefined);
  return { result, stats };
}

test('3 producers x 4 consumers (sync, async, batches, zero-copy): every message exactly once, FIFO per producer', async (t) => {
  await run(t, { producers: 3, consumers: 4, perProducer: STRESS ? 400_000 : 70_000 });
});

test('blocking waits only (futex), small queue: exactly once, FIFO per producer', async (t) => {
  await run(t, { producers: 2, consumers: 2, perProducer: STRESS ? 200_000 : 20_000, wait: 'block', capacity: 8 });
});

// Two shapes: a small queue (producers mostly wait for room, so they reach slots that killed
// consumers held) and a large one (producers mostly write, so kills land between claim and
// commit more often).
for (const capacity of [16, 1024]) {
  test(`producers and consumers SIGKILLed at random points (capacity ${capacity}): nothing completed is lost or corrupt, slots come back`, async (t) => {
    await run(t, {
      producers: 3,
      consumers: 4,
      perProducer: STRESS ? 100_000 : 20_000,
      capacity,
      kills: STRESS ? 60 : 12,
      seed: STRESS ? Date.now() % 1000 : 7 + capacity,
    });
  });
}

// Spans (issue 14): in 48-byte slots the 16 to 200-byte messages take 1 to 5 slots each.
test('spans: 3 producers x 4 consumers (sync, async, batches, zero-copy) in 48-byte slots: every message exactly once, intact, FIFO per producer', async (t) => {
  await run(t, { producers: 3, consumers: 4, perProducer: STRESS ? 200_000 : 20_000, slotSize: 48 });
});

test('spans: producers and consumers SIGKILLed at random points (capacity 16, 48-byte slots): nothing completed is lost or corrupt, slots come back', async (t) => {
  await run(t, {
    producers: 3,
    consumers: 4,
    perProducer: STRESS ? 100_000 : 15_000,
    capacity: 16,
    slotSize: 48,
    kills: STRESS ? 60 : 12,
    seed: STRESS ? Date.now() % 1000 : 29,
  });
});

test('a producer killed between claim and commit: its record is skipped after stallTimeout, never delivered', async (t) => {
  const name = named(t, 'claim');
  const rvName = named(t, 'rv');
  const q = Queue.create(name, { capacity: 8, maxMessageSize: 64, stallTimeout: 200 });
  t.after(() => q.close());
  const rv = SharedMemory.create(rvName, { byteLength: 64 });
  t.after(() => rv.close());
  const word = new Int32Array(rv.buffer);
  q.trySend(Uint8Array.of(0));
  const child = startChild('queue-holder.mjs', [name, rvName, 'claim']);
  t.after(() => child.kill('SIGKILL'));
  await watchdog(child.next('ready'), 10_000, 'holder ready');
  await watchdog(until(word, 2), 10_000, 'holder claims');
  q.trySend(Uint8Array.of(2));
  q.trySend(Uint8Array.of(3));
  assert.deepEqual([...q.receiveSync({ timeout: 5000 })], [0]);
  // The owner is alive: however long it takes, its slot is not taken from it.
  assert.throws(() => q.receiveSync({ timeout: 600 }), { code: 'IPC_ERR_TIMEOUT' });
  assert.equal(q.stats().depth, 3);
  child.kill('SIGKILL');
  await watchdog(child.exited, 10_000, 'holder exit');
  assert.deepEqual([...q.receiveSync({ timeout: 5000 })], [2]);
  assert.deepEqual([...q.receiveSync({ timeout: 5000 })], [3]);
  assert.equal(q.tryReceive(), undefined);
  assert.equal(q.stats().skippedRecords, 1);
  // The skipped slot is usable again.
  for (let i = 0; i < 8; i++) assert.ok(q.trySend(Uint8Array.of(i)));
  for (let i = 0; i < 8; i++) assert.deepEqual([...q.tryReceive()], [i]);
});

test('an async receiver is woken for records behind a dead producer\'s claim', async (t) => {
  const name = named(t, 'claim-async');
  const rvName = named(t, 'rv');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 64, stallTimeout: 200 });
  t.after(() => q.close());
  const rv = SharedMemory.create(rvName, { byteLength: 64 });
  t.after(() => rv.close());
  const child = startChild('queue-holder.mjs', [name, rvName, 'claim']);
  t.after(() => child.kill('SIGKILL'));
  await watchdog(child.next('ready'), 10_000, 'holder ready');
  await watchdog(until(new Int32Array(rv.buffer), 2), 10_000, 'holder claims');
  const pending = q.receive({ timeout: 10_000 });
  q.trySend(Uint8Array.of(5));
  child.kill('SIGKILL');
  assert.deepEqual([...(await watchdog(pending, 15_000, 'receive'))], [5]);
  assert.equal(q.stats().skippedRecords, 1);
});

test('a consumer killed while holding a message: that one message is lost, its slot comes back', async (t) => {
  const name = named(t, 'take');
  const rvName = named(t, 'rv');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 64, stallTimeout: 200 });
  t.after(() => q.close());
  const rv = SharedMemory.create(rvName, { byteLength: 64 });
  t.after(() => rv.close());
  const word = new Int32Array(rv.buffer);
  for (let i = 0; i < 4; i++) q.trySend(Uint8Array.of(10 + i));
  const child = startChild('queue-holder.mjs', [name, rvName, 'take']);
  t.after(() => child.kill('SIGKILL'));
  await watchdog(child.next('ready'), 10_000, 'holder ready');
  await watchdog(until(word, 2), 10_000, 'holder takes');
  assert.equal(Atomics.load(word, 1), 10, 'the holder has message 10');
  assert.deepEqual([...q.tryReceive()], [11]);
  // The next send position maps to the slot of message 10, still held by a living consumer:
  // senders wait (however long), they do not take it.
  assert.equal(q.trySend(Uint8Array.of(14)), false);
  assert.throws(() => q.sendSync(Uint8Array.of(14), { timeout: 600 }), { code: 'IPC_ERR_TIMEOUT' });
  child.kill('SIGKILL');
  await watchdog(child.exited, 10_000, 'holder exit');
  await watchdog(q.send(Uint8Array.of(14), { timeout: 5000 }), 10_000, 'send after reclaim');
  assert.ok(q.trySend(Uint8Array.of(15)));
  const rest = [];
  for (let m = q.tryReceive(); m !== undefined; m = q.tryReceive()) rest.push(m[0]);
  assert.deepEqual(rest, [12, 13, 14, 15]);
  const stats = q.stats();
  assert.equal(stats.reclaimedSlots, 1);
  assert.equal(stats.depth, 0);
});

test('a worker thread terminated between claim and commit: its record is skipped, its process lives on', async (t) => {
  const { Worker } = await import('node:worker_threads');
  const name = named(t, 'worker-claim');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 64, stallTimeout: 200 });
  t.after(() => q.close());
  const flag = new Int32Array(new SharedArrayBuffer(4));
  // The worker claims a slot, writes half a message and spins until it is terminated. Slot
  // owners are lifeline tokens, one per thread, so its token dies with it (the pid does not).
  const source = `
    const { workerData } = require('node:worker_threads');
    const { Queue } = require(workerData.lib);
    const q = Queue.open(workerData.name, { stallTimeout: 200 });
    q.trySendWith(16, (view) => {
      view.fill(0xee, 0, 8);
      Atomics.store(workerData.flag, 0, 1);
      Atomics.notify(workerData.flag, 0);
      for (;;);
    });
  `;
  const lib = new URL('../dist/cjs/index.js', import.meta.url).pathname;
  const worker = new Worker(source, { eval: true, workerData: { name, lib, flag } });
  await watchdog(Atomics.waitAsync(flag, 0, 0).value, 10_000, 'worker claims');
  q.trySend(Uint8Array.of(7));
  // Alive (its thread holds its lifeline): never taken from it.
  await expectTimeout(() => q.receive({ timeout: 500 }));
  await watchdog(worker.terminate(), 10_000, 'terminate');
  assert.deepEqual([...(await watchdog(q.receive({ timeout: 5000 }), 10_000, 'receive'))], [7]);
  assert.equal(q.stats().skippedRecords, 1);
});

test('a receiver killed while asleep in the kernel: no hang, only a stale sleeper count', async (t) => {
  const name = named(t, 'sleeper');
  const rvName = named(t, 'rv');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 64, stallTimeout: 200 });
  t.after(() => q.close());
  SharedMemory.create(rvName, { byteLength: 64 }).close();
  const child = startChild('queue-holder.mjs', [name, rvName, 'sleep']);
  t.after(() => child.kill('SIGKILL'));
  await watchdog(child.next('ready'), 10_000, 'sleeper ready');
  await watchdog(poll(() => q.stats().sleepingReceivers === 1), 10_000, 'sleeper asleep');
  child.kill('SIGKILL');
  await watchdog(child.exited, 10_000, 'sleeper exit');
  // The count stays 1 (senders then make a wake-up call they did not need), nothing else.
  assert.ok(q.trySend(Uint8Array.of(1)));
  assert.deepEqual([...q.receiveSync({ timeout: 5000 })], [1]);
  const later = q.receive({ timeout: 5000 });
  q.trySend(Uint8Array.of(2));
  assert.deepEqual([...(await watchdog(later, 10_000, 'receive'))], [2]);
  assert.equal(q.stats().sleepingReceivers, 1);
});

test('send then exit: what a send resolved is delivered (1 KiB to 1 MiB, many runs)', async (t) => {
  const name = named(t, 'send-exit');
  const rvName = named(t, 'rv');
  const q = Queue.create(name, { capacity: 8, maxMessageSize: 1 << 20 });
  t.after(() => q.close());
  SharedMemory.create(rvName, { byteLength: 64 }).close();
  const sizes = [1024, 16384, 262144, 1 << 20];
  const runs = STRESS ? 100 : 10;
  let delivered = 0;
  for (let run = 0; run < runs; run++) {
    const child = startChild('queue-holder.mjs', [name, rvName, 'send-exit', ...sizes]);
    t.after(() => child.kill('SIGKILL'));
    const { code } = await watchdog(child.exited, 20_000, 'sender exit');
    assert.equal(code, 0);
    for (const [i, size] of sizes.entries()) {
      const m = q.tryReceive();
      assert.ok(m !== undefined, `run ${run}: message ${i} is there after its sender exited`);
      assert.equal(m.byteLength, size);
      assert.ok(m.every((b) => b === i + 1), 'intact');
      delivered++;
    }
    assert.equal(q.tryReceive(), undefined);
  }
  t.diagnostic(`delivered ${delivered}/${runs * sizes.length} messages whose send resolved before exit`);
});
