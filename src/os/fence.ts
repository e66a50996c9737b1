/**
 * Asymmetric fences between processes (membarrier(2), native/futex.cc).
 *
 * A commit that must wake sleepers is a Dekker hand-off: the writer stores the commit and then
 * loads the sleeper count, the sleeper increments the count and then loads the commit, and each
 * side needs a full fence between its store and its load (else both can miss the other, and the
 * sleeper sleeps through the commit). A seq-cst Atomics.store is that fence, and on x86 it is a
 * locked instruction that waits until every earlier store has reached the cache, including
 * payload stores to lines the reader's core holds. When the writer is hot and the sleeper
 * rare, the fence can move to the sleeper's side: the writer stores plainly, and the sleeper,
 * after its increment, makes every thread of every registered process execute a full barrier
 * (heavyFence) before it loads the commit. Either the writer's commit is then visible to the
 * sleeper, or the writer's later load of the count sees the increment.
 *
 * Only on x86, where plain stores keep their program order (TSO), which the writers' protocols
 * rely on besides the fence; and only in processes whose registration succeeded.
 */
import { native } from './native.js';

const STORES_IN_ORDER = process.arch === 'x64' || process.arch === 'ia32';

let registered: boolean | undefined;

/**
 * True if this process may commit with plain stores whose readers fence with heavyFence():
 * x86, and this process is registered for global expedited barriers (asked once).
 */
export function lightCommitsAllowed(): boolean {
  if (registered === undefined) {
    try {
      registered = STORES_IN_ORDER && native().membarrierRegister?.() === true;
    } catch {
      registered = false;
    }
  }
  return registered;
}

/**
 * The sleeper's side: every running thread of every registered process executes a full barrier
 * before this returns (a few µs). False if the kernel refused: the caller must then not sleep
 * longer than it could afford to miss a commit by.
 */
export function heavyFence(): boolean {
  // Elsewhere no process of this machine commits with plain stores: nothing to fence against.
  if (!STORES_IN_ORDER) return true;
  try {
    return native().membarrierGlobal?.() === true;
  } catch {
    return false;
  }
}
