/**
 * The three flavours of every blocking operation of the sync primitives, and the one
 * spin-then-park policy they all wait with, written once.
 *
 * A primitive describes one blocking operation as a WaitOp: `attempt()` tries without becoming a
 * waiter (the fast path and the spin phase), `prepare(check)` becomes a waiter if needed and
 * either finishes or names the futex word and value to sleep on, and `leave()` undoes the
 * waiter's registration when it gives up (timeout, abort, error). The drivers below turn that
 * into tryX (attempt once), xSync (spin, then futex.wait) and x (spin, then futex.waitAsync,
 * which never blocks the event loop).
 *
 * Spin, then park (SpinPolicy): both drivers retry attempt() for a bounded time before they
 * sleep, because a hand-off from another core usually comes within a microsecond, while a
 * sleeper is woken in tens of microseconds (futex.wait: the kernel's wake-up; futex.waitAsync:
 * a watcher thread and then the event loop). The bound adapts per handle: after
 * MISSES_BEFORE_SHORT spins in a row that ended in a sleep (the other side is slow, idle, or
 * shares our CPU and cannot run while we spin), spins are cut to SHORT_SPIN_MS, except every
 * 16th wait, which spins fully to find out whether things changed; one spin that pays off
 * restores full spins. A parked waiter costs no CPU: it is asleep in the kernel (sync) or its
 * watcher thread is (async), apart from the owner checks of robust locks (below).
 *
 * `check` is true on the first prepare and after a park that ended by its own interval: the
 * moment to ask whether a lock owner is still alive. A timeout only triggers that check; what
 * to do is decided by the kernel's answer, never by the clock. The first interval is the op's
 * `parkInterval`; each check that changed nothing doubles it, up to MAX_CHECK_INTERVAL_MS, and
 * any other wake-up starts again from `parkInterval`: a waiter behind a long-lived owner wakes
 * about once a second (each wake-up costs a thread or two a trip through the scheduler), and a
 * death is still noticed within that, at once by anyone who arrives after it.
 */
import { abortError, isIpcError, timeoutError } from '../errors.js';
import { futex } from '../os/futex.js';

export interface WaitOp {
  readonly i32: Int32Array;
  /** Tries once without registering as a waiter; true when the operation is done. */
  attempt(): boolean;
  /** True when done; otherwise sets parkIndex / parkExpected / parkInterval to sleep on. */
  prepare(check: boolean): boolean;
  /** Gives up: undo any registration and pass on a wake-up this waiter may have consumed. */
  leave(): void;
  /** False when spinning cannot help (the holder is this very thread). */
  spinWorthwhile(): boolean;
  parkIndex: number;
  parkExpected: number;
  parkInterval: number;
}

/** How long a waiter spins before it parks (ms): long enough to catch a hand-off from another core. */
export const FULL_SPIN_MS = 0.02;
/** The spin after spins that did not pay off (ms): a holder about to let go is still caught. */
export const SHORT_SPIN_MS = 0.002;
/** Spins in a row that end in a park before spins are cut to SHORT_SPIN_MS. */
export const MISSES_BEFORE_SHORT = 8;

/**
 * The spin-then-park policy of one handle (per thread: state is not shared). Every blocking
 * call of every primitive asks it how long to spin, and tells it whether the spin paid off.
 */
export class SpinPolicy {
  /** Spins in a row that ended in a park (saturates at MISSES_BEFORE_SHORT), and waits so far. */
  #misses = 0;
  #waits = 0;

  /** How long the next spin may last (ms). */
  budget(): number {
    this.#waits = (this.#waits + 1) | 0;
    return this.#misses < MISSES_BEFORE_SHORT || (this.#waits & 15) === 0 ? FULL_SPIN_MS : SHORT_SPIN_MS;
  }

  /** The spin ended with the operation done. */
  paid(): void {
    this.#misses = 0;
  }

  /** The spin ended without it: the waiter parks. */
  missed(): void {
    if (this.#misses < MISSES_BEFORE_SHORT) this.#misses++;
  }
}

/** The longest a parked waiter sleeps between owner checks (ms). */
export const MAX_CHECK_INTERVAL_MS = 1000;

/** How long to park before the next owner check: parkInterval doubled `backoff` times, capped. */
export function checkInterval(parkInterval: number, backoff: number): number {
  return parkInterval === Infinity ? Infinity : Math.min(parkInterval * 2 ** backoff, MAX_CHECK_INTERVAL_MS);
}

/** Retries attempt() for the policy's budget; true when the operation is done. */
function spin(op: WaitOp, policy: SpinPolicy): boolean {
  if (!op.spinWorthwhile()) return false;
  const end = performance.now() + policy.budget();
  for (let i = 1; ; i++) {
    if (op.attempt()) {
      policy.paid();
      return true;
    }
    // Reading the clock costs more than an attempt: look at it every 16th round.
    if ((i & 15) === 0 && performance.now() > end) {
      policy.missed();
      return false;
    }
  }
}

export function runSync(op: WaitOp, policy: SpinPolicy, timeout: number, what: string): void {
  try {
    if (op.attempt()) return;
    if (timeout === 0) throw timeoutError(what, timeout);
    if (spin(op, policy)) return;
    const deadline = timeout === Infinity ? Infinity : performance.now() + timeout;
    let check = true;
    let backoff = 0;
    for (;;) {
      if (op.prepare(check)) return;
      const left = deadline - performance.now();
      if (left <= 0) throw timeoutError(what, timeout);
      const result = futex.wait(op.i32, op.parkIndex, op.parkExpected, Math.min(left, checkInterval(op.parkInterval, backoff)));
      check = result === 'timed-out';
      backoff = check ? Math.min(backoff + 1, 8) : 0;
    }
  } catch (err) {
    op.leave();
    throw err;
  }
}

export async function runAsync(op: WaitOp, policy: SpinPolicy, timeout: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  if (signal?.aborted) throw abortError(what, signal.reason);
  try {
    if (op.attempt()) return;
    if (timeout === 0) throw timeoutError(what, timeout);
    // The spin blocks the loop for at most FULL_SPIN_MS, and turns a wake through a watcher
    // thread (tens of µs) into a sub-µs hand-off when the holder is about to let go.
    if (spin(op, policy)) return;
    const deadline = timeout === Infinity ? Infinity : performance.now() + timeout;
    const options = signal === undefined ? undefined : { signal };
    let check = true;
    let backoff = 0;
    for (;;) {
      if (op.prepare(check)) return;
      const left = deadline - performance.now();
      if (left <= 0) throw timeoutError(what, timeout);
      let result;
      try {
        result = await futex.waitAsync(op.i32, op.parkIndex, op.parkExpected, Math.min(left, checkInterval(op.parkInterval, backoff)), options);
      } catch (err) {
        if (isIpcError(err, 'IPC_ERR_ABORTED')) throw abortError(what, signal?.reason);
        throw err;
      }
      check = result === 'timed-out';
      backoff = check ? Math.min(backoff + 1, 8) : 0;
    }
  } catch (err) {
    op.leave();
    throw err;
  }
}

/** The `{ timeout, signal }` of an async call and the `{ timeout }` of a sync one. */
export interface WaitOptions {
  /** Milliseconds; undefined or Infinity waits forever; 0 only tries. */
  timeout?: number;
  /** Aborting rejects with IPC_ERR_ABORTED and leaves the primitive unchanged. */
  signal?: AbortSignal;
}

export interface SyncWaitOptions {
  timeout?: number;
}
