/**
 * The three flavours of every blocking operation of the sync primitives, written once.
 *
 * A primitive describes one blocking operation as a WaitOp: `attempt()` tries without becoming a
 * waiter (the fast path and the spin phase), `prepare(check)` becomes a waiter if needed and
 * either finishes or names the futex word and value to sleep on, and `leave()` undoes the
 * waiter's registration when it gives up (timeout, abort, error). The drivers below turn that
 * into tryX (attempt once), xSync (spin, then futex.wait) and x (spin briefly, then
 * futex.waitAsync, which never blocks the event loop).
 *
 * `check` is true on the first prepare and after a park that ended by its own interval
 * (`parkInterval` ms): the moment to ask whether a lock owner is still alive. A timeout only
 * triggers that check; what to do is decided by the kernel's answer, never by the clock.
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

/** Spin budget before sleeping: long enough to catch a hand-off from another core (~µs). */
const SPIN_SYNC_ROUNDS = 200;
const SPIN_ASYNC_NS = 20_000;

export function runSync(op: WaitOp, timeout: number, what: string): void {
  try {
    if (op.attempt()) return;
    if (timeout === 0) throw timeoutError(what, timeout);
    if (op.spinWorthwhile()) {
      for (let i = 0; i < SPIN_SYNC_ROUNDS; i++) if (op.attempt()) return;
    }
    const deadline = timeout === Infinity ? Infinity : performance.now() + timeout;
    let check = true;
    for (;;) {
      if (op.prepare(check)) return;
      const left = deadline - performance.now();
      if (left <= 0) throw timeoutError(what, timeout);
      const result = futex.wait(op.i32, op.parkIndex, op.parkExpected, Math.min(left, op.parkInterval));
      check = result === 'timed-out';
    }
  } catch (err) {
    op.leave();
    throw err;
  }
}

export async function runAsync(op: WaitOp, timeout: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  if (signal?.aborted) throw abortError(what, signal.reason);
  try {
    if (op.attempt()) return;
    if (timeout === 0) throw timeoutError(what, timeout);
    // A short spin blocks the loop for at most SPIN_ASYNC_NS, and turns a ~30 µs wake through a
    // watcher thread into a sub-µs hand-off when the holder is about to let go.
    if (op.spinWorthwhile()) {
      const spinUntil = process.hrtime.bigint() + BigInt(SPIN_ASYNC_NS);
      for (let i = 1; ; i++) {
        if (op.attempt()) return;
        if ((i & 31) === 0 && process.hrtime.bigint() > spinUntil) break;
      }
    }
    const deadline = timeout === Infinity ? Infinity : performance.now() + timeout;
    const options = signal === undefined ? undefined : { signal };
    let check = true;
    for (;;) {
      if (op.prepare(check)) return;
      const left = deadline - performance.now();
      if (left <= 0) throw timeoutError(what, timeout);
      let result;
      try {
        result = await futex.waitAsync(op.i32, op.parkIndex, op.parkExpected, Math.min(left, op.parkInterval), options);
      } catch (err) {
        if (isIpcError(err, 'IPC_ERR_ABORTED')) throw abortError(what, signal?.reason);
        throw err;
      }
      check = result === 'timed-out';
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
