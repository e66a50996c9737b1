/**
 * The SharedMap algorithm on the layout drawn in layout.ts (read its header for the protocol
 * and the crash-recovery rules): lock-free lookups validated by a per-entry version word,
 * writes under a robust per-stripe lock, allocation and CLOCK eviction by a shared hand, and
 * the rebuild of a stripe whose writer died. shared-map.ts turns this into the public API
 * (codecs, options, iteration); this file sees keys as prepared UTF-8 and values as bytes.
 *
 * Hot-path notes: each Atomics call costs ~10 ns on Node 20, so a hit makes two (the version,
 * before and after the copy); links, key, hash, length and value are plain reads that the
 * second version load validates (the buffer's address depends on the first one), and the
 * stripe's seq is only read, with the links, by a second walk that proves a miss. A key is
 * hashed once, its UTF-8 bytes going to a reused scratch on the way (ASCII straight from the
 * char codes, other keys through TextEncoder.encodeInto), and compared a word at a time.
 *
 * Test hook: INTERPROCESS_MAP_PARK=<point> (read once, at load) makes a writer that reaches
 * <point> report { state: 'parked', point } on the process's IPC channel and block forever,
 * so that a test can SIGKILL it exactly there. Unset, each point costs one comparison with a
 * constant.
 */
import { IpcError } from '../errors.js';
import { futex } from '../os/futex.js';
import { OWNER_MASK, openLifeline, type Lifeline } from '../os/lifeline.js';
import { CHECK_INTERVAL_MS, NO, NOT_RECOVERABLE, RECOVERED, YES, deadlockError, flagWaiting, markConsistent, poison, release, take } from '../sync/robust.js';
import {
  BUFFER_HEADER_BYTES,
  E_HASH,
  E_KEYLEN,
  E_NEXT,
  E_OWNER,
  E_REF_BYTE,
  ENTRY_HEADER_BYTES,
  S_COUNT,
  S_LOCK,
  S_SEQ,
  STRIPE_BYTES,
  STRIPES_OFFSET,
  V_BUFFER,
  V_LIVE,
  V_STEP,
  W,
  type MapGeometry,
} from './layout.js';

const PARK_AT = process.env['INTERPROCESS_MAP_PARK'] || undefined;
const parkWord = new Int32Array(new SharedArrayBuffer(4));

/** The test hook (see the header): report the point, then wait for the SIGKILL. */
function park(point: string): void {
  if (point !== PARK_AT) return;
  process.send?.({ state: 'parked', point, pid: process.pid });
  for (;;) Atomics.wait(parkWord, 0, 0);
}

const STRIPE_INTS = STRIPE_BYTES >> 2;
/** Positions one allocation claims from the hand at a time. */
const WINDOW = 64;
/** Laps of the hand an 'lru' insert may make while its victims' stripes are busy. */
const LRU_LAPS = 8;
/** Lock attempts before a writer flags itself as a sleeper. */
const SPIN_ROUNDS = 100;
const FNV_PRIME = 0x01000193;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/** What read() leaves behind. */
export const HAS = 0;
export const FRESH = 1;
export const SCRATCH = 2;
export type ReadMode = typeof HAS | typeof FRESH | typeof SCRATCH;

export class Table {
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  readonly f64: Float64Array;
  readonly g: MapGeometry;
  readonly what: string;
  readonly #n: number;
  readonly #lru: boolean;
  readonly #seed: number;
  readonly #bucketMask: number;
  readonly #stripeMask: number;
  readonly #stripeCount: number;
  readonly #entryInts: number;
  readonly #entriesInt: number;
  readonly #bucketsInt: number;
  readonly #maxKey: number;
  readonly #maxValue: number;
  /** Byte offset of value buffer 0 inside an entry, and the size of one buffer. */
  readonly #buffer0: number;
  readonly #bufferBytes: number;
  readonly #token: number;
  readonly #lifeline: Lifeline;
  readonly #keyScratch: Uint8Array;
  /** The same bytes as int32 words. */
  readonly #keyWords: Int32Array;
  #valueScratch: Uint8Array | undefined;

  // The prepared key (prepare()): its hash and UTF-8 length; its bytes are in #keyScratch.
  h = 0;
  len = 0;

  /** read(FRESH) puts the value here; read(SCRATCH) / current() fill scratch[0, outLength). */
  out: Uint8Array | undefined;
  outLength = 0;
  /** Expiry of the value read last (ms since the epoch, 0 = never). */
  outExpiresAt = 0;

  // The writer's state: the stripe it holds, and where findLocked() found the key.
  #stripe = -1;
  #at = -1;
  #pred = -1;
  /** Set by #reclaim: the stripe whose lock a try found busy (-1: none). */
  #busy = -1;
  /** Eviction candidates of one window. */
  readonly #candidates = new Int32Array(8);

  constructor(buffer: SharedArrayBuffer, g: MapGeometry, what: string) {
    this.i32 = new Int32Array(buffer);
    this.u8 = new Uint8Array(buffer);
    this.f64 = new Float64Array(buffer);
    this.g = g;
    this.what = what;
    this.#n = g.capacity;
    this.#lru = g.eviction === 'lru';
    this.#seed = this.i32[W.seed]!;
    this.#bucketMask = g.bucketCount - 1;
    this.#stripeMask = g.stripeCount - 1;
    this.#stripeCount = g.stripeCount;
    this.#entryInts = g.entryBytes >> 2;
    this.#entriesInt = g.entriesOffset >> 2;
    this.#bucketsInt = g.bucketsOffset >> 2;
    this.#maxKey = g.maxKeyBytes;
    this.#maxValue = g.maxValueBytes;
    this.#buffer0 = ENTRY_HEADER_BYTES + g.keyBytes;
    this.#bufferBytes = BUFFER_HEADER_BYTES + g.valueBytes;
    // This thread's lifeline token for this map: what the stripe lock words record.
    this.#lifeline = openLifeline(buffer);
    this.#token = this.#lifeline.token;
    this.#keyScratch = new Uint8Array(g.keyBytes);
    this.#keyWords = new Int32Array(this.#keyScratch.buffer);
  }

  /** Int32 index where entry e (0-based) starts. */
  #base(e: number): number {
    return this.#entriesInt + e * this.#entryInts;
  }

  #stripeInt(s: number): number {
    return (STRIPES_OFFSET >> 2) + s * STRIPE_INTS;
  }

  get valueScratch(): Uint8Array {
    return (this.#valueScratch ??= new Uint8Array(this.#maxValue));
  }

  /** Gives up this handle's lifeline (the handle is not used again). */
  close(): void {
    this.#lifeline.close();
  }

  // --- keys ------------------------------------------------------------------------------------

  /** Hashes `key` for the next operation. False when its UTF-8 form is over maxKeyBytes. */
  prepare(key: string): boolean {
    const n = key.length;
    // Every UTF-16 unit is at least one UTF-8 byte: longer strings cannot fit.
    if (n > this.#maxKey) return false;
    // The UTF-8 bytes go to the scratch as they are hashed, so that comparisons with stored
    // keys go a word at a time (and never call charCodeAt again).
    const scratch = this.#keyScratch;
    let h = this.#seed;
    let i = 0;
    for (; i < n; i++) {
      const c = key.charCodeAt(i);
      if (c > 0x7f) break;
      scratch[i] = c;
      h = Math.imul(h ^ c, FNV_PRIME);
    }
    if (i === n) {
      this.len = n;
    } else {
      const r = encoder.encodeInto(key, scratch.subarray(0, this.#maxKey));
      if (r.read < n) return false;
      this.len = r.written;
      h = this.#seed;
      for (let j = 0; j < r.written; j++) h = Math.imul(h ^ scratch[j]!, FNV_PRIME);
    }
    // murmur3's finalizer: the low bits pick bucket and stripe, so every input bit must reach them.
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    this.h = h;
    return true;
  }

  /** Whether the key bytes at byte offset `at` (a multiple of 4) are the prepared key's. */
  #keyEquals(at: number): boolean {
    const len = this.len;
    const words = len >> 2;
    const i32 = this.i32;
    const mine = this.#keyWords;
    const first = at >> 2;
    for (let w = 0; w < words; w++) if (i32[first + w] !== mine[w]) return false;
    const u8 = this.u8;
    const scratch = this.#keyScratch;
    for (let i = words << 2; i < len; i++) if (u8[at + i] !== scratch[i]) return false;
    return true;
  }

  /** The key stored in entry base `base` as a string. */
  #keyAt(base: number, len: number): string {
    const at = base * 4 + ENTRY_HEADER_BYTES;
    const u8 = this.u8;
    let s = '';
    for (let i = 0; i < len; i++) {
      const c = u8[at + i]!;
      if (c > 0x7f) return decoder.decode(u8.slice(at, at + len));
      s += String.fromCharCode(c);
    }
    return s;
  }

  // --- lock-free reads -------------------------------------------------------------------------

  /**
   * Looks the prepared key up without locking. HAS only answers; FRESH leaves a private copy in
   * `out`; SCRATCH copies into valueScratch[0, outLength). False when absent or expired.
   */
  read(mode: ReadMode): boolean {
    const i32 = this.i32;
    const u8 = this.u8;
    const h = this.h;
    const len = this.len;
    const seqIndex = this.#stripeInt(h & this.#stripeMask) + S_SEQ;
    const headIndex = this.#bucketsInt + (h & this.#bucketMask);
    const entriesInt = this.#entriesInt;
    const entryInts = this.#entryInts;
    const limit = this.#n;
    // A hit is proven by its entry's version alone, so the first walk skips the stripe's seq;
    // only a miss walks again, between two loads of seq.
    let careful = false;
    let seq = 0;
    retry: for (;;) {
      // Pairs with the bump after an unlink: an unchanged seq proves a miss was not misled.
      // The first walk reads links plainly: whatever entry it reaches, only a LIVE version with
      // the key's bytes validates a hit. The careful walk pairs its loads with the link stores.
      if (careful) seq = Atomics.load(i32, seqIndex);
      let link = careful ? Atomics.load(i32, headIndex) : i32[headIndex]!;
      let steps = 0;
      while (link !== 0) {
        const base = entriesInt + (link - 1) * entryInts;
        // Plain reads: hints only, validated by the version re-check below.
        if (i32[base + E_HASH] === h && i32[base + E_KEYLEN] === len) {
          // Acquire: pairs with the writer's store of version, which published key and buffer.
          const v = Atomics.load(i32, base);
          if ((v & V_LIVE) !== 0 && this.#keyEquals(base * 4 + ENTRY_HEADER_BYTES)) {
            const buf = base * 4 + this.#buffer0 + (v & V_BUFFER) * this.#bufferBytes;
            const expiresAt = this.f64[buf >> 3]!;
            const length = i32[(buf >> 2) + 2]!;
            const sane = length >= 0 && length <= this.#maxValue;
            if (sane && mode !== HAS) this.#copyOut(mode, buf + BUFFER_HEADER_BYTES, length);
            // Validation: no writer changed the entry while we read it (every change bumps it).
            if (Atomics.load(i32, base) !== v) continue retry;
            if (!sane) throw this.#corrupt(`value length ${length}`);
            if (expiresAt !== 0 && expiresAt <= Date.now()) return false;
            if (this.#lru && u8[base * 4 + E_REF_BYTE] === 0) u8[base * 4 + E_REF_BYTE] = 1; // a hint for the CLOCK hand
            this.outExpiresAt = expiresAt;
            return true;
          }
        }
        link = careful ? Atomics.load(i32, base + E_NEXT) : i32[base + E_NEXT]!;
        // Only a chain rearranged under us can be longer than the map: start again.
        if (++steps > limit) continue retry;
      }
      if (!careful) careful = true;
      else if (Atomics.load(i32, seqIndex) === seq) return false;
    }
  }

  #copyOut(mode: ReadMode, from: number, length: number): void {
    const u8 = this.u8;
    if (mode === FRESH) {
      this.out = u8.slice(from, from + length);
      return;
    }
    const scratch = this.valueScratch;
    if (length <= 64) for (let i = 0; i < length; i++) scratch[i] = u8[from + i]!;
    else scratch.set(u8.subarray(from, from + length));
    this.outLength = length;
  }

  #corrupt(detail: string): IpcError {
    return new IpcError('IPC_ERR_INCOMPATIBLE', `${this.what}: corrupt entry (${detail}); remove and recreate the map`);
  }

  // --- stripe locks ----------------------------------------------------------------------------

  /** Takes the lock of the prepared key's stripe, rebuilding the stripe if its owner died. */
  lock(): void {
    const s = this.h & this.#stripeMask;
    const index = this.#stripeInt(s) + S_LOCK;
    // The fast path: one CAS (publishes our ownership; pairs with the exchange in unlock()).
    if (Atomics.compareExchange(this.i32, index, 0, this.#token) !== 0) this.#lockSlow(s, index);
    this.#stripe = s;
  }

  #lockSlow(s: number, index: number): void {
    const i32 = this.i32;
    const token = this.#token;
    const word = Atomics.load(i32, index);
    if (word !== NOT_RECOVERABLE && (word & OWNER_MASK) === token) throw deadlockError(`${this.what}: stripe ${s}`);
    for (let i = 0; i < SPIN_ROUNDS; i++) {
      if (Atomics.load(i32, index) === 0 && Atomics.compareExchange(i32, index, 0, token) === 0) return;
    }
    let check = true;
    let slept = false;
    for (;;) {
      const got = take(i32, index, this.#lifeline, slept, check, `${this.what}: stripe ${s}`);
      if (got === YES) return;
      if (got === RECOVERED) {
        this.#recovered(s, index);
        return;
      }
      const value = flagWaiting(i32, index);
      if (value === 0) continue;
      slept = true;
      // Wakes on unlock, or after CHECK_INTERVAL_MS to ask the kernel whether the owner lives.
      check = futex.wait(i32, index, value, CHECK_INTERVAL_MS) === 'timed-out';
    }
  }

  /** We took stripe s from a dead owner: rebuild it, then accept the state. */
  #recovered(s: number, index: number): void {
    try {
      this.#rebuild(s);
    } catch (err) {
      // A rebuild that cannot finish must not leave a half-repaired stripe to the next writer.
      poison(this.i32, index);
      throw err;
    }
    markConsistent(this.i32, index);
  }

  /** Tries stripe t's lock without waiting (while holding another): true when taken. */
  #tryLockStripe(t: number): boolean {
    const i32 = this.i32;
    const index = this.#stripeInt(t) + S_LOCK;
    if (Atomics.compareExchange(i32, index, 0, this.#token) === 0) return true;
    let got;
    try {
      got = take(i32, index, this.#lifeline, false, true, `${this.what}: stripe ${t}`);
    } catch {
      return false; // not recoverable: leave it alone
    }
    if (got === NO) return false;
    if (got === RECOVERED) this.#recovered(t, index);
    return true;
  }

  #unlockStripe(s: number): void {
    // Publishes every write made under the lock; pairs with the CAS of the next locker.
    release(this.i32, this.#stripeInt(s) + S_LOCK, 1);
  }

  unlock(): void {
    const s = this.#stripe;
    this.#stripe = -1;
    this.#unlockStripe(s);
  }

  // --- writes (the stripe lock held) -----------------------------------------------------------

  /**
   * Finds the prepared key in its chain. True when it is there and not expired; `expired`
   * entries are found too (and are overwritten or reclaimed by the caller's write).
   */
  findLocked(): boolean {
    const i32 = this.i32;
    const h = this.h;
    const len = this.len;
    let pred = -1;
    // Plain reads: only the holder of this stripe's lock changes its chains.
    let link = i32[this.#bucketsInt + (h & this.#bucketMask)]!;
    while (link !== 0) {
      const e = link - 1;
      const base = this.#base(e);
      if (i32[base + E_HASH] === h && i32[base + E_KEYLEN] === len && this.#keyEquals(base * 4 + ENTRY_HEADER_BYTES)) {
        this.#at = e;
        this.#pred = pred;
        const v = i32[base]!;
        const expiresAt = this.f64[(base * 4 + this.#buffer0 + (v & V_BUFFER) * this.#bufferBytes) >> 3]!;
        this.outExpiresAt = expiresAt;
        return expiresAt === 0 || expiresAt > Date.now();
      }
      pred = e;
      link = i32[base + E_NEXT]!;
    }
    this.#at = -1;
    return false;
  }

  /** Whether findLocked() found an entry for the key (expired or not). */
  get found(): boolean {
    return this.#at >= 0;
  }

  /** Copies the found entry's current value into valueScratch[0, outLength) (FRESH: into out). */
  currentLocked(mode: ReadMode): void {
    const base = this.#base(this.#at);
    const v = this.i32[base]!;
    const buf = base * 4 + this.#buffer0 + (v & V_BUFFER) * this.#bufferBytes;
    const length = this.i32[(buf >> 2) + 2]!;
    if (length < 0 || length > this.#maxValue) throw this.#corrupt(`value length ${length}`);
    this.#copyOut(mode, buf + BUFFER_HEADER_BYTES, length);
  }

  /**
   * Stores `value` under the prepared key (found or not by findLocked). An existing entry gets
   * it in its other buffer and one version store publishes it; a new key takes an entry.
   */
  writeLocked(value: Uint8Array, length: number, expiresAt: number): void {
    const i32 = this.i32;
    if (this.#at >= 0) {
      const base = this.#base(this.#at);
      const v = i32[base]!;
      const next = (v & V_BUFFER) ^ 1;
      this.#fill(base, next, value, length, expiresAt);
      if (this.#lru) this.u8[base * 4 + E_REF_BYTE] = 1;
      if (PARK_AT !== undefined) park('set:written');
      // The linearization point: publishes the other buffer (pairs with the reader's loads).
      Atomics.store(i32, base, ((v + V_STEP) & ~(V_LIVE | V_BUFFER)) | V_LIVE | next);
      return;
    }
    const s = this.#stripe;
    const e = this.#allocate(s);
    const base = this.#base(e);
    if (PARK_AT !== undefined) park('insert:allocated');
    const v = i32[base]!;
    const next = (v & V_BUFFER) ^ 1;
    i32[base + E_HASH] = this.h;
    i32[base + E_KEYLEN] = this.len;
    const at = base * 4 + ENTRY_HEADER_BYTES;
    const u8 = this.u8;
    const scratch = this.#keyScratch;
    for (let i = 0; i < this.len; i++) u8[at + i] = scratch[i]!;
    this.#fill(base, next, value, length, expiresAt);
    // Not read yet: a key written and never read is the first to go (an overwrite counts as use).
    u8[base * 4 + E_REF_BYTE] = 0;
    const headIndex = this.#bucketsInt + (this.h & this.#bucketMask);
    i32[base + E_NEXT] = i32[headIndex]!;
    // Links the entry, still not LIVE: publishes next, key and buffer to whoever walks the chain.
    Atomics.store(i32, headIndex, e + 1);
    if (PARK_AT !== undefined) park('insert:linked');
    // The linearization point: the key exists from here on.
    Atomics.store(i32, base, ((v + V_STEP) & ~(V_LIVE | V_BUFFER)) | V_LIVE | next);
    const count = this.#stripeInt(s) + S_COUNT;
    Atomics.store(i32, count, i32[count]! + 1);
    this.#at = e;
    this.#pred = -1;
  }

  /** Writes value buffer `which` of the entry at `base` (never the current one). */
  #fill(base: number, which: number, value: Uint8Array, length: number, expiresAt: number): void {
    const buf = base * 4 + this.#buffer0 + which * this.#bufferBytes;
    this.f64[buf >> 3] = expiresAt;
    this.i32[(buf >> 2) + 2] = length;
    const at = buf + BUFFER_HEADER_BYTES;
    const u8 = this.u8;
    if (length <= 64) for (let i = 0; i < length; i++) u8[at + i] = value[i]!;
    else u8.set(length === value.length ? value : value.subarray(0, length), at);
  }

  /** Removes the entry findLocked() found. */
  deleteLocked(): void {
    this.#unlink(this.#stripe, this.#at, this.#pred, 0);
    this.#at = -1;
  }

  /**
   * Deletes entry e of stripe s (whose lock we hold) from its chain, after `pred` (-1: the
   * head), and gives it to `newOwner` (0: free; s' + 1: the allocating stripe s').
   */
  #unlink(s: number, e: number, pred: number, newOwner: number): void {
    const i32 = this.i32;
    const base = this.#base(e);
    const v = i32[base]!;
    // The linearization point of a delete: readers stop seeing the key here.
    Atomics.store(i32, base, (v + V_STEP) & ~V_LIVE);
    if (PARK_AT !== undefined) park('delete:hidden');
    const from = pred < 0 ? this.#bucketsInt + (i32[base + E_HASH]! & this.#bucketMask) : this.#base(pred) + E_NEXT;
    Atomics.store(i32, from, i32[base + E_NEXT]!);
    if (PARK_AT !== undefined) park('delete:unlinked');
    const stripe = this.#stripeInt(s);
    // Before the entry can be reused: a reader that walked through it sees seq move.
    Atomics.add(i32, stripe + S_SEQ, 1);
    Atomics.store(i32, stripe + S_COUNT, i32[stripe + S_COUNT]! - 1);
    // Frees (or hands over) the entry; pairs with the allocator's plain read and CAS of owner.
    Atomics.store(i32, base + E_OWNER, newOwner);
  }

  /** Deletes every entry of stripe s (lock held). */
  clearStripeLocked(): void {
    const s = this.#stripe;
    const i32 = this.i32;
    for (let b = s; b <= this.#bucketMask; b += this.#stripeCount) {
      for (let link = i32[this.#bucketsInt + b]!; link !== 0; link = i32[this.#bucketsInt + b]!) this.#unlink(s, link - 1, -1, 0);
    }
  }

  /** Locks stripe s (for clear(), or a second stripe above the one held, for an eviction). */
  lockStripe(s: number): void {
    const index = this.#stripeInt(s) + S_LOCK;
    if (Atomics.compareExchange(this.i32, index, 0, this.#token) !== 0) this.#lockSlow(s, index);
  }

  /** Locks stripe s as the writer's stripe (clear()). */
  lockOnly(s: number): void {
    this.lockStripe(s);
    this.#stripe = s;
  }

  // --- allocation, expiry and eviction ---------------------------------------------------------

  /** Takes a free entry for stripe s (lock held); reclaims an expired one or evicts if needed. */
  #allocate(s: number): number {
    const i32 = this.i32;
    const n = this.#n;
    const owner = s + 1;
    const window = Math.min(WINDOW, n);
    const now = Date.now();
    const candidates = this.#candidates;
    // 'none' looks at every entry once. 'lru' may need a second lap to clear reference bits,
    // and more while the stripes of its victims are busy.
    const lap = n + window;
    const limit = this.#lru ? LRU_LAPS * lap : lap;
    for (let scanned = 0; scanned < limit; scanned += window) {
      const start = Atomics.add(i32, W.hand, window) >>> 0;
      let expired = -1;
      let fallback = -1;
      let found = 0;
      let clearing = true;
      for (let j = 0; j < window; j++) {
        const e = (start + j) % n;
        const base = this.#base(e);
        // A plain read finds candidates; the CAS decides (pairs with the store that freed it).
        if (i32[base + E_OWNER] === 0) {
          if (Atomics.compareExchange(i32, base + E_OWNER, 0, owner) === 0) return e;
          continue;
        }
        const v = i32[base]!;
        if ((v & V_LIVE) === 0) continue; // being inserted or deleted by its stripe's writer
        const expiresAt = this.f64[(base * 4 + this.#buffer0 + (v & V_BUFFER) * this.#bufferBytes) >> 3]!;
        if (expiresAt !== 0 && expiresAt <= now) {
          if (expired < 0) expired = e;
        } else if (this.#lru) {
          // CLOCK: entries read since the hand last passed get a second chance (their bit is
          // cleared) up to the first one not read since, the victim; a few more unread ones
          // are kept as spares in case the victim's stripe is busy.
          if (fallback < 0) fallback = e;
          const ref = base * 4 + E_REF_BYTE;
          if (this.u8[ref] !== 0) {
            if (clearing) this.u8[ref] = 0;
          } else if (found < candidates.length) {
            clearing = false;
            candidates[found++] = e;
          }
        }
      }
      if (expired >= 0 && this.#reclaim(expired, s, true, now, false)) return expired;
      // After a whole lap every reference bit was cleared once: recent readers must not pin all.
      if (found === 0 && scanned >= lap && fallback >= 0) candidates[found++] = fallback;
      let wait = -1;
      for (let k = 0; k < found; k++) {
        const e = candidates[k]!;
        if (this.#reclaim(e, s, false, now, false)) return e;
        if (wait < 0 && this.#busy > s) wait = e;
      }
      // Every victim's stripe was busy. Waiting for a stripe above ours cannot deadlock (a writer
      // only ever waits for a higher stripe than the one it holds), so past a lap we do.
      if (wait >= 0 && scanned >= lap && this.#reclaim(wait, s, false, now, true)) return wait;
    }
    throw new IpcError(
      'IPC_ERR_FULL',
      `${this.what}: full (${n} entries${this.#lru ? ', none could be evicted' : ", eviction 'none'"}); delete keys, use ttl, eviction 'lru' or a larger capacity`,
    );
  }

  /**
   * Takes entry e away from its stripe for stripe s: an expired entry (onlyExpired) or an LRU
   * victim. Locks the entry's stripe (with a try, or waiting if `wait` and it is above s),
   * re-checks under that lock, and hands the entry over. A busy stripe is left in #busy.
   */
  #reclaim(e: number, s: number, onlyExpired: boolean, now: number, wait: boolean): boolean {
    const i32 = this.i32;
    const base = this.#base(e);
    const owner = i32[base + E_OWNER]!;
    this.#busy = -1;
    if (owner === 0) return Atomics.compareExchange(i32, base + E_OWNER, 0, s + 1) === 0;
    const t = owner - 1;
    if (t < 0 || t >= this.#stripeCount) return false;
    if (t !== s) {
      if (wait && t > s) this.lockStripe(t);
      else if (!this.#tryLockStripe(t)) {
        this.#busy = t;
        return false;
      }
    }
    try {
      if (i32[base + E_OWNER] !== owner) return false; // changed before we held t's lock
      const v = i32[base]!;
      if ((v & V_LIVE) === 0) return false;
      const expiresAt = this.f64[(base * 4 + this.#buffer0 + (v & V_BUFFER) * this.#bufferBytes) >> 3]!;
      const expired = expiresAt !== 0 && expiresAt <= now;
      if (onlyExpired && !expired) return false;
      let pred = -1;
      let link = i32[this.#bucketsInt + (i32[base + E_HASH]! & this.#bucketMask)]!;
      while (link !== 0 && link !== e + 1) {
        pred = link - 1;
        link = i32[this.#base(pred) + E_NEXT]!;
      }
      if (link === 0) return false;
      if (PARK_AT !== undefined) park(expired ? 'reclaim:locked' : 'evict:locked');
      this.#unlink(t, e, pred, s + 1);
      Atomics.add(i32, expired ? W.expiredReclaimed : W.evictions, 1);
      return true;
    } finally {
      if (t !== s) this.#unlockStripe(t);
    }
  }

  // --- recovery --------------------------------------------------------------------------------

  /**
   * Rebuilds stripe s after its writer died (lock held): unlinks what is not LIVE, bumps seq,
   * frees every entry the stripe owns that no chain holds, recounts. Idempotent.
   */
  #rebuild(s: number): void {
    if (PARK_AT !== undefined) park('recover:start');
    const i32 = this.i32;
    const n = this.#n;
    const owner = s + 1;
    const held = new Uint8Array(n);
    let live = 0;
    for (let b = s; b <= this.#bucketMask; b += this.#stripeCount) {
      let from = this.#bucketsInt + b; // the word that points at the entry being looked at
      let link = i32[from]!;
      while (link !== 0) {
        const e = link - 1;
        if (e >= n || held[e] === 1) {
          Atomics.store(i32, from, 0); // a link no writer makes: cut the chain here
          break;
        }
        const base = this.#base(e);
        const next = i32[base + E_NEXT]!;
        const v = i32[base]!;
        if ((v & V_LIVE) === 0 || i32[base + E_OWNER] !== owner || (i32[base + E_HASH]! & this.#bucketMask) !== b) {
          if ((v & V_LIVE) !== 0) Atomics.store(i32, base, (v + V_STEP) & ~V_LIVE);
          Atomics.store(i32, from, next); // an insert cut short, or a delete not finished
          link = next;
          continue;
        }
        held[e] = 1;
        live++;
        from = base + E_NEXT;
        link = next;
      }
    }
    const stripe = this.#stripeInt(s);
    Atomics.add(i32, stripe + S_SEQ, 1);
    for (let e = 0; e < n; e++) {
      const base = this.#base(e);
      if (i32[base + E_OWNER] !== owner || held[e] === 1) continue;
      const v = i32[base]!;
      if ((v & V_LIVE) !== 0) Atomics.store(i32, base, (v + V_STEP) & ~V_LIVE);
      Atomics.store(i32, base + E_OWNER, 0);
    }
    Atomics.store(i32, stripe + S_COUNT, live);
    Atomics.add(i32, W.recoveries, 1);
  }

  // --- whole-map views -------------------------------------------------------------------------

  /** Live entries, summed over the stripes (expired ones count until they are reclaimed). */
  size(): number {
    let total = 0;
    for (let s = 0; s < this.#stripeCount; s++) total += Atomics.load(this.i32, this.#stripeInt(s) + S_COUNT);
    return total;
  }

  get stripeCount(): number {
    return this.#stripeCount;
  }

  /**
   * The keys (and, with values, private copies of the values) of stripe s that are live and
   * unexpired, as one consistent pass: walked again if an unlink moved seq meanwhile.
   */
  collect(s: number, keys: string[], values: Uint8Array[] | undefined): void {
    const i32 = this.i32;
    const seqIndex = this.#stripeInt(s) + S_SEQ;
    const start = keys.length;
    retry: for (;;) {
      keys.length = start;
      if (values !== undefined) values.length = start;
      const seq = Atomics.load(i32, seqIndex);
      const now = Date.now();
      let steps = 0;
      for (let b = s; b <= this.#bucketMask; b += this.#stripeCount) {
        let link = Atomics.load(i32, this.#bucketsInt + b);
        while (link !== 0) {
          const base = this.#base(link - 1);
          for (;;) {
            const v = Atomics.load(i32, base);
            if ((v & V_LIVE) === 0) break;
            const len = i32[base + E_KEYLEN]!;
            const buf = base * 4 + this.#buffer0 + (v & V_BUFFER) * this.#bufferBytes;
            const expiresAt = this.f64[buf >> 3]!;
            const length = i32[(buf >> 2) + 2]!;
            const sane = len >= 0 && len <= this.#maxKey && length >= 0 && length <= this.#maxValue;
            const key = sane ? this.#keyAt(base, len) : '';
            const value = sane && values !== undefined ? this.u8.slice(buf + BUFFER_HEADER_BYTES, buf + BUFFER_HEADER_BYTES + length) : undefined;
            if (Atomics.load(i32, base) !== v) continue; // changed while copied: read it again
            if (!sane) throw this.#corrupt(`key length ${len}, value length ${length}`);
            if (expiresAt === 0 || expiresAt > now) {
              keys.push(key);
              values?.push(value!);
            }
            break;
          }
          link = Atomics.load(i32, base + E_NEXT);
          if (++steps > this.#n) continue retry;
        }
      }
      if (Atomics.load(i32, seqIndex) === seq) return;
    }
  }
}
