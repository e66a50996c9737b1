/**
 * Mutex: a robust, non-recursive lock across processes and threads (POSIX robust-mutex
 * semantics). Contract: at most one thread holds it; a holder that dies is detected through its
 * lifeline and the next locker gets the lock with IPC_ERR_OWNER_DEAD.
 *
 * Body layout (behind the 64-byte common header; int32 words, one cache line):
 *   offset  size  field
 *   0       4     state         the robust lock word (robust.ts): 0 | owner token
 *                               [| WAITERS] [| INCONSISTENT] | NOT_RECOVERABLE
 *   4       60    reserved (zero)
 *
 * Uncontended lock + unlock is one CAS, one load and one exchange: no native call, no system
 * call. futex.notify is called only when the WAITERS flag says someone sleeps. Ownership is per
 * thread (the lifeline token), so two async tasks of one thread queue up behind each other.
 */
import { closedError } from '../errors.js';
import { checkOptions, checkSignal, checkTimeout } from '../options.js';
import { Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { OWNER_MASK, openLifeline, type Lifeline } from '../os/lifeline.js';
import { attachAt, attachNamed, namedOptions, placedByteLength, placedOptions, type Attached, type How, type NamedObjectOptions, type PlacedOptions, type SyncLayout } from './placement.js';
import {
  CHECK_INTERVAL_MS,
  NO,
  NOT_RECOVERABLE,
  YES,
  RECOVERED,
  deadlockError,
  flagWaiting,
  notOwnerError,
  notRecoverableError,
  ownerDeadError,
  markConsistent,
  ownerOf,
  take,
  unlockWord,
  type Got,
} from './robust.js';
import { runAsync, runSync, type SyncWaitOptions, type WaitOp, type WaitOptions } from './wait.js';

const STATE = 0;

const layout: SyncLayout = {
  kind: Kind.Mutex,
  version: 1,
  bodyBytes: 64,
  init(buffer, base) {
    new Int32Array(buffer, base, 16).fill(0);
  },
};

class LockOp implements WaitOp {
  parkIndex = STATE;
  parkExpected = 0;
  parkInterval = CHECK_INTERVAL_MS;
  got: Got = NO;
  #slept = false;

  readonly token: number;

  constructor(
    readonly i32: Int32Array,
    readonly life: Lifeline,
    readonly what: string,
    readonly sync: boolean,
  ) {
    this.token = life.token;
  }

  attempt(): boolean {
    // Publishes our ownership; pairs with the exchange in release().
    if (Atomics.compareExchange(this.i32, STATE, 0, this.token) === 0) {
      this.got = YES;
      return true;
    }
    if (Atomics.load(this.i32, STATE) === NOT_RECOVERABLE) throw notRecoverableError(this.what);
    return false;
  }

  spinWorthwhile(): boolean {
    return ownerOf(this.i32, STATE) !== this.token;
  }

  prepare(check: boolean): boolean {
    for (;;) {
      const got = take(this.i32, STATE, this.life, this.#slept, check, this.what);
      if (got !== NO) {
        this.got = got;
        return true;
      }
      if (this.sync && ownerOf(this.i32, STATE) === this.token) throw deadlockError(this.what);
      const value = flagWaiting(this.i32, STATE);
      if (value === 0) continue;
      this.parkExpected = value;
      this.#slept = true;
      return false;
    }
  }

  leave(): void {
    // We may have consumed the wake-up of an unlock and are not taking the lock: pass it on.
    if (this.#slept) futex.notify(this.i32, STATE, 1);
  }
}

/** @internal The lock itself, shared with Condition (which unlocks and relocks it). */
export class MutexCore {
  readonly i32: Int32Array;
  readonly what: string;
  /** This thread's lifeline on the lock's memory, held while the handle is open, and its token. */
  readonly lifeline: Lifeline;
  readonly token: number;

  constructor(i32: Int32Array, what: string) {
    this.i32 = i32;
    this.what = what;
    this.lifeline = openLifeline(i32.buffer as SharedArrayBuffer);
    this.token = this.lifeline.token;
  }

  /** Lets go of the lifeline: a lock this thread still holds is abandoned once no handle of it is open. */
  close(): void {
    this.lifeline.close();
  }

  tryLock(): boolean {
    // The fast path: one CAS (publishes our ownership; pairs with the exchange in release()).
    if (Atomics.compareExchange(this.i32, STATE, 0, this.token) === 0) return this.#acquired(YES);
    if (Atomics.load(this.i32, STATE) === NOT_RECOVERABLE) throw notRecoverableError(this.what);
    // Like pthread_mutex_trylock on a robust mutex, a dead holder is recovered here too.
    const got = take(this.i32, STATE, this.lifeline, false, ownerOf(this.i32, STATE) !== this.token, this.what);
    return got === NO ? false : this.#acquired(got);
  }

  lockSync(timeout: number): void {
    if (Atomics.compareExchange(this.i32, STATE, 0, this.token) === 0) {
      this.#acquired(YES);
      return;
    }
    if (ownerOf(this.i32, STATE) === this.token) throw deadlockError(this.what);
    const op = new LockOp(this.i32, this.lifeline, this.what, true);
    runSync(op, timeout, `${this.what}: lock`);
    this.#acquired(op.got);
  }

  async lock(timeout: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted !== true && Atomics.compareExchange(this.i32, STATE, 0, this.token) === 0) return;
    const op = new LockOp(this.i32, this.lifeline, this.what, false);
    await runAsync(op, timeout, signal, `${this.what}: lock`);
    this.#acquired(op.got);
  }

  /** Returns true, or throws IPC_ERR_OWNER_DEAD with the lock held (INCONSISTENT is set). */
  #acquired(got: Got): true {
    if (got === RECOVERED) throw ownerDeadError(this.what, 'the lock');
    return true;
  }

  holds(): boolean {
    const value = Atomics.load(this.i32, STATE);
    return value !== NOT_RECOVERABLE && (value & OWNER_MASK) === this.token;
  }

  unlock(): void {
    const value = Atomics.load(this.i32, STATE);
    if (value === NOT_RECOVERABLE || (value & OWNER_MASK) !== this.token) throw notOwnerError(this.what, 'unlock');
    // A recovered state that was never accepted poisons the lock for everyone, forever.
    unlockWord(this.i32, STATE, value, 1);
  }

  markConsistent(): void {
    if (!this.holds()) throw notOwnerError(this.what, 'markConsistent');
    markConsistent(this.i32, STATE);
  }
}

let coreOf: (mutex: Mutex) => MutexCore;

/** @internal */
export function mutexCore(mutex: unknown, where: string): MutexCore {
  if (!(mutex instanceof Mutex)) throw new TypeError(`${where}: expected a Mutex`);
  return coreOf(mutex);
}

export type MutexOptions = NamedObjectOptions;
export type MutexPlacedOptions = PlacedOptions;
export type LockOptions = WaitOptions;
export type LockSyncOptions = SyncWaitOptions;

const token = Symbol('Mutex');

/**
 * A lock that any process (or worker thread) can open by name, or that lives inside a
 * SharedMemory next to the data it guards (createAt / openAt / openOrCreateAt).
 */
export class Mutex {
  /** The name, for a named mutex; undefined for one placed in shared memory. */
  readonly name: string | undefined;
  /** True when this call created it. */
  readonly created: boolean;
  #core: MutexCore | undefined;
  #shm: SharedMemory | undefined;
  #what: string;

  static {
    coreOf = (mutex) => {
      if (mutex.#core === undefined) throw closedError(mutex.#what);
      return mutex.#core;
    };
  }

  /** Bytes a Mutex takes inside a SharedMemory (createAt / openAt). */
  static readonly byteLength: number = placedByteLength(layout);

  /** @internal */
  constructor(key: symbol, name: string | undefined, at: Attached) {
    if (key !== token) throw new TypeError('use Mutex.create, open, openOrCreate, createAt, openAt or openOrCreateAt');
    this.name = name;
    this.created = at.created;
    this.#shm = at.shm;
    this.#what = at.what;
    try {
      this.#core = new MutexCore(new Int32Array(at.buffer, at.base, 16), at.what);
    } catch (err) {
      at.shm?.close();
      throw err;
    }
  }

  static create(name: string, options?: MutexOptions): Mutex {
    return named(name, 'create', options, 'Mutex.create');
  }

  static open(name: string, options?: Pick<MutexOptions, 'initTimeout' | 'allowOtherOwner'>): Mutex {
    return named(name, 'open', options, 'Mutex.open');
  }

  static openOrCreate(name: string, options?: MutexOptions): Mutex {
    return named(name, 'openOrCreate', options, 'Mutex.openOrCreate');
  }

  /** Removes the name; processes that have it open keep using it. True if it existed. */
  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  /** Initializes a new Mutex in zeroed memory at byteOffset (a multiple of 8). */
  static createAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: MutexPlacedOptions): Mutex {
    return placed(memory, byteOffset, 'create', options, 'Mutex.createAt');
  }

  static openAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: MutexPlacedOptions): Mutex {
    return placed(memory, byteOffset, 'open', options, 'Mutex.openAt');
  }

  static openOrCreateAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: MutexPlacedOptions): Mutex {
    return placed(memory, byteOffset, 'openOrCreate', options, 'Mutex.openOrCreateAt');
  }

  /** Takes the lock if it is free (or its owner is dead); never blocks. */
  tryLock(): boolean {
    return this.#live().tryLock();
  }

  /** Waits for the lock without blocking the event loop. */
  async lock(options?: LockOptions): Promise<void> {
    const opts = checkOptions<LockOptions>(options, ['timeout', 'signal'], 'Mutex.lock');
    const timeout = checkTimeout(opts.timeout, 'Mutex.lock');
    const signal = checkSignal(opts.signal, 'Mutex.lock');
    await this.#live().lock(timeout, signal);
  }

  /** Blocks this thread until the lock is taken. */
  lockSync(options?: LockSyncOptions): void {
    const opts = checkOptions<LockSyncOptions>(options, ['timeout'], 'Mutex.lockSync');
    this.#live().lockSync(checkTimeout(opts.timeout, 'Mutex.lockSync'));
  }

  unlock(): void {
    this.#live().unlock();
  }

  /** Accepts the state left by an owner that died (after IPC_ERR_OWNER_DEAD). */
  markConsistent(): void {
    this.#live().markConsistent();
  }

  get closed(): boolean {
    return this.#core === undefined;
  }

  /**
   * Idempotent. Does not unlock: a lock held by this thread stays held while the thread has
   * another handle open on the same memory; closing the last one abandons it (the next locker
   * recovers it with IPC_ERR_OWNER_DEAD).
   */
  close(): void {
    this.#core?.close();
    this.#core = undefined;
    this.#shm?.close();
    this.#shm = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #live(): MutexCore {
    if (this.#core === undefined) throw closedError(this.#what);
    return this.#core;
  }
}

function named(name: string, how: How, options: unknown, where: string): Mutex {
  const opts = namedOptions<object>(options, [], where);
  return new Mutex(token, name, attachNamed(name, how, 'Mutex', layout, opts));
}

function placed(memory: unknown, byteOffset: unknown, how: How, options: unknown, where: string): Mutex {
  const opts = placedOptions(options, [], where);
  return new Mutex(token, undefined, attachAt(memory, byteOffset, how, 'Mutex', layout, opts, where));
}
