/**
 * Queue: the shared-memory message queue, a public facade over ring.ts (algorithm) and
 * layout.ts (bytes and protocol). This file owns codecs, waiting (spin, futex, async) and the
 * lifecycle; it never touches a slot except through the ring.
 */
import { setMaxListeners } from 'node:events';
import * as workerThreads from 'node:worker_threads';
import { IpcError, abortError, closedError, timeoutError } from '../errors.js';
import { resolveCodec, decodeOrThrow, type BytesCodec, type Codec, type CodecOption, type SerializingCodec } from '../codec/index.js';
import { checkInteger, checkOptions, waitOptions } from '../options.js';
import { Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { namedOptions, openObject, type NamedObjectOptions } from '../shm/segment.js';
import type { How } from '../naming.js';
import { futex } from '../os/futex.js';
import { LARGE_RECEIVE, copyAt, largeBuffer, receivedCopy } from '../os/copy.js';
import { openLifeline, type Lifeline } from '../os/lifeline.js';
import {
  DEFAULT_HANDLES,
  DEFAULT_STALL_TIMEOUT,
  geometry,
  handlesInUse,
  initQueue,
  MAX_HANDLES,
  MAX_MESSAGE_SIZE_LIMIT,
  QUEUE_VERSION,
  readGeometry,
  SKIP,
  SLOT_HEADER_BYTES,
  SLOT_LENGTH,
  W,
  type QueueGeometry,
} from './layout.js';
import { QueueRing, SPAN_AT_HEAD, type Ring } from './ring.js';

export type WaitStrategy = 'spin' | 'block' | 'spin-then-block';

/** Options every opener may give (they are per handle, not stored in the queue). */
export interface QueueHandleOptions<T = unknown> extends NamedObjectOptions {
  /** How messages are turned into bytes: 'bytes' (default), 'json', 'structured', 'msgpack' or { encode, decode }. */
  codec?: CodecOption<T>;
  /** How a blocked send/receive waits: busy-spin, sleep in the kernel, or spin briefly then sleep (default). */
  wait?: WaitStrategy;
  /** Microseconds to spin before sleeping with 'spin-then-block' (default 20). */
  spinTime?: number;
  /** Milliseconds a slot may stay claimed by a dead process before it is reclaimed (default 1000). */
  stallTimeout?: number;
}

export interface QueueCreateOptions<T = unknown> extends QueueHandleOptions<T> {
  /** Size of the whole segment in bytes (header and slots). Give this or `capacity`. */
  byteLength?: number;
  /** Number of slots, a power of two. Give this or `byteLength` (or both). */
  capacity?: number;
  /** Largest message in bytes (after encoding). Default: what the slots can hold (4096 with `capacity`; `slotSize` with it). */
  maxMessageSize?: number;
  /**
   * Payload bytes per slot, a multiple of 16 (each slot has a 16-byte header besides). A
   * message longer than this spans ceil(length / slotSize) consecutive slots, so a queue of
   * mostly small messages and a rare large one needs capacity x slotSize, not capacity x the
   * largest. capacity must hold the span of maxMessageSize. Default: every slot holds
   * maxMessageSize (no spans).
   */
  slotSize?: number;
  /** How many handles (opens, per thread) may have the queue open at once (default 64, at most 4096). */
  maxHandles?: number;
}

export interface QueueOpenOptions<T = unknown> extends QueueHandleOptions<T> {
  /** If given, the queue must have exactly this maxMessageSize (IPC_ERR_INCOMPATIBLE otherwise). */
  maxMessageSize?: number;
}

export interface WaitOptions {
  timeout?: number;
  signal?: AbortSignal;
}

export interface SyncWaitOptions {
  timeout?: number;
}

export interface TryLeaseOptions {
  /**
   * Milliseconds this consumer may hold the lease before another consumer may take the
   * message over (it may then be processed twice). Default: no limit, only death gives it up.
   */
  leaseTime?: number;
}

export interface LeaseOptions extends WaitOptions, TryLeaseOptions {}

export interface SyncLeaseOptions extends SyncWaitOptions, TryLeaseOptions {}

export interface QueueStats {
  name: string;
  byteLength: number;
  capacity: number;
  /** Payload bytes per slot: a longer message spans several (see QueueCreateOptions.slotSize). */
  slotSize: number;
  maxMessageSize: number;
  /** Slots claimed by producers and not yet by consumers (0..capacity): messages, when none spans. */
  depth: number;
  /** Positions claimed so far by producers / consumers, modulo 2^32. */
  sendPosition: number;
  receivePosition: number;
  /** Positions skipped because their producer died before committing them (a span: up to its slots). */
  skippedRecords: number;
  /** Slots reclaimed from consumers that died while taking a message (that message is lost). */
  reclaimedSlots: number;
  /** Leased messages not yet acknowledged (an upper bound: a holder killed as it acknowledged counts on). */
  leased: number;
  /** Leases taken over from holders that died, gave them back, or outlived their lease time. */
  redelivered: number;
  /** Handles (rows of the claims table) in use, and how many the queue has. */
  handles: number;
  maxHandles: number;
  sleepingReceivers: number;
  sleepingSenders: number;
}

const HANDLE_OPTIONS = ['codec', 'wait', 'spinTime', 'stallTimeout'] as const;
const CREATE_OPTIONS = [...HANDLE_OPTIONS, 'byteLength', 'capacity', 'maxMessageSize', 'slotSize', 'maxHandles'] as const;
const OPEN_OPTIONS = [...HANDLE_OPTIONS, 'maxMessageSize'] as const;
const WAITS: readonly WaitStrategy[] = ['spin', 'block', 'spin-then-block'];
const DEFAULT_SPIN_US = 20;
/** Sleepers wake at least this often to look for stalls left by dead peers. */
const MAX_SLEEP_MS = 1000;

/** The least a loan buffer holds: small loans are carved from it, one detach per fill (#loanAt). */
const LOAN_BYTES = 64 * 1024;
/** Most slots one batch claims with one CAS. */
const BATCH = 64;
/** Queues with more slots than this do not cache zero-copy views. */
const VIEW_CACHE_SLOTS = 65536;

/**
 * Moves an ArrayBuffer's memory to a new ArrayBuffer, detaching the old one and its views (no
 * copy): ArrayBuffer#transfer where the runtime has it (Node 21+), else a transferring clone.
 */
const nativeTransfer = (ArrayBuffer.prototype as { transfer?: (this: ArrayBuffer) => ArrayBuffer }).transfer;
/**
 * Whether the user marked a buffer untransferable (Node 21+; undefined on Node 20). Such a
 * loan must be left alone: `ArrayBuffer.prototype.transfer` (Node 21+) detaches it all the
 * same, since the mark only governs postMessage, while Node 20's structuredClone copies it.
 */
const markedUntransferable = (workerThreads as { isMarkedAsUntransferable?: (object: unknown) => boolean }).isMarkedAsUntransferable;
const detach: (buffer: ArrayBuffer) => ArrayBuffer =
  nativeTransfer !== undefined ? (buffer) => nativeTransfer.call(buffer) : (buffer) => structuredClone(buffer, { transfer: [buffer] });

/** A checked `{ timeout, signal }`; FOREVER when none was given. */
type Wait = { timeout: number; signal: AbortSignal | undefined };
const FOREVER: Wait = { timeout: Infinity, signal: undefined };

const NONE: unique symbol = Symbol('none');
/** The result of an async call that resolves to nothing. */
const NOTHING = (): undefined => undefined;
type Taken<T> = T | typeof NONE;

const token = Symbol('Queue');
const bytesCodec = resolveCodec('bytes');
/** Built-in decoders never keep the bytes they are given: they may read shared memory directly. */
const readsInPlace = new Set<Codec<any>>([resolveCodec('json'), resolveCodec('structured'), resolveCodec('msgpack')]);

const now = (): number => performance.now();
const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

let ringOf: (queue: Queue<any>) => Ring;

/**
 * The Ring under a Queue handle, for the library's own transports only (src/channel/shm): they
 * claim, fill and commit slots in place with the queue's protocol, through the handle's own
 * mapping. Not exported from the package. Valid until the handle is closed.
 */
export function queueRing(queue: Queue<any>): Ring {
  return ringOf(queue);
}

export class Queue<T = Uint8Array> {
  readonly #name: string;
  #shm: SharedMemory | undefined;
  readonly #ring: Ring;
  /** This thread's lifeline on the queue: its row and its leases record the token. */
  readonly #lifeline: Lifeline;
  readonly #i32: Int32Array;
  readonly #codec: Codec<T>;
  readonly #isBytes: boolean;
  readonly #inPlace: boolean;
  readonly #wait: WaitStrategy;
  readonly #spinMs: number;
  readonly #geometry: QueueGeometry;
  /** geometry.maxMessageSize, hoisted: read on every send and receive. */
  readonly #max: number;
  /** Payload bytes per slot, hoisted: a longer message is a span. */
  readonly #slotSize: number;
  /** Spans pass through here for the zero-copy forms (sendWith, receiveWith): reused, grown as needed. */
  #scratch: Uint8Array = new Uint8Array(0);
  #closed = false;
  /** Messages of a batch that followed one the codec could not decode; delivered first. */
  readonly #pending: T[] = [];
  #pendingError: unknown = undefined;
  /** Aborted by close() so that pending waits reject with IPC_ERR_CLOSED. */
  readonly #closer = new AbortController();
  /**
   * Zero-copy views of slot payloads, by slot, made on first use and reused while the length
   * is the same (creating a typed array costs ~40 ns, as much as the rest of a 64 B receive).
   * Only for queues of up to VIEW_CACHE_SLOTS slots; larger ones make a view per call.
   */
  readonly #views: (Uint8Array | undefined)[];
  /** Leases this handle holds: given back when it closes. */
  readonly #leases = new Set<LeaseRecord>();
  /**
   * The loan buffer (receiveLoan): private memory reused from loan to loan. Undefined until the
   * first loan; detached (byteLength 0) if the user transferred a loan's buffer away.
   */
  #loanBuffer: ArrayBuffer | undefined;
  /** Where the next loan is carved from #loanBuffer; views of [0, #loanEnd) may be out. */
  #loanEnd = 0;
  /** Inside a user callback (sendWith / receiveWith) that holds a claim: close() waits for it. */
  #busy = 0;

  static {
    ringOf = (queue) => queue.#ring;
  }

  /** @internal use Queue.create / open / openOrCreate */
  constructor(key: symbol, name: string, shm: SharedMemory, g: QueueGeometry, handle: ResolvedHandle<T>) {
    if (key !== token) throw new TypeError('use Queue.create, Queue.open or Queue.openOrCreate');
    this.#name = name;
    this.#shm = shm;
    this.#geometry = g;
    this.#max = g.maxMessageSize;
    this.#slotSize = g.slotBytes - SLOT_HEADER_BYTES;
    this.#views = g.capacity <= VIEW_CACHE_SLOTS ? new Array<Uint8Array | undefined>(g.capacity).fill(undefined) : [];
    this.#lifeline = openLifeline(shm.buffer);
    try {
      this.#ring = new QueueRing(shm.buffer, g, handle.stallTimeout, this.#lifeline, `queue '${name}'`);
    } catch (err) {
      this.#lifeline.close();
      throw err;
    }
    this.#i32 = this.#ring.i32;
    this.#codec = handle.codec;
    this.#isBytes = handle.codec === (bytesCodec as Codec<unknown>);
    this.#inPlace = readsInPlace.has(handle.codec);
    this.#wait = handle.wait;
    this.#spinMs = handle.spinTime / 1000;
    // Every pending async wait of this handle listens on it: no listener limit warning.
    setMaxListeners(0, this.#closer.signal);
  }

  /**
   * Creates the queue `name`; IPC_ERR_EXISTS if it exists. The codec decides the message type:
   * Uint8Array without one (or with 'bytes'), the type you name with a serializing codec.
   */
  static create(name: string, options: QueueCreateOptions<Uint8Array> & BytesCodec): Queue<Uint8Array>;
  static create<T = unknown>(name: string, options: QueueCreateOptions<T> & SerializingCodec<T>): Queue<T>;
  static create<T>(name: string, options: QueueCreateOptions<T>): Queue<T> {
    return make<T>(name, 'create', options, 'Queue.create');
  }

  /** Opens the existing queue `name`; IPC_ERR_NOT_FOUND if missing, IPC_ERR_INCOMPATIBLE if not a queue. */
  static open(name: string, options?: QueueOpenOptions<Uint8Array> & BytesCodec): Queue<Uint8Array>;
  static open<T = unknown>(name: string, options: QueueOpenOptions<T> & SerializingCodec<T>): Queue<T>;
  static open<T>(name: string, options?: QueueOpenOptions<T>): Queue<T> {
    return make<T>(name, 'open', options, 'Queue.open');
  }

  /** Opens `name`, creating it with these options if it is missing. */
  static openOrCreate(name: string, options: QueueCreateOptions<Uint8Array> & BytesCodec): Queue<Uint8Array>;
  static openOrCreate<T = unknown>(name: string, options: QueueCreateOptions<T> & SerializingCodec<T>): Queue<T>;
  static openOrCreate<T>(name: string, options: QueueCreateOptions<T>): Queue<T> {
    return make<T>(name, 'openOrCreate', options, 'Queue.openOrCreate');
  }

  /** Removes the name; processes that have the queue open keep using it. True if it existed. */
  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  get name(): string {
    return this.#name;
  }
  get capacity(): number {
    return this.#geometry.capacity;
  }
  get maxMessageSize(): number {
    return this.#geometry.maxMessageSize;
  }
  /** Payload bytes per slot; a longer message spans several. */
  get slotSize(): number {
    return this.#slotSize;
  }
  get closed(): boolean {
    return this.#closed;
  }

  // --- send ------------------------------------------------------------------------------------

  /** Sends if there is room; false when the queue is full. */
  trySend(value: T): boolean {
    this.#check();
    return this.#put(this.#encode(value));
  }

  /** Sends, waiting while the queue is full (backpressure). */
  send(value: T, options?: WaitOptions): Promise<void> {
    try {
      this.#check();
      const wait = this.#asyncWait(options, 'send');
      const bytes = this.#encode(value);
      if (this.#put(bytes)) return Promise.resolve();
      return this.#settle(true, () => this.#put(bytes), wait, 'send', NOTHING);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Sends, blocking the thread while the queue is full. */
  sendSync(value: T, options?: SyncWaitOptions): void {
    this.#check();
    const timeout = this.#syncTimeout(options, 'sendSync');
    const bytes = this.#encode(value);
    if (this.#put(bytes)) return;
    this.#waitSync(true, () => this.#put(bytes), timeout, 'sendSync');
  }

  /**
   * Zero-copy send: claims a slot and lets `write` fill `byteLength` bytes of it in place (the
   * view is valid only during the call). If `write` throws, the slot is committed as a skip
   * record (never delivered) and the error propagates. The codec is not involved. Keep `write`
   * short: after stallTimeout peers look at the slot (and find this thread alive, so they wait).
   */
  trySendWith(byteLength: number, write: (view: Uint8Array) => void): boolean {
    this.#check();
    this.#checkLength(byteLength, write);
    return this.#putWith(byteLength, write);
  }

  sendWith(byteLength: number, write: (view: Uint8Array) => void, options?: WaitOptions): Promise<void> {
    try {
      this.#check();
      const wait = this.#asyncWait(options, 'sendWith');
      this.#checkLength(byteLength, write);
      if (this.#putWith(byteLength, write)) return Promise.resolve();
      return this.#settle(true, () => this.#putWith(byteLength, write), wait, 'sendWith', NOTHING);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  sendWithSync(byteLength: number, write: (view: Uint8Array) => void, options?: SyncWaitOptions): void {
    this.#check();
    const timeout = this.#syncTimeout(options, 'sendWithSync');
    this.#checkLength(byteLength, write);
    if (this.#putWith(byteLength, write)) return;
    this.#waitSync(true, () => this.#putWith(byteLength, write), timeout, 'sendWithSync');
  }

  /**
   * Sends as many of `values` as fit right now, in order, claiming them in batches (one CAS on
   * the shared index per batch). Returns how many were sent (0 when full). Every value is
   * encoded and checked against maxMessageSize first: a too-large one sends nothing.
   */
  trySendMany(values: readonly T[]): number {
    this.#check();
    const encoded = this.#encodeAll(values, 'trySendMany');
    let sent = 0;
    for (let n; sent < encoded.length && (n = this.#putMany(encoded, sent)) !== 0; ) sent += n;
    return sent;
  }

  /** Sends every value, in order, waiting for room as needed. */
  sendMany(values: readonly T[], options?: WaitOptions): Promise<void> {
    try {
      this.#check();
      const wait = this.#asyncWait(options, 'sendMany');
      const encoded = this.#encodeAll(values, 'sendMany');
      let sent = 0;
      const attempt = (): boolean => {
        for (let n; sent < encoded.length && (n = this.#putMany(encoded, sent)) !== 0; ) sent += n;
        return sent === encoded.length;
      };
      if (attempt()) return Promise.resolve();
      return this.#settle(true, attempt, wait, 'sendMany', NOTHING);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  sendManySync(values: readonly T[], options?: SyncWaitOptions): void {
    this.#check();
    const timeout = this.#syncTimeout(options, 'sendManySync');
    const encoded = this.#encodeAll(values, 'sendManySync');
    let sent = 0;
    const attempt = (): boolean => {
      for (let n; sent < encoded.length && (n = this.#putMany(encoded, sent)) !== 0; ) sent += n;
      return sent === encoded.length;
    };
    if (!attempt()) this.#waitSync(true, attempt, timeout, 'sendManySync');
  }

  // --- receive ---------------------------------------------------------------------------------

  /** Takes the next message, or undefined when the queue is empty. */
  tryReceive(): T | undefined {
    this.#check();
    const value = this.#take();
    return value === NONE ? undefined : value;
  }

  /** Takes the next message, waiting while the queue is empty. */
  receive(options?: WaitOptions): Promise<T> {
    try {
      this.#check();
      const wait = this.#asyncWait(options, 'receive');
      const value = this.#take();
      if (value !== NONE) return Promise.resolve(value);
      let got: Taken<T> = NONE;
      return this.#settle(false, () => (got = this.#take()) !== NONE, wait, 'receive', () => got as T);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Takes the next message, blocking the thread while the queue is empty. */
  receiveSync(options?: SyncWaitOptions): T {
    this.#check();
    const timeout = this.#syncTimeout(options, 'receiveSync');
    let got = this.#take();
    if (got !== NONE) return got;
    if (this.#wait !== 'block') {
      // The latency-critical spin, specialised (no closure) for the common receive.
      const end = now() + (this.#wait === 'spin' ? Math.min(1, timeout) : Math.min(this.#spinMs, timeout));
      for (let i = 1; ; i++) {
        got = this.#take();
        if (got !== NONE) return got;
        if ((i & 63) === 0 && now() >= end) break;
      }
    }
    this.#waitSync(false, () => (got = this.#take()) !== NONE, timeout, 'receiveSync', true);
    return got as T;
  }

  /**
   * Zero-copy receive: hands the next message's bytes to `read` in place, without the codec
   * (the view is valid only during the call; copy what you keep). False when empty. If `read`
   * throws, the message counts as received and the error propagates.
   */
  tryReceiveWith(read: (view: Uint8Array) => void): boolean {
    this.#check();
    if (typeof read !== 'function') throw new TypeError('tryReceiveWith: read must be a function');
    return this.#takeWith(read);
  }

  receiveWith(read: (view: Uint8Array) => void, options?: WaitOptions): Promise<void> {
    try {
      this.#check();
      const wait = this.#asyncWait(options, 'receiveWith');
      if (typeof read !== 'function') throw new TypeError('receiveWith: read must be a function');
      if (this.#takeWith(read)) return Promise.resolve();
      return this.#settle(false, () => this.#takeWith(read), wait, 'receiveWith', NOTHING);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  receiveWithSync(read: (view: Uint8Array) => void, options?: SyncWaitOptions): void {
    this.#check();
    const timeout = this.#syncTimeout(options, 'receiveWithSync');
    if (typeof read !== 'function') throw new TypeError('receiveWithSync: read must be a function');
    if (this.#takeWith(read)) return;
    this.#waitSync(false, () => this.#takeWith(read), timeout, 'receiveWithSync');
  }

  // --- loans (receive into a reused buffer) ----------------------------------------------------

  /**
   * Loan receive: the next message's bytes, copied into this handle's loan buffer, which is
   * reused from loan to loan (no allocation, so no page faults: for large messages the copy runs
   * at memory speed, where a plain receive pays for fresh memory). No codec. The view is valid
   * until the next loan, releaseLoan() or close(); it is never overwritten: loans are carved
   * one after another from the buffer, and before its memory is used again every view of it is
   * detached (length 0), so a stale loan reads as its own message or as empty, never as another.
   * Undefined when the queue is empty. Copy (or transfer) what you keep.
   */
  tryReceiveLoan(): Uint8Array | undefined {
    this.#check();
    return this.#takeLoan();
  }

  receiveLoan(options?: WaitOptions): Promise<Uint8Array> {
    try {
      this.#check();
      const wait = this.#asyncWait(options, 'receiveLoan');
      const got = this.#takeLoan();
      if (got !== undefined) return Promise.resolve(got);
      let taken: Uint8Array | undefined;
      return this.#settle(false, () => (taken = this.#takeLoan()) !== undefined, wait, 'receiveLoan', () => taken!);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  receiveLoanSync(options?: SyncWaitOptions): Uint8Array {
    this.#check();
    const timeout = this.#syncTimeout(options, 'receiveLoanSync');
    let taken = this.#takeLoan();
    if (taken !== undefined) return taken;
    this.#waitSync(false, () => (taken = this.#takeLoan()) !== undefined, timeout, 'receiveLoanSync');
    return taken!;
  }

  /**
   * Ends the current loan now: its view is detached (length 0). Optional (the next loan does
   * it); a no-op without a loan, and after close().
   */
  releaseLoan(): void {
    if (this.#loanEnd !== 0) this.#recallLoan();
  }

  /**
   * Takes up to `max` messages that are there now, in order, claiming them in batches. Empty
   * array when the queue is empty. A receiver killed in the middle may lose the whole batch it
   * held (up to 64 messages), where a single receive loses at most one.
   */
  tryReceiveMany(max: number): T[] {
    this.#check();
    checkInteger(max, 'tryReceiveMany: max', 1, 2 ** 31);
    const out: T[] = [];
    while (out.length < max && this.#takeMany(max - out.length, out) !== 0);
    return out;
  }

  /** Takes between 1 and `max` messages, waiting while the queue is empty. */
  receiveMany(max: number, options?: WaitOptions): Promise<T[]> {
    try {
      this.#check();
      checkInteger(max, 'receiveMany: max', 1, 2 ** 31);
      const wait = this.#asyncWait(options, 'receiveMany');
      const out: T[] = [];
      const attempt = (): boolean => {
        while (out.length < max && this.#takeMany(max - out.length, out) !== 0);
        return out.length !== 0;
      };
      if (attempt()) return Promise.resolve(out);
      return this.#settle(false, attempt, wait, 'receiveMany', () => out);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  receiveManySync(max: number, options?: SyncWaitOptions): T[] {
    this.#check();
    checkInteger(max, 'receiveManySync: max', 1, 2 ** 31);
    const timeout = this.#syncTimeout(options, 'receiveManySync');
    const out: T[] = [];
    const attempt = (): boolean => {
      while (out.length < max && this.#takeMany(max - out.length, out) !== 0);
      return out.length !== 0;
    };
    if (!attempt()) this.#waitSync(false, attempt, timeout, 'receiveManySync');
    return out;
  }

  // --- leases (at-least-once) ------------------------------------------------------------------

  /**
   * Takes the next message as a lease, or undefined when there is none: the message stays in
   * the queue, owned by this consumer, until `ack()` removes it or `release()` gives it back.
   * If this consumer dies first (the kernel says so), or holds it longer than `leaseTime`, the
   * message is delivered again, to a lease consumer (at-least-once). Besides new messages, a
   * lease can be a message that another consumer leased and lost.
   */
  tryLease(options?: TryLeaseOptions): Lease<T> | undefined {
    this.#check();
    const leaseTime = this.#leaseTime(checkOptions<TryLeaseOptions>(options, TRY_LEASE_OPTIONS, 'Queue.tryLease').leaseTime, 'tryLease');
    return this.#takeLease(leaseTime);
  }

  /** Takes the next message as a lease (see tryLease), waiting while there is none. */
  lease(options?: LeaseOptions): Promise<Lease<T>> {
    try {
      this.#check();
      const opts = checkOptions<LeaseOptions>(options, LEASE_OPTIONS, 'Queue.lease');
      const leaseTime = this.#leaseTime(opts.leaseTime, 'lease');
      const wait = this.#asyncWait({ timeout: opts.timeout, signal: opts.signal }, 'lease');
      const got = this.#takeLease(leaseTime);
      if (got !== undefined) return Promise.resolve(got);
      let taken: Lease<T> | undefined;
      return this.#settle(false, () => (taken = this.#takeLease(leaseTime)) !== undefined, wait, 'lease', () => taken!);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Takes the next message as a lease (see tryLease), blocking the thread while there is none. */
  leaseSync(options?: SyncLeaseOptions): Lease<T> {
    this.#check();
    const opts = checkOptions<SyncLeaseOptions>(options, SYNC_LEASE_OPTIONS, 'Queue.leaseSync');
    const leaseTime = this.#leaseTime(opts.leaseTime, 'leaseSync');
    const timeout = this.#syncTimeout({ timeout: opts.timeout }, 'leaseSync');
    let taken = this.#takeLease(leaseTime);
    if (taken !== undefined) return taken;
    this.#waitSync(false, () => (taken = this.#takeLease(leaseTime)) !== undefined, timeout, 'leaseSync');
    return taken!;
  }

  /** Receives until this handle is closed (then the loop ends quietly). */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    while (!this.#closed) {
      try {
        yield await this.receive();
      } catch (err) {
        if (this.#closed && (err as IpcError).code === 'IPC_ERR_CLOSED') return;
        throw err;
      }
    }
  }

  stats(): QueueStats {
    this.#check();
    const i32 = this.#i32;
    const tail = Atomics.load(i32, W.tail);
    const head = Atomics.load(i32, W.head);
    const g = this.#geometry;
    return {
      name: this.#name,
      byteLength: g.byteLength,
      capacity: g.capacity,
      slotSize: this.#slotSize,
      maxMessageSize: g.maxMessageSize,
      depth: Math.max(0, Math.min(g.capacity, (tail - head) | 0)),
      sendPosition: tail >>> 0,
      receivePosition: head >>> 0,
      skippedRecords: Atomics.load(i32, W.skippedRecords) >>> 0,
      reclaimedSlots: Atomics.load(i32, W.reclaimedSlots) >>> 0,
      leased: Math.max(0, Atomics.load(i32, W.leases)),
      redelivered: Atomics.load(i32, W.redelivered) >>> 0,
      handles: handlesInUse(i32, g.handles),
      maxHandles: g.handles,
      sleepingReceivers: Atomics.load(i32, W.receiversSleeping),
      sleepingSenders: Atomics.load(i32, W.sendersSleeping),
    };
  }

  /**
   * Idempotent. Pending send/receive promises of this handle reject with IPC_ERR_CLOSED; leases
   * it holds are given back (delivered again to another lease consumer); its row of the claims
   * table is freed for another handle.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closer.abort();
    for (const record of this.#leases) {
      record.state = CLOSED;
      this.#ring.giveBack(record.pos, record.base);
    }
    this.#leases.clear();
    this.releaseLoan();
    // Inside a sendWith / receiveWith callback the claim is still ours: the row (and the
    // lifeline that keeps it alive) go after it.
    if (this.#busy === 0) this.#letGo();
    this.#shm?.close();
    this.#shm = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // --- internals -------------------------------------------------------------------------------

  /**
   * The `{ timeout, signal }` of an async form, checked before any attempt (unknown keys are a
   * TypeError); an already aborted signal wins over a message.
   */
  #asyncWait(options: WaitOptions | undefined, what: string): Wait {
    if (options === undefined) return FOREVER;
    const wait = waitOptions(options, `Queue.${what}`, true);
    if (wait.signal?.aborted) throw abortError(`queue '${this.#name}' ${what}`, wait.signal.reason);
    return wait;
  }

  /** The `{ timeout }` of a sync form (unknown keys are a TypeError). */
  #syncTimeout(options: SyncWaitOptions | undefined, what: string): number {
    return options === undefined ? Infinity : waitOptions(options, `Queue.${what}`, false).timeout;
  }

  #check(): void {
    if (this.#closed) throw closedError(`queue '${this.#name}'`);
  }

  #encode(value: T): Uint8Array {
    const bytes = this.#isBytes ? (value instanceof Uint8Array ? value : bytesCodec.encode(value)) : this.#codec.encode(value);
    // .length, not .byteLength: equal for a Uint8Array (every codec returns one), and V8 20's
    // byteLength getter costs ~8 ns more per message.
    if (bytes.length > this.#max) throw this.#tooLarge(bytes.length);
    return bytes;
  }

  #encodeAll(values: readonly T[], what: string): Uint8Array[] {
    if (!Array.isArray(values)) throw new TypeError(`${what}: values must be an array`);
    const encoded = new Array<Uint8Array>(values.length);
    for (let i = 0; i < values.length; i++) encoded[i] = this.#encode(values[i] as T);
    return encoded;
  }

  #tooLarge(n: number): IpcError {
    return new IpcError(
      'IPC_ERR_MESSAGE_TOO_LARGE',
      `queue '${this.#name}': a ${n}-byte message exceeds maxMessageSize ${this.#geometry.maxMessageSize}`,
    );
  }

  #checkLength(byteLength: number, write: unknown): void {
    if (typeof write !== 'function') throw new TypeError('sendWith: write must be a function');
    checkInteger(byteLength, 'byteLength', 0, MAX_MESSAGE_SIZE_LIMIT);
    if (byteLength > this.#geometry.maxMessageSize) throw this.#tooLarge(byteLength);
  }

  /** One attempt to send encoded bytes. */
  #put(bytes: Uint8Array): boolean {
    if (bytes.length > this.#slotSize) return this.#putSpan(bytes.length, bytes, undefined);
    const ring = this.#ring;
    for (;;) {
      if (ring.claimSend(1) === 0) return false;
      const pos = ring.pos;
      const base = ring.base;
      const start = (base << 2) + SLOT_HEADER_BYTES;
      copyAt(ring.u8, start, bytes);
      const ok = ring.commitSend(pos, base, bytes.length);
      ring.afterSend(1);
      if (ok) return true;
      // Taken from us (only the dead lose slots, so only corrupted memory gets here): never
      // delivered, so send again.
    }
  }

  /** One attempt to send encoded[from...] as one batch; returns how many were sent, in order. */
  #putMany(encoded: Uint8Array[], from: number): number {
    const ring = this.#ring;
    let count = Math.min(encoded.length - from, BATCH);
    if (ring.spans) {
      // A span goes alone (its k slots are its claim); one-slot messages still go in batches.
      if (encoded[from]!.length > this.#slotSize) return this.#put(encoded[from]!) ? 1 : 0;
      let m = 1;
      while (m < count && encoded[from + m]!.length <= this.#slotSize) m++;
      count = m;
    }
    for (;;) {
      const n = ring.claimSend(count);
      if (n === 0) return 0;
      const pos = ring.pos;
      let sent = 0;
      for (let k = 0; k < n; k++) {
        const p = (pos + k) | 0;
        const base = ring.slotOf(p);
        if (sent < k) {
          // An earlier record of the batch was reclaimed: what follows must not overtake it.
          ring.commitSend(p, base, SKIP);
          continue;
        }
        const bytes = encoded[from + k]!;
        const start = (base << 2) + SLOT_HEADER_BYTES;
        copyAt(ring.u8, start, bytes);
        if (ring.commitSend(p, base, bytes.length)) sent++;
      }
      ring.afterSend(n);
      // 0 only if the first record was reclaimed under us: there was room, so try again.
      if (sent !== 0) return sent;
    }
  }

  #putWith(byteLength: number, write: (view: Uint8Array) => void): boolean {
    if (byteLength > this.#slotSize) return this.#putSpan(byteLength, undefined, write);
    const ring = this.#ring;
    for (;;) {
      if (ring.claimSend(1) === 0) return false;
      const pos = ring.pos;
      const base = ring.base;
      const start = (base << 2) + SLOT_HEADER_BYTES;
      let ok: boolean;
      this.#busy++;
      try {
        write(this.#viewOf(pos, start, byteLength));
        ok = ring.commitSend(pos, base, byteLength);
      } catch (err) {
        ring.commitSend(pos, base, SKIP);
        throw err;
      } finally {
        ring.afterSend(1);
        this.#calledBack();
      }
      if (ok) return true;
      // Taken from us (corrupted memory, as in #put): call `write` again for a new slot.
    }
  }

  /**
   * One attempt to send a span of `length` bytes over k slots claimed at once (exactly k or
   * none): from `bytes`, or from what `write` puts in the scratch buffer once the slots are
   * ours (zero-copy forms: the view is valid during the call, as a slot's would be). A
   * `write` that throws commits the span as a skip record and rethrows.
   */
  #putSpan(length: number, bytes: Uint8Array | undefined, write: ((view: Uint8Array) => void) | undefined): boolean {
    const ring = this.#ring;
    const k = Math.ceil(length / this.#slotSize);
    for (;;) {
      if (ring.claimSend(k, true) === 0) return false;
      const pos = ring.pos;
      let ok: boolean;
      if (write === undefined) ok = this.#commitSpan(pos, k, length, bytes);
      else {
        this.#busy++;
        try {
          const view = this.#scratchOf(length);
          write(view);
          ok = this.#commitSpan(pos, k, length, view);
        } catch (err) {
          this.#commitSpan(pos, k, length, undefined);
          throw err;
        } finally {
          ring.afterSend(1);
          this.#calledBack();
        }
        if (ok) return true;
        continue;
      }
      ring.afterSend(1);
      if (ok) return true;
      // A slot was taken from us (only the dead lose slots: corrupted memory): send again.
    }
  }

  /**
   * Writes `source` (undefined: nothing, the span becomes a skip record) into the claimed span
   * at pos of k slots, commits the interior slots in order and then the first, LAST: a
   * consumer that sees the first committed finds the whole span committed. True if every
   * commit held.
   */
  #commitSpan(pos: number, k: number, length: number, source: Uint8Array | undefined): boolean {
    const ring = this.#ring;
    const size = this.#slotSize;
    if (source !== undefined) {
      for (let j = 0, off = 0; j < k; j++, off += size) {
        const start = (ring.slotOf((pos + j) | 0) << 2) + SLOT_HEADER_BYTES;
        const piece = source.subarray(off, Math.min(length, off + size));
        copyAt(ring.u8, start, piece);
      }
    }
    let ok = true;
    for (let j = 1; j < k; j++) {
      const p = (pos + j) | 0;
      if (!ring.commitInterior(p, ring.slotOf(p))) ok = false;
    }
    return ring.commitSend(pos, ring.slotOf(pos), ok && source !== undefined ? length : SKIP) && ok;
  }

  /** The scratch buffer as `length` bytes (grown to the next power of two, at most maxMessageSize). */
  #scratchOf(length: number): Uint8Array {
    if (this.#scratch.length < length) {
      this.#scratch = new Uint8Array(Math.max(length, Math.min(this.#max, 2 ** Math.ceil(Math.log2(length)))));
    }
    return this.#scratch.subarray(0, length);
  }

  /** Copies the span of `length` bytes whose first slot is at pos into `target`, piece by piece. */
  #gather(pos: number, length: number, target: Uint8Array): void {
    const ring = this.#ring;
    const size = this.#slotSize;
    for (let off = 0, p = pos; off < length; off += size, p = (p + 1) | 0) {
      const start = (ring.slotOf(p) << 2) + SLOT_HEADER_BYTES;
      const piece = Math.min(size, length - off);
      copyAt(target, off, ring.u8.subarray(start, start + piece));
    }
  }

  /** Releases the `n` claimed slots from pos; false if any was taken from us (the copy may be torn). */
  #releaseAll(pos: number, n: number): boolean {
    const ring = this.#ring;
    let ok = true;
    for (let j = 0; j < n; j++) {
      const p = (pos + j) | 0;
      if (!ring.release(p, ring.slotOf(p))) ok = false;
    }
    return ok;
  }

  /**
   * The message whose first slot is at (pos, base), held as `slots` claimed slots, copied or
   * decoded; NONE for a skip record (SKIP, CONTINUATION, a corrupt length, or a span not held
   * whole, which only a skip that raced its dying producer's commit or corrupted memory makes).
   */
  #read(pos: number, base: number, slots: number): Taken<T> {
    const ring = this.#ring;
    const length = ring.i32[base + SLOT_LENGTH]!;
    if (length < 0 || length > this.#max) return NONE; // SKIP is -1, CONTINUATION -2
    if (length > this.#slotSize) return this.#readSpan(pos, length, slots);
    const start = (base << 2) + SLOT_HEADER_BYTES;
    // A private copy (os/copy.ts: in V8's heap, the receive arena, or pre-faulted memory).
    if (this.#isBytes) return receivedCopy(ring.u8, start, start + length) as unknown as T;
    const view = this.#inPlace ? ring.u8.subarray(start, start + length) : new Uint8Array(ring.u8.subarray(start, start + length));
    return decodeOrThrow(this.#codec, view, `queue '${this.#name}'`);
  }

  /** #read of a span (kept apart so that #read stays small enough to inline). */
  #readSpan(pos: number, length: number, slots: number): Taken<T> {
    if (this.#ring.slotsOf(length) !== slots) return NONE;
    const out = length >= LARGE_RECEIVE ? largeBuffer(length) : new Uint8Array(length);
    this.#gather(pos, length, out);
    if (this.#isBytes) return out as unknown as T;
    return decodeOrThrow(this.#codec, out, `queue '${this.#name}'`);
  }

  /** The payload of the slot of `pos` (starting at byte `start`) as a view of `length` bytes. */
  #viewOf(pos: number, start: number, length: number): Uint8Array {
    const views = this.#views;
    if (views.length === 0) return this.#ring.u8.subarray(start, start + length);
    const slot = pos & (views.length - 1);
    let view = views[slot];
    if (view === undefined || view.length !== length) view = views[slot] = this.#ring.u8.subarray(start, start + length);
    return view;
  }

  /** One attempt to receive and decode. */
  #take(): Taken<T> {
    if (this.#pendingError !== undefined) this.#throwPending();
    if (this.#pending.length !== 0) return this.#pending.shift() as T;
    const ring = this.#ring;
    for (;;) {
      const n = ring.claimReceive(1);
      if (n === 0) return NONE;
      const pos = ring.pos;
      const base = ring.base;
      let value: Taken<T>;
      try {
        value = this.#read(pos, base, n);
      } finally {
        // A message the codec cannot decode is consumed all the same (IPC_ERR_PROTOCOL).
        const ok = n === 1 ? ring.release(pos, base) : this.#releaseAll(pos, n);
        ring.afterReceive(n);
        if (!ok) value = NONE; // reclaimed while we read: the copy may be torn
      }
      if (value !== NONE) return value;
    }
  }

  /** One attempt to receive up to `max` messages as one batch, appended to `out`. */
  #takeMany(max: number, out: T[]): number {
    if (this.#pendingError !== undefined) {
      if (out.length !== 0) return 0; // deliver what came before the bad frame first
      this.#throwPending();
    }
    const before = out.length;
    while (this.#pending.length !== 0 && out.length - before < max) out.push(this.#pending.shift() as T);
    if (out.length - before === max) return max;
    const ring = this.#ring;
    let failure: unknown;
    // Again while a batch held only skip records: messages may be waiting behind them.
    while (out.length === before && failure === undefined) {
      const n = ring.claimReceive(Math.min(max - (out.length - before), BATCH));
      if (n === 0) break;
      const pos = ring.pos;
      if (ring.spans) failure = this.#takeSpans(pos, n, out, failure);
      else {
        for (let k = 0; k < n; k++) {
          const p = (pos + k) | 0;
          const base = ring.slotOf(p);
          let value: Taken<T> = NONE;
          try {
            value = this.#read(p, base, 1);
          } catch (err) {
            failure ??= err;
          }
          if (!ring.release(p, base) || value === NONE) continue;
          // After a decode failure, later messages wait for the next call, in order.
          if (failure === undefined) out.push(value);
          else this.#pending.push(value);
        }
      }
      ring.afterReceive(n);
    }
    if (failure !== undefined) {
      if (out.length === 0) throw failure;
      // Messages before the bad frame are returned now; the error comes with the next call.
      this.#pendingError = failure;
    }
    return out.length - before;
  }

  /**
   * #takeMany's reading of the n claimed slots from pos on a queue with spans: record by
   * record, a span (k slots) read and released whole; one not held whole (see #read) is a skip
   * of one slot. Returns the first decode failure (`failure` if there was one already).
   */
  #takeSpans(pos: number, n: number, out: T[], failure: unknown): unknown {
    const ring = this.#ring;
    for (let j = 0; j < n; ) {
      const p = (pos + j) | 0;
      const base = ring.slotOf(p);
      let k = ring.slotsOf(ring.i32[base + SLOT_LENGTH]!);
      if (j + k > n) k = 1;
      j += k;
      let value: Taken<T> = NONE;
      try {
        value = this.#read(p, base, k);
      } catch (err) {
        failure ??= err;
      }
      if (!(k === 1 ? ring.release(p, base) : this.#releaseAll(p, k)) || value === NONE) continue;
      if (failure === undefined) out.push(value);
      else this.#pending.push(value);
    }
    return failure;
  }

  /** One attempt to receive into the loan buffer (skip records are passed over). */
  #takeLoan(): Uint8Array | undefined {
    const ring = this.#ring;
    for (;;) {
      const n = ring.claimReceive(1);
      if (n === 0) return undefined;
      const pos = ring.pos;
      const base = ring.base;
      const length = ring.i32[base + SLOT_LENGTH]!;
      let view: Uint8Array | undefined;
      try {
        if (length >= 0 && length <= this.#max && ring.slotsOf(length) === n) { // SKIP is -1
          const at = this.#loanAt(length);
          view = new Uint8Array(this.#loanBuffer!, at, length);
          if (n > 1) this.#gather(pos, length, view);
          else {
            const start = (base << 2) + SLOT_HEADER_BYTES;
            copyAt(view, 0, ring.u8.subarray(start, start + length));
          }
        }
      } finally {
        const ok = n === 1 ? ring.release(pos, base) : this.#releaseAll(pos, n);
        ring.afterReceive(n);
        if (!ok) view = undefined; // reclaimed while we copied: the copy may be torn
      }
      if (view !== undefined) return view;
    }
  }

  /**
   * Where in the loan buffer a loan of `length` bytes goes: right after the previous loans, so
   * that their views stay as they are, or, when the rest is too short, at 0 once every view of
   * the buffer is detached (#recallLoan). Detaching costs ~0.8 µs on Node 20 (a transferring
   * structuredClone), ten times a 64 B receive, and ~0.2 µs on Node 22 (ArrayBuffer#transfer),
   * so small loans share that cost: the buffer holds at least LOAN_BYTES and is detached once
   * per fill, while a large loan fills it alone and is detached at the next loan, as before. The buffer grows to the next power of two of a longer
   * message (at most maxMessageSize), so a stream of large messages allocates once. Regions
   * start 8-byte aligned, so a loan can be viewed as a Float64Array.
   */
  #loanAt(length: number): number {
    let buffer = this.#loanBuffer;
    let at = this.#loanEnd;
    // byteLength is 0 once a loan's buffer was transferred away by the user: it is theirs now.
    if (buffer === undefined || buffer.byteLength === 0 || at + length > buffer.byteLength) {
      if (at !== 0) this.#recallLoan();
      at = 0;
      buffer = this.#loanBuffer;
      if (buffer === undefined || buffer.byteLength === 0 || buffer.byteLength < length) {
        const size = Math.min(Math.max(this.#max, LOAN_BYTES), Math.max(LOAN_BYTES, 2 ** Math.ceil(Math.log2(Math.max(1, length)))));
        this.#loanBuffer = new ArrayBuffer(Math.max(size, length));
      }
    }
    this.#loanEnd = (at + length + 7) & ~7;
    return at;
  }

  /**
   * Detaches every view of the loan buffer by moving its memory to a new ArrayBuffer (no copy):
   * the old loan reads as empty from now on, and the memory stays mapped for the next one. A
   * buffer the user made untransferable (markAsUntransferable) cannot be detached: it is left
   * to them as it is, unchanged, and the next loan gets a new buffer.
   */
  #recallLoan(): void {
    this.#loanEnd = 0;
    const buffer = this.#loanBuffer;
    if (buffer === undefined || buffer.byteLength === 0) return;
    if (markedUntransferable?.(buffer) === true) {
      this.#loanBuffer = undefined;
      return;
    }
    try {
      this.#loanBuffer = detach(buffer);
    } catch {
      this.#loanBuffer = undefined;
    }
    // Node 20 copies an untransferable buffer named in a transfer list instead of throwing.
    if (buffer.byteLength !== 0) this.#loanBuffer = undefined;
  }

  /** A user callback that held a claim returned: if it closed this handle, free the row now. */
  #calledBack(): void {
    if (--this.#busy === 0 && this.#closed) this.#letGo();
  }

  #letGo(): void {
    this.#ring.close();
    this.#lifeline.close();
  }

  #leaseTime(leaseTime: unknown, what: string): number {
    if (leaseTime === undefined || leaseTime === Infinity) return 0;
    return checkInteger(leaseTime, `Queue.${what}: leaseTime`, 1, MAX_LEASE_MS);
  }

  /**
   * One attempt to take a lease: one another consumer lost (looked for at most once per
   * stallTimeout, or when one was given back, so that a busy queue does not starve them), else
   * a new message at the head.
   */
  #takeLease(leaseTime: number): Lease<T> | undefined {
    const ring = this.#ring;
    ring.leasing = true;
    for (;;) {
      if (ring.leaseScanDue() && ring.rescueLease(leaseTime)) {
        // taken over: ring.pos / ring.base name it
      } else {
        const n = ring.claimReceive(1, true);
        if (n === 0) return undefined;
        if (n === SPAN_AT_HEAD) throw this.#spanLease();
        if (!ring.takeLease(ring.pos, ring.base, leaseTime)) continue; // only corrupted memory
      }
      const pos = ring.pos;
      const base = ring.base;
      let value: Taken<T>;
      try {
        value = this.#read(pos, base, 1);
      } catch (err) {
        if (!ring.holds(pos, base)) continue; // taken over while we read: the bytes were torn
        // A message the codec cannot decode is consumed, as receive does (IPC_ERR_PROTOCOL).
        ring.ackLease(pos, base);
        throw err;
      }
      // Taken over while we copied (its lease time ran out meanwhile): the copy may be torn.
      if (!ring.holds(pos, base)) continue;
      if (value === NONE) {
        ring.ackLease(pos, base); // a skip record is never delivered
        continue;
      }
      const record: LeaseRecord = { ring, pos, base, state: HELD, name: this.#name, leases: this.#leases };
      this.#leases.add(record);
      return new Lease<T>(token, record, value);
    }
  }

  /** lease() met a span at the head: it stays there, for a plain receive. */
  #spanLease(): IpcError {
    const head = Atomics.load(this.#i32, W.head);
    const length = this.#i32[this.#ring.slotOf(head) + SLOT_LENGTH]!;
    return new IpcError(
      'IPC_ERR_MESSAGE_TOO_LARGE',
      `queue '${this.#name}' lease: the next message (${length} bytes) spans slots of slotSize ${this.#slotSize}, and a span cannot be leased; ` +
        'it stays at the head for receive() (or create the queue with slotSize >= maxMessageSize)',
    );
  }

  #throwPending(): never {
    const err = this.#pendingError;
    this.#pendingError = undefined;
    throw err;
  }

  #takeWith(read: (view: Uint8Array) => void): boolean {
    const ring = this.#ring;
    for (;;) {
      const n = ring.claimReceive(1);
      if (n === 0) return false;
      const pos = ring.pos;
      const base = ring.base;
      const length = ring.i32[base + SLOT_LENGTH]!;
      if (length < 0 || length > this.#max || ring.slotsOf(length) !== n) { // SKIP is -1
        if (n === 1) ring.release(pos, base);
        else this.#releaseAll(pos, n);
        ring.afterReceive(n);
        continue;
      }
      if (n > 1) {
        // A span is not contiguous in the segment: it is read through the scratch buffer, and
        // its slots go back before `read` runs.
        const view = this.#scratchOf(length);
        this.#gather(pos, length, view);
        const ok = this.#releaseAll(pos, n);
        ring.afterReceive(n);
        if (!ok) continue; // reclaimed while we copied: the copy may be torn
        read(view);
        return true;
      }
      const start = (base << 2) + SLOT_HEADER_BYTES;
      this.#busy++;
      try {
        read(this.#viewOf(pos, start, length));
      } finally {
        ring.release(pos, base);
        ring.afterReceive(1);
        this.#calledBack();
      }
      return true;
    }
  }

  /** Spins for up to `ms` calling attempt; true once it succeeds. */
  #spin(attempt: () => boolean, ms: number): boolean {
    const end = now() + ms;
    for (let i = 1; ; i++) {
      if (attempt()) return true;
      if ((i & 31) === 0 && now() >= end) return false;
    }
  }

  #waitSync(sending: boolean, attempt: () => boolean, timeout: number, what: string, spun = false): void {
    const start = now();
    const deadline = start + timeout;
    const i32 = this.#i32;
    const ring = this.#ring;
    const sleeping = sending ? W.sendersSleeping : W.receiversSleeping;
    const events = sending ? W.spaceEvents : W.dataEvents;
    if (this.#wait === 'spin') {
      for (;;) {
        if (this.#spin(attempt, Math.min(1, deadline - now()))) return;
        if (now() >= deadline) throw timeoutError(`queue '${this.#name}' ${what}`, timeout);
      }
    }
    if (this.#wait === 'spin-then-block' && !spun && this.#spin(attempt, Math.min(this.#spinMs, timeout))) return;
    for (;;) {
      Atomics.add(i32, sleeping, 1); // seq-cst; pairs with the waker's load after its commit/release
      try {
        const seen = Atomics.load(i32, events);
        ring.lookForStalls(sending);
        if (attempt()) return;
        const left = deadline - now();
        if (left <= 0) throw timeoutError(`queue '${this.#name}' ${what}`, timeout);
        futex.wait(i32, events, seen, Math.min(left, MAX_SLEEP_MS, ring.stallDeadline(sending)));
      } finally {
        Atomics.sub(i32, sleeping, 1);
      }
      if (attempt()) return;
    }
  }

  /**
   * The slow path of every async call: `attempt` until it succeeds (or the wait ends), then
   * `result()`. With spin-then-block the spin runs here, before any promise exists, so that what
   * it finds resolves the caller's promise directly: inside #waitAsync it would take the async
   * function's promise and a then() as well, two more microtask turns on the way to the caller
   * (a round trip of two awaiting processes has two receives in it). Not with an aborted
   * signal, which #waitAsync rejects first.
   */
  #settle<R>(sending: boolean, attempt: () => boolean, wait: Wait, what: string, result: () => R): Promise<R> {
    if (this.#wait === 'spin-then-block' && wait.signal?.aborted !== true) {
      const started = now();
      if (this.#spin(attempt, Math.min(this.#spinMs, wait.timeout))) return Promise.resolve(result());
      // The timeout counts the spin.
      wait = { timeout: wait.timeout - (now() - started), signal: wait.signal };
    }
    return this.#waitAsync(sending, attempt, wait, what).then(result);
  }

  /** Waits (spinning with 'spin', sleeping otherwise: #settle spun first) until attempt() succeeds. */
  async #waitAsync(sending: boolean, attempt: () => boolean, { timeout, signal: userSignal }: Wait, what: string): Promise<void> {
    const label = `queue '${this.#name}' ${what}`;
    if (userSignal?.aborted) throw abortError(label, userSignal.reason);
    const deadline = now() + timeout;
    const i32 = this.#i32;
    const ring = this.#ring;
    const sleeping = sending ? W.sendersSleeping : W.receiversSleeping;
    const events = sending ? W.spaceEvents : W.dataEvents;
    const signal = userSignal === undefined ? this.#closer.signal : AbortSignal.any([userSignal, this.#closer.signal]);
    const stop = (): void => {
      if (this.#closed) throw closedError(`queue '${this.#name}'`);
      if (userSignal?.aborted) throw abortError(label, userSignal.reason);
      if (now() >= deadline) throw timeoutError(label, timeout);
    };
    if (this.#wait === 'spin') {
      // Never sleeps in the kernel: spin in short bursts and let the event loop run between them.
      for (;;) {
        if (this.#spin(attempt, Math.min(this.#spinMs || 0.02, Math.max(0, deadline - now())))) return;
        stop();
        await immediate();
        stop();
      }
    }
    for (;;) {
      stop();
      Atomics.add(i32, sleeping, 1); // seq-cst; pairs with the waker's load after its commit/release
      try {
        const seen = Atomics.load(i32, events);
        ring.lookForStalls(sending);
        if (attempt()) return;
        const left = deadline - now();
        if (left <= 0) stop();
        await futex.waitAsync(i32, events, seen, Math.min(left, MAX_SLEEP_MS, ring.stallDeadline(sending)), { signal });
      } catch (err) {
        // Leaving without trying: a wake meant for us must reach another sleeper.
        ring.passOn(sending);
        if ((err as IpcError).code === 'IPC_ERR_ABORTED') stop();
        throw err;
      } finally {
        Atomics.sub(i32, sleeping, 1);
      }
      if (this.#closed) {
        ring.passOn(sending);
        stop();
      }
      if (attempt()) return;
    }
  }
}

interface ResolvedHandle<T> {
  codec: Codec<T>;
  wait: WaitStrategy;
  spinTime: number;
  stallTimeout: number;
}

function resolveHandle<T>(opts: QueueHandleOptions<T>, where: string): ResolvedHandle<T> {
  const codec = resolveCodec<T>(opts.codec);
  const wait = opts.wait ?? 'spin-then-block';
  if (!WAITS.includes(wait)) throw new TypeError(`${where}: wait must be 'spin', 'block' or 'spin-then-block', got ${String(wait)}`);
  let spinTime = DEFAULT_SPIN_US;
  if (opts.spinTime !== undefined) {
    if (typeof opts.spinTime !== 'number' || !Number.isFinite(opts.spinTime) || opts.spinTime < 0) {
      throw new RangeError(`${where}: spinTime must be a finite number of microseconds >= 0, got ${String(opts.spinTime)}`);
    }
    spinTime = opts.spinTime;
  }
  const stallTimeout =
    opts.stallTimeout === undefined ? DEFAULT_STALL_TIMEOUT : checkInteger(opts.stallTimeout, `${where}: stallTimeout`, 1, 3_600_000);
  return { codec, wait, spinTime, stallTimeout };
}

function make<T>(name: string, how: How, options: unknown, where: string): Queue<T> {
  const opts = namedOptions<QueueCreateOptions<T>>(options, how === 'open' ? OPEN_OPTIONS : CREATE_OPTIONS, where);
  const handle = resolveHandle<T>(opts, where);
  const maxMessageSize =
    opts.maxMessageSize === undefined ? undefined : checkInteger(opts.maxMessageSize, `${where}: maxMessageSize`, 1, MAX_MESSAGE_SIZE_LIMIT);
  let wanted: QueueGeometry | undefined;
  if (how !== 'open') {
    const byteLength = opts.byteLength === undefined ? undefined : checkInteger(opts.byteLength, `${where}: byteLength`, 1, 2 ** 46);
    const capacity = opts.capacity === undefined ? undefined : checkInteger(opts.capacity, `${where}: capacity`, 1, 2 ** 30);
    const handles = opts.maxHandles === undefined ? DEFAULT_HANDLES : checkInteger(opts.maxHandles, `${where}: maxHandles`, 1, MAX_HANDLES);
    const slotSize = opts.slotSize === undefined ? undefined : checkInteger(opts.slotSize, `${where}: slotSize`, 16, MAX_MESSAGE_SIZE_LIMIT);
    wanted = geometry(byteLength, capacity, maxMessageSize, where, handles, slotSize);
  }
  const created = wanted;
  const shm = openObject(
    name,
    how,
    'queue',
    {
      kind: Kind.Queue,
      version: QUEUE_VERSION,
      byteLength: created?.byteLength ?? 0,
      init: (buffer) => initQueue(buffer, created!),
    },
    opts,
  );
  try {
    const g = readGeometry(shm.buffer);
    if (typeof g === 'string') throw new IpcError('IPC_ERR_INCOMPATIBLE', `queue '${name}': ${g}`);
    if (maxMessageSize !== undefined && g.maxMessageSize !== maxMessageSize) {
      throw new IpcError('IPC_ERR_INCOMPATIBLE', `queue '${name}': maxMessageSize is ${g.maxMessageSize}, expected ${maxMessageSize}`);
    }
    if (!shm.created && wanted !== undefined && opts.capacity !== undefined && g.capacity !== wanted.capacity) {
      throw new IpcError('IPC_ERR_INCOMPATIBLE', `queue '${name}': capacity is ${g.capacity}, expected ${wanted.capacity}`);
    }
    if (!shm.created && opts.slotSize !== undefined && g.slotBytes - SLOT_HEADER_BYTES !== opts.slotSize) {
      throw new IpcError('IPC_ERR_INCOMPATIBLE', `queue '${name}': slotSize is ${g.slotBytes - SLOT_HEADER_BYTES}, expected ${opts.slotSize}`);
    }
    return new Queue<T>(token, name, shm, g, handle);
  } catch (err) {
    shm.close();
    throw err;
  }
}

const TRY_LEASE_OPTIONS = ['leaseTime'] as const;
const LEASE_OPTIONS = ['timeout', 'signal', 'leaseTime'] as const;
const SYNC_LEASE_OPTIONS = ['timeout', 'leaseTime'] as const;
/** Longest lease time: what the slot's 32-bit lease time word holds. */
const MAX_LEASE_MS = 2 ** 31 - 1;

const HELD = 0;
const SETTLED = 1;
const CLOSED = 2;

/** What a Lease and its Queue handle share: where the leased record is, and its state. */
interface LeaseRecord {
  readonly ring: Ring;
  readonly pos: number;
  readonly base: number;
  state: typeof HELD | typeof SETTLED | typeof CLOSED;
  readonly name: string;
  readonly leases: Set<LeaseRecord>;
}

/**
 * A message leased to this consumer (Queue.lease / tryLease / leaseSync). It stays in the queue
 * until `ack()`; `release()` gives it back for another delivery. `using job = await q.lease()`
 * releases it at the end of the block unless it was acknowledged.
 */
export class Lease<T> {
  /** The message (decoded with the queue's codec). */
  readonly value: T;
  readonly #record: LeaseRecord;

  /** @internal use Queue.lease */
  constructor(key: symbol, record: LeaseRecord, value: T) {
    if (key !== token) throw new TypeError('leases come from Queue.lease, tryLease or leaseSync');
    this.#record = record;
    this.value = value;
  }

  /** True once acknowledged, released, or given back by closing the queue handle. */
  get settled(): boolean {
    return this.#record.state !== HELD;
  }

  /**
   * Done with it: the message leaves the queue for good. IPC_ERR_NOT_OWNER if the lease was
   * already settled, or was taken over by another consumer after its leaseTime ran out (the
   * message may then be processed twice); IPC_ERR_CLOSED if the queue handle was closed (which
   * gave the message back).
   */
  ack(): void {
    const record = this.#settle('ack');
    if (!record.ring.ackLease(record.pos, record.base)) throw lostLease(record, 'ack');
  }

  /** Gives the message back now, to be delivered again (to another lease, or this one). Same errors as ack. */
  release(): void {
    const record = this.#settle('release');
    if (!record.ring.giveBack(record.pos, record.base)) throw lostLease(record, 'release');
  }

  /** Releases the lease unless it is settled (for `using`); never throws for a lost lease. */
  [Symbol.dispose](): void {
    if (this.#record.state !== HELD) return;
    const record = this.#settle('release');
    record.ring.giveBack(record.pos, record.base);
  }

  #settle(what: string): LeaseRecord {
    const record = this.#record;
    if (record.state === CLOSED) throw closedError(`queue '${record.name}' ${what}`);
    if (record.state === SETTLED) throw new IpcError('IPC_ERR_NOT_OWNER', `queue '${record.name}' ${what}: this lease was already acknowledged or released`);
    record.state = SETTLED;
    record.leases.delete(record);
    return record;
  }
}

function lostLease(record: LeaseRecord, what: string): IpcError {
  return new IpcError(
    'IPC_ERR_NOT_OWNER',
    `queue '${record.name}' ${what}: the lease ran out (leaseTime) and another consumer took the message over; it may be processed twice`,
  );
}
