/**
 * futex: Atomics.wait / waitAsync / notify that work across processes.
 *
 * V8's Atomics.wait keeps its waiters in a list inside the process, so Atomics.notify in another
 * process never reaches them. These functions use the kernel's shared futex on the same words
 * instead: any process (or thread) that maps the same SharedMemory can wake any other.
 *
 * Semantics follow Atomics, with one documented difference for waitAsync: async waiters of one
 * thread that wait on the same word with the same expected value share one kernel wait, so a
 * wake resolves all of them with 'ok', and a word that changes while they wait also resolves
 * them with 'ok' (the notify may have come before the kernel wait began). Both are wake-ups a
 * futex caller must tolerate anyway: always re-check the condition after waking.
 *
 * Notifications from futex.notify do not wake Atomics.wait waiters and vice versa: use one or
 * the other on a given word.
 */
import { IpcError, abortError, errnoError } from '../errors.js';
import { native, type AsyncWaitApi } from './native.js';
import { checkSignal, checkTimeout } from '../options.js';
import { startTimer } from '../deadline.js';

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

const RESULTS: readonly WaitResult[] = ['ok', 'not-equal', 'timed-out'];

/** Checks the view and index; returns the byte offset of the word inside the buffer. */
function wordOffset(i32: unknown, index: unknown, where: string): number {
  if (!(i32 instanceof Int32Array) || !(i32.buffer instanceof SharedArrayBuffer)) {
    throw new TypeError(`${where}: expected an Int32Array over a SharedArrayBuffer`);
  }
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= i32.length) {
    throw new RangeError(`${where}: index ${String(index)} is out of range [0, ${i32.length})`);
  }
  return i32.byteOffset + index * 4;
}

function checkExpected(expected: unknown, where: string): number {
  if (typeof expected !== 'number') throw new TypeError(`${where}: expected value must be a number`);
  return expected | 0;
}

/** Blocks the calling thread while `i32[index] === expected`, until notified or timed out. */
function wait(i32: Int32Array, index: number, expected: number, timeout?: number): WaitResult {
  const offset = wordOffset(i32, index, 'futex.wait');
  const value = checkExpected(expected, 'futex.wait');
  const ms = checkTimeout(timeout, 'futex.wait');
  try {
    return RESULTS[native().futexWait(i32.buffer as SharedArrayBuffer, offset, value, ms)]!;
  } catch (err) {
    throw errnoError(err, 'futex.wait');
  }
}

/** Wakes up to `count` (default: all) waiters on `i32[index]`, in any process. */
function notify(i32: Int32Array, index: number, count: number = Infinity): number {
  const offset = wordOffset(i32, index, 'futex.notify');
  if (typeof count !== 'number' || Number.isNaN(count) || count < 0) {
    throw new RangeError('futex.notify: count must be a number >= 0');
  }
  if (count === 0) return 0;
  return native().futexWake(i32.buffer as SharedArrayBuffer, offset, Math.floor(count));
}

// --- async --------------------------------------------------------------------------------

interface Waiter {
  settle(result: WaitResult): void;
}

let api: AsyncWaitApi | undefined;
const groups = new Map<number, Set<Waiter>>();

function asyncApi(): AsyncWaitApi {
  if (api === undefined) {
    api = native().asyncInit((ids) => {
      for (const id of ids) {
        const waiters = groups.get(id);
        if (waiters === undefined) continue;
        groups.delete(id);
        for (const waiter of waiters) waiter.settle('ok');
      }
    });
  }
  return api;
}

/**
 * Resolves while `i32[index] === expected` once woken ('ok'), or 'timed-out'; 'not-equal' at
 * once if the word differs. Never blocks the event loop. The optional signal rejects the
 * promise with IPC_ERR_ABORTED.
 */
function waitAsync(
  i32: Int32Array,
  index: number,
  expected: number,
  timeout?: number,
  options?: { signal?: AbortSignal },
): Promise<WaitResult> {
  try {
    const offset = wordOffset(i32, index, 'futex.waitAsync');
    const value = checkExpected(expected, 'futex.waitAsync');
    const ms = checkTimeout(timeout, 'futex.waitAsync');
    const signal = checkSignal(options?.signal, 'futex.waitAsync');
    if (signal?.aborted) return Promise.reject(abortError('futex.waitAsync', signal.reason));
    if (Atomics.load(i32, index) !== value) return Promise.resolve('not-equal');
    if (ms === 0) return Promise.resolve('timed-out');
    const watcher = asyncApi();
    let id: number;
    try {
      id = watcher.watch(i32.buffer as SharedArrayBuffer, offset, value);
    } catch (err) {
      if ((err as { errno?: string }).errno === 'EAGAIN') {
        const { maxThreads } = watcher.mechanism();
        throw new IpcError(
          'IPC_ERR_LIMIT',
          `futex.waitAsync: this thread already waits on ${maxThreads} different words, the most the fallback ` +
            'for kernels without futex_waitv (Linux before 5.16) allows (one thread per word); ' +
            'raise INTERPROCESS_FUTEX_THREADS or wait on fewer words at once',
          { cause: err },
        );
      }
      throw errnoError(err, 'futex.waitAsync');
    }
    return new Promise<WaitResult>((resolve, reject) => {
      let cancelTimer: (() => void) | undefined;
      const onAbort = (): void => {
        leave();
        reject(abortError('futex.waitAsync', signal?.reason));
      };
      const waiter: Waiter = {
        settle(result) {
          cancelTimer?.();
          signal?.removeEventListener('abort', onAbort);
          resolve(result);
        },
      };
      // Give up our place in the group; the last one to leave stops the kernel wait.
      const leave = (): void => {
        const set = groups.get(id);
        if (set?.delete(waiter)) {
          if (set.size === 0) groups.delete(id);
          watcher.unwatch(id);
        }
        cancelTimer?.();
        signal?.removeEventListener('abort', onAbort);
      };
      let set = groups.get(id);
      if (set === undefined) groups.set(id, (set = new Set()));
      set.add(waiter);
      if (ms !== Infinity) {
        cancelTimer = startTimer(ms, () => {
          leave();
          resolve('timed-out');
        });
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Number of kernel watcher threads this thread uses for waitAsync (for tests and `inspect`). */
function asyncWatcherThreads(): number {
  return api === undefined ? 0 : api.watcherCount();
}

/**
 * How waitAsync waits in this thread: 'futex_waitv' (Linux 5.16 and later: a few threads watch
 * up to 127 words each) or 'threads' (older kernels, or INTERPROCESS_FUTEX_WAITV=0: one pooled
 * thread per waited word). Probed once per process when the addon loads.
 */
function asyncWaitMechanism(): 'futex_waitv' | 'threads' {
  return asyncApi().mechanism().name;
}

export const futex = { wait, waitAsync, notify };
export { asyncWatcherThreads, asyncWaitMechanism };
