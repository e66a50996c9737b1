/**
 * Subscriber: one reader of a topic, made by Topic#subscribe. It owns an entry in the topic's
 * subscriber table (a cursor, ring.ts) and sees every message published after it subscribed
 * (and, with from: 'oldest', the retained history), in the topic's one order.
 */
import { setMaxListeners } from 'node:events';
import { IpcError, closedError } from '../errors.js';
import { decodeOrThrow, type Codec } from '../codec/index.js';
import { receivedCopy as copyOf } from '../os/copy.js';
import { checkInteger, waitOptions } from '../options.js';
import { SLOT_HEADER_BYTES } from './layout.js';
import type { Cursor } from './ring.js';
import { DONE, FOR_DATA, waitAsync, waitSync, type Outcome, type WaitStrategy, type Waiting } from './waiting.js';

/** What a Subscriber needs from its Topic handle. @internal */
export interface SubscriberContext<T> {
  label: string;
  codec: Codec<T>;
  isBytes: boolean;
  /** The codec decodes straight from shared memory and keeps nothing (built-in codecs). */
  inPlace: boolean;
  strategy: WaitStrategy;
  spinMs: number;
  /** Aborted when the Topic handle closes. */
  closer: AbortSignal;
  topicClosed(): boolean;
}

const NONE: unique symbol = Symbol('none');
type Taken<T> = T | typeof NONE;

const token = Symbol('Subscriber');
/** The wait options of a call that gives none. */
const FOREVER = { timeout: Infinity, signal: undefined } as const;

/**
 * Attempts an `await receive()` makes before it goes to waitAsync (an async function, a clock
 * read, closures and a promise chain), when its handle spins at all: ~2 µs at most, well within
 * the spin of 'spin-then-block' (20 µs). A caught-up subscriber whose publisher is a few hundred
 * ns ahead gets its message here, as a resolved promise.
 */
const PRE_SPIN = 64;

/** A subscriber that is garbage collected without close() stops holding publishers back. */
const finalizer = new FinalizationRegistry<Cursor>((cursor) => cursor.close());

export class Subscriber<T = Uint8Array> {
  readonly #cursor: Cursor;
  readonly #ctx: SubscriberContext<T>;
  readonly #closer = new AbortController();
  readonly #closers: AbortSignal;
  readonly #waiting: Waiting;
  #closed = false;
  #got: Taken<T> = NONE;
  /** A decode failure met after a batch had messages: the next receive throws it (in order). */
  #failure: unknown = NONE;
  /** The handle spins before it sleeps ('spin', or 'spin-then-block' with a spin time). */
  readonly #preSpin: boolean;
  // Made once: receive() hands them to every wait.
  readonly #isClosed = (): boolean => this.closed;
  readonly #takeGot = (): T => this.#taken();

  /** @internal use Topic#subscribe */
  constructor(key: symbol, cursor: Cursor, ctx: SubscriberContext<T>) {
    if (key !== token) throw new TypeError('use topic.subscribe()');
    this.#cursor = cursor;
    this.#ctx = ctx;
    this.#closers = AbortSignal.any([this.#closer.signal, ctx.closer]);
    // Every pending wait of this subscriber listens on it: no listener-limit warning.
    setMaxListeners(0, this.#closers);
    this.#preSpin = ctx.strategy === 'spin' || (ctx.strategy === 'spin-then-block' && ctx.spinMs > 0);
    this.#waiting = {
      ring: cursor.ring,
      strategy: ctx.strategy,
      spinMs: ctx.spinMs,
      attempt: (): Outcome => ((this.#got = this.#take()) === NONE ? FOR_DATA : DONE),
      // Held up by a writer: look again now and then (it may die); otherwise sleep until woken.
      interval: () => (this.#cursor.heldUp || this.#cursor.claimedAhead() ? cursor.ring.livenessInterval : Infinity),
      label: `${ctx.label} subscriber`,
      op: 'receive',
    };
    finalizer.register(this, cursor, this);
  }

  /** @internal */
  static make<T>(cursor: Cursor, ctx: SubscriberContext<T>): Subscriber<T> {
    return new Subscriber<T>(token, cursor, ctx);
  }

  /**
   * Messages this subscriber skipped because publishers overwrote them before it read them
   * (overflow 'overwrite'; always 0 with 'block'). History from before subscribe() does not count.
   */
  get missed(): number {
    return this.#cursor.missed;
  }

  /** Messages received so far. */
  get received(): number {
    return this.#cursor.received;
  }

  get closed(): boolean {
    return this.#closed || this.#ctx.topicClosed();
  }

  /** The next message, or undefined when there is none now. */
  tryReceive(): T | undefined {
    this.#check();
    const value = this.#take();
    return value === NONE ? undefined : value;
  }

  /** The next message, waiting for one (`{ timeout, signal }`). */
  receive(options?: { timeout?: number; signal?: AbortSignal }): Promise<T> {
    try {
      this.#check();
      const { timeout, signal } = options === undefined ? FOREVER : waitOptions(options, 'receive', true);
      if (signal?.aborted) return Promise.reject(this.#aborted(signal));
      let value = this.#take();
      if (value === NONE && this.#preSpin && timeout > 0) for (let i = 0; i < PRE_SPIN && (value = this.#take()) === NONE; i++);
      if (value !== NONE) return Promise.resolve(value);
      return waitAsync(this.#waiting, FOR_DATA, timeout, signal, this.#closers, this.#isClosed).then(this.#takeGot);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The next message, blocking the thread while there is none (`{ timeout }`). */
  receiveSync(options?: { timeout?: number }): T {
    this.#check();
    const { timeout } = options === undefined ? FOREVER : waitOptions(options, 'receiveSync', false);
    const value = this.#take();
    if (value !== NONE) return value;
    waitSync(this.#waiting, FOR_DATA, timeout);
    return this.#taken();
  }

  /** Up to `max` messages available now, in order ([] when there is none). */
  tryReceiveMany(max: number): T[] {
    this.#check();
    checkInteger(max, `${this.#waiting.label} tryReceiveMany: max`, 1, 2 ** 31);
    return this.#takeUpTo(max, []);
  }

  /**
   * 1 to `max` messages in order: those available now, else the next one (waiting as receive()
   * does) and what is there with it. One promise per batch instead of one per message.
   */
  receiveMany(max: number, options?: { timeout?: number; signal?: AbortSignal }): Promise<T[]> {
    try {
      this.#check();
      checkInteger(max, `${this.#waiting.label} receiveMany: max`, 1, 2 ** 31);
      const now = this.#takeUpTo(max, []);
      if (now.length > 0) return Promise.resolve(now);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.receive(options).then((first) => this.#takeUpTo(max, [first]));
  }

  /** As receiveMany, blocking the thread while there is none (`{ timeout }`). */
  receiveManySync(max: number, options?: { timeout?: number }): T[] {
    this.#check();
    checkInteger(max, `${this.#waiting.label} receiveManySync: max`, 1, 2 ** 31);
    const now = this.#takeUpTo(max, []);
    return now.length > 0 ? now : this.#takeUpTo(max, [this.receiveSync(options)]);
  }

  /** Receives until this subscriber (or its topic handle) is closed; then the loop ends quietly. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    while (!this.closed) {
      try {
        yield await this.receive();
      } catch (err) {
        if (this.closed && (err as IpcError).code === 'IPC_ERR_CLOSED') return;
        throw err;
      }
    }
  }

  /**
   * Leaves the topic: publishers no longer wait for this subscriber, pending receives reject
   * with IPC_ERR_CLOSED and iteration ends. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    finalizer.unregister(this);
    this.#cursor.close();
    this.#closer.abort();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // --- internals -----------------------------------------------------------------------------

  #check(): void {
    if (this.closed) throw closedError(this.#waiting.label);
  }

  #aborted(signal: AbortSignal): IpcError {
    return new IpcError('IPC_ERR_ABORTED', `${this.#waiting.label} receive was aborted`, { cause: signal.reason });
  }

  #taken(): T {
    const value = this.#got as T;
    this.#got = NONE;
    return value;
  }

  /**
   * Appends to `out` the messages available now, up to `max`. A message the codec cannot decode
   * ends the batch: its error is thrown at once if the batch is empty, else by the next receive,
   * so that the messages before it are not lost with it.
   */
  #takeUpTo(max: number, out: T[]): T[] {
    while (out.length < max) {
      let value: Taken<T>;
      try {
        value = this.#take();
      } catch (err) {
        if (out.length === 0) throw err;
        this.#failure = err;
        break;
      }
      if (value === NONE) break;
      out.push(value);
    }
    return out;
  }

  /** One attempt: the next message, copied (or decoded) out of its slot, or NONE. */
  #take(): Taken<T> {
    if (this.#failure !== NONE) {
      const failure = this.#failure;
      this.#failure = NONE;
      throw failure;
    }
    const cursor = this.#cursor;
    const u8 = cursor.ring.u8;
    const ctx = this.#ctx;
    for (;;) {
      const base = cursor.next();
      if (base < 0) return NONE;
      const start = (base << 2) + SLOT_HEADER_BYTES;
      const end = start + cursor.length;
      if (cursor.mustValidate()) {
        // A publisher may overwrite the slot while we copy: the copy counts only if it is intact.
        const copy = copyOf(u8, start, end);
        if (!cursor.intact()) {
          cursor.lost();
          continue;
        }
        cursor.advance();
        return ctx.isBytes ? (copy as unknown as T) : decodeOrThrow(ctx.codec, copy, ctx.label);
      }
      // Nothing can overwrite the slot before we move past it ('block', after joining).
      try {
        if (ctx.isBytes) return copyOf(u8, start, end) as unknown as T;
        return decodeOrThrow(ctx.codec, ctx.inPlace ? u8.subarray(start, end) : copyOf(u8, start, end), ctx.label);
      } finally {
        // A message the codec cannot decode is consumed all the same (IPC_ERR_PROTOCOL).
        cursor.advance();
      }
    }
  }
}
