/**
 * Topic: broadcast in shared memory, a public facade over ring.ts (algorithm) and layout.ts
 * (bytes and protocol). Every subscriber sees every message, in one order for all of them. This
 * file owns codecs, options, waiting and the lifecycle; it never touches a slot except through
 * the ring.
 */
import { setMaxListeners } from 'node:events';
import { IpcError, closedError } from '../errors.js';
import { resolveCodec, type BytesCodec, type Codec, type CodecOption, type SerializingCodec } from '../codec/index.js';
import { checkInteger, checkOptions, waitOptions } from '../options.js';
import { Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { namedOptions, openObject, type How, type NamedObjectOptions } from '../shm/segment.js';
import { copyAt } from '../os/copy.js';
import { openLifeline, type Lifeline } from '../os/lifeline.js';
import {
  DEFAULT_CAPACITY,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MAX_SUBSCRIBERS,
  MAX_CAPACITY,
  MAX_MESSAGE_SIZE_LIMIT,
  MAX_SUBSCRIBERS_LIMIT,
  OVERFLOWS,
  SKIP,
  SLOT_HEADER_BYTES,
  TOPIC_VERSION,
  W,
  geometry,
  initTopic,
  readGeometry,
  type Overflow,
  type TopicGeometry,
} from './layout.js';
import { Cursor, FULL, TopicRing, type From } from './ring.js';
import { Subscriber, type SubscriberContext } from './subscriber.js';
import { DONE, FOR_DATA, FOR_SPACE, WAITS, waitAsync, waitSync, type Outcome, type WaitStrategy, type Waiting } from './waiting.js';

export type { Overflow, WaitStrategy, From };

/** Options every opener may give (per handle, not stored in the topic). */
export interface TopicHandleOptions<T = unknown> extends NamedObjectOptions {
  /** How messages are turned into bytes: 'bytes' (default), 'json', 'structured', 'msgpack' or { encode, decode }. */
  codec?: CodecOption<T>;
  /** How a blocked publish/receive waits: busy-spin, sleep in the kernel, or spin briefly then sleep (default). */
  wait?: WaitStrategy;
  /** Microseconds to spin before sleeping with 'spin-then-block' (default 20). */
  spinTime?: number;
  /**
   * Milliseconds between two questions to the kernel, while a waiter is held up by another
   * thread, whether that thread still lives (default 100). Decides only how soon a dead
   * publisher or subscriber is noticed, never whether.
   */
  livenessInterval?: number;
}

/** The topic's shape: given to create; given to open, each must match (IPC_ERR_INCOMPATIBLE). */
export interface TopicShapeOptions {
  /** Messages retained, a power of two in [2, 2^30] (default 1024). */
  capacity?: number;
  /** Largest message in bytes after encoding (default 4096). */
  maxMessageSize?: number;
  /** 'block' (default): publishers wait for the slowest live subscriber. 'overwrite': they never wait for subscribers. */
  overflow?: Overflow;
  /** Entries in the subscriber table, in [1, 4096] (default 64). */
  maxSubscribers?: number;
  /**
   * One publishing thread at a time (default false: many). The first publish of a handle makes
   * it the publisher; another thread's publish fails with IPC_ERR_LIMIT while that one lives and
   * has the handle open. In exchange a publish takes no lock and, on x86, has no locked
   * instruction at all (Aeron's exclusive publication; docs/guarantees.md).
   */
  exclusivePublisher?: boolean;
}

export interface TopicCreateOptions<T = unknown> extends TopicHandleOptions<T>, TopicShapeOptions {}
export interface TopicOpenOptions<T = unknown> extends TopicHandleOptions<T>, TopicShapeOptions {}

export interface SubscribeOptions {
  /** 'next' (default): messages published from now on. 'oldest': the retained history first. */
  from?: From;
}

export interface TopicStats {
  name: string;
  byteLength: number;
  capacity: number;
  maxMessageSize: number;
  overflow: Overflow;
  maxSubscribers: number;
  exclusivePublisher: boolean;
  /** Positions claimed so far, modulo 2^32 (messages, plus skippedRecords). */
  published: number;
  /** Entries of the subscriber table in use (live subscribers, and dead ones not yet noticed). */
  subscribers: number;
  /** Claims of publishers that died before committing, turned into padding no one receives. */
  skippedRecords: number;
  /** Subscriber entries freed because their thread died without closing them. */
  freedSubscribers: number;
  /** Times a waiter asked the kernel whether the thread holding it up still lives. */
  livenessChecks: number;
  /** Threads asleep waiting for a message (subscribers, or publishers behind another publisher). */
  dataSleepers: number;
  /** Publishers asleep waiting for the slowest subscriber ('block'). */
  spaceSleepers: number;
}

const HANDLE_OPTIONS = ['codec', 'wait', 'spinTime', 'livenessInterval'] as const;
const SHAPE_OPTIONS = ['capacity', 'maxMessageSize', 'overflow', 'maxSubscribers', 'exclusivePublisher'] as const;
const OPTIONS = [...HANDLE_OPTIONS, ...SHAPE_OPTIONS];
const DEFAULT_SPIN_US = 20;
const DEFAULT_LIVENESS_MS = 100;
/** The wait options of a call that gives none (checking undefined costs a publish ~20 ns). */
const FOREVER = { timeout: Infinity, signal: undefined } as const;

const token = Symbol('Topic');
const bytesCodec = resolveCodec('bytes');
/** Built-in decoders never keep the bytes they are given: they may read shared memory directly. */
const readsInPlace = new Set<Codec<any>>([resolveCodec('json'), resolveCodec('structured'), resolveCodec('msgpack')]);

export class Topic<T = Uint8Array> {
  readonly #name: string;
  readonly #label: string;
  #shm: SharedMemory | undefined;
  readonly #lifeline: Lifeline;
  readonly #ring: TopicRing;
  readonly #geometry: TopicGeometry;
  readonly #codec: Codec<T>;
  readonly #isBytes: boolean;
  readonly #max: number;
  readonly #context: SubscriberContext<T>;
  readonly #closer = new AbortController();
  readonly #strategy: WaitStrategy;
  readonly #spinMs: number;
  #closed = false;
  /** Cursors of this handle's subscribers, closed with it. */
  readonly #cursors = new Set<Cursor>();

  /** @internal use Topic.create / open / openOrCreate */
  constructor(key: symbol, name: string, shm: SharedMemory, g: TopicGeometry, handle: ResolvedHandle<T>) {
    if (key !== token) throw new TypeError('use Topic.create, Topic.open or Topic.openOrCreate');
    this.#name = name;
    this.#label = `topic '${name}'`;
    this.#shm = shm;
    this.#geometry = g;
    this.#max = g.maxMessageSize;
    this.#lifeline = openLifeline(shm.buffer);
    this.#ring = new TopicRing(name, shm.buffer, g, this.#lifeline, handle.livenessInterval);
    this.#codec = handle.codec;
    this.#isBytes = handle.codec === (bytesCodec as Codec<unknown>);
    setMaxListeners(0, this.#closer.signal);
    this.#context = {
      label: this.#label,
      codec: handle.codec,
      isBytes: this.#isBytes,
      inPlace: readsInPlace.has(handle.codec),
      strategy: handle.wait,
      spinMs: handle.spinTime / 1000,
      closer: this.#closer.signal,
      topicClosed: () => this.#closed,
    };
    this.#strategy = handle.wait;
    this.#spinMs = handle.spinTime / 1000;
  }

  /**
   * Creates the topic `name`; IPC_ERR_EXISTS if it exists. The codec decides the message type:
   * Uint8Array without one (or with 'bytes'), the type you name with a serializing codec.
   */
  static create(name: string, options?: TopicCreateOptions<Uint8Array> & BytesCodec): Topic<Uint8Array>;
  static create<T = unknown>(name: string, options: TopicCreateOptions<T> & SerializingCodec<T>): Topic<T>;
  static create<T>(name: string, options?: TopicCreateOptions<T>): Topic<T> {
    return make<T>(name, 'create', options, 'Topic.create');
  }

  /** Opens the existing topic `name`; IPC_ERR_NOT_FOUND if missing, IPC_ERR_INCOMPATIBLE if not a topic (or not the shape asked for). */
  static open(name: string, options?: TopicOpenOptions<Uint8Array> & BytesCodec): Topic<Uint8Array>;
  static open<T = unknown>(name: string, options: TopicOpenOptions<T> & SerializingCodec<T>): Topic<T>;
  static open<T>(name: string, options?: TopicOpenOptions<T>): Topic<T> {
    return make<T>(name, 'open', options, 'Topic.open');
  }

  /** Opens `name`, creating it with these options if it is missing. */
  static openOrCreate(name: string, options?: TopicCreateOptions<Uint8Array> & BytesCodec): Topic<Uint8Array>;
  static openOrCreate<T = unknown>(name: string, options: TopicCreateOptions<T> & SerializingCodec<T>): Topic<T>;
  static openOrCreate<T>(name: string, options?: TopicCreateOptions<T>): Topic<T> {
    return make<T>(name, 'openOrCreate', options, 'Topic.openOrCreate');
  }

  /** Removes the name; processes that have the topic open keep using it. True if it existed. */
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
  get overflow(): Overflow {
    return this.#geometry.overflow;
  }
  get maxSubscribers(): number {
    return this.#geometry.maxSubscribers;
  }
  get exclusivePublisher(): boolean {
    return this.#geometry.exclusivePublisher;
  }
  get closed(): boolean {
    return this.#closed;
  }

  // --- publish ---------------------------------------------------------------------------------

  /**
   * Publishes if it can without waiting: false when the slowest live subscriber is a capacity
   * behind ('block'), or when the slot is held by another publisher still writing it.
   */
  tryPublish(value: T): boolean {
    this.#check();
    return this.#put(this.#encode(value)) === DONE;
  }

  /** Publishes, waiting while it cannot (`{ timeout, signal }`). */
  publish(value: T, options?: { timeout?: number; signal?: AbortSignal }): Promise<void> {
    try {
      this.#check();
      const { timeout, signal } = options === undefined ? FOREVER : waitOptions(options, 'publish', true);
      if (signal?.aborted) throw new IpcError('IPC_ERR_ABORTED', `${this.#label} publish was aborted`, { cause: signal.reason });
      const bytes = this.#encode(value);
      const outcome = this.#put(bytes);
      if (outcome === DONE) return Promise.resolve();
      return waitAsync(this.#waitingFor(bytes), outcome, timeout, signal, this.#closer.signal, () => this.#closed);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Publishes, blocking the thread while it cannot (`{ timeout }`). IPC_ERR_DEADLOCK instead of
   * waiting forever when a subscriber of this very thread is what holds it back.
   */
  publishSync(value: T, options?: { timeout?: number }): void {
    this.#check();
    const { timeout } = options === undefined ? FOREVER : waitOptions(options, 'publishSync', false);
    const bytes = this.#encode(value);
    const outcome = this.#put(bytes);
    if (outcome === DONE) return;
    waitSync(this.#waitingFor(bytes), outcome, timeout, (reason) => {
      if (reason === FOR_SPACE && this.#ring.heldBySelf()) {
        throw new IpcError('IPC_ERR_DEADLOCK', `${this.#label} publishSync: a subscriber of this thread is a capacity behind and cannot read while the thread waits`);
      }
    });
  }

  // --- subscribe -------------------------------------------------------------------------------

  /**
   * A new subscriber: from: 'next' (default) sees what is published from now on, 'oldest' the
   * retained history first. IPC_ERR_LIMIT when maxSubscribers live subscribers exist.
   */
  subscribe(options?: SubscribeOptions): Subscriber<T> {
    this.#check();
    const opts = checkOptions<SubscribeOptions>(options, ['from'], 'subscribe');
    const from = opts.from ?? 'next';
    if (from !== 'next' && from !== 'oldest') throw new TypeError(`subscribe: from must be 'next' or 'oldest', got ${String(from)}`);
    const cursor = Cursor.join(this.#ring, from);
    if (cursor === undefined) {
      throw new IpcError('IPC_ERR_LIMIT', `${this.#label}: all ${this.#geometry.maxSubscribers} subscriber entries are taken by live subscribers (option maxSubscribers)`);
    }
    this.#cursors.add(cursor);
    cursor.onClose = () => this.#cursors.delete(cursor);
    return Subscriber.make(cursor, this.#context);
  }

  stats(): TopicStats {
    this.#check();
    const i32 = this.#ring.i32;
    const g = this.#geometry;
    return {
      name: this.#name,
      byteLength: g.byteLength,
      capacity: g.capacity,
      maxMessageSize: g.maxMessageSize,
      overflow: g.overflow,
      maxSubscribers: g.maxSubscribers,
      exclusivePublisher: g.exclusivePublisher,
      published: this.#ring.tail() >>> 0,
      subscribers: this.#ring.subscriberCount(),
      skippedRecords: Atomics.load(i32, W.skippedRecords) >>> 0,
      freedSubscribers: Atomics.load(i32, W.freedSubscribers) >>> 0,
      livenessChecks: Atomics.load(i32, W.livenessChecks) >>> 0,
      dataSleepers: Atomics.load(i32, W.dataSleepers),
      spaceSleepers: Atomics.load(i32, W.spaceSleepers),
    };
  }

  /**
   * Idempotent. Closes this handle's subscribers (publishers stop waiting for them); pending
   * publishes and receives of this handle reject with IPC_ERR_CLOSED.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const cursor of [...this.#cursors]) cursor.close();
    this.#ring.leaveRoster();
    this.#closer.abort();
    this.#lifeline.close();
    this.#shm?.close();
    this.#shm = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // --- internals -------------------------------------------------------------------------------

  /** The waiting of one publish whose first attempt failed (async publishes of a handle may overlap). */
  #waitingFor(bytes: Uint8Array): Waiting {
    return {
      ring: this.#ring,
      strategy: this.#strategy,
      spinMs: this.#spinMs,
      attempt: (): Outcome => this.#put(bytes),
      // Held up by a subscriber (it may die) or by another publisher's slot (it may die too).
      interval: () => this.#ring.livenessInterval,
      label: this.#label,
      op: 'publish',
    };
  }

  #check(): void {
    if (this.#closed) throw closedError(this.#label);
  }

  #encode(value: T): Uint8Array {
    const bytes = this.#isBytes ? (value instanceof Uint8Array ? value : bytesCodec.encode(value)) : this.#codec.encode(value);
    // .length, not .byteLength: equal for a Uint8Array, and V8 20's byteLength getter costs more.
    if (bytes.length > this.#max) {
      throw new IpcError('IPC_ERR_MESSAGE_TOO_LARGE', `${this.#label}: a ${bytes.length}-byte message exceeds maxMessageSize ${this.#max}`);
    }
    return bytes;
  }

  /** One attempt to publish encoded bytes: DONE, or what to wait for. */
  #put(bytes: Uint8Array): Outcome {
    const ring = this.#ring;
    const base = ring.claim();
    if (base < 0) return base === FULL ? FOR_SPACE : FOR_DATA;
    const pos = ring.pos;
    try {
      // Large payloads through the addon, as the queue's (os/copy.ts: memmove, streaming stores).
      copyAt(ring.u8, (base << 2) + SLOT_HEADER_BYTES, bytes);
    } catch (err) {
      // (A detached buffer, say.) The claimed slot must not stay "writing" under a live owner.
      ring.commit(pos, base, SKIP);
      throw err;
    }
    ring.commit(pos, base, bytes.length);
    return DONE;
  }
}

interface ResolvedHandle<T> {
  codec: Codec<T>;
  wait: WaitStrategy;
  spinTime: number;
  livenessInterval: number;
}

function resolveHandle<T>(opts: TopicHandleOptions<T>, where: string): ResolvedHandle<T> {
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
  const livenessInterval =
    opts.livenessInterval === undefined ? DEFAULT_LIVENESS_MS : checkInteger(opts.livenessInterval, `${where}: livenessInterval`, 1, 3_600_000);
  return { codec, wait, spinTime, livenessInterval };
}

interface Shape {
  capacity?: number;
  maxMessageSize?: number;
  overflow?: Overflow;
  maxSubscribers?: number;
  exclusivePublisher?: boolean;
}

function resolveShape(opts: TopicShapeOptions, where: string): Shape {
  const shape: Shape = {};
  if (opts.capacity !== undefined) shape.capacity = checkInteger(opts.capacity, `${where}: capacity`, 2, MAX_CAPACITY);
  if (opts.maxMessageSize !== undefined) shape.maxMessageSize = checkInteger(opts.maxMessageSize, `${where}: maxMessageSize`, 1, MAX_MESSAGE_SIZE_LIMIT);
  if (opts.maxSubscribers !== undefined) shape.maxSubscribers = checkInteger(opts.maxSubscribers, `${where}: maxSubscribers`, 1, MAX_SUBSCRIBERS_LIMIT);
  if (opts.overflow !== undefined) {
    if (!OVERFLOWS.includes(opts.overflow)) throw new TypeError(`${where}: overflow must be 'block' or 'overwrite', got ${String(opts.overflow)}`);
    shape.overflow = opts.overflow;
  }
  if (opts.exclusivePublisher !== undefined) {
    if (typeof opts.exclusivePublisher !== 'boolean') throw new TypeError(`${where}: exclusivePublisher must be a boolean, got ${String(opts.exclusivePublisher)}`);
    shape.exclusivePublisher = opts.exclusivePublisher;
  }
  return shape;
}

function make<T>(name: string, how: How, options: unknown, where: string): Topic<T> {
  const opts = namedOptions<TopicCreateOptions<T>>(options, OPTIONS, where);
  const handle = resolveHandle<T>(opts, where);
  const shape = resolveShape(opts, where);
  const wanted =
    how === 'open'
      ? undefined
      : geometry(
          shape.capacity ?? DEFAULT_CAPACITY,
          shape.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
          shape.overflow ?? 'block',
          shape.maxSubscribers ?? DEFAULT_MAX_SUBSCRIBERS,
          shape.exclusivePublisher ?? false,
          where,
        );
  const shm = openObject(
    name,
    how,
    'topic',
    { kind: Kind.Topic, version: TOPIC_VERSION, byteLength: wanted?.byteLength ?? 0, init: (buffer) => initTopic(buffer, wanted!) },
    opts,
  );
  try {
    const g = readGeometry(shm.buffer);
    if (typeof g === 'string') throw new IpcError('IPC_ERR_INCOMPATIBLE', `topic '${name}': ${g}`);
    for (const key of ['capacity', 'maxMessageSize', 'overflow', 'maxSubscribers', 'exclusivePublisher'] as const) {
      if (shape[key] !== undefined && shape[key] !== g[key]) {
        throw new IpcError('IPC_ERR_INCOMPATIBLE', `topic '${name}': ${key} is ${String(g[key])}, expected ${String(shape[key])}`);
      }
    }
    return new Topic<T>(token, name, shm, g, handle);
  } catch (err) {
    shm.close();
    throw err;
  }
}
