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
import { waitOptions } from '../options.js';
import { HEADER_BYTES, Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { OWNER_MASK, openLifeline, type Lifeline } from '../os/lifeline.js';
import { Factory, NO_OPTIONS, NO_PARAMS, SyncPrimitive, live } from './lifecycle.js';
import { placedByteLength, type NamedObjectOptions, type PlacedOptions, type SyncLayout } from './placement.js';
import {
  CHECK_INTERVAL_MS,
  NO,
  NOT_RECOVERABLE,
  YES,
  RECOVERED,
  deadlockError,
  describeLockWord,
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
import { SpinPolicy, runAsync, runSync, type SyncWaitOptions, type WaitOp, type WaitOptions } from './wait.js';

const STATE = 0;
const FOREVER = { timeout: Infinity, signal: undefined } as const;

/** The body, described once: created zeroed (free), shown by `inspect` as the lock word. */
export const mutexLayout: SyncLayout = {
  kind: Kind.Mutex,
  version: 1,
  bodyBytes: 64,
  init(buffer, base) {
    new Int32Array(buffer, base, 16).fill(0);
  },
  describe(buffer) {
    return describeLockWord(Atomics.load(new Int32Array(buffer, HEADER_BYTES, 1), STATE), buffer);
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
    // A load first (spinners only read the line until it is free, so the holder's unlock is
    // not slowed down by their writes), then the CAS that publishes our ownership; pairs with
    // the exchange in release().
    const value = Atomics.load(this.i32, STATE);
    if (value === 0 && Atomics.compareExchange(this.i32, STATE, 0, this.token) === 0) {
      this.got = YES;
      return true;
    }
    if (value === NOT_RECOVERABLE) throw notRecoverableError(this.what);
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
  readonly spin = new SpinPolicy();

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
    runSync(op, this.spin, timeout, `${this.what}: lock`);
    this.#acquired(op.got);
  }

  async lock(timeout: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted !== true && Atomics.compareExchange(this.i32, STATE, 0, this.token) === 0) return;
    const op = new LockOp(this.i32, this.lifeline, this.what, false);
    await runAsync(op, this.spin, timeout, signal, `${this.what}: lock`);
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

/** @internal */
export function mutexCore(mutex: unknown, where: string): MutexCore {
  if (!(mutex instanceof Mutex)) throw new TypeError(`${where}: expected a Mutex`);
  return live(mutex);
}

export type MutexOptions = NamedObjectOptions;
export type MutexPlacedOptions = PlacedOptions;
export type LockOptions = WaitOptions;
export type LockSyncOptions = SyncWaitOptions;

/**
 * A lock that any process (or worker thread) can open by name, or that lives inside a
 * SharedMemory next to the data it guards (createAt / openAt / openOrCreateAt).
 */
export class Mutex extends SyncPrimitive<MutexCore> {
  /** Bytes a Mutex takes inside a SharedMemory (createAt / openAt). */
  static readonly byteLength: number = placedByteLength(mutexLayout);

  /** Creates the mutex `name`, unlocked; IPC_ERR_EXISTS if the name is taken. */
  static create(name: string, options?: MutexOptions): Mutex {
    return factory.named(name, 'create', options);
  }

  /** Opens the existing mutex `name`; IPC_ERR_NOT_FOUND if it is missing, IPC_ERR_INCOMPATIBLE if it is not a mutex. */
  static open(name: string, options?: Pick<MutexOptions, 'initTimeout' | 'allowOtherOwner'>): Mutex {
    return factory.named(name, 'open', options);
  }

  /** Opens the mutex `name`, creating it if it is missing. */
  static openOrCreate(name: string, options?: MutexOptions): Mutex {
    return factory.named(name, 'openOrCreate', options);
  }

  /** Removes the name; processes that have it open keep using it. True if it existed. */
  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  /** Initializes a new Mutex in zeroed memory at byteOffset (a multiple of 8). */
  static createAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: MutexPlacedOptions): Mutex {
    return factory.placed(memory, byteOffset, 'create', options);
  }

  /** Opens the Mutex that createAt initialized at byteOffset (waiting up to initTimeout for it). */
  static openAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: MutexPlacedOptions): Mutex {
    return factory.placed(memory, byteOffset, 'open', options);
  }

  /** Opens the Mutex at byteOffset, initializing it if the memory there is still zero. */
  static openOrCreateAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: MutexPlacedOptions): Mutex {
    return factory.placed(memory, byteOffset, 'openOrCreate', options);
  }

  /** Takes the lock if it is free (or its owner is dead); never blocks. */
  tryLock(): boolean {
    return live(this).tryLock();
  }

  /** Waits for the lock without blocking the event loop. */
  async lock(options?: LockOptions): Promise<void> {
    // Without options (the common, uncontended call) nothing is allocated to check them.
    const { timeout, signal } = options === undefined ? FOREVER : waitOptions(options, 'Mutex.lock', true);
    await live(this).lock(timeout, signal);
  }

  /** Blocks this thread until the lock is taken. */
  lockSync(options?: LockSyncOptions): void {
    live(this).lockSync(options === undefined ? Infinity : waitOptions(options, 'Mutex.lockSync', false).timeout);
  }

  unlock(): void {
    live(this).unlock();
  }

  /** Accepts the state left by an owner that died (after IPC_ERR_OWNER_DEAD). */
  markConsistent(): void {
    live(this).markConsistent();
  }
}

const factory = new Factory({
  kindName: 'Mutex',
  layout: mutexLayout,
  options: NO_OPTIONS,
  params: NO_PARAMS,
  core: (at) => new MutexCore(new Int32Array(at.buffer, at.base, 16), at.what),
  type: Mutex,
});
