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
import { IpcError, closedError } from '../errors.js';
import { checkInteger, checkOptions, checkSignal, checkTimeout } from '../options.js';
import { Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { attachAt, attachNamed, namedOptions, placedByteLength, placedOptions, type Attached, type How, type NamedObjectOptions, type PlacedOptions, type SyncLayout } from './placement.js';
import { runAsync, runSync, type SyncWaitOptions, type WaitOp, type WaitOptions } from './wait.js';

const PERMITS = 0;
const SLEEPERS = 1;
const MAX_PERMITS = 0x7fffffff;

function layoutFor(initial: number): SyncLayout {
  return {
    kind: Kind.Semaphore,
    version: 1,
    bodyBytes: 64,
    init(buffer, base) {
      const i32 = new Int32Array(buffer, base, 16);
      i32.fill(0);
      i32[PERMITS] = initial; // published with the header's state flag
    },
  };
}

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

const token = Symbol('Semaphore');

export class Semaphore {
  readonly name: string | undefined;
  readonly created: boolean;
  #i32: Int32Array | undefined;
  #shm: SharedMemory | undefined;
  #what: string;

  /** Bytes a Semaphore takes inside a SharedMemory. */
  static readonly byteLength: number = placedByteLength(layoutFor(0));

  /** @internal */
  constructor(key: symbol, name: string | undefined, at: Attached) {
    if (key !== token) throw new TypeError('use Semaphore.create, open, openOrCreate, createAt, openAt or openOrCreateAt');
    this.name = name;
    this.created = at.created;
    this.#shm = at.shm;
    this.#what = at.what;
    this.#i32 = new Int32Array(at.buffer, at.base, 16);
  }

  static create(name: string, options?: SemaphoreOptions): Semaphore {
    return named(name, 'create', options, 'Semaphore.create');
  }

  static open(name: string, options?: Pick<SemaphoreOptions, 'initTimeout' | 'allowOtherOwner'>): Semaphore {
    return named(name, 'open', options, 'Semaphore.open');
  }

  static openOrCreate(name: string, options?: SemaphoreOptions): Semaphore {
    return named(name, 'openOrCreate', options, 'Semaphore.openOrCreate');
  }

  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  static createAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: SemaphorePlacedOptions): Semaphore {
    return placed(memory, byteOffset, 'create', options, 'Semaphore.createAt');
  }

  static openAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: PlacedOptions): Semaphore {
    return placed(memory, byteOffset, 'open', options, 'Semaphore.openAt');
  }

  static openOrCreateAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: SemaphorePlacedOptions): Semaphore {
    return placed(memory, byteOffset, 'openOrCreate', options, 'Semaphore.openOrCreateAt');
  }

  /** Takes a permit if one is available; never blocks. */
  tryAcquire(): boolean {
    return takePermit(this.#live());
  }

  async acquire(options?: AcquireOptions): Promise<void> {
    const opts = checkOptions<AcquireOptions>(options, ['timeout', 'signal'], 'Semaphore.acquire');
    const timeout = checkTimeout(opts.timeout, 'Semaphore.acquire');
    const signal = checkSignal(opts.signal, 'Semaphore.acquire');
    await runAsync(new AcquireOp(this.#live()), timeout, signal, `${this.#what}: acquire`);
  }

  acquireSync(options?: AcquireSyncOptions): void {
    const opts = checkOptions<AcquireSyncOptions>(options, ['timeout'], 'Semaphore.acquireSync');
    runSync(new AcquireOp(this.#live()), checkTimeout(opts.timeout, 'Semaphore.acquireSync'), `${this.#what}: acquire`);
  }

  /** Returns `count` permits (default 1) and wakes up to that many waiters. */
  release(count = 1): void {
    const i32 = this.#live();
    checkInteger(count, 'Semaphore.release: count', 1, MAX_PERMITS);
    let permits = Atomics.load(i32, PERMITS);
    for (;;) {
      if (permits > MAX_PERMITS - count) {
        throw new IpcError('IPC_ERR_LIMIT', `${this.#what}: release of ${count} would exceed ${MAX_PERMITS} permits`);
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
    return Atomics.load(this.#live(), PERMITS);
  }

  get closed(): boolean {
    return this.#i32 === undefined;
  }

  close(): void {
    this.#i32 = undefined;
    this.#shm?.close();
    this.#shm = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #live(): Int32Array {
    if (this.#i32 === undefined) throw closedError(this.#what);
    return this.#i32;
  }
}

function initialOf(value: unknown, where: string): number {
  return value === undefined ? 0 : checkInteger(value, `${where}: initial`, 0, MAX_PERMITS);
}

function named(name: string, how: How, options: unknown, where: string): Semaphore {
  const opts = namedOptions<{ initial?: number }>(options, how === 'open' ? [] : ['initial'], where);
  return new Semaphore(token, name, attachNamed(name, how, 'Semaphore', layoutFor(initialOf(opts.initial, where)), opts));
}

function placed(memory: unknown, byteOffset: unknown, how: How, options: unknown, where: string): Semaphore {
  const opts = placedOptions(options, how === 'open' ? [] : ['initial'], where);
  return new Semaphore(token, undefined, attachAt(memory, byteOffset, how, 'Semaphore', layoutFor(initialOf(opts['initial'], where)), opts, where));
}
