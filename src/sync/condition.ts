/**
 * Condition: a condition variable across processes and threads, used with a Mutex. Contract: a
 * notify that happens after a waiter released the mutex in wait() wakes that waiter (or another
 * one that was waiting): no notification is lost. As with every condition variable, wake-ups
 * can be spurious: wait in a loop that re-checks the predicate under the mutex.
 *
 * Body layout (behind the 64-byte common header; int32 words):
 *   offset  size  field
 *   0       4     sequence  bumped by every notify; waiters sleep on the value they read
 *   4       4     sleepers  waiters between registering and returning; notify calls
 *                           futex.notify only if > 0
 *   8       56    reserved (zero)
 *
 * wait: sleepers++, read sequence, unlock the mutex, sleep while sequence is unchanged, relock.
 * A notify after the unlock changes the sequence first, so the waiter either sees the change or
 * is asleep on the old value when the wake-up comes (futex semantics). A waiter that times out
 * but finds the sequence changed returns as notified, so the notification it may have consumed
 * is not lost; an aborted one hands it on. The mutex is always relocked before wait returns or
 * rejects (also on timeout and abort), like pthread_cond_timedwait.
 */
import { IpcError, isIpcError } from '../errors.js';
import { waitOptions } from '../options.js';
import { HEADER_BYTES, Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { Factory, NO_OPTIONS, NO_PARAMS, SyncPrimitive, bodyWords, live } from './lifecycle.js';
import { mutexCore, type MutexCore } from './mutex.js';
import { placedByteLength, type NamedObjectOptions, type PlacedOptions, type SyncLayout } from './placement.js';
import { notOwnerError } from './robust.js';
import { runAsync, runSync, type SpinPolicy, type SyncWaitOptions, type WaitOp, type WaitOptions } from './wait.js';

const SEQUENCE = 0;
const SLEEPERS = 1;

/** The body, described once: created zeroed; `inspect` shows both words. */
export const conditionLayout: SyncLayout = {
  kind: Kind.Condition,
  version: 1,
  bodyBytes: 64,
  init(buffer, base) {
    new Int32Array(buffer, base, 16).fill(0);
  },
  describe(buffer) {
    const i32 = new Int32Array(buffer, HEADER_BYTES, 2);
    return { sequence: Atomics.load(i32, SEQUENCE), sleepers: Atomics.load(i32, SLEEPERS) };
  },
};

class SequenceOp implements WaitOp {
  parkIndex = SEQUENCE;
  parkExpected: number;
  parkInterval = Infinity;

  constructor(
    readonly i32: Int32Array,
    readonly seen: number,
  ) {
    this.parkExpected = seen;
  }

  attempt(): boolean {
    // Pairs with the add in notify.
    return Atomics.load(this.i32, SEQUENCE) !== this.seen;
  }

  prepare(): boolean {
    return this.attempt();
  }

  spinWorthwhile(): boolean {
    // We released the mutex before spinning: a notifier on another thread can take it. One on
    // this thread cannot run while we spin, and the spin policy soon cuts such spins short.
    return true;
  }

  leave(): void {}
}

export type ConditionOptions = NamedObjectOptions;
export type ConditionPlacedOptions = PlacedOptions;
export type ConditionWaitOptions = WaitOptions;
export type ConditionWaitSyncOptions = SyncWaitOptions;

export class Condition extends SyncPrimitive {
  /** Bytes a Condition takes inside a SharedMemory. */
  static readonly byteLength: number = placedByteLength(conditionLayout);

  /** Creates the condition variable `name`; IPC_ERR_EXISTS if the name is taken. */
  static create(name: string, options?: ConditionOptions): Condition {
    return factory.named(name, 'create', options);
  }

  /** Opens the existing condition variable `name`; IPC_ERR_NOT_FOUND if it is missing. */
  static open(name: string, options?: Pick<ConditionOptions, 'initTimeout' | 'allowOtherOwner'>): Condition {
    return factory.named(name, 'open', options);
  }

  /** Opens the condition variable `name`, creating it if it is missing. */
  static openOrCreate(name: string, options?: ConditionOptions): Condition {
    return factory.named(name, 'openOrCreate', options);
  }

  /** Removes the name; processes that have it open keep using it. True if it existed. */
  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  /** Initializes a new Condition in zeroed memory at byteOffset (a multiple of 8), e.g. beside its Mutex. */
  static createAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: ConditionPlacedOptions): Condition {
    return factory.placed(memory, byteOffset, 'create', options);
  }

  /** Opens the Condition that createAt initialized at byteOffset. */
  static openAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: ConditionPlacedOptions): Condition {
    return factory.placed(memory, byteOffset, 'open', options);
  }

  /** Opens the Condition at byteOffset, initializing it if the memory there is still zero. */
  static openOrCreateAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: ConditionPlacedOptions): Condition {
    return factory.placed(memory, byteOffset, 'openOrCreate', options);
  }

  /**
   * Releases `mutex` (which this thread must hold), waits for a notify, and takes the mutex
   * again before resolving. Never blocks the event loop. On timeout or abort the mutex is
   * retaken too, then IPC_ERR_TIMEOUT / IPC_ERR_ABORTED. If the mutex's owner died meanwhile,
   * rejects with IPC_ERR_OWNER_DEAD (mutex held) as Mutex.lock does.
   */
  async wait(mutex: unknown, options?: ConditionWaitOptions): Promise<void> {
    const { timeout, signal } = waitOptions(options, 'Condition.wait', true);
    const core = mutexCore(mutex, 'Condition.wait');
    const { i32, what, spin, seen } = this.#begin(core);
    let failure: unknown;
    try {
      await runAsync(new SequenceOp(i32, seen), spin, timeout, signal, `${what}: wait`);
    } catch (err) {
      failure = this.#settle(i32, seen, err);
    }
    Atomics.sub(i32, SLEEPERS, 1);
    await core.lock(Infinity, undefined); // may reject with IPC_ERR_OWNER_DEAD (mutex held)
    if (failure !== undefined) throw failure;
  }

  /** As wait(), blocking this thread. */
  waitSync(mutex: unknown, options?: ConditionWaitSyncOptions): void {
    const { timeout } = waitOptions(options, 'Condition.waitSync', false);
    const core = mutexCore(mutex, 'Condition.waitSync');
    const { i32, what, spin, seen } = this.#begin(core);
    let failure: unknown;
    try {
      runSync(new SequenceOp(i32, seen), spin, timeout, `${what}: wait`);
    } catch (err) {
      failure = this.#settle(i32, seen, err);
    }
    Atomics.sub(i32, SLEEPERS, 1);
    core.lockSync(Infinity);
    if (failure !== undefined) throw failure;
  }

  /** Wakes at least one waiter, if any waits. */
  notify(): void {
    this.#notify(1);
  }

  /** Wakes every waiter. */
  notifyAll(): void {
    this.#notify(Infinity);
  }

  #notify(count: number): void {
    const { i32 } = live(this);
    Atomics.add(i32, SEQUENCE, 1); // the change every waiter sleeping on the old value sees
    if (Atomics.load(i32, SLEEPERS) > 0) futex.notify(i32, SEQUENCE, count);
  }

  #begin(core: MutexCore): { i32: Int32Array; what: string; spin: SpinPolicy; seen: number } {
    const { i32, what, spin } = live(this);
    if (!core.holds()) throw notOwnerError(core.what, `${what}: wait`);
    Atomics.add(i32, SLEEPERS, 1); // before the mutex is released: a notifier then sees us
    const seen = Atomics.load(i32, SEQUENCE);
    core.unlock();
    return { i32, what, spin, seen };
  }

  /** Decides what a failed wait means: undefined when it was in fact notified. */
  #settle(i32: Int32Array, seen: number, err: unknown): unknown {
    const notified = Atomics.load(i32, SEQUENCE) !== seen;
    if (isIpcError(err, 'IPC_ERR_TIMEOUT') && notified) return undefined;
    // An aborted waiter may have consumed a wake-up meant for someone: hand it on.
    if (notified) futex.notify(i32, SEQUENCE, 1);
    return err instanceof IpcError || err instanceof Error ? err : new Error(String(err));
  }
}

const factory = new Factory({
  kindName: 'Condition',
  layout: conditionLayout,
  options: NO_OPTIONS,
  params: NO_PARAMS,
  core: (at) => bodyWords(at, conditionLayout),
  type: Condition,
});
