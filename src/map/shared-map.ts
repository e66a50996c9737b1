/**
 * SharedMap: a bounded key-value map in shared memory, a public facade over table.ts (the
 * algorithm) and layout.ts (bytes and protocol). This file owns codecs, options, TTLs,
 * iteration and the lifecycle; it touches the memory only through the Table.
 */
import { IpcError, closedError } from '../errors.js';
import { decodeOrThrow, resolveCodec, type BytesCodec, type Codec, type CodecOption, type SerializingCodec } from '../codec/index.js';
import { checkInteger, checkOptions } from '../options.js';
import { Kind } from '../shm/header.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { namedOptions, openObject, type How, type NamedObjectOptions } from '../shm/segment.js';
import { DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES, MAP_VERSION, MAX_BYTE_LENGTH, MAX_CAPACITY, MAX_KEY_BYTES, geometry, initMap, readGeometry, type Eviction, type MapGeometry } from './layout.js';
import { FRESH, HAS, SCRATCH, Table } from './table.js';

export type { Eviction } from './layout.js';

/** Options every opener may give (per handle, not stored in the map). */
export interface SharedMapHandleOptions<V = unknown> extends NamedObjectOptions {
  /** How values become bytes: 'bytes' (default), 'json', 'structured', 'msgpack' or { encode, decode }. */
  codec?: CodecOption<V>;
}

export interface SharedMapCreateOptions<V = unknown> extends SharedMapHandleOptions<V> {
  /** Most entries the map holds; all their memory is reserved at creation. */
  capacity: number;
  /** Longest key in UTF-8 bytes (default 256). */
  maxKeyBytes?: number;
  /** Largest value in bytes after encoding (default 1024). */
  maxValueBytes?: number;
  /** What a full map does with a new key: 'none' throws IPC_ERR_FULL (default), 'lru' evicts (approximate LRU, CLOCK). */
  eviction?: Eviction;
  /** Default time to live of an entry in ms (default: entries do not expire). */
  ttl?: number;
}

/** Opening an existing map: the given geometry options must match it (IPC_ERR_INCOMPATIBLE otherwise). */
export type SharedMapOpenOptions<V = unknown> = SharedMapHandleOptions<V> & Partial<Omit<SharedMapCreateOptions<V>, keyof SharedMapHandleOptions<V>>>;

export interface SharedMapSetOptions {
  /** Time to live in ms (> 0), or Infinity for none; default: the map's ttl. */
  ttl?: number;
}

/** For increment and update: the ttl applies only when the call creates the key. */
export type SharedMapUpdateOptions = SharedMapSetOptions;

const HANDLE_OPTIONS = ['codec'] as const;
const GEOMETRY_OPTIONS = ['capacity', 'maxKeyBytes', 'maxValueBytes', 'eviction', 'ttl'] as const;
const ALL_OPTIONS = [...HANDLE_OPTIONS, ...GEOMETRY_OPTIONS] as const;
const TTL_KEYS = ['ttl'] as const;
const MAX_TTL = 2 ** 42; // ms, about 139 years: anything longer is Infinity

const token = Symbol('SharedMap');
const bytesCodec = resolveCodec('bytes');

/**
 * Callbacks of update() run with a stripe lock held; while one runs, this thread may read any
 * map but not write one (a write could wait for a lock another process holds while it waits
 * for ours).
 */
let callbackDepth = 0;

export class SharedMap<V = Uint8Array> implements Iterable<[string, V]> {
  readonly #name: string;
  #shm: SharedMemory | undefined;
  #table: Table | undefined;
  readonly #codec: Codec<V>;
  readonly #isBytes: boolean;
  readonly #g: MapGeometry;
  readonly #what: string;

  /** @internal use SharedMap.create / open / openOrCreate */
  constructor(key: symbol, name: string, shm: SharedMemory, g: MapGeometry, codec: Codec<V>) {
    if (key !== token) throw new TypeError('use SharedMap.create, SharedMap.open or SharedMap.openOrCreate');
    this.#name = name;
    this.#shm = shm;
    this.#g = g;
    this.#what = `map '${name}'`;
    this.#table = new Table(shm.buffer, g, this.#what);
    this.#codec = codec;
    this.#isBytes = codec === (bytesCodec as Codec<unknown>);
  }

  /**
   * Creates the map `name`; IPC_ERR_EXISTS if it exists. The codec decides the value type:
   * Uint8Array without one (or with 'bytes'), the type you name with a serializing codec.
   */
  static create(name: string, options: SharedMapCreateOptions<Uint8Array> & BytesCodec): SharedMap<Uint8Array>;
  static create<V = unknown>(name: string, options: SharedMapCreateOptions<V> & SerializingCodec<V>): SharedMap<V>;
  static create<V>(name: string, options: SharedMapCreateOptions<V>): SharedMap<V> {
    return make<V>(name, 'create', options, 'SharedMap.create');
  }

  /** Opens the existing map `name`; IPC_ERR_NOT_FOUND if missing, IPC_ERR_INCOMPATIBLE if not a map. */
  static open(name: string, options?: SharedMapOpenOptions<Uint8Array> & BytesCodec): SharedMap<Uint8Array>;
  static open<V = unknown>(name: string, options: SharedMapOpenOptions<V> & SerializingCodec<V>): SharedMap<V>;
  static open<V>(name: string, options?: SharedMapOpenOptions<V>): SharedMap<V> {
    return make<V>(name, 'open', options, 'SharedMap.open');
  }

  /** Opens `name`, creating it with these options if it is missing. */
  static openOrCreate(name: string, options: SharedMapCreateOptions<Uint8Array> & BytesCodec): SharedMap<Uint8Array>;
  static openOrCreate<V = unknown>(name: string, options: SharedMapCreateOptions<V> & SerializingCodec<V>): SharedMap<V>;
  static openOrCreate<V>(name: string, options: SharedMapCreateOptions<V>): SharedMap<V> {
    return make<V>(name, 'openOrCreate', options, 'SharedMap.openOrCreate');
  }

  /** Removes the name; processes that have the map open keep using it. True if it existed. */
  static remove(name: string): boolean {
    return SharedMemory.remove(name);
  }

  get name(): string {
    return this.#name;
  }
  get capacity(): number {
    return this.#g.capacity;
  }
  get maxKeyBytes(): number {
    return this.#g.maxKeyBytes;
  }
  get maxValueBytes(): number {
    return this.#g.maxValueBytes;
  }
  get eviction(): Eviction {
    return this.#g.eviction;
  }
  /** The map's default time to live in ms (Infinity: none). */
  get ttl(): number {
    return this.#g.defaultTtl === 0 ? Infinity : this.#g.defaultTtl;
  }
  /** Bytes of shared memory the map takes (header, stripes, buckets and entries). */
  get byteLength(): number {
    return this.#g.byteLength;
  }
  get closed(): boolean {
    return this.#table === undefined;
  }

  /** Live entries (entries whose ttl ran out count until their space is reclaimed). */
  get size(): number {
    return this.#live().size();
  }

  // --- reads (never lock, never wait) ----------------------------------------------------------

  /** The value of `key` (a private copy, decoded), or undefined when absent or expired. */
  get(key: string): V | undefined {
    const t = this.#live();
    if (typeof key !== 'string') throw keyTypeError('get', key);
    if (!t.prepare(key)) return undefined; // too long to be in the map
    if (this.#isBytes) return t.read(FRESH) ? (t.out as V) : undefined;
    if (!t.read(SCRATCH)) return undefined;
    return decodeOrThrow(this.#codec, t.valueScratch.subarray(0, t.outLength), `${this.#what} get`);
  }

  /** Whether `key` is present and unexpired. */
  has(key: string): boolean {
    const t = this.#live();
    if (typeof key !== 'string') throw keyTypeError('has', key);
    return t.prepare(key) && t.read(HAS);
  }

  // --- writes (under the key's stripe lock) ----------------------------------------------------

  /**
   * Sets `key` to `value`, with the map's ttl or `options.ttl` (ms; Infinity: never expires).
   * A new key in a full map: IPC_ERR_FULL with eviction 'none', else the LRU victim goes.
   */
  set(key: string, value: V, options?: SharedMapSetOptions): this {
    const t = this.#live();
    if (typeof key !== 'string') throw keyTypeError('set', key);
    const expiresAt = this.#expiry(options, 'set');
    const bytes = this.#encode(value, 'set');
    this.#prepareForWrite(t, key, 'set');
    t.lock();
    try {
      t.findLocked();
      t.writeLocked(bytes, bytes.length, expiresAt);
    } finally {
      t.unlock();
    }
    return this;
  }

  /** Removes `key`; true if it was present (and unexpired). */
  delete(key: string): boolean {
    const t = this.#live();
    if (typeof key !== 'string') throw keyTypeError('delete', key);
    if (callbackDepth !== 0) throw callbackWriteError('delete');
    if (!t.prepare(key)) return false;
    t.lock();
    try {
      const present = t.findLocked();
      if (t.found) t.deleteLocked(); // an expired entry too: its space is given back now
      return present;
    } finally {
      t.unlock();
    }
  }

  /**
   * Adds `by` (default 1) to the number stored under `key` and returns the sum, atomically
   * across processes. A missing key counts from 0 (and gets `options.ttl` or the map's ttl);
   * an existing one keeps its expiry. Needs a codec that carries numbers (not 'bytes').
   */
  increment(key: string, by = 1, options?: SharedMapUpdateOptions): number {
    this.#live();
    if (typeof by !== 'number' || !Number.isFinite(by)) throw new TypeError(`${this.#what} increment: by must be a finite number, got ${String(by)}`);
    if (this.#isBytes) throw new TypeError(`${this.#what} increment: needs a codec that carries numbers ('json', 'msgpack', 'structured' or your own), this map's is 'bytes'`);
    let result = 0;
    this.#modify(key, 'increment', options, (old) => {
      if (old !== undefined && typeof old !== 'number') throw new TypeError(`${this.#what} increment: the value of '${key}' is not a number`);
      result = ((old as number | undefined) ?? 0) + by;
      return result as V;
    });
    return result;
  }

  /**
   * Replaces the value of `key` with `fn(old)` atomically across processes (`old` is undefined
   * when absent); `fn` returning undefined deletes the key. Returns what `fn` returned. `fn`
   * runs once, with the key's stripe locked: keep it short, and do not write to any SharedMap
   * from it (IPC_ERR_DEADLOCK). If `fn` throws, nothing changes. A new key gets `options.ttl`
   * or the map's ttl; an existing one keeps its expiry.
   */
  update(key: string, fn: (old: V | undefined) => V | undefined, options?: SharedMapUpdateOptions): V | undefined {
    this.#live();
    if (typeof fn !== 'function') throw new TypeError(`${this.#what} update: fn must be a function`);
    return this.#modify(key, 'update', options, fn);
  }

  #modify(key: string, what: string, options: SharedMapUpdateOptions | undefined, fn: (old: V | undefined) => V | undefined): V | undefined {
    const t = this.#live();
    if (typeof key !== 'string') throw keyTypeError(what, key);
    const created = this.#expiry(options, what);
    this.#prepareForWrite(t, key, what);
    t.lock();
    try {
      const present = t.findLocked();
      let old: V | undefined;
      if (present) {
        t.currentLocked(this.#isBytes ? FRESH : SCRATCH);
        old = this.#isBytes ? (t.out as V) : decodeOrThrow(this.#codec, t.valueScratch.subarray(0, t.outLength), `${this.#what} ${what}`);
      }
      const keptExpiry = t.outExpiresAt;
      let next: V | undefined;
      callbackDepth++;
      try {
        next = fn(old);
      } finally {
        callbackDepth--;
      }
      // fn may have used this (or another) map for reads: the prepared key is per handle.
      t.prepare(key);
      t.findLocked();
      if (next === undefined) {
        if (t.found) t.deleteLocked();
        return undefined;
      }
      const bytes = this.#encode(next, what);
      t.writeLocked(bytes, bytes.length, present ? keptExpiry : created);
      return next;
    } finally {
      t.unlock();
    }
  }

  /** Removes every entry, one stripe at a time (not atomic across stripes). */
  clear(): void {
    const t = this.#live();
    if (callbackDepth !== 0) throw callbackWriteError('clear');
    for (let s = 0; s < t.stripeCount; s++) {
      t.lockOnly(s);
      try {
        t.clearStripeLocked();
      } finally {
        t.unlock();
      }
    }
  }

  // --- iteration (weakly consistent, never locks) ----------------------------------------------

  /**
   * The keys, one stripe at a time: a key present and unchanged for the whole iteration is
   * yielded exactly once; one added or removed meanwhile may or may not be.
   */
  *keys(): IterableIterator<string> {
    const t = this.#live();
    const keys: string[] = [];
    for (let s = 0; s < t.stripeCount; s++) {
      keys.length = 0;
      this.#live().collect(s, keys, undefined);
      yield* keys;
    }
  }

  /** [key, value] pairs, as keys() (values are private, decoded copies). */
  *entries(): IterableIterator<[string, V]> {
    const t = this.#live();
    const keys: string[] = [];
    const values: Uint8Array[] = [];
    for (let s = 0; s < t.stripeCount; s++) {
      keys.length = 0;
      values.length = 0;
      this.#live().collect(s, keys, values);
      for (let i = 0; i < keys.length; i++) {
        const value = this.#isBytes ? (values[i] as V) : decodeOrThrow(this.#codec, values[i]!, `${this.#what} entries`);
        yield [keys[i]!, value];
      }
    }
  }

  *values(): IterableIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  /** Idempotent. Other handles and processes keep using the map. */
  close(): void {
    // Gives up this thread's lifeline share on the map (see src/os/lifeline.ts).
    this.#table?.close();
    this.#table = undefined;
    this.#shm?.close();
    this.#shm = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // --- helpers ---------------------------------------------------------------------------------

  #live(): Table {
    const t = this.#table;
    if (t === undefined) throw closedError(this.#what);
    return t;
  }

  #prepareForWrite(t: Table, key: string, what: string): void {
    if (callbackDepth !== 0) throw callbackWriteError(what);
    if (!t.prepare(key)) {
      throw new IpcError('IPC_ERR_MESSAGE_TOO_LARGE', `${this.#what} ${what}: the key is over maxKeyBytes (${this.#g.maxKeyBytes} bytes in UTF-8); nothing was changed`);
    }
  }

  #encode(value: V, what: string): Uint8Array {
    const bytes = this.#codec.encode(value);
    if (bytes.length > this.#g.maxValueBytes) {
      throw new IpcError(
        'IPC_ERR_MESSAGE_TOO_LARGE',
        `${this.#what} ${what}: the value is ${bytes.length} bytes encoded, over maxValueBytes (${this.#g.maxValueBytes}); nothing was changed`,
      );
    }
    return bytes;
  }

  /** The expiry (ms since the epoch, 0 = never) a write with these options gives a new value. */
  #expiry(options: SharedMapSetOptions | undefined, what: string): number {
    let ttl = this.#g.defaultTtl;
    if (options !== undefined) {
      const o = checkOptions<SharedMapSetOptions>(options, TTL_KEYS, `${this.#what} ${what}`);
      if (o.ttl !== undefined) ttl = checkTtl(o.ttl, `${this.#what} ${what}`);
    }
    return ttl === 0 || ttl === Infinity ? 0 : Date.now() + ttl;
  }
}

function checkTtl(ttl: unknown, where: string): number {
  if (ttl === Infinity) return 0;
  if (typeof ttl !== 'number' || Number.isNaN(ttl)) throw new TypeError(`${where}: ttl must be a number of milliseconds`);
  if (!(ttl > 0) || ttl > MAX_TTL) throw new RangeError(`${where}: ttl must be > 0 and <= 2^42 ms (or Infinity), got ${ttl}`);
  return ttl;
}

function keyTypeError(what: string, key: unknown): TypeError {
  return new TypeError(`SharedMap ${what}: keys are strings, got ${key === null ? 'null' : typeof key}`);
}

function callbackWriteError(what: string): IpcError {
  return new IpcError('IPC_ERR_DEADLOCK', `SharedMap ${what}: called from inside an update() callback, which may read maps but not write them`);
}

const EVICTIONS: readonly Eviction[] = ['lru', 'none'];

function make<V>(name: string, how: How, options: unknown, where: string): SharedMap<V> {
  const opts = namedOptions<SharedMapCreateOptions<V>>(options, ALL_OPTIONS, where);
  const codec = resolveCodec<V>(opts.codec);
  const capacity = opts.capacity === undefined ? undefined : checkInteger(opts.capacity, `${where}: capacity`, 1, MAX_CAPACITY);
  if (how !== 'open' && capacity === undefined) throw new TypeError(`${where}: option 'capacity' is required`);
  const maxKeyBytes = opts.maxKeyBytes === undefined ? undefined : checkInteger(opts.maxKeyBytes, `${where}: maxKeyBytes`, 1, MAX_KEY_BYTES);
  const maxValueBytes = opts.maxValueBytes === undefined ? undefined : checkInteger(opts.maxValueBytes, `${where}: maxValueBytes`, 0, MAX_BYTE_LENGTH);
  if (opts.eviction !== undefined && !EVICTIONS.includes(opts.eviction)) {
    throw new TypeError(`${where}: eviction must be 'lru' or 'none', got ${String(opts.eviction)}`);
  }
  const ttl = opts.ttl === undefined ? undefined : checkTtl(opts.ttl, where);
  let wanted: MapGeometry | undefined;
  if (how !== 'open') {
    wanted = geometry(capacity!, maxKeyBytes ?? DEFAULT_MAX_KEY_BYTES, maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES, opts.eviction ?? 'none', ttl ?? 0, where);
  }
  const created = wanted;
  const shm = openObject(
    name,
    how,
    'map',
    { kind: Kind.Map, version: MAP_VERSION, byteLength: created?.byteLength ?? 0, init: (buffer) => initMap(buffer, created!) },
    opts,
  );
  try {
    const g = readGeometry(shm.buffer);
    if (typeof g === 'string') throw new IpcError('IPC_ERR_INCOMPATIBLE', `map '${name}': ${g}`);
    if (!shm.created) {
      const mismatch = (field: string, have: unknown, asked: unknown): never => {
        throw new IpcError('IPC_ERR_INCOMPATIBLE', `map '${name}': ${field} is ${String(have)}, expected ${String(asked)}`);
      };
      if (capacity !== undefined && g.capacity !== capacity) mismatch('capacity', g.capacity, capacity);
      if (maxKeyBytes !== undefined && g.maxKeyBytes !== maxKeyBytes) mismatch('maxKeyBytes', g.maxKeyBytes, maxKeyBytes);
      if (maxValueBytes !== undefined && g.maxValueBytes !== maxValueBytes) mismatch('maxValueBytes', g.maxValueBytes, maxValueBytes);
      if (opts.eviction !== undefined && g.eviction !== opts.eviction) mismatch('eviction', g.eviction, opts.eviction);
      if (ttl !== undefined && g.defaultTtl !== ttl) mismatch('ttl', g.defaultTtl || 'none', opts.ttl);
    }
    return new SharedMap<V>(token, name, shm, g, codec);
  } catch (err) {
    shm.close();
    throw err;
  }
}
