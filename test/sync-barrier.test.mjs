// Barrier: all parties released together, round after round, across processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Barrier, Condition, SharedMemory } from 'interprocess';
import { expectCode, expectGivingUp, startChild, uniqueName, watchdog } from './helpers.mjs';

test('n parties over many rounds: nobody passes a round early, one leader per round', async () => {
  const name = uniqueName('barrier');
  const shmName = uniqueName('barrier-stats');
  const hows = ['sync', 'async', 'async', 'sync'];
  const b = Barrier.create(name, { parties: hows.length });
  const shm = SharedMemory.create(shmName, { byteLength: 4096 });
  const stats = new Int32Array(shm.buffer, 4 * hows.length, 2);
  const rounds = process.env.INTERPROCESS_STRESS === '1' ? 10_000 : 300;
  const parties = hows.map((how, me) => startChild('sync-child.mjs', ['party', name, shmName, me, rounds, how]));
  try {
    await watchdog(Promise.all(parties.map((p) => p.next('ready'))), 20_000, 'ready');
    for (const p of parties) p.send({ cmd: 'go' });
    const done = await watchdog(Promise.all(parties.map((p) => p.next())), process.env.INTERPROCESS_STRESS === '1' ? 600_000 : 60_000, 'rounds');
    for (const d of done) assert.equal(d.state, 'done', d.message);
    assert.equal(stats[0], 0, 'a party left a round before everyone arrived');
    assert.equal(stats[1], rounds, 'exactly one leader per round');
    assert.equal(b.parties, hows.length);
  } finally {
    for (const p of parties) p.kill();
    Barrier.remove(name);
    SharedMemory.remove(shmName);
  }
});

function withBarrier(parties, fn) {
  return async () => {
    const name = uniqueName('barrier');
    const b = Barrier.create(name, { parties });
    try {
      await fn(b, name);
    } finally {
      Barrier.remove(name);
    }
  };
}

test('tryWait arrives only when it completes the round, releasing the parties that wait', withBarrier(2, async (b, name) => {
  assert.equal(b.tryWait(), false, 'alone it would have to wait: it does not arrive');
  const other = Barrier.open(name, { parties: 2 });
  const first = b.wait({ timeout: 10_000 });
  assert.equal(other.tryWait(), true);
  assert.equal(await watchdog(first, 10_000, 'released'), false);
}));

test('a timed-out or aborted party withdraws its arrival: the next round still needs every party', withBarrier(2, async (b, name) => {
  await expectGivingUp((o) => b.wait(o), (o) => b.waitSync(o));
  // The withdrawn arrivals count for nothing: one more party alone does not complete a round.
  const other = Barrier.open(name);
  assert.equal(other.tryWait(), false);
  const a = b.wait();
  const c = other.wait();
  assert.deepEqual((await watchdog(Promise.all([a, c]), 10_000, 'round')).sort(), [false, true]);
}));

test('parties: required to create, checked when given to open', withBarrier(2, async (b, name) => {
  assert.equal(b.parties, 2);
  assert.equal(Barrier.open(name).parties, 2);
  await expectCode(() => Barrier.open(name, { parties: 3 }), 'IPC_ERR_INCOMPATIBLE');
  await expectCode(() => Barrier.openOrCreate(name, { parties: 3 }), 'IPC_ERR_INCOMPATIBLE');
  assert.throws(() => Barrier.create(uniqueName('b'), {}), { name: 'TypeError', message: /'parties' is required/ });
  assert.throws(() => Barrier.createAt(new SharedArrayBuffer(256), 0, {}), { name: 'TypeError', message: /'parties' is required/ });
  assert.throws(() => Barrier.create(uniqueName('b'), { parties: 0 }), RangeError);
  assert.throws(() => Barrier.create(uniqueName('b'), { parties: 65536 }), RangeError);
}));

test('a one-party barrier completes a round at every wait', () => {
  const one = Barrier.createAt(new SharedArrayBuffer(256), 0, { parties: 1 });
  assert.equal(one.waitSync(), true);
  assert.equal(one.tryWait(), true);
  return one.wait().then((last) => assert.equal(last, true));
});

test('another kind under the name or at the offset is IPC_ERR_INCOMPATIBLE', withBarrier(2, async (_b, name) => {
  await expectCode(() => Condition.open(name), 'IPC_ERR_INCOMPATIBLE');
  const sab = new SharedArrayBuffer(256);
  Condition.createAt(sab, 0);
  await expectCode(() => Barrier.openAt(sab, 0), 'IPC_ERR_INCOMPATIBLE');
}));
