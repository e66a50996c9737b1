// The sync primitives beside C references in the same run:
//   mutex-uncontended     lock + unlock pairs in one process (throughput; ns = 1e9 / rate)
//   <kind>-handoff-*      the hand-off of each primitive between two processes, in one shape
//                         for all: the holder waits for the other side to start waiting, lets it
//                         wait HANDOFF_HOLD_NS (it is still spinning), stamps the time and hands
//                         over (unlock, release, notify, arrive); the waiter records hand-over
//                         to return of its lockSync / acquireSync ... (block) or awaited lock() /
//                         acquire() ... (event-loop): one-way ns. Kinds: mutex, semaphore,
//                         rwlock (the write lock), condition (notify under the mutex, the waiter
//                         returns holding it), barrier (two parties: the second arrival).
//   <kind>-wakeup-*       the same, the holder waiting WAKEUP_HOLD_NS first: the waiter is
//                         asleep in the kernel (futex.wait, or futex.waitAsync's watcher thread)
//                         and is woken. (Until 2026-12-01, mutex-handoff-* measured this.)
//   semaphore-pingpong-*  two Semaphores bounced between two processes: round trip
//   c-pthread-*, c-sem-pingpong  a robust process-shared pthread mutex (which sleeps at once,
//                         like the wakeup rows) and POSIX semaphores (bench/native/sync_ref.c)
// Try it: node bin/interprocess.js bench --only mutex,semaphore,rwlock,condition,barrier,c-pthread,c-sem
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cReferencesNote, forkPeer, nextMessage, now, runCReference } from '../util.mjs';

const require = createRequire(import.meta.url);
const { SharedMemory, Mutex, Semaphore, RWLock, Condition, Barrier } = require('../../dist/cjs/index.js');
const here = path.dirname(fileURLToPath(import.meta.url));
const peer = path.join(here, '..', 'peers', 'sync-peer.mjs');

/** Byte offsets in the bench's shared memory: three primitives, the protocol's words, a stamp. */
export const layout = { first: 0, second: 512, third: 1024, flags: 2048, stamp: 2112, byteLength: 4096 };
/** How long a holder waits after the waiter announced itself: within the waiter's spin. */
const HANDOFF_HOLD_NS = 5_000n;
/** ... and past it: the waiter is asleep. */
const WAKEUP_HOLD_NS = 50_000n;
const KINDS = ['mutex', 'semaphore', 'rwlock', 'condition', 'barrier'];

/**
 * One process's side of a hand-off of `kind` through the primitives in `shm` (created by the
 * side that holds first, `me` 0; opened by the other, `me` 1):
 *   wait()      waits for the primitive the way the trial says (sync or awaited async call)
 *   prepare()   what the holder does before the stamp (Condition: take the mutex)
 *   handOver()  lets the waiter go (may return a promise, awaited after the stamp was taken)
 *   finish()    lets go of what the side still holds at the end
 * wait() and prepare() return undefined or a promise; the loop awaits only promises, so that
 * the sync flavour measures no microtask turn.
 */
export function openSide(kind, shm, me, useAsync) {
  const creating = me === 0;
  const at = (type, offset, options) => (creating ? type.createAt(shm, offset, options) : type.openAt(shm, offset));
  const flavour = (sync, async) => (useAsync ? async : sync);
  switch (kind) {
    case 'mutex': {
      const m = at(Mutex, layout.first);
      if (creating) m.lockSync(); // this side starts as the holder
      return { wait: flavour(() => m.lockSync(), () => m.lock()), handOver: () => m.unlock(), finish: () => m.unlock() };
    }
    case 'rwlock': {
      const rw = at(RWLock, layout.first);
      if (creating) rw.writeLockSync();
      return { wait: flavour(() => rw.writeLockSync(), () => rw.writeLock()), handOver: () => rw.writeUnlock(), finish: () => rw.writeUnlock() };
    }
    case 'semaphore': {
      const s = at(Semaphore, layout.first, { initial: 0 });
      return { wait: flavour(() => s.acquireSync(), () => s.acquire()), handOver: () => s.release() };
    }
    case 'condition': {
      const m = at(Mutex, layout.first);
      const c = at(Condition, layout.second);
      const turn = new Int32Array(shm.buffer, layout.flags + 8, 1); // whose turn: 0 (creator) or 1
      return {
        wait: flavour(
          () => {
            m.lockSync();
            while (Atomics.load(turn, 0) !== me) c.waitSync(m);
          },
          async () => {
            await m.lock();
            while (Atomics.load(turn, 0) !== me) await c.wait(m);
          },
        ),
        // The holder of the turn takes the mutex, passes the turn, notifies and lets go; the
        // waiter returns holding the mutex, and lets go of it right away (finish of its wait).
        prepare: flavour(() => m.lockSync(), () => m.lock()),
        handOver: () => {
          Atomics.store(turn, 0, 1 - me);
          c.notify();
          m.unlock();
        },
        afterWait: () => m.unlock(),
      };
    }
    case 'barrier': {
      const b = at(Barrier, layout.first, { parties: 2 });
      // The waiter arrives first; the holder's arrival completes the round.
      return { wait: flavour(() => void b.waitSync(), () => b.wait()), handOver: flavour(() => void b.waitSync(), () => b.wait()) };
    }
    default:
      throw new Error(`unknown kind ${kind}`);
  }
}

/**
 * The hand-off loop, the same in both processes (and the same protocol as sync_ref.c): the
 * holder waits for the other side's intent, lets it wait `holdNs`, stamps the time and hands
 * over; the waiter records stamp-to-return and says it is through (`taken`), which the old
 * holder waits for before it waits in turn, so that it never barges back in ahead of the waiter.
 */
export async function handoff(side, shm, rounds, holdingFirst, holdNs, samples) {
  const flags = new Int32Array(shm.buffer, layout.flags, 2); // [intent, taken]
  const stamp = new BigInt64Array(shm.buffer, layout.stamp, 1);
  let holding = holdingFirst;
  for (let i = 0; i < rounds; i++) {
    if (holding) {
      while (Atomics.load(flags, 0) !== 1);
      const until = now() + holdNs;
      while (now() < until);
      Atomics.store(flags, 0, 0);
      Atomics.store(flags, 1, 0);
      const prepared = side.prepare?.();
      if (prepared !== undefined) await prepared;
      Atomics.store(stamp, 0, now());
      const handed = side.handOver();
      if (handed !== undefined) await handed;
      while (Atomics.load(flags, 1) !== 1);
    } else {
      Atomics.store(flags, 0, 1);
      const waiting = side.wait();
      if (waiting !== undefined) await waiting;
      const got = now();
      if (samples) samples[i >> 1] = Number(got - Atomics.load(stamp, 0));
      side.afterWait?.();
      Atomics.store(flags, 1, 1);
    }
    holding = !holding;
  }
  if (holding) side.finish?.();
}

async function withPeer(role, args, cpus, body) {
  const name = `bench-sync-${process.pid}-${role}`;
  const shm = SharedMemory.create(name, { byteLength: layout.byteLength });
  let child;
  try {
    const ready = await body.setup?.(shm);
    child = forkPeer(peer, [name, role, ...args], cpus[1]);
    await nextMessage(child, 'ready');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const out = await body.run(shm, ready);
    await exited;
    return out;
  } finally {
    child?.kill();
    shm.close();
    SharedMemory.remove(name);
  }
}

function handoffTrial(kind, useAsync, holdNs) {
  return ({ count, cpus }) =>
    withPeer('handoff', [kind, useAsync ? 'async' : 'sync', holdNs, count], cpus, {
      // The primitives exist (and this side holds) before the peer opens them.
      setup: (shm) => openSide(kind, shm, 0, useAsync),
      run: async (shm, side) => {
        const samples = new Float64Array(count);
        await handoff(side, shm, 2 * count, true, holdNs, samples);
        return samples;
      },
    });
}

function semaphoreTrial(useAsync) {
  return ({ count, cpus }) =>
    withPeer('pingpong', [useAsync ? 'async' : 'sync'], cpus, {
      setup: (shm) => ({ ping: Semaphore.createAt(shm, layout.first), pong: Semaphore.createAt(shm, layout.second) }),
      run: async (shm, { ping, pong }) => {
        const samples = new Float64Array(count);
        const warmup = Math.min(1000, count);
        for (let i = -warmup; i < count; i++) {
          const t0 = now();
          ping.release();
          if (useAsync) await pong.acquire();
          else pong.acquireSync();
          if (i >= 0) samples[i] = Number(now() - t0);
        }
        Atomics.store(new Int32Array(shm.buffer, layout.flags, 1), 0, 1); // stop
        ping.release();
        return samples;
      },
    });
}

async function uncontended({ count }) {
  const name = `bench-sync-${process.pid}-uncontended`;
  const shm = SharedMemory.create(name, { byteLength: 4096 });
  try {
    const m = Mutex.createAt(shm, 0);
    for (let i = 0; i < Math.min(count, 100_000); i++) {
      m.lockSync();
      m.unlock();
    }
    const t0 = now();
    for (let i = 0; i < count; i++) {
      m.lockSync();
      m.unlock();
    }
    return { messages: count, seconds: Number(now() - t0) / 1e9 };
  } finally {
    SharedMemory.remove(name);
  }
}

/** A C reference (bench/native/sync_ref.c, built when the trial runs it). */
async function reference(mode, { count, cpus }) {
  const r = await runCReference('sync_ref', [mode, count, cpus[0] ?? -1, cpus[1] ?? -1]);
  return mode === 'uncontended' ? { messages: r.n, seconds: r.seconds } : { n: r.n, p50: r.p50, p99: r.p99, p999: r.p999 };
}

const WAITS = [
  ['block', false, 'a sleeping xSync call'],
  ['event-loop', true, 'an awaited async call'],
];
const WHAT = {
  mutex: 'Mutex hand-off (unlock to lock)',
  semaphore: 'Semaphore hand-off (release to acquire)',
  rwlock: 'RWLock write hand-off (writeUnlock to writeLock)',
  condition: 'Condition hand-off (notify + unlock to wait returning with the mutex)',
  barrier: 'Barrier of 2 (second arrival to the first one leaving)',
};

const handoffRows = KINDS.flatMap((kind) =>
  WAITS.flatMap(([waits, useAsync, how]) => [
    { id: `${kind}-handoff-${waits}`, label: `${WHAT[kind]}, ${how} still spinning`, family: 'primitive', waits, sizes: [64], roundTrip: handoffTrial(kind, useAsync, HANDOFF_HOLD_NS) },
    {
      id: `${kind}-wakeup-${waits}`,
      label: `${WHAT[kind]}, ${how} asleep`,
      family: 'primitive',
      waits,
      sizes: [64],
      // Each hand-off waits WAKEUP_HOLD_NS first: fewer of them.
      count: { quick: 500, full: 5000 },
      roundTrip: handoffTrial(kind, useAsync, WAKEUP_HOLD_NS),
    },
  ]),
);

const references = ['c-pthread-uncontended', 'c-pthread-handoff', 'c-sem-pingpong'];
export const notes = [cReferencesNote(references)].filter(Boolean);

export default [
  { id: 'mutex-uncontended', label: 'Mutex lock+unlock, uncontended (pairs/s)', family: 'primitive', waits: 'spin', sizes: [64], throughput: uncontended },
  { id: 'c-pthread-uncontended', label: 'C robust pthread mutex lock+unlock (reference)', family: 'reference', waits: 'spin', sizes: [64], throughput: (a) => reference('uncontended', a) },
  ...handoffRows,
  { id: 'c-pthread-handoff', label: 'C robust pthread mutex hand-off to a sleeping waiter (reference)', family: 'reference', waits: 'block', sizes: [64], count: { quick: 500, full: 5000 }, roundTrip: (a) => reference('handoff', a) },
  { id: 'semaphore-pingpong-block', label: 'Semaphore ping-pong, acquireSync', family: 'primitive', waits: 'block', sizes: [64], roundTrip: semaphoreTrial(false) },
  { id: 'semaphore-pingpong-event-loop', label: 'Semaphore ping-pong, await acquire()', family: 'primitive', waits: 'event-loop', sizes: [64], roundTrip: semaphoreTrial(true) },
  { id: 'c-sem-pingpong', label: 'C POSIX semaphore ping-pong (reference)', family: 'reference', waits: 'block', sizes: [64], roundTrip: (a) => reference('sempingpong', a) },
].filter((m) => notes.length === 0 || !references.includes(m.id));
