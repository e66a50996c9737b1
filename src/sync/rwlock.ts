/**
 * RWLock: many readers or one writer, across processes and threads; writers are not starved.
 * Contract: while a writer holds it no reader does; a waiting writer stops new readers; a
 * writer that dies is recovered like a Mutex owner (IPC_ERR_OWNER_DEAD to the next acquirer),
 * and a reader that dies has its read locks released by the next thread that waits for them.
 *
 * Body layout (behind the 64-byte common header; int32 words):
 *   offset  size  field
 *   0       4     writer        the robust lock word (robust.ts) of the writer: 0 | token
 *                               [| WAITERS] [| INCONSISTENT] | NOT_RECOVERABLE. Readers sleep
 *                               on it too.
 *   4       4     slot waiters  readers waiting for a free slot (a freed slot wakes one if > 0)
 *   8       4     slots freed   bumped when a slot is freed while someone waits for one: the
 *                               futex word those readers sleep on
 *   12      4     reserved
 *   16      128   slot tokens   32 x int32: 0 free | reader thread's token [| RECLAIMING]
 *   144     128   slot counts   32 x int32: read locks held through that slot
 *   272           end
 *
 * A reader claims a slot (CAS token 0 -> own token), increments its count, then reads the
 * writer word: if it is 0 the read lock is held, otherwise the reader backs out and sleeps on
 * the writer word. A writer first takes the writer word (which stops new readers: writer
 * preference), then waits until every slot count is 0, sleeping on the count it saw. Reader
 * (increment count; load writer) and writer (CAS writer; load counts) are sequentially
 * consistent Atomics, so one of the two always sees the other. A reader's last unlock wakes the
 * writer if the writer word is set.
 *
 * Every read lock is counted in a slot tagged with its thread's lifeline token, so that the
 * read locks of a dead reader can always be found and released: a reader that finds all 32
 * slots taken waits for one (layout version 1 counted it untagged, and its death blocked
 * writers for ever). It registers in `slot waiters`, reads `slots freed`, tries to claim again
 * and sleeps on the value it read; a reader that frees its slot (store token 0; load waiters)
 * bumps `slots freed` and wakes one. The same sequentially consistent pairing as above: either
 * the waiter's claim sees the free slot or the freeing reader sees the waiter.
 *
 * Dead readers: a writer draining and a reader waiting for a slot ask the kernel about each
 * slot's lifeline at each owner check of their wait (after CHECK_INTERVAL_MS, then backing
 * off: wait.ts) and release the slots of dead readers (one CAS on the slot token decides who
 * does it). When the writer word's owner is dead, the first thread to
 * notice (reader or writer) recovers it and holds the write lock, with IPC_ERR_OWNER_DEAD.
 */
import { waitOptions } from '../options.js';
import { HEADER_BYTES, Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { DEAD_TOKEN, OWNER_MASK, openLifeline, type Lifeline } from '../os/lifeline.js';
import { Factory, NO_OPTIONS, NO_PARAMS, SyncPrimitive, live } from './lifecycle.js';
import { placedByteLength, type NamedObjectOptions, type PlacedOptions, type SyncLayout } from './placement.js';
import {
  CHECK_INTERVAL_MS,
  INCONSISTENT,
  NO,
  NOT_RECOVERABLE,
  RECOVERED,
  WAITERS,
  YES,
  deadlockError,
  describeLockWord,
  flagWaiting,
  notOwnerError,
  notRecoverableError,
  ownerDeadError,
  markConsistent,
  ownerOf,
  release,
  take,
  unlockWord,
  type Got,
} from './robust.js';
import { SpinPolicy, runAsync, runSync, type SyncWaitOptions, type WaitOp, type WaitOptions } from './wait.js';

const WRITER = 0;
const SLOT_WAITERS = 1;
const SLOTS_FREED = 2;
const SLOTS = 32;
const TOKENS = 4;
const COUNTS = TOKENS + SLOTS;
const WORDS = COUNTS + SLOTS;
const RECLAIMING = 0x20000000;
const NO_SLOT = -1;

/** What enterRead found. */
const ENTERED = 0;
const WRITER_IN = 1;
const NO_FREE_SLOT = 2;
type Entry = typeof ENTERED | typeof WRITER_IN | typeof NO_FREE_SLOT;

/**
 * The body, described once: created zeroed (free, no readers); `inspect` shows the writer word,
 * the read locks counted in the slots and the readers waiting for a slot.
 */
export const rwlockLayout: SyncLayout = {
  kind: Kind.RWLock,
  version: 2,
  bodyBytes: WORDS * 4,
  init(buffer, base) {
    new Int32Array(buffer, base, WORDS).fill(0);
  },
  describe(buffer) {
    const i32 = new Int32Array(buffer, HEADER_BYTES, WORDS);
    let readLocks = 0;
    for (let slot = 0; slot < SLOTS; slot++) readLocks += Atomics.load(i32, COUNTS + slot);
    const writer = describeLockWord(Atomics.load(i32, WRITER), buffer);
    const slotWaiters = Atomics.load(i32, SLOT_WAITERS);
    return {
      writer: writer.state,
      ...(writer.ownerAlive !== undefined ? { writerAlive: writer.ownerAlive } : {}),
      readLocks,
      ...(slotWaiters > 0 ? { slotWaiters } : {}),
    };
  },
};

class Core {
  readonly i32: Int32Array;
  readonly what: string;
  /** This thread's lifeline on the lock's memory, and its token there. */
  readonly lifeline: Lifeline;
  readonly token: number;
  readonly spin = new SpinPolicy();
  /** Read locks held through this object, and the slot that counts them. */
  reads = 0;
  slot = NO_SLOT;

  constructor(i32: Int32Array, what: string) {
    this.i32 = i32;
    this.what = what;
    this.lifeline = openLifeline(i32.buffer as SharedArrayBuffer);
    this.token = this.lifeline.token;
  }

  /** Lets go of the lifeline: locks this thread holds are abandoned once no handle of it on the memory is open. */
  close(): void {
    this.lifeline.close();
  }

  /** Counts one read lock in this handle's slot (claiming one first if it has none). */
  enterRead(): Entry {
    const i32 = this.i32;
    if (this.reads === 0) {
      this.slot = this.#claim();
      if (this.slot === NO_SLOT) return NO_FREE_SLOT;
    }
    const index = COUNTS + this.slot;
    Atomics.add(i32, index, 1); // seen by a writer's drain, which pairs with this
    // Read after our increment: a writer that took the word before it will see our count.
    if (Atomics.load(i32, WRITER) === 0) {
      this.reads++;
      return ENTERED;
    }
    this.#leaveCount(index);
    return WRITER_IN;
  }

  exitRead(): void {
    this.reads--;
    this.#leaveCount(COUNTS + this.slot);
  }

  #leaveCount(index: number): void {
    const i32 = this.i32;
    if (Atomics.sub(i32, index, 1) === 1) {
      // Our count reached 0: a writer draining may sleep on exactly this word.
      if (Atomics.load(i32, WRITER) !== 0) futex.notify(i32, index);
      if (this.reads === 0) {
        // Frees the slot for any reader's claiming CAS; our count in it is already 0.
        Atomics.store(i32, TOKENS + this.slot, 0);
        this.#slotFreed();
      }
    }
  }

  /** After a slot token was set to 0: wakes one reader waiting for a slot, if any registered. */
  #slotFreed(): void {
    const i32 = this.i32;
    // Read after the token's store; pairs with the waiter's add before its claim (slotWait).
    if (Atomics.load(i32, SLOT_WAITERS) === 0) return;
    Atomics.add(i32, SLOTS_FREED, 1); // the change a waiter sleeping on the old value sees
    futex.notify(i32, SLOTS_FREED, 1);
  }

  #claim(): number {
    const i32 = this.i32;
    const start = this.slot === NO_SLOT ? this.token % SLOTS : this.slot;
    for (let i = 0; i < SLOTS; i++) {
      const k = (start + i) % SLOTS;
      // Claims the slot for this thread; a writer reads the token to check our lifeline.
      if (Atomics.load(i32, TOKENS + k) === 0 && Atomics.compareExchange(i32, TOKENS + k, 0, this.token) === 0) return k;
    }
    return NO_SLOT;
  }

  /** The writer's drain: true when no reader holds the lock; else sets where to sleep. */
  drain(op: WaitOp, check: boolean): boolean {
    const i32 = this.i32;
    for (let k = 0; k < SLOTS; k++) {
      const count = Atomics.load(i32, COUNTS + k);
      if (count === 0) continue;
      if (check && this.#reclaimIfDead(k)) continue;
      op.parkIndex = COUNTS + k;
      op.parkExpected = count;
      return false;
    }
    return true;
  }

  /**
   * A reader that found no free slot (enterRead said NO_FREE_SLOT): registers as a slot waiter
   * (once per operation), and returns the value of `slots freed` to sleep on. With `check`, the
   * slots of dead readers are released first.
   */
  slotWait(registered: boolean, check: boolean): number {
    const i32 = this.i32;
    if (check) for (let k = 0; k < SLOTS; k++) this.#reclaimIfDead(k);
    // Published before our next claim; pairs with the load in #slotFreed.
    if (!registered) Atomics.add(i32, SLOT_WAITERS, 1);
    return Atomics.load(i32, SLOTS_FREED);
  }

  ownsEverySlot(): boolean {
    for (let k = 0; k < SLOTS; k++) if (Atomics.load(this.i32, TOKENS + k) !== this.token) return false;
    return true;
  }

  /** A slot waiter got its slot or gives up; hands on a wake-up it may have taken if it did not claim. */
  slotUnwait(handOn: boolean): void {
    const i32 = this.i32;
    Atomics.sub(i32, SLOT_WAITERS, 1);
    if (handOn && Atomics.load(i32, SLOT_WAITERS) > 0) futex.notify(i32, SLOTS_FREED, 1);
  }

  /** Releases slot k if the thread whose token tags it is dead; true if it did (or k is free). */
  #reclaimIfDead(k: number): boolean {
    const i32 = this.i32;
    const owner = Atomics.load(i32, TOKENS + k);
    if (owner === 0) return true;
    if (this.lifeline.isAlive(owner & OWNER_MASK)) return false;
    // The CAS makes us the one reclaimer; our token in it lets a later one finish the job if
    // we die halfway.
    if (Atomics.compareExchange(i32, TOKENS + k, owner, this.token | RECLAIMING) !== owner) return false;
    Atomics.store(i32, COUNTS + k, 0); // the dead reader can no longer change it
    // A writer draining may sleep on that count (when we are a waiting reader, not the writer).
    if (Atomics.load(i32, WRITER) !== 0) futex.notify(i32, COUNTS + k);
    Atomics.store(i32, TOKENS + k, 0); // after the count: a new claimant starts from 0
    this.#slotFreed();
    return true;
  }

  holdsWrite(): boolean {
    const value = Atomics.load(this.i32, WRITER);
    return value !== NOT_RECOVERABLE && (value & OWNER_MASK) === this.token;
  }

  /** Returns true, or throws IPC_ERR_OWNER_DEAD with the write lock held (INCONSISTENT set). */
  acquiredWrite(got: Got): true {
    if (got === RECOVERED) throw ownerDeadError(this.what, 'the write lock');
    return true;
  }

  writeUnlock(): void {
    const value = Atomics.load(this.i32, WRITER);
    if (value === NOT_RECOVERABLE || (value & OWNER_MASK) !== this.token) throw notOwnerError(this.what, 'writeUnlock');
    unlockWord(this.i32, WRITER, value, Infinity); // readers and writers all sleep on this word
  }
}

class WriteOp implements WaitOp {
  readonly i32: Int32Array;
  parkIndex = WRITER;
  parkExpected = 0;
  parkInterval = CHECK_INTERVAL_MS;
  got: Got = NO;
  /** True once we hold the writer word and only wait for readers to leave. */
  draining = false;
  #slept = false;

  constructor(
    readonly core: Core,
    readonly sync: boolean,
  ) {
    this.i32 = core.i32;
  }

  attempt(): boolean {
    if (!this.draining) {
      // A load first (spinners only read the line until it is free), then the CAS that
      // publishes our claim; it stops new readers (they read the word after counting themselves).
      const value = Atomics.load(this.i32, WRITER);
      if (value !== 0 || Atomics.compareExchange(this.i32, WRITER, 0, this.core.token) !== 0) {
        if (value === NOT_RECOVERABLE) throw notRecoverableError(this.core.what);
        return false;
      }
      this.got = YES;
      this.draining = true;
    }
    return this.core.drain(this, false);
  }

  spinWorthwhile(): boolean {
    return ownerOf(this.i32, WRITER) !== this.core.token && this.core.reads === 0;
  }

  prepare(check: boolean): boolean {
    while (!this.draining) {
      const got = take(this.i32, WRITER, this.core.lifeline, this.#slept, check, this.core.what);
      if (got !== NO) {
        this.got = got;
        this.draining = true;
        break;
      }
      if (this.sync && ownerOf(this.i32, WRITER) === this.core.token) throw deadlockError(this.core.what);
      const value = flagWaiting(this.i32, WRITER);
      if (value === 0) continue;
      this.parkIndex = WRITER;
      this.parkExpected = value;
      this.#slept = true;
      return false;
    }
    if (this.sync && this.core.reads > 0) throw deadlockError(this.core.what);
    return this.core.drain(this, check);
  }

  leave(): void {
    if (!this.draining) return; // a writer release wakes everyone: no wake-up to hand on
    // Giving up while readers drain: hand the word back. A recovered, unaccepted state is
    // handed on as a dead owner, so that the next acquirer is told IPC_ERR_OWNER_DEAD too.
    if ((Atomics.load(this.i32, WRITER) & INCONSISTENT) !== 0) {
      // Hands the word to an owner that is always dead: the next acquirer's take() recovers it.
      Atomics.store(this.i32, WRITER, DEAD_TOKEN | WAITERS);
      futex.notify(this.i32, WRITER);
    } else {
      release(this.i32, WRITER, Infinity);
    }
  }
}

class ReadOp implements WaitOp {
  readonly i32: Int32Array;
  parkIndex = WRITER;
  parkExpected = 0;
  parkInterval = CHECK_INTERVAL_MS;
  /** Set when this reader found the writer dead and recovered the lock as a writer. */
  asWriter: WriteOp | undefined;
  /** True while this reader is registered as waiting for a free slot. */
  #slotWaiter = false;

  constructor(
    readonly core: Core,
    readonly sync: boolean,
  ) {
    this.i32 = core.i32;
  }

  attempt(): boolean {
    if (this.asWriter !== undefined) return this.#done(this.asWriter.attempt());
    const value = Atomics.load(this.i32, WRITER);
    if (value === NOT_RECOVERABLE) throw notRecoverableError(this.core.what);
    return value === 0 && this.#enter() === ENTERED;
  }

  spinWorthwhile(): boolean {
    return ownerOf(this.i32, WRITER) !== this.core.token;
  }

  prepare(check: boolean): boolean {
    if (this.asWriter !== undefined) return this.#done(this.#asWriter(check));
    for (;;) {
      const value = Atomics.load(this.i32, WRITER);
      if (value === 0) {
        const entry = this.#enter();
        if (entry === ENTERED) return true;
        if (entry === WRITER_IN) continue;
        // All 32 slots are taken: register, read the word to sleep on, then claim once more,
        // so that a slot freed after our first try either is claimed or changes the word.
        const freed = this.core.slotWait(this.#slotWaiter, check);
        this.#slotWaiter = true;
        const again = this.#enter();
        if (again === ENTERED) return true;
        if (again === WRITER_IN) continue;
        // Every slot is this thread's (through its other handles): blocking would never end.
        if (this.sync && this.core.ownsEverySlot()) throw deadlockError(this.core.what);
        this.parkIndex = SLOTS_FREED;
        this.parkExpected = freed;
        return false;
      }
      if (value === NOT_RECOVERABLE) throw notRecoverableError(this.core.what);
      const owner = value & OWNER_MASK;
      if (owner === this.core.token) {
        if (this.sync) throw deadlockError(this.core.what);
      } else if ((check || owner === DEAD_TOKEN) && !this.core.lifeline.isAlive(owner)) {
        // The writer died: recover the word (one CAS wins) and hold the write lock, so that the
        // data it was writing is checked before anyone reads it.
        const taken = this.core.token | INCONSISTENT | (value & WAITERS);
        if (Atomics.compareExchange(this.i32, WRITER, value, taken) === value) {
          this.asWriter = new WriteOp(this.core, this.sync);
          this.asWriter.got = RECOVERED;
          this.asWriter.draining = true;
          return this.#done(this.#asWriter(check));
        }
        continue;
      }
      const expected = flagWaiting(this.i32, WRITER);
      if (expected === 0) continue;
      this.parkIndex = WRITER;
      this.parkExpected = expected;
      return false;
    }
  }

  /** enterRead, and no longer a slot waiter once a slot was claimed. */
  #enter(): Entry {
    const entry = this.core.enterRead();
    // A reader that backed out for a writer already woke the next slot waiter when it freed its slot.
    if (entry !== NO_FREE_SLOT && this.#slotWaiter) this.#unregister(false);
    return entry;
  }

  /** Done (as a writer, after a recovery) ends any registration as a slot waiter. */
  #done(done: boolean): boolean {
    if (done && this.#slotWaiter) this.#unregister(true);
    return done;
  }

  #unregister(handOn: boolean): void {
    this.#slotWaiter = false;
    this.core.slotUnwait(handOn);
  }

  #asWriter(check: boolean): boolean {
    const writer = this.asWriter!;
    const done = writer.prepare(check);
    this.parkIndex = writer.parkIndex;
    this.parkExpected = writer.parkExpected;
    return done;
  }

  leave(): void {
    if (this.#slotWaiter) this.#unregister(true);
    this.asWriter?.leave();
  }
}

export type RWLockOptions = NamedObjectOptions;
export type RWLockPlacedOptions = PlacedOptions;
export type RWLockWaitOptions = WaitOptions;
export type RWLockWaitSyncOptions = SyncWaitOptions;

export class RWLock extends SyncPrimitive<Core> {
  /** Bytes an RWLock takes inside a SharedMemory. */
  static readonly byteLength: number = placedByteLength(rwlockLayout);

  /** Creates the read-write lock `name`, free; IPC_ERR_EXISTS if the name is taken. */
  static create(name: string, options?: RWLockOptions): RWLock {
    return factory.named(name, 'create', options);
  }

  /** Opens the existing read-write lock `name`; IPC_ERR_NOT_FOUND if it is missing. */
  static open(name: string, options?: Pick<RWLockOptions, 'initTimeout' | 'allowOtherOwner'>): RWLock {
    return factory.named(name, 'open', options);
  }

  /** Opens the read-write lock `name`, creating it if it is missing. */
  static openOrCreate(name: string, options?: RWLockOptions): RWLock {
    return factory.named(name, 'openOrCreate', options);
  }

  /** Removes the name; processes that have it open keep using it. True if it existed. */
  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  /** Initializes a new RWLock in zeroed memory at byteOffset (a multiple of 8). */
  static createAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: RWLockPlacedOptions): RWLock {
    return factory.placed(memory, byteOffset, 'create', options);
  }

  /** Opens the RWLock that createAt initialized at byteOffset. */
  static openAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: RWLockPlacedOptions): RWLock {
    return factory.placed(memory, byteOffset, 'open', options);
  }

  /** Opens the RWLock at byteOffset, initializing it if the memory there is still zero. */
  static openOrCreateAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: RWLockPlacedOptions): RWLock {
    return factory.placed(memory, byteOffset, 'openOrCreate', options);
  }

  /**
   * Takes a read lock if no writer holds or waits for it; never blocks. If the writer died,
   * recovers the lock as a writer: throws IPC_ERR_OWNER_DEAD with the WRITE lock held.
   */
  tryReadLock(): boolean {
    const op = new ReadOp(live(this), true);
    if (op.attempt()) return true;
    // What a blocking call would call a deadlock is just "not now" here.
    if (ownerOf(op.i32, WRITER) === op.core.token || (op.core.reads === 0 && op.core.ownsEverySlot())) return false;
    // A dead writer is recovered here too (as a writer, see readLock).
    if (!op.prepare(true)) {
      op.leave();
      return false;
    }
    return this.#finishRead(op);
  }

  /** Waits for a read lock. Rejects IPC_ERR_OWNER_DEAD holding the WRITE lock if the writer died. */
  async readLock(options?: RWLockWaitOptions): Promise<void> {
    const { timeout, signal } = waitOptions(options, 'RWLock.readLock', true);
    const op = new ReadOp(live(this), false);
    await runAsync(op, op.core.spin, timeout, signal, `${op.core.what}: readLock`);
    this.#finishRead(op);
  }

  readLockSync(options?: RWLockWaitSyncOptions): void {
    const { timeout } = waitOptions(options, 'RWLock.readLockSync', false);
    const op = new ReadOp(live(this), true);
    runSync(op, op.core.spin, timeout, `${op.core.what}: readLock`);
    this.#finishRead(op);
  }

  /** Releases one read lock taken through this object. */
  readUnlock(): void {
    const core = live(this);
    if (core.reads === 0) throw notOwnerError(core.what, 'readUnlock');
    core.exitRead();
  }

  tryWriteLock(): boolean {
    const core = live(this);
    const op = new WriteOp(core, true);
    if (op.attempt()) return core.acquiredWrite(op.got);
    if (op.draining) {
      op.leave(); // readers are in: give the word back rather than wait
      return false;
    }
    if (ownerOf(op.i32, WRITER) === core.token) return false;
    // A dead writer is recovered here too, if no reader is left.
    const got = take(op.i32, WRITER, core.lifeline, false, true, core.what);
    if (got === NO) return false;
    op.got = got;
    op.draining = true;
    if (!core.drain(op, true)) {
      op.leave();
      return false;
    }
    return core.acquiredWrite(got);
  }

  /** Waits for the write lock. Rejects IPC_ERR_OWNER_DEAD (lock held) if the writer died. */
  async writeLock(options?: RWLockWaitOptions): Promise<void> {
    const { timeout, signal } = waitOptions(options, 'RWLock.writeLock', true);
    const core = live(this);
    const op = new WriteOp(core, false);
    await runAsync(op, core.spin, timeout, signal, `${core.what}: writeLock`);
    core.acquiredWrite(op.got);
  }

  writeLockSync(options?: RWLockWaitSyncOptions): void {
    const { timeout } = waitOptions(options, 'RWLock.writeLockSync', false);
    const core = live(this);
    if (core.holdsWrite() || core.reads > 0) throw deadlockError(core.what);
    const op = new WriteOp(core, true);
    runSync(op, core.spin, timeout, `${core.what}: writeLock`);
    core.acquiredWrite(op.got);
  }

  writeUnlock(): void {
    live(this).writeUnlock();
  }

  /** Accepts the state left by a writer that died (after IPC_ERR_OWNER_DEAD). */
  markConsistent(): void {
    const core = live(this);
    if (!core.holdsWrite()) throw notOwnerError(core.what, 'markConsistent');
    markConsistent(core.i32, WRITER);
  }

  #finishRead(op: ReadOp): boolean {
    if (op.asWriter !== undefined) return op.core.acquiredWrite(op.asWriter.got);
    return true;
  }
}

const factory = new Factory({
  kindName: 'RWLock',
  layout: rwlockLayout,
  options: NO_OPTIONS,
  params: NO_PARAMS,
  core: (at) => new Core(new Int32Array(at.buffer, at.base, WORDS), at.what),
  type: RWLock,
});
