// Soak workload: a robust Mutex guarding a two-word update, with workers killed and paused
// inside and outside the critical section.
//
// Each worker increments a shared counter and its own count under the lock, journalling the
// old values first; whoever acquires the lock with IPC_ERR_OWNER_DEAD rolls a half-done update
// back from the journal and calls markConsistent(). Invariant, exact at the end of every epoch:
// counter == the sum of every worker's count. A paused owner must never be taken for dead (its
// update would then be rolled back under its feet and the sums would differ), and no lock may
// ever become IPC_ERR_NOT_RECOVERABLE.
import { Mutex, SharedMemory } from 'interprocess';

export const name = 'mutex';

const MAX_WORKERS = 4096;
// State (Int32Array): the guarded data and the journal.
const COUNTER = 0;
const J_WORKER = 1; // slot + 1 while an update is under way, 0 otherwise
const J_COUNTER = 2;
const J_COUNT = 3;
const RECOVERIES = 4;
const COUNTS = 16;

/** Rolls back an update its worker did not finish (call holding the lock). */
function repair(s) {
  const worker = Atomics.load(s, J_WORKER);
  if (worker !== 0) {
    Atomics.store(s, COUNTER, Atomics.load(s, J_COUNTER));
    Atomics.store(s, COUNTS + worker - 1, Atomics.load(s, J_COUNT));
    Atomics.store(s, J_WORKER, 0);
  }
  Atomics.add(s, RECOVERIES, 1);
}

async function acquire(m, s, style) {
  try {
    if (style === 'async') await m.lock();
    else m.lockSync();
  } catch (err) {
    if (err.code !== 'IPC_ERR_OWNER_DEAD') throw err;
    repair(s);
    m.markConsistent();
  }
}

export const roles = {
  async worker({ mutex, stateName, slot, style }, control) {
    const m = Mutex.open(mutex);
    const s = new Int32Array(SharedMemory.open(stateName).buffer);
    control.report('ready');
    let done = 0;
    while (!control.stopping) {
      // A survivor lives across epochs and holds off while the orchestrator checks.
      if (control.commands[0]?.cmd === 'idle') {
        control.commands.shift();
        control.report('idle');
        while (control.commands[0]?.cmd !== 'go' && !control.stopping) await new Promise((r) => setTimeout(r, 10));
        control.commands.shift();
        continue;
      }
      await acquire(m, s, style);
      const counter = Atomics.load(s, COUNTER);
      const mine = Atomics.load(s, COUNTS + slot);
      Atomics.store(s, J_COUNTER, counter);
      Atomics.store(s, J_COUNT, mine);
      Atomics.store(s, J_WORKER, slot + 1); // the journal is valid from here
      Atomics.store(s, COUNTER, counter + 1);
      Atomics.store(s, COUNTS + slot, mine + 1);
      Atomics.store(s, J_WORKER, 0); // the update is complete
      m.unlock();
      if ((++done & 63) === 0) await new Promise((r) => setImmediate(r));
    }
    m.close();
    return { done };
  },
};

let state;
let shared;

function spawnWorker(ctx, chaos = 'kill') {
  if (shared.nextSlot >= MAX_WORKERS) return undefined;
  const slot = shared.nextSlot++;
  const style = ctx.random.pick(['sync', 'async']);
  const proc = ctx.spawn(name, 'worker', { mutex: shared.mutex, stateName: shared.stateName, slot, style }, { chaos });
  if (chaos === 'kill') state.procs.push(proc);
  return proc;
}

export async function start(ctx) {
  state = { procs: [], kills: 0 };
  if (shared === undefined) {
    // One lock and one counter for the whole run: the invariant is cumulative. One worker is
    // paused but never killed; the summary follows its memory.
    shared = { mutex: `${ctx.run}-m`, stateName: `${ctx.run}-ms`, nextSlot: 0 };
    shared.m = Mutex.create(shared.mutex);
    shared.shm = SharedMemory.create(shared.stateName, { byteLength: (COUNTS + MAX_WORKERS) * 4 });
    shared.survivor = spawnWorker(ctx, 'pause');
    await shared.survivor.next('ready');
  } else {
    shared.survivor.send({ cmd: 'go' });
  }
  spawnWorker(ctx);
  spawnWorker(ctx);
  await Promise.all(state.procs.map((p) => p.next('ready')));
}

export function respawn(ctx) {
  state.kills++;
  spawnWorker(ctx);
}

export async function finish(ctx) {
  await Promise.all(state.procs.filter((p) => !p.dead && !p.killedByChaos).map((p) => p.stop(60_000)));
  shared.survivor.send({ cmd: 'idle' });
  await shared.survivor.next('idle');
  const s = new Int32Array(shared.shm.buffer);
  // The last holder may have been killed: take the lock once to repair what it left.
  await acquire(shared.m, s, 'sync');
  let sum = 0;
  for (let w = 0; w < MAX_WORKERS; w++) sum += Atomics.load(s, COUNTS + w);
  const counter = Atomics.load(s, COUNTER);
  shared.m.unlock();
  if (counter !== sum) ctx.violation(name, `counter ${counter} but the workers' counts add up to ${sum}`);
  ctx.add(name, { kills: state.kills });
  ctx.set(name, { operations: counter, ownerDeadRecoveries: Atomics.load(s, RECOVERIES) });
}

export async function close() {
  if (shared === undefined) return;
  await shared.survivor.stop(30_000).catch(() => {});
  shared.m.close();
  shared.shm.close();
  Mutex.remove(shared.mutex);
  SharedMemory.remove(shared.stateName);
}
