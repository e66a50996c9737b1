// At-least-once delivery with leases (Queue.lease / tryLease / leaseSync, ack / release): in one
// process, every error path and the bookkeeping; across processes, job workers killed between
// taking a job and acknowledging it (the job comes again, exactly counted), killed inside the
// lease take itself, stopped past their lease time (another worker takes the job over), and,
// without leases, the documented at-most-once loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Queue, SharedMemory, futex } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';
import { STOP, LOST, delivered, done, trackBytes } from './fixtures/queue-jobs.mjs';
import { delay, named, poll } from './queue-common.mjs';

const STRESS = process.env.INTERPROCESS_STRESS === '1';

// ---- one process ------------------------------------------------------------------------------

test('lease, ack, release: the message stays until acknowledged; release and close give it back', async (t) => {
  const name = named(t);
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 64, codec: 'json' });
  t.after(() => q.close());
  const other = Queue.open(name, { codec: 'json' });
  t.after(() => other.close());
  assert.equal(q.tryLease(), undefined, 'nothing to lease');
  q.trySend({ id: 1 });
  q.trySend({ id: 2 });
  const a = q.tryLease({ leaseTime: 60_000 });
  assert.deepEqual(a.value, { id: 1 });
  assert.equal(a.settled, false);
  assert.equal(q.stats().leased, 1);
  // Leased is not queued: the next consumer gets the next message.
  assert.deepEqual(other.tryReceive(), { id: 2 });
  assert.equal(other.tryLease(), undefined);
  // Given back: delivered again (to a lease), counted as a redelivery.
  a.release();
  assert.equal(a.settled, true);
  const b = other.leaseSync({ timeout: 5000 });
  assert.deepEqual(b.value, { id: 1 });
  assert.equal(q.stats().redelivered, 1);
  b.ack();
  assert.equal(other.tryLease(), undefined, 'acknowledged: gone for good');
  assert.deepEqual({ leased: q.stats().leased, depth: q.stats().depth }, { leased: 0, depth: 0 });

  // Closing a handle gives its leases back; a settled or closed lease refuses ack and release.
  q.trySend({ id: 3 });
  const c = await other.lease({ timeout: 5000 });
  other.close();
  assert.equal(c.settled, true);
  assert.throws(() => c.ack(), { code: 'IPC_ERR_CLOSED' });
  assert.throws(() => c.release(), { code: 'IPC_ERR_CLOSED' });
  const d = q.leaseSync({ timeout: 5000 });
  assert.deepEqual(d.value, { id: 3 });
  d.ack();
  assert.throws(() => d.ack(), { code: 'IPC_ERR_NOT_OWNER', message: /already acknowledged or released/ });
  assert.throws(() => d.release(), { code: 'IPC_ERR_NOT_OWNER' });
  d[Symbol.dispose](); // settled: nothing to do

  // Disposal (what `using` calls) releases what was not acknowledged.
  q.trySend({ id: 4 });
  const e = q.tryLease();
  assert.deepEqual(e.value, { id: 4 });
  e[Symbol.dispose]();
  const f = q.tryLease();
  assert.deepEqual(f.value, { id: 4 });
  f.ack();
});

test('a leased slot stays taken: producers that wrap around to it wait until the ack', async (t) => {
  const name = named(t);
  const q = Queue.create(name, { capacity: 2, maxMessageSize: 16 });
  t.after(() => q.close());
  q.trySend(Uint8Array.of(1));
  q.trySend(Uint8Array.of(2));
  assert.deepEqual([...q.tryReceive()], [1]);
  const held = q.tryLease();
  assert.deepEqual([...held.value], [2]);
  assert.ok(q.trySend(Uint8Array.of(3)), 'the received slot is free again');
  assert.equal(q.trySend(Uint8Array.of(4)), false, 'the leased one is not');
  const pending = q.send(Uint8Array.of(4), { timeout: 10_000 });
  held.ack();
  await watchdog(pending, 15_000, 'send after the ack');
  assert.deepEqual([...q.tryReceive()], [3]);
  assert.deepEqual([...q.tryReceive()], [4]);
});

test('lease: a message the codec cannot decode is consumed with IPC_ERR_PROTOCOL; skip records are never leased', async (t) => {
  const name = named(t);
  const raw = Queue.create(name, { capacity: 4, maxMessageSize: 64 });
  t.after(() => raw.close());
  const json = Queue.open(name, { codec: 'json' });
  t.after(() => json.close());
  raw.trySend(new TextEncoder().encode('{not json'));
  assert.throws(() => raw.trySendWith(8, () => { throw new Error('no'); }), /no/); // a skip record
  raw.trySend(new TextEncoder().encode('{"ok":1}'));
  assert.throws(() => json.tryLease(), { code: 'IPC_ERR_PROTOCOL' });
  assert.deepEqual(json.tryLease().value, { ok: 1 });
  assert.equal(json.tryLease(), undefined);
  assert.equal(json.stats().redelivered, 0);
});

test('lease options and errors: leaseTime, timeout, abort, close, unknown options', async (t) => {
  const name = named(t);
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 16 });
  t.after(() => q.close());
  for (const bad of [0, -1, 1.5, 2 ** 31, NaN]) {
    assert.throws(() => q.tryLease({ leaseTime: bad }), { name: /RangeError|TypeError/, message: /leaseTime/ });
    await assert.rejects(q.lease({ leaseTime: bad }), { name: /RangeError|TypeError/, message: /leaseTime/ });
    assert.throws(() => q.leaseSync({ leaseTime: bad }), { name: /RangeError|TypeError/, message: /leaseTime/ });
  }
  assert.throws(() => q.tryLease({ leaseTime: '5' }), { name: 'TypeError', message: /leaseTime/ });
  assert.throws(() => q.tryLease({ timeout: 5 }), { name: 'TypeError', message: /unknown option 'timeout'/ });
  await assert.rejects(q.lease({ leasetime: 5 }), { name: 'TypeError', message: /unknown option 'leasetime'/ });
  assert.throws(() => q.leaseSync({ signal: AbortSignal.abort() }), { name: 'TypeError', message: /unknown option 'signal'/ });
  await assert.rejects(q.lease({ timeout: -1 }), { name: 'RangeError' });
  assert.throws(() => q.leaseSync({ timeout: 20 }), { code: 'IPC_ERR_TIMEOUT' });
  await expectCode(() => q.lease({ timeout: 20, leaseTime: Infinity }), 'IPC_ERR_TIMEOUT');
  await expectCode(() => q.lease({ signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
  const controller = new AbortController();
  const aborted = q.lease({ signal: controller.signal });
  controller.abort();
  await expectCode(() => aborted, 'IPC_ERR_ABORTED');
  const pending = q.lease();
  q.close();
  await expectCode(() => pending, 'IPC_ERR_CLOSED');
  assert.throws(() => q.tryLease(), { code: 'IPC_ERR_CLOSED' });
  await expectCode(() => q.lease(), 'IPC_ERR_CLOSED');
  assert.throws(() => q.leaseSync(), { code: 'IPC_ERR_CLOSED' });
});

test('maxHandles: a full claims table is IPC_ERR_LIMIT; a closed handle\'s row is free again', (t) => {
  const name = named(t, 'handles');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 16, maxHandles: 2 });
  t.after(() => q.close());
  const second = Queue.open(name);
  assert.deepEqual({ handles: q.stats().handles, maxHandles: q.stats().maxHandles }, { handles: 2, maxHandles: 2 });
  assert.throws(() => Queue.open(name), { code: 'IPC_ERR_LIMIT', message: /all 2 handles are in use \(maxHandles/ });
  second.close();
  const third = Queue.open(name);
  third.close();
  assert.equal(q.stats().handles, 1);
  for (const bad of [0, 4097, 1.5]) {
    assert.throws(() => Queue.create(uniqueName('h'), { capacity: 4, maxHandles: bad }), { name: /RangeError|TypeError/, message: /maxHandles/ });
  }
  assert.throws(() => Queue.open(name, { maxHandles: 4 }), { name: 'TypeError', message: /unknown option 'maxHandles'/ });
});

test('a worker thread holding a lease is terminated: the lease comes back to another consumer', async (t) => {
  const name = named(t, 'thread');
  const q = Queue.create(name, { capacity: 4, maxMessageSize: 64, codec: 'json', stallTimeout: 50 });
  t.after(() => q.close());
  q.trySend({ job: 'a' });
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const source = `
    const { workerData } = require('node:worker_threads');
    const { Queue } = require(workerData.lib);
    const q = Queue.open(workerData.name, { codec: 'json' });
    const job = q.tryLease();
    Atomics.store(workerData.flag, 0, job ? 1 : 2);
    Atomics.notify(workerData.flag, 0);
    for (;;);
  `;
  const lib = new URL('../dist/cjs/index.js', import.meta.url).pathname;
  const worker = new Worker(source, { eval: true, workerData: { name, lib, flag } });
  await watchdog(Atomics.waitAsync(flag, 0, 0).value, 10_000, 'worker leases');
  assert.equal(flag[0], 1);
  // Alive (its thread holds its lifeline): its lease is not taken, however long.
  await expectCode(() => q.lease({ timeout: 300 }), 'IPC_ERR_TIMEOUT');
  await watchdog(worker.terminate(), 10_000, 'terminate');
  const again = await watchdog(q.lease({ timeout: 5000 }), 10_000, 'lease after the worker ended');
  assert.deepEqual(again.value, { job: 'a' });
  again.ack();
  assert.equal(q.stats().redelivered, 1);
});

// ---- job workers in other processes ------------------------------------------------------------

/**
 * A job queue of `jobs` jobs ({ id }) and `workers` worker processes (queue-worker.mjs), each
 * { mode: 'lease' | 'receive', leaseTime?, pauseAt?, env? }. Returns what the test needs.
 */
async function jobQueue(t, { jobs, workers, stall = 100, capacity = 16 }) {
  const queueName = named(t, 'jobs');
  const trackName = named(t, 'track');
  const rvName = named(t, 'rv');
  const q = Queue.create(queueName, { capacity, maxMessageSize: 64, codec: 'json', stallTimeout: stall });
  t.after(() => q.close());
  const trackShm = SharedMemory.create(trackName, { byteLength: trackBytes });
  t.after(() => trackShm.close());
  const rvShm = SharedMemory.create(rvName, { byteLength: 256 });
  t.after(() => rvShm.close());
  const track = new Int32Array(trackShm.buffer);
  const rv = new Int32Array(rvShm.buffer);
  const children = [];
  t.after(() => children.forEach((c) => c.kill('SIGKILL')));
  const start = ({ mode = 'lease', leaseTime = 0, pauseAt = 0, env = {} }, slot = 0) => {
    const child = startChild('queue-worker.mjs', [queueName, trackName, mode, leaseTime], {
      env: { QUEUE_STALL_MS: String(stall), WORKER_PAUSE_AT: String(pauseAt), QUEUE_PAUSE_RV: rvName, QUEUE_PAUSE_SLOT: String(slot), ...env },
    });
    children.push(child);
    return child;
  };
  const started = workers.map((w, i) => start(w, 4 * i));
  // (Workers that join later announce nothing: slot 0 belongs to worker 0.)
  await watchdog(Promise.all(started.map((c) => c.next('ready'))), 20_000, 'workers ready');
  // The jobs go in as room allows (a job leased by a dead worker holds its slot until taken over).
  const sending = (async () => {
    for (let id = 0; id < jobs; id++) await q.send({ id }, { timeout: 60_000 });
  })();
  const sum = (f) => {
    let n = 0;
    for (let id = 0; id < jobs; id++) n += f(track, id);
    return n;
  };
  const finish = async () => {
    await watchdog(sending, 60_000, 'jobs sent');
    Atomics.store(track, STOP, 1);
    await watchdog(Promise.all(children.map((c) => c.exited)), 30_000, 'workers exit');
  };
  /** Starts one more worker and waits until it is ready. */
  const join = async (worker) => {
    const child = start(worker);
    started.push(child);
    await watchdog(child.next('ready'), 20_000, 'worker ready');
    return child;
  };
  return { q, track, rv, workers: started, start, join, sending, sum, finish, children };
}

/** Resolves with the job id once worker slot `slot` announces its pause point. */
async function announced(rv, slot) {
  for (let v = Atomics.load(rv, slot); v !== 1; v = Atomics.load(rv, slot)) await futex.waitAsync(rv, slot, v, 1000);
  return Atomics.load(rv, slot + 1);
}

test('a worker killed between taking a job (lease) and acknowledging it: the job is delivered again, exactly once more', async (t) => {
  const jobs = STRESS ? 50_000 : 2000;
  // Worker 0 alone until it holds its 300th job; then worker 1 joins and worker 0 is killed.
  const run = await jobQueue(t, { jobs, workers: [{ pauseAt: 300 }] });
  const killed = await watchdog(announced(run.rv, 0), 30_000, 'worker 0 holds its 300th job');
  await run.join({});
  run.workers[0].kill('SIGKILL');
  await watchdog(poll(() => done(run.track, killed) === 1 && run.sum(done) === jobs), 60_000, 'every job done');
  await run.finish();
  const stats = run.q.stats();
  t.diagnostic(`jobs ${jobs}, killed holding job ${killed}; deliveries ${run.sum(delivered)}, done ${run.sum(done)}, redelivered ${stats.redelivered}`);
  assert.equal(delivered(run.track, killed), 2, 'the killed worker\'s job came again');
  for (let id = 0; id < jobs; id++) {
    assert.equal(done(run.track, id), 1, `job ${id} done exactly once`);
    if (id !== killed) assert.equal(delivered(run.track, id), 1, `job ${id} delivered once`);
  }
  assert.deepEqual({ redelivered: stats.redelivered, leased: stats.leased, lost: Atomics.load(run.track, LOST) }, { redelivered: 1, leased: 0, lost: 0 });
});

test('a worker killed inside the lease take (head claimed, lease not yet recorded): the job is delivered to another, once', async (t) => {
  const jobs = 1000;
  const run = await jobQueue(t, {
    jobs,
    workers: [{ env: { INTERPROCESS_TEST_QUEUE_PAUSE: '1', QUEUE_PAUSE_POINT: 'lease-claimed', QUEUE_PAUSE_NTH: '200' } }],
  });
  await watchdog(announced(run.rv, 0), 30_000, 'worker 0 in its 200th lease take');
  await run.join({});
  run.workers[0].kill('SIGKILL');
  await watchdog(poll(() => run.sum(done) === jobs), 60_000, 'every job done');
  await run.finish();
  const stats = run.q.stats();
  t.diagnostic(`jobs ${jobs}; deliveries ${run.sum(delivered)}, done ${run.sum(done)}, redelivered ${stats.redelivered}`);
  for (let id = 0; id < jobs; id++) {
    assert.equal(done(run.track, id), 1, `job ${id} done exactly once`);
    assert.equal(delivered(run.track, id), 1, `job ${id} delivered once (the killed worker never saw it)`);
  }
  assert.equal(stats.redelivered, 1);
});

test('without leases (plain receive) a worker killed holding a job loses exactly that job, as documented', async (t) => {
  const jobs = 1000;
  const run = await jobQueue(t, { jobs, workers: [{ mode: 'receive', pauseAt: 100 }] });
  const killed = await watchdog(announced(run.rv, 0), 30_000, 'worker 0 holds its 100th job');
  await run.join({ mode: 'receive' });
  run.workers[0].kill('SIGKILL');
  await watchdog(poll(() => run.sum(done) === jobs - 1), 60_000, 'every other job done');
  await run.finish();
  t.diagnostic(`jobs ${jobs}, done ${run.sum(done)}, lost: job ${killed}`);
  for (let id = 0; id < jobs; id++) assert.equal(done(run.track, id), id === killed ? 0 : 1, `job ${id}`);
  assert.equal(delivered(run.track, killed), 1);
  assert.equal(run.q.stats().redelivered, 0);
});

test('a worker stopped (SIGSTOP) past its leaseTime: another worker takes the job over; the stopped one\'s ack is refused', async (t) => {
  const run = await jobQueue(t, { jobs: 50, workers: [{ leaseTime: 300, pauseAt: 10 }] });
  const held = await watchdog(announced(run.rv, 0), 30_000, 'worker 0 holds its 10th job');
  run.workers[0].kill('SIGSTOP');
  await run.join({ leaseTime: 300 });
  await watchdog(poll(() => done(run.track, held) === 1), 30_000, 'worker 1 takes the job over and does it');
  run.workers[0].kill('SIGCONT');
  Atomics.store(run.rv, 0, 0);
  const lost = await watchdog(run.workers[0].next('lost'), 30_000, 'worker 0 finds its lease gone');
  assert.equal(lost.id, held);
  await watchdog(poll(() => run.sum(done) === 51), 30_000, 'every job done');
  await run.finish();
  assert.equal(done(run.track, held), 2, 'processed twice: at least once, as documented for an expired lease');
  assert.equal(Atomics.load(run.track, LOST), 1);
  assert.equal(run.q.stats().redelivered, 1);
  for (let id = 0; id < 50; id++) if (id !== held) assert.equal(done(run.track, id), 1);
});

test('without leaseTime, a stopped worker keeps its job however long: nobody takes it over', async (t) => {
  const stall = 100;
  // Room for every job: the held lease keeps its slot, and producers that wrapped around to it
  // would wait for it.
  const run = await jobQueue(t, { jobs: 50, stall, capacity: 64, workers: [{ pauseAt: 10 }] });
  const held = await watchdog(announced(run.rv, 0), 30_000, 'worker 0 holds its 10th job');
  run.workers[0].kill('SIGSTOP');
  await run.join({});
  await watchdog(poll(() => run.sum(done) === 49), 30_000, 'worker 1 does every other job');
  // Worker 1 is idle now and scans for leases to take over every stallTimeout.
  await delay(stall * 6);
  assert.equal(delivered(run.track, held), 1, 'not delivered again while its worker is stopped');
  assert.equal(run.q.stats().redelivered, 0);
  run.workers[0].kill('SIGCONT');
  Atomics.store(run.rv, 0, 0);
  await watchdog(poll(() => run.sum(done) === 50), 30_000, 'worker 0 finishes');
  await run.finish();
  assert.deepEqual({ done: done(run.track, held), lost: Atomics.load(run.track, LOST), leased: run.q.stats().leased }, { done: 1, lost: 0, leased: 0 });
});

test('lease workers killed at random and replaced: every job done at least once, at most one extra per kill', async (t) => {
  const jobs = STRESS ? 60_000 : 1500;
  const kills = STRESS ? 200 : 5;
  // Each job takes a millisecond (held as a lease meanwhile), so kills land mid-job too.
  const slow = { env: { WORKER_JOB_MS: '1' } };
  const run = await jobQueue(t, { jobs, workers: [slow, slow, slow] });
  let random = STRESS ? Date.now() % 100_000 : 5;
  const rand = () => (random = (random * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const live = [...run.workers];
  let killed = 0;
  while (killed < kills && run.sum(done) < jobs) {
    await delay(5 + rand() * 40);
    const i = Math.floor(rand() * live.length);
    live[i].kill('SIGKILL');
    killed++;
    live[i] = run.start(slow);
    await watchdog(live[i].next('ready'), 20_000, 'replacement ready');
  }
  await watchdog(poll(() => {
    for (let id = 0; id < jobs; id++) if (done(run.track, id) === 0) return false;
    return true;
  }), 120_000, 'every job done');
  await run.finish();
  let extra = 0;
  for (let id = 0; id < jobs; id++) extra += done(run.track, id) - 1;
  const stats = run.q.stats();
  t.diagnostic(`jobs ${jobs}, kills ${killed}, done ${run.sum(done)} (extra ${extra}), deliveries ${run.sum(delivered)}, redelivered ${stats.redelivered}`);
  assert.ok(extra <= killed, `${extra} extra completions with ${killed} kills`);
  assert.ok(stats.redelivered <= killed, `${stats.redelivered} redeliveries with ${killed} kills`);
});
