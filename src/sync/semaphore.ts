/**
 * Semaphore: a counting semaphore across processes and threads. Contract: acquire takes one
 * permit, waiting while there are none; release returns permits and wakes as many waiters; the
 * number of permits handed out never exceeds what was created plus released.
 *
 * Body layout (behind the 64-byte common header; int32 words):
 *   offset  size  field
 *   0       4     permits   available permits, 0 .. 2^31-1 (the futex word acquirers sleep on)
 *   4       4     sleepers  acquirers that may sleep; release calls futex.notify only if > 0
 *   8       56    reserved (zero)
 *
 * Acquire is a CAS loop on `permits` (no system call while permits are available). A sleeper
 * first increments `sleepers`, then re-reads `permits` and sleeps on the value 0; release adds
 * permits and then reads `sleepers`. Both sides are sequentially consistent Atomics, so either
 * the sleeper sees the permit or the releaser sees the sleeper (and the kernel's value check
 * covers the gap between). A sleeper that dies leaves `sleepers` high: later releases make a
 * spare wake-up system call, nothing worse.
 *
 * Permits have no owner: a process that dies holding permits does not give them back.
 */
import { IpcError } from '../errors.js';
import { checkInteger, waitOptions } from '../options.js';
import { HEADER_BYTES, Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { Factory, SyncPrimitive, bodyWords, live } from './lifecycle.js';
import { placedByteLength, type NamedObjectOptions, type PlacedOptions, type SyncLayout } from './placement.js';
import { runAsync, runSync, type SyncWaitOptions, type WaitOp, type WaitOptions } from './wait.js';

const PERMITS = 0;
const SLEEPERS = 1;
const MAX_PERMITS = 0x7fffffff;

/** The body, described once: created with `initial` permits; `inspect` shows both words. */
export const semaphoreLayout: SyncLayout<number> = {
  kind: Kind.Semaphore,
  version: 1,
  bodyBytes: 64,
  init(buffer, base, initial) {
    const i32 = new Int32Array(buffer, base, 16);
    i32.fill(0);
    i32[PERMITS] = initial; // published with the header's state flag
  },
  describe(buffer) {
    const i32 = new Int32Array(buffer, HEADER_BYTES, 2);
    return { permits: Atomics.load(i32, PERMITS), sleepers: Atomics.load(i32, SLEEPERS) };
  },
};

function takePermit(i32: Int32Array): boolean {
  let permits = Atomics.load(i32, PERMITS);
  while (permits > 0) {
    // Takes one permit; pairs with the add in release.
    const seen = Atomics.compareExchange(i32, PERMITS, permits, permits - 1);
    if (seen === permits) return true;
    permits = seen;
  }
  return false;
}

class AcquireOp implements WaitOp {
  parkIndex = PERMITS;
  parkExpected = 0;
  parkInterval = Infinity;
  #sleeper = false;

  constructor(readonly i32: Int32Array) {}

  attempt(): boolean {
    return takePermit(this.i32);
  }

  spinWorthwhile(): boolean {
    return true;
  }

  prepare(): boolean {
    if (!this.#sleeper) {
      Atomics.add(this.i32, SLEEPERS, 1); // read by release after it adds permits
      this.#sleeper = true;
    }
    if (takePermit(this.i32)) {
      this.#unregister();
      return true;
    }
    return false;
  }

  leave(): void {
    if (!this.#sleeper) return;
    this.#unregister();
    // A release may have woken us for a permit we are not taking: hand the wake-up on.
    if (Atomics.load(this.i32, PERMITS) > 0 && Atomics.load(this.i32, SLEEPERS) > 0) futex.notify(this.i32, PERMITS, 1);
  }

  #unregister(): void {
    Atomics.sub(this.i32, SLEEPERS, 1);
    this.#sleeper = false;
  }
}

export interface SemaphoreOptions extends NamedObjectOptions {
  /** Permits a new semaphore starts with (default 0). Ignored when an existing one is opened. */
  initial?: number;
}
export interface SemaphorePlacedOptions extends PlacedOptions {
  initial?: number;
}
export type AcquireOptions = WaitOptions;
export type AcquireSyncOptions = SyncWaitOptions;

export class Semaphore extends SyncPrimitive {
  /** Bytes a Semaphore takes inside a SharedMemory. */
  static readonly byteLength: number = placedByteLength(semaphoreLayout);

  /** Creates the semaphore `name` with `initial` permits (default 0); IPC_ERR_EXISTS if the name is taken. */
  static create(name: string, options?: SemaphoreOptions): Semaphore {
    return factory.named(name, 'create', options);
  }

  /** Opens the existing semaphore `name`; IPC_ERR_NOT_FOUND if it is missing. */
  static open(name: string, options?: Pick<SemaphoreOptions, 'initTimeout' | 'allowOtherOwner'>): Semaphore {
    return factory.named(name, 'open', options);
  }

  /** Opens the semaphore `name`, creating it with `initial` permits if it is missing. */
  static openOrCreate(name: string, options?: SemaphoreOptions): Semaphore {
    return factory.named(name, 'openOrCreate', options);
  }

  /** Removes the name; processes that have it open keep using it. True if it existed. */
  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  /** Initializes a new Semaphore in zeroed memory at byteOffset (a multiple of 8). */
  static createAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: SemaphorePlacedOptions): Semaphore {
    return factory.placed(memory, byteOffset, 'create', options);
  }

  /** Opens the Semaphore that createAt initialized at byteOffset. */
  static openAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: PlacedOptions): Semaphore {
    return factory.placed(memory, byteOffset, 'open', options);
  }

  /** Opens the Semaphore at byteOffset, initializing it if the memory there is still zero. */
  static openOrCreateAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: SemaphorePlacedOptions): Semaphore {
    return factory.placed(memory, byteOffset, 'openOrCreate', options);
  }

  /** Takes a permit if one is available; never blocks. */
  tryAcquire(): boolean {
    return takePermit(live(this).i32);
  }

  /** Takes a permit, waiting (without blocking the event loop) while there is none. */
  async acquire(options?: AcquireOptions): Promise<void> {
    const { timeout, signal } = waitOptions(options, 'Semaphore.acquire', true);
    const { i32, what, spin } = live(this);
    await runAsync(new AcquireOp(i32), spin, timeout, signal, `${what}: acquire`);
  }

  /** Takes a permit, blocking this thread while there is none. */
  acquireSync(options?: AcquireSyncOptions): void {
    const { timeout } = waitOptions(options, 'Semaphore.acquireSync', false);
    const { i32, what, spin } = live(this);
    runSync(new AcquireOp(i32), spin, timeout, `${what}: acquire`);
  }

  /** Returns `count` permits (default 1) and wakes up to that many waiters. */
  release(count = 1): void {
    const core = live(this);
    const i32 = core.i32;
    checkInteger(count, 'Semaphore.release: count', 1, MAX_PERMITS);
    let permits = Atomics.load(i32, PERMITS);
    for (;;) {
      if (permits > MAX_PERMITS - count) {
        throw new IpcError('IPC_ERR_LIMIT', `${core.what}: release of ${count} would exceed ${MAX_PERMITS} permits`);
      }
      // Publishes the permits (and what was written before); pairs with the CAS in takePermit.
      const seen = Atomics.compareExchange(i32, PERMITS, permits, permits + count);
      if (seen === permits) break;
      permits = seen;
    }
    if (Atomics.load(i32, SLEEPERS) > 0) futex.notify(i32, PERMITS, count);
  }

  /** Permits available right now (a snapshot). */
  get value(): number {
    return Atomics.load(live(this).i32, PERMITS);
  }
}

const factory = new Factory({
  kindName: 'Semaphore',
  layout: semaphoreLayout,
  // `initial` only means something to a creator; open refuses it rather than ignore it.
  options: (how) => (how === 'open' ? [] : ['initial']),
  params: (options, _how, where) => (options['initial'] === undefined ? 0 : checkInteger(options['initial'], `${where}: initial`, 0, MAX_PERMITS)),
  core: (at) => bodyWords(at, semaphoreLayout),
  type: Semaphore,
});
