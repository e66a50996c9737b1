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
import { IpcError, abortError, closedError } from '../errors.js';
import { checkInteger, checkOptions, checkSignal, checkTimeout } from '../options.js';
import { Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { attachAt, attachNamed, namedOptions, placedByteLength, placedOptions, type Attached, type How, type NamedObjectOptions, type PlacedOptions, type SyncLayout } from './placement.js';
import { runAsync, runSync, type SyncWaitOptions, type WaitOp, type WaitOptions } from './wait.js';

const STATE = 0;
const PARTIES = 1;
const COUNT_MASK = 0xffff;
const ROUND_SHIFT = 16;
const ROUND_MASK = 0x7fff;
const MAX_PARTIES = 0xffff;

const roundOf = (state: number): number => (state >>> ROUND_SHIFT) & ROUND_MASK;

function layoutFor(parties: number | undefined): SyncLayout {
  return {
    kind: Kind.Barrier,
    version: 1,
    bodyBytes: 64,
    init(buffer, base) {
      if (parties === undefined) throw new TypeError("option 'parties' is required to create a Barrier");
      const i32 = new Int32Array(buffer, base, 16);
      i32.fill(0);
      i32[PARTIES] = parties; // published with the header's state flag
    },
    verify(buffer, base, what) {
      const existing = new Int32Array(buffer, base, 16)[PARTIES]!;
      if (existing < 1 || existing > MAX_PARTIES) throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: parties is ${existing}`);
      if (parties !== undefined && existing !== parties) {
        throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: has ${existing} parties, expected ${parties}`);
      }
    },
  };
}

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

const token = Symbol('Barrier');

export class Barrier {
  readonly name: string | undefined;
  readonly created: boolean;
  /** Number of parties per round. */
  readonly parties: number;
  #i32: Int32Array | undefined;
  #shm: SharedMemory | undefined;
  #what: string;

  /** Bytes a Barrier takes inside a SharedMemory. */
  static readonly byteLength: number = placedByteLength(layoutFor(1));

  /** @internal */
  constructor(key: symbol, name: string | undefined, at: Attached) {
    if (key !== token) throw new TypeError('use Barrier.create, open, openOrCreate, createAt, openAt or openOrCreateAt');
    this.name = name;
    this.created = at.created;
    this.#shm = at.shm;
    this.#what = at.what;
    this.#i32 = new Int32Array(at.buffer, at.base, 16);
    this.parties = this.#i32[PARTIES]!;
  }

  static create(name: string, options: BarrierOptions): Barrier {
    return named(name, 'create', options, 'Barrier.create');
  }

  static open(name: string, options?: Pick<BarrierOptions, 'initTimeout' | 'parties' | 'allowOtherOwner'>): Barrier {
    return named(name, 'open', options, 'Barrier.open');
  }

  static openOrCreate(name: string, options: BarrierOptions): Barrier {
    return named(name, 'openOrCreate', options, 'Barrier.openOrCreate');
  }

  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  static createAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options: BarrierPlacedOptions): Barrier {
    return placed(memory, byteOffset, 'create', options, 'Barrier.createAt');
  }

  static openAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options?: BarrierPlacedOptions): Barrier {
    return placed(memory, byteOffset, 'open', options, 'Barrier.openAt');
  }

  static openOrCreateAt(memory: SharedMemory | SharedArrayBuffer, byteOffset: number, options: BarrierPlacedOptions): Barrier {
    return placed(memory, byteOffset, 'openOrCreate', options, 'Barrier.openOrCreateAt');
  }

  /**
   * Arrives only if this completes the round (every other party is waiting): releases them all
   * and returns true. Otherwise does not arrive and returns false. Never blocks.
   */
  tryWait(): boolean {
    const i32 = this.#live();
    const state = Atomics.load(i32, STATE);
    if ((state & COUNT_MASK) + 1 !== this.parties) return false;
    return this.#complete(i32, state);
  }

  /** Arrives and waits for the round to complete. Resolves true for the last party to arrive. */
  async wait(options?: BarrierWaitOptions): Promise<boolean> {
    const opts = checkOptions<BarrierWaitOptions>(options, ['timeout', 'signal'], 'Barrier.wait');
    const timeout = checkTimeout(opts.timeout, 'Barrier.wait');
    const signal = checkSignal(opts.signal, 'Barrier.wait');
    const i32 = this.#live();
    if (signal?.aborted) throw abortError(`${this.#what}: wait`, signal.reason);
    const round = this.#arrive(i32);
    if (round < 0) return true;
    try {
      await runAsync(new RoundOp(i32, round), timeout, signal, `${this.#what}: wait`);
    } catch (err) {
      this.#withdraw(i32, round, err);
    }
    return false;
  }

  waitSync(options?: BarrierWaitSyncOptions): boolean {
    const opts = checkOptions<BarrierWaitSyncOptions>(options, ['timeout'], 'Barrier.waitSync');
    const timeout = checkTimeout(opts.timeout, 'Barrier.waitSync');
    const i32 = this.#live();
    const round = this.#arrive(i32);
    if (round < 0) return true;
    try {
      runSync(new RoundOp(i32, round), timeout, `${this.#what}: wait`);
    } catch (err) {
      this.#withdraw(i32, round, err);
    }
    return false;
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

  #live(): Int32Array {
    if (this.#i32 === undefined) throw closedError(this.#what);
    return this.#i32;
  }
}

function partiesOf(value: unknown, where: string): number | undefined {
  return value === undefined ? undefined : checkInteger(value, `${where}: parties`, 1, MAX_PARTIES);
}

function named(name: string, how: How, options: unknown, where: string): Barrier {
  const opts = namedOptions<{ parties?: number }>(options, ['parties'], where);
  const parties = partiesOf(opts.parties, where);
  if (how !== 'open' && parties === undefined) throw new TypeError(`${where}: option 'parties' is required`);
  return new Barrier(token, name, attachNamed(name, how, 'Barrier', layoutFor(parties), opts));
}

function placed(memory: unknown, byteOffset: unknown, how: How, options: unknown, where: string): Barrier {
  const opts = placedOptions(options, ['parties'], where);
  const parties = partiesOf(opts['parties'], where);
  if (how !== 'open' && parties === undefined) throw new TypeError(`${where}: option 'parties' is required`);
  return new Barrier(token, undefined, attachAt(memory, byteOffset, how, 'Barrier', layoutFor(parties), opts, where));
}
