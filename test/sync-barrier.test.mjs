// Barrier: all parties released together, round after round, across processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Barrier, Condition, SharedMemory } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';

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

test('timeouts and aborts withdraw the arrival; tryWait; options', async () => {
  const name = uniqueName('barrier');
  const b = Barrier.create(name, { parties: 2 });
  try {
    assert.equal(b.tryWait(), false);
    await expectCode(() => b.wait({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
    await expectCode(() => b.waitSync({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
    const ac = new AbortController();
    const p = b.wait({ signal: ac.signal });
    ac.abort();
    await expectCode(() => p, 'IPC_ERR_ABORTED');
    // The withdrawn arrivals do not count: a round still needs two parties.
    const other = Barrier.open(name, { parties: 2 });
    const first = b.wait({ timeout: 10_000 });
    assert.equal(other.tryWait(), true);
    assert.equal(await first, false);
    const a = b.wait();
    const c = other.wait();
    assert.deepEqual((await watchdog(Promise.all([a, c]), 10_000, 'round')).sort(), [false, true]);
    await expectCode(() => Barrier.open(name, { parties: 3 }), 'IPC_ERR_INCOMPATIBLE');
    assert.throws(() => Barrier.create(uniqueName('b'), {}), TypeError);
    assert.throws(() => Barrier.create(uniqueName('b'), { parties: 0 }), RangeError);
    const one = Barrier.createAt(new SharedArrayBuffer(256), 0, { parties: 1 });
    assert.equal(one.waitSync(), true);
    assert.equal(await one.wait(), true);
    await expectCode(() => Condition.open(name), 'IPC_ERR_INCOMPATIBLE');
    const sab = new SharedArrayBuffer(256);
    Condition.createAt(sab, 0);
    await expectCode(() => Barrier.openAt(sab, 0), 'IPC_ERR_INCOMPATIBLE');
    one.close();
    await expectCode(() => one.wait(), 'IPC_ERR_CLOSED');
    assert.throws(() => one.waitSync(), (e) => e.code === 'IPC_ERR_CLOSED');
  } finally {
    Barrier.remove(name);
  }
});
