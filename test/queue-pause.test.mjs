// Paused is not dead: producers and consumers stopped (SIGSTOP) for longer than stallTimeout,
// at announced points of the protocol (a claim made and not committed, half a payload copied,
// a message claimed and not released, a batch held) and at random, then continued (SIGCONT).
// Nobody dies in these runs, so every message must arrive exactly once, intact, in order per
// producer, and nothing may be reclaimed: a reclaim would mean a live process was taken for
// dead. The stops are the fault being injected (their length is the input, never asserted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Queue, SharedMemory, futex } from 'interprocess';
import { startChild, watchdog } from './helpers.mjs';
import { T, trackBytes, trackViews } from './fixtures/queue-track.mjs';
import { delay, named, poll } from './queue-common.mjs';

const STRESS = process.env.INTERPROCESS_STRESS === '1';

/** True once word `slot` of `i32` is 1 (a fixture announces its point); false if `child` exits first. */
async function reaches(i32, slot, child) {
  for (let v = Atomics.load(i32, slot); v !== 1; v = Atomics.load(i32, slot)) {
    if (child.child.exitCode !== null || child.child.signalCode !== null) return false;
    await futex.waitAsync(i32, slot, v, 200);
  }
  return true;
}

/**
 * One run: `producers` producer and `consumers` consumer processes over a queue of `capacity`
 * slots. `announced` lists stops at points ({ role, index, point, nth, every? }), handled one
 * at a time; `randomStops` more stops of random processes at random moments. Every stop lasts
 * longer than stallTimeout.
 */
async function run(t, { producers, consumers, perProducer, capacity = 8, stall = 100, announced = [], randomStops = 0, seed = 1, styles, slotSize }) {
  const queueName = named(t, 'pause');
  const trackName = named(t, 'track');
  const rvName = named(t, 'rv');
  const q = Queue.create(queueName, { capacity, maxMessageSize: 200, stallTimeout: stall, ...(slotSize === undefined ? {} : { slotSize }) });
  t.after(() => q.close());
  const trackShm = SharedMemory.create(trackName, { byteLength: trackBytes(perProducer) });
  t.after(() => trackShm.close());
  const track = trackViews(trackShm.buffer, perProducer);
  const rvShm = SharedMemory.create(rvName, { byteLength: 4 * 64 });
  t.after(() => rvShm.close());
  const rv = new Int32Array(rvShm.buffer);
  let random = seed;
  const rand = () => (random = (random * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const every = Math.max(1000, Math.floor(perProducer / 4));
  const producerStyles = styles?.producers ?? ['sync', 'async', 'many'];
  const consumerStyles = styles?.consumers ?? ['sync', 'with', 'many', 'async'];
  const children = [];
  t.after(() => children.forEach((c) => c.kill('SIGKILL')));

  const envFor = (role, index) => {
    const env = { QUEUE_STALL_MS: String(stall) };
    const i = announced.findIndex((a) => a.role === role && a.index === index);
    if (i >= 0) {
      Object.assign(env, {
        INTERPROCESS_TEST_QUEUE_PAUSE: '1',
        QUEUE_PAUSE_POINT: announced[i].point,
        QUEUE_PAUSE_NTH: String(announced[i].nth),
        QUEUE_PAUSE_EVERY: String(announced[i].every ?? 0),
        QUEUE_PAUSE_RV: rvName,
        QUEUE_PAUSE_SLOT: String(i),
      });
    }
    return env;
  };
  const producerList = [];
  for (let id = 0; id < producers; id++) {
    const style = producerStyles[id % producerStyles.length];
    const child = startChild('queue-producer.mjs', [queueName, trackName, id, perProducer, 'spin-then-block', style, every, perProducer], { env: envFor('producer', id) });
    children.push(child);
    producerList.push(child);
  }
  const consumerList = [];
  for (let i = 0; i < consumers; i++) {
    const style = consumerStyles[i % consumerStyles.length];
    const child = startChild('queue-consumer.mjs', [queueName, trackName, 'spin-then-block', style, perProducer, every], { env: envFor('consumer', i) });
    children.push(child);
    consumerList.push(child);
  }
  const producersDone = Promise.all(producerList.map((c) => c.next('done')));
  let stops = 0;

  /** Stops `child` for longer than stallTimeout; nothing may be reclaimed meanwhile. */
  const hold = async (child) => {
    child.kill('SIGSTOP');
    stops++;
    await delay(stall * (1.5 + 2 * rand()));
    child.kill('SIGCONT');
  };

  // One announced stop at a time: the process at its point is stopped for 4x stallTimeout
  // (long enough for every other process to look at the stall several times), and the others
  // must have been held up by it (no progress in the second half), which is the situation in
  // which a stop used to be taken for a death.
  let turn = Promise.resolve();
  const atPoints = [];
  const announcedStops = announced.map(async (a, i) => {
    const child = (a.role === 'producer' ? producerList : consumerList)[a.index];
    while (await reaches(rv, i, child)) {
      await (turn = turn.then(async () => {
        const before = q.stats();
        child.kill('SIGSTOP');
        stops++;
        await delay(stall * 2);
        const half = q.stats();
        await delay(stall * 2);
        const during = q.stats();
        child.kill('SIGCONT');
        Atomics.store(rv, i, 0); // lets the fixture go on past its point
        atPoints.push({ point: `${a.role} ${a.index} ${a.point}`, before, half, during });
      }));
    }
  });

  let producing = true;
  producersDone.then(() => (producing = false));
  const randomRun = (async () => {
    const everyone = [...producerList, ...consumerList];
    for (let i = 0; i < randomStops && producing; i++) {
      await delay(rand() * stall);
      if (!producing) break;
      await hold(everyone[Math.floor(rand() * everyone.length)]);
    }
  })();

  await watchdog(producersDone, STRESS ? 3_600_000 : 120_000, 'producers');
  await randomRun;
  Atomics.store(track.i32, T.stop, 1);
  await watchdog(Promise.all(consumerList.map((c) => c.next('done'))), 60_000, 'consumers drain');
  await watchdog(Promise.all(children.map((c) => c.exited)), 30_000, 'children exit');
  await watchdog(Promise.all(announcedStops), 60_000, 'announced stops');

  // Exact: nobody died, so every message arrived once, intact and in order.
  let missing = 0;
  let duplicates = 0;
  for (let p = 0; p < producers; p++) {
    for (let s = 0; s < perProducer; s++) {
      const n = track.seen[p * perProducer + s];
      if (n === 0) missing++;
      if (n > 1) duplicates++;
    }
  }
  const stats = q.stats();
  const result = {
    received: Atomics.load(track.i32, T.received),
    corrupt: Atomics.load(track.i32, T.corrupt),
    orderViolations: Atomics.load(track.i32, T.order),
    missing,
    duplicates,
    skippedRecords: stats.skippedRecords,
    reclaimedSlots: stats.reclaimedSlots,
  };
  t.diagnostic(`stops ${stops}, messages ${result.received} of ${producers * perProducer}; ${JSON.stringify(result)}`);
  let heldUp = 0;
  for (const { point, before, half, during } of atPoints) {
    assert.equal(during.skippedRecords + during.reclaimedSlots, before.skippedRecords + before.reclaimedSlots, `nothing reclaimed while stopped at ${point}`);
    if (half.sendPosition === during.sendPosition && half.receivePosition === during.receivePosition) heldUp++;
  }
  t.diagnostic(`announced stops ${atPoints.length}, of which the others were held up by the stopped process in ${heldUp}`);
  // A stop that landed while the producers were all done could not hold anyone up; the rest must.
  assert.ok(heldUp >= atPoints.length - announced.length, `held up in ${heldUp} of ${atPoints.length} announced stops`);
  assert.equal(atPoints.length >= announced.length, true, 'every announced point was reached');
  assert.deepEqual(result, {
    received: producers * perProducer,
    corrupt: 0,
    orderViolations: 0,
    missing: 0,
    duplicates: 0,
    skippedRecords: 0,
    reclaimedSlots: 0,
  });
  return { stops, result, atPoints: atPoints.length };
}

// The points where a stop used to be taken for a death, and their neighbours, one process per
// point, in one run over a small queue: while one process is stopped, the others wrap around
// to its slot and wait there. Producer styles: 0 sync, 1 async, 2 batches (sendMany), 3 sync;
// consumers: 0 sync, 1 zero-copy (receiveWith), 2 batches (receiveMany), 3 async.
const POINTS = [
  { role: 'producer', index: 0, point: 'send-claimed' }, // between claim and commit
  { role: 'producer', index: 1, point: 'send-commit' }, // payload written, commit not yet
  { role: 'producer', index: 2, point: 'send-claimed' }, // a batch claimed
  { role: 'producer', index: 3, point: 'send-mid-copy' }, // half a zero-copy payload written
  { role: 'consumer', index: 0, point: 'receive-claimed' }, // between claim and release
  { role: 'consumer', index: 1, point: 'receive-mid-copy' }, // half a zero-copy read done
  { role: 'consumer', index: 2, point: 'receive-claimed' }, // a batch claimed
  { role: 'consumer', index: 3, point: 'receive-release' }, // copied out, release not yet
];

test('producers and consumers stopped at announced points for 4x stallTimeout: nothing lost, duplicated, torn or reordered, nothing reclaimed', async (t) => {
  const perProducer = STRESS ? 400_000 : 8000;
  // Staggered first stops, then (stress) again and again at every point.
  const announced = POINTS.map((p, i) => ({ ...p, nth: 100 + i * Math.floor(perProducer / 20), every: STRESS ? Math.floor(perProducer / 40) : 0 }));
  await run(t, {
    producers: 4,
    consumers: 4,
    perProducer,
    capacity: 4,
    announced,
    styles: { producers: ['sync', 'async', 'many', 'sync'], consumers: ['sync', 'with', 'many', 'async'] },
  });
});

test('producers and consumers stopped at random moments, past stallTimeout: exactly once, in order, nothing reclaimed', async (t) => {
  const { stops } = await run(t, {
    producers: 3,
    consumers: 4,
    perProducer: STRESS ? 8_000_000 : 40_000,
    capacity: 16,
    stall: STRESS ? 20 : 30,
    randomStops: STRESS ? 10_000 : 30,
    seed: STRESS ? Date.now() % 100_000 : 11,
  });
  assert.ok(stops > 0);
});

// Spans (issue 14): the same, with 16 to 200-byte messages in 48-byte slots (1 to 5 slots
// each), and a producer stopped between the interior commits of a span ('span-commit') or
// before its first-slot commit ('send-commit', the commit of the whole span).
test('spans: producers and consumers stopped inside spans for 4x stallTimeout: nothing lost, duplicated, torn or reordered, nothing reclaimed', async (t) => {
  const perProducer = STRESS ? 200_000 : 6000;
  const points = [
    { role: 'producer', index: 0, point: 'send-claimed' },
    { role: 'producer', index: 1, point: 'span-commit' },
    { role: 'producer', index: 2, point: 'send-commit' },
    { role: 'producer', index: 3, point: 'send-mid-copy' },
    { role: 'consumer', index: 0, point: 'receive-claimed' },
    { role: 'consumer', index: 1, point: 'receive-mid-copy' },
    { role: 'consumer', index: 2, point: 'receive-claimed' },
    { role: 'consumer', index: 3, point: 'receive-release' },
  ];
  const announced = points.map((p, i) => ({ ...p, nth: 100 + i * Math.floor(perProducer / 20), every: STRESS ? Math.floor(perProducer / 40) : 0 }));
  await run(t, {
    producers: 4,
    consumers: 4,
    perProducer,
    capacity: 8,
    slotSize: 48,
    announced,
    styles: { producers: ['sync', 'async', 'sync', 'sync'], consumers: ['sync', 'with', 'many', 'async'] },
  });
});
