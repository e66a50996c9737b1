/**
 * Barrier: n parties wait until all n have arrived, then all are released together; reusable
 * round after round. Contract: no party leaves round r before all n parties arrived in round
 * r, and exactly one party per round is told it was the last to arrive (wait resolves true).
 *
 * Body layout (behind the 64-byte common header; int32 words):
 *   offset  size  field
 *   0       4     state    round (bits 16-30) | arrived in this round (bits 0-15); the futex word
 *   4       4     parties  n, 1 .. 65535, fixed at creation
 *   8       56    reserved (zero)
 *
 * Round and count share one word so that arriving, completing a round and withdrawing are each
 * one CAS: a party that times out or is aborted withdraws its arrival only if its round is
 * still open (if the round completed meanwhile, it was released and returns normally). The last
 * arrival starts the next round (count 0) and wakes everyone sleeping on the word; waiters
 * leave when the round number differs from theirs. A party must arrive again for each round,
 * so the 15-bit round number cannot wrap around a waiter.
 */
import { IpcError, abortError } from '../errors.js';
import { checkInteger, waitOptions } from '../options.js';
import { HEADER_BYTES, Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { Factory, SyncPrimitive, bodyWords, live, type Core } from './lifecycle.js';
import { placedByteLength, type Attached, type NamedObjectOptions, type PlacedOptions, type SyncLayout } from './placement.js';
import { runAsync, runSync, type SyncWaitOptions, type WaitOp, type WaitOptions } from './wait.js';

const STATE = 0;
const PARTIES = 1;
const COUNT_MASK = 0xffff;
const ROUND_SHIFT = 16;
const ROUND_MASK = 0x7fff;
const MAX_PARTIES = 0xffff;

const roundOf = (state: number): number => (state >>> ROUND_SHIFT) & ROUND_MASK;

/**
 * The body, described once: created with `parties` (required to create, checked against an
 * existing barrier when given to open); `inspect` shows parties and the round's state.
 */
export const barrierLayout: SyncLayout<number | undefined> = {
  kind: Kind.Barrier,
  version: 1,
  bodyBytes: 64,
  init(buffer, base, parties) {
    if (parties === undefined) throw new TypeError("option 'parties' is required to create a Barrier");
    const i32 = new Int32Array(buffer, base, 16);
    i32.fill(0);
    i32[PARTIES] = parties; // published with the header's state flag
  },
  verify(buffer, base, what, parties) {
    const existing = new Int32Array(buffer, base, 16)[PARTIES]!;
    if (existing < 1 || existing > MAX_PARTIES) throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: parties is ${existing}`);
    if (parties !== undefined && existing !== parties) {
      throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: has ${existing} parties, expected ${parties}`);
    }
  },
  describe(buffer) {
    const i32 = new Int32Array(buffer, HEADER_BYTES, 2);
    const state = Atomics.load(i32, STATE);
    return { parties: Atomics.load(i32, PARTIES), arrived: state & COUNT_MASK, round: roundOf(state) };
  },
};

class RoundOp implements WaitOp {
  parkIndex = STATE;
  parkExpected = 0;
  parkInterval = Infinity;

  constructor(
    readonly i32: Int32Array,
    readonly round: number,
  ) {}

  attempt(): boolean {
    // Pairs with the CAS that completes the round.
    return roundOf(Atomics.load(this.i32, STATE)) !== this.round;
  }

  prepare(): boolean {
    const state = Atomics.load(this.i32, STATE);
    if (roundOf(state) !== this.round) return true;
    this.parkExpected = state;
    return false;
  }

  spinWorthwhile(): boolean {
    return true;
  }

  leave(): void {}
}

export interface BarrierOptions extends NamedObjectOptions {
  /** Number of parties (1 .. 65535). Required to create; checked when opening if given. */
  parties?: number;
}
export interface BarrierPlacedOptions extends PlacedOptions {
  parties?: number;
}
export type BarrierWaitOptions = WaitOptions;
export type BarrierWaitSyncOptions = SyncWaitOptions;

export class Barrier extends SyncPrimitive {
  /** Number of parties per round. */
  readonly parties: number;

  /** Bytes a Barrier takes inside a SharedMemory. */
  static readonly byteLength: number = placedByteLength(barrierLayout);

  /** @internal */
  constructor(key: symbol, name: string | undefined, at: Attached, core: Core) {
    super(key, name, at, core);
    this.parties = core.i32[PARTIES]!; // fixed at creation, published with the header
  }

  /** Creates the barrier `name` for `parties` parties; IPC_ERR_EXISTS if the name is taken. */
  static create(name: string, options: BarrierOptions): Barrier {
    return factory.named(name, 'create', options);
  }

  /** Opens the existing barrier `name` (if `parties` is given, it must match: IPC_ERR_INCOMPATIBLE otherwise). */
  static open(name: string, options?: Pick<BarrierOptions, 'initTimeout' | 'parties' | 'allowOtherOwner'>): Barrier {
    return factory.named(name, 'open', options);
  }

  /** Opens the barrier `name`, creating it for `parties` parties if it is missing. */
  static openOrCreate(name: string, options: BarrierOptions): Barrier {
    return factory.named(name, 'openOrCreate', options);
  }

  /** Removes the name; processes that have it open keep using it. True if it existed. */
  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  /** Initializes a new Barrier for `parties` parties in zeroed memory at byteOffset (a multiple of 8). */
  static createAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options: BarrierPlacedOptions): Barrier {
    return factory.placed(memory, byteOffset, 'create', options);
  }

  /** Opens the Barrier that createAt initialized at byteOffset. */
  static openAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: BarrierPlacedOptions): Barrier {
    return factory.placed(memory, byteOffset, 'open', options);
  }

  /** Opens the Barrier at byteOffset, initializing it if the memory there is still zero. */
  static openOrCreateAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options: BarrierPlacedOptions): Barrier {
    return factory.placed(memory, byteOffset, 'openOrCreate', options);
  }

  /**
   * Arrives only if this completes the round (every other party is waiting): releases them all
   * and returns true. Otherwise does not arrive and returns false. Never blocks.
   */
  tryWait(): boolean {
    const { i32 } = live(this);
    const state = Atomics.load(i32, STATE);
    if ((state & COUNT_MASK) + 1 !== this.parties) return false;
    return this.#complete(i32, state);
  }

  /** Arrives and waits for the round to complete. Resolves true for the last party to arrive. */
  async wait(options?: BarrierWaitOptions): Promise<boolean> {
    const { timeout, signal } = waitOptions(options, 'Barrier.wait', true);
    const { i32, what, spin } = live(this);
    if (signal?.aborted) throw abortError(`${what}: wait`, signal.reason);
    const round = this.#arrive(i32);
    if (round < 0) return true;
    try {
      await runAsync(new RoundOp(i32, round), spin, timeout, signal, `${what}: wait`);
    } catch (err) {
      this.#withdraw(i32, round, err);
    }
    return false;
  }

  waitSync(options?: BarrierWaitSyncOptions): boolean {
    const { timeout } = waitOptions(options, 'Barrier.waitSync', false);
    const { i32, what, spin } = live(this);
    const round = this.#arrive(i32);
    if (round < 0) return true;
    try {
      runSync(new RoundOp(i32, round), spin, timeout, `${what}: wait`);
    } catch (err) {
      this.#withdraw(i32, round, err);
    }
    return false;
  }

  /** Counts our arrival; returns the round to wait for, or -1 when we completed it. */
  #arrive(i32: Int32Array): number {
    for (;;) {
      const state = Atomics.load(i32, STATE);
      if ((state & COUNT_MASK) + 1 >= this.parties) {
        if (this.#complete(i32, state)) return -1;
        continue;
      }
      // Publishes our arrival; pairs with the last party's load before its completing CAS.
      if (Atomics.compareExchange(i32, STATE, state, state + 1) === state) return roundOf(state);
    }
  }

  #complete(i32: Int32Array, state: number): boolean {
    const next = ((roundOf(state) + 1) & ROUND_MASK) << ROUND_SHIFT;
    // Opens the next round with no arrivals; everything the parties wrote before arriving is
    // visible to each of them after they see the new round.
    if (Atomics.compareExchange(i32, STATE, state, next) !== state) return false;
    if ((state & COUNT_MASK) > 0) futex.notify(i32, STATE);
    return true;
  }

  /** A timed-out or aborted party takes back its arrival, unless the round completed. */
  #withdraw(i32: Int32Array, round: number, err: unknown): void {
    for (;;) {
      const state = Atomics.load(i32, STATE);
      if (roundOf(state) !== round) return; // released after all: not a failure
      // Takes our arrival back only in our round: the CAS fails if the round completed since.
      if (Atomics.compareExchange(i32, STATE, state, state - 1) === state) break;
    }
    throw err;
  }
}

const factory = new Factory({
  kindName: 'Barrier',
  layout: barrierLayout,
  options: () => ['parties'],
  params: (options, how, where) => {
    const parties = options['parties'] === undefined ? undefined : checkInteger(options['parties'], `${where}: parties`, 1, MAX_PARTIES);
    if (how !== 'open' && parties === undefined) throw new TypeError(`${where}: option 'parties' is required`);
    return parties;
  },
  core: (at) => bodyWords(at, barrierLayout),
  type: Barrier,
});
