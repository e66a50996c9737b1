// The sync primitives beside C references in the same run:
//   mutex-uncontended     lock + unlock pairs in one process (throughput; ns = 1e9 / rate)
//   mutex-handoff-*       a Mutex handed between two processes while the waiter sleeps in
//                         lockSync (block) or awaits lock() (event-loop): unlock-to-acquire ns
//   semaphore-pingpong-*  two Semaphores bounced between two processes: round trip
//   c-pthread-*, c-sem-pingpong  the same with a robust process-shared pthread mutex and POSIX
//                         semaphores (bench/native/sync_ref.c)
// Try it: node bin/interprocess.js bench --only mutex,semaphore,c-pthread,c-sem
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cReferencesNote, forkPeer, nextMessage, now, runCReference } from '../util.mjs';

const require = createRequire(import.meta.url);
const { SharedMemory, Mutex, Semaphore } = require('../../dist/cjs/index.js');
const here = path.dirname(fileURLToPath(import.meta.url));
const peer = path.join(here, '..', 'peers', 'sync-peer.mjs');

/** Byte offsets in the bench's shared memory. */
export const layout = { mutex: 0, ping: 256, pong: 512, intent: 1024, stamp: 1040 };
/** How long a holder keeps the lock after the waiter announced itself: it is asleep by then. */
const HOLD_NS = 50_000n;

/**
 * One side of the hand-off (the same protocol as sync_ref.c): the holder waits for the other
 * side's intent, lets it fall asleep in the lock, stamps the time and unlocks; the waiter
 * records unlock-to-acquire and says it has the lock (`taken`), which the old holder waits for
 * before it queues up in turn, so that it never barges back in ahead of the woken waiter.
 */
export async function handoff(mutex, shm, rounds, holdingFirst, useAsync, samples) {
  const flags = new Int32Array(shm.buffer, layout.intent, 2); // [intent, taken]
  const stamp = new BigInt64Array(shm.buffer, layout.stamp, 1);
  let holding = holdingFirst;
  for (let i = 0; i < rounds; i++) {
    if (holding) {
      while (Atomics.load(flags, 0) !== 1);
      const until = now() + HOLD_NS;
      while (now() < until);
      Atomics.store(flags, 0, 0);
      Atomics.store(flags, 1, 0);
      Atomics.store(stamp, 0, now());
      mutex.unlock();
      while (Atomics.load(flags, 1) !== 1);
    } else {
      Atomics.store(flags, 0, 1);
      if (useAsync) await mutex.lock();
      else mutex.lockSync();
      const got = now();
      if (samples) samples[i >> 1] = Number(got - Atomics.load(stamp, 0));
      Atomics.store(flags, 1, 1);
    }
    holding = !holding;
  }
  if (holding) mutex.unlock();
}

async function withPeer(role, count, cpus, body) {
  const name = `bench-sync-${process.pid}-${role}`;
  const shm = SharedMemory.create(name, { byteLength: 4096 });
  let child;
  try {
    const parts = { mutex: Mutex.createAt(shm, layout.mutex), ping: Semaphore.createAt(shm, layout.ping), pong: Semaphore.createAt(shm, layout.pong) };
    if (role.startsWith('handoff')) parts.mutex.lockSync(); // this side starts as the holder
    child = forkPeer(peer, [name, role, count], cpus[1]);
    await nextMessage(child, 'ready');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const out = await body(shm, parts);
    await exited;
    return out;
  } finally {
    child?.kill();
    shm.close();
    SharedMemory.remove(name);
  }
}

function handoffTrial(useAsync) {
  return ({ count, cpus }) =>
    withPeer(useAsync ? 'handoff-async' : 'handoff-sync', count, cpus, async (shm, { mutex }) => {
      const samples = new Float64Array(count);
      await handoff(mutex, shm, 2 * count, true, useAsync, samples);
      return samples;
    });
}

function semaphoreTrial(useAsync) {
  return ({ count, cpus }) =>
    withPeer(useAsync ? 'sem-async' : 'sem-sync', count, cpus, async (shm, { ping, pong }) => {
      const samples = new Float64Array(count);
      const warmup = Math.min(1000, count);
      for (let i = -warmup; i < count; i++) {
        const t0 = now();
        ping.release();
        if (useAsync) await pong.acquire();
        else pong.acquireSync();
        if (i >= 0) samples[i] = Number(now() - t0);
      }
      Atomics.store(new Int32Array(shm.buffer, layout.intent, 1), 0, 1); // stop
      ping.release();
      return samples;
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

const references = ['c-pthread-uncontended', 'c-pthread-handoff', 'c-sem-pingpong'];
export const notes = [cReferencesNote(references)].filter(Boolean);

export default [
  { id: 'mutex-uncontended', label: 'Mutex lock+unlock, uncontended (pairs/s)', family: 'primitive', waits: 'spin', sizes: [64], throughput: uncontended },
  { id: 'c-pthread-uncontended', label: 'C robust pthread mutex lock+unlock (reference)', family: 'reference', waits: 'spin', sizes: [64], throughput: (a) => reference('uncontended', a) },
  { id: 'mutex-handoff-block', label: 'Mutex hand-off to a sleeping lockSync', family: 'primitive', waits: 'block', sizes: [64], roundTrip: handoffTrial(false) },
  { id: 'mutex-handoff-event-loop', label: 'Mutex hand-off to an awaiting lock()', family: 'primitive', waits: 'event-loop', sizes: [64], roundTrip: handoffTrial(true) },
  { id: 'c-pthread-handoff', label: 'C robust pthread mutex hand-off (reference)', family: 'reference', waits: 'block', sizes: [64], roundTrip: (a) => reference('handoff', a) },
  { id: 'semaphore-pingpong-block', label: 'Semaphore ping-pong, acquireSync', family: 'primitive', waits: 'block', sizes: [64], roundTrip: semaphoreTrial(false) },
  { id: 'semaphore-pingpong-event-loop', label: 'Semaphore ping-pong, await acquire()', family: 'primitive', waits: 'event-loop', sizes: [64], roundTrip: semaphoreTrial(true) },
  { id: 'c-sem-pingpong', label: 'C POSIX semaphore ping-pong (reference)', family: 'reference', waits: 'block', sizes: [64], roundTrip: (a) => reference('sempingpong', a) },
].filter((m) => notes.length === 0 || !references.includes(m.id));
