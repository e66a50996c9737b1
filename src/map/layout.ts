/**
 * SharedMap layout: a striped, chained hash table in one shared-memory segment, with
 * lock-free readers (a per-entry version word over double-buffered values) and robust
 * per-stripe writer locks whose recoverer rebuilds the stripe from the entries themselves.
 *
 * Contract: a bounded map from string keys (UTF-8, at most maxKeyBytes) to byte values (at
 * most maxValueBytes) shared by any number of processes; every operation on one key is
 * linearizable; readers never lock and never wait for a writer; a writer killed at any
 * instruction leaves every key with its old or its new value and leaks nothing.
 *
 * Byte layout (offsets from the start of the segment):
 *
 *   offset  size  field
 *   0       64    common header (src/shm/header.ts): magic, kind = Map (8), version...
 *   64      4     capacity         entries (N), 1 .. 2^27
 *   68      4     bucketCount      B, a power of two >= max(N, S)
 *   72      4     stripeCount      S, a power of two <= 1024
 *   76      4     maxKeyBytes
 *   80      4     maxValueBytes
 *   84      4     entryBytes       bytes per entry (a multiple of 8)
 *   88      4     flags            bit 0: eviction 'lru' (else 'none')
 *   92      4     seed             hash seed, random per map (keys cannot be chosen to collide)
 *   96      8     defaultTtl       float64 ms, 0 = entries do not expire unless set with a ttl
 *   104     4     stripesOffset    (256)
 *   108     4     bucketsOffset
 *   112     4     entriesOffset
 *   116     12    reserved (zero)
 *   128     4     hand             the allocation / CLOCK hand (uint32, wraps), own cache line
 *   192     4     evictions        counters for inspect (Atomics.add, informational)
 *   196     4     expiredReclaimed
 *   200     4     recoveries       stripes rebuilt after their writer died
 *   256     S*64  stripes, one cache line each:
 *                   +0  lock    robust lock word (src/sync/robust.ts): 0 | owner lifeline token
 *                   +4  seq     bumped after every unlink, before the entry can be reused
 *                   +8  count   live entries of the stripe (expired ones included until reclaimed)
 *   bucketsOffset   B*4     bucket heads: entry index + 1 of the chain's first entry, 0 = empty
 *   entriesOffset   N*entryBytes  entries:
 *                   +0  version  bit 0: which value buffer is current; bit 1: LIVE;
 *                                bits 2-31: a counter bumped by every change of the entry
 *                   +4  owner    stripe index + 1 of the stripe that owns the entry, 0 = free
 *                   +8  next     entry index + 1 of the next entry in the chain, 0 = end
 *                   +12 hash     32-bit hash of the key
 *                   +16 keyLength
 *                   +20 ref      CLOCK reference bit ('lru'): set by reads, cleared by the hand
 *                   +24 reserved (8)
 *                   +32 key      maxKeyBytes rounded up to 8
 *                   then two value buffers, each: +0 expiresAt (float64 ms since the epoch,
 *                   0 = never), +8 length (int32), +12 reserved, +16 value (maxValueBytes
 *                   rounded up to 8)
 *
 * A key hashes to bucket (hash & (B - 1)) and to stripe (hash & (S - 1)): a chain lives in one
 * stripe, and everything a writer changes (chains, the entries they hold, the stripe's words)
 * belongs to the stripe whose lock it holds. The stripe of an entry is its owner word.
 *
 * Protocol (Atomics are sequentially consistent; plain reads are hints that a later atomic
 * re-check validates):
 *
 *   get      walk the chain from the bucket head. For an entry whose hash and length match:
 *            v1 = load version; if LIVE and the key bytes match, copy the current buffer (v1
 *            bit 0), then v2 = load version. v1 == v2 means key and value did not change
 *            during the copy (a writer never writes the current buffer, and every change bumps
 *            the counter): return it unless expired. v1 != v2: start again. An entry is LIVE
 *            only while it is the one linked entry of its key, so a hit needs nothing else,
 *            however the walk reached it. A miss walks again, between s1 = load stripe.seq and
 *            a final load of seq, with atomic loads of head and next: the miss is true only if
 *            seq is still s1 (otherwise an entry we walked through may have been unlinked and
 *            reused elsewhere under us, and we start again). Readers never wait and never
 *            write shared memory (except the 'lru' reference byte).
 *   set      (stripe lock held) an existing entry: write value, length and expiry into the
 *            other buffer, then store version = counter + 1 | LIVE | other buffer: the
 *            linearization point, which publishes the new buffer to the reader whose load of
 *            version sees it. A new key: allocate a free entry (below), write key, hash and
 *            value, link it at the bucket head (store head, which publishes next), then store
 *            version with LIVE: the linearization point. Linking before LIVE matters: a
 *            reader that reaches the entry through a stale pointer sees it not LIVE.
 *   delete   (lock held) store version without LIVE (the linearization point), unlink (store
 *            the predecessor's next or the head), bump stripe.seq, then free the entry
 *            (store owner = 0). The seq bump between unlink and reuse is what lets a reader
 *            that was walking through the entry detect that its miss may be wrong.
 *   allocate (lock of stripe s held) claim a window of 64 positions with one add on hand and
 *            look at each entry (plain reads): a free one is taken with CAS owner 0 -> s + 1.
 *            Without one in the window: an expired entry is reclaimed; with 'lru' the first
 *            entry of the window whose reference bit is clear is evicted (second chance: the
 *            bits of the others are cleared: CLOCK). Reclaiming or evicting an entry of
 *            another stripe t takes t's lock with a try (never waiting while holding s, so two
 *            writers cannot deadlock), deletes it from t and hands it to s (owner = s + 1).
 *            With 'none', after a whole lap without a free or expired entry: IPC_ERR_FULL.
 *
 * Crash recovery (SIGKILL at any instruction): the stripe lock records its owner's lifeline
 * token; the next writer that finds the owner dead takes the lock (robust.ts RECOVERED) and
 * rebuilds the stripe before doing anything else: it walks the stripe's chains and unlinks
 * every entry that is not LIVE (an insert that did not reach its linearization point, a
 * delete that did), bumps seq, then scans all N owner words and frees every entry owned by
 * the stripe that no chain holds (an allocation, eviction or delete cut short), and recounts.
 * A value write cut short touched only the non-current buffer: nothing to undo. The rebuild
 * is idempotent (a recoverer killed while rebuilding is recovered the same way), costs one
 * pass over the owner words (O(N), about a millisecond per 100 000 entries), and readers never
 * need it: they never see a non-LIVE entry or a torn buffer as a value.
 */
import { describeLockWord } from '../sync/robust.js';

export const MAP_VERSION = 1;

/** Byte offsets of the map's own fields. */
export const OFF = {
  capacity: 64,
  bucketCount: 68,
  stripeCount: 72,
  maxKeyBytes: 76,
  maxValueBytes: 80,
  entryBytes: 84,
  flags: 88,
  seed: 92,
  defaultTtl: 96,
  stripesOffset: 104,
  bucketsOffset: 108,
  entriesOffset: 112,
  hand: 128,
  evictions: 192,
  expiredReclaimed: 196,
  recoveries: 200,
} as const;

/** Int32 indices of the same fields. */
export const W = {
  capacity: OFF.capacity >> 2,
  bucketCount: OFF.bucketCount >> 2,
  stripeCount: OFF.stripeCount >> 2,
  maxKeyBytes: OFF.maxKeyBytes >> 2,
  maxValueBytes: OFF.maxValueBytes >> 2,
  entryBytes: OFF.entryBytes >> 2,
  flags: OFF.flags >> 2,
  seed: OFF.seed >> 2,
  stripesOffset: OFF.stripesOffset >> 2,
  bucketsOffset: OFF.bucketsOffset >> 2,
  entriesOffset: OFF.entriesOffset >> 2,
  hand: OFF.hand >> 2,
  evictions: OFF.evictions >> 2,
  expiredReclaimed: OFF.expiredReclaimed >> 2,
  recoveries: OFF.recoveries >> 2,
} as const;

export const STRIPES_OFFSET = 256;
export const STRIPE_BYTES = 64;
/** Int32 offsets inside a stripe. */
export const S_LOCK = 0;
export const S_SEQ = 1;
export const S_COUNT = 2;

/** Int32 offsets inside an entry. */
export const E_VERSION = 0;
export const E_OWNER = 1;
export const E_NEXT = 2;
export const E_HASH = 3;
export const E_KEYLEN = 4;
/** Byte offset of the reference byte. */
export const E_REF_BYTE = 20;
export const ENTRY_HEADER_BYTES = 32;
export const BUFFER_HEADER_BYTES = 16;

/** Version word bits. */
export const V_BUFFER = 1;
export const V_LIVE = 2;
export const V_STEP = 4;

export const FLAG_LRU = 1;

export const MAX_CAPACITY = 2 ** 27;
export const MAX_STRIPES = 1024;
export const MAX_KEY_BYTES = 65536;
/** Every byte offset stays a non-negative int32, so that offset arithmetic is exact with bit operations. */
export const MAX_BYTE_LENGTH = 2 ** 31 - 64;
export const DEFAULT_MAX_KEY_BYTES = 256;
export const DEFAULT_MAX_VALUE_BYTES = 1024;

export type Eviction = 'lru' | 'none';

export interface MapGeometry {
  byteLength: number;
  capacity: number;
  bucketCount: number;
  stripeCount: number;
  maxKeyBytes: number;
  maxValueBytes: number;
  /** maxKeyBytes and maxValueBytes rounded up to 8. */
  keyBytes: number;
  valueBytes: number;
  entryBytes: number;
  eviction: Eviction;
  defaultTtl: number;
  bucketsOffset: number;
  entriesOffset: number;
}

const align = (n: number, to: number): number => Math.ceil(n / to) * to;
const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Bytes of one entry for these limits. */
export function entryBytesFor(maxKeyBytes: number, maxValueBytes: number): number {
  return ENTRY_HEADER_BYTES + align(maxKeyBytes, 8) + 2 * (BUFFER_HEADER_BYTES + align(maxValueBytes, 8));
}

/** The geometry of a new map (arguments already checked as integers in range). */
export function geometry(capacity: number, maxKeyBytes: number, maxValueBytes: number, eviction: Eviction, defaultTtl: number, where: string): MapGeometry {
  const stripeCount = Math.min(MAX_STRIPES, nextPow2(capacity));
  const bucketCount = Math.max(stripeCount, nextPow2(capacity));
  const keyBytes = align(maxKeyBytes, 8);
  const valueBytes = align(maxValueBytes, 8);
  const entryBytes = entryBytesFor(maxKeyBytes, maxValueBytes);
  const bucketsOffset = STRIPES_OFFSET + stripeCount * STRIPE_BYTES;
  const entriesOffset = align(bucketsOffset + bucketCount * 4, 64);
  const byteLength = entriesOffset + capacity * entryBytes;
  if (byteLength > MAX_BYTE_LENGTH) {
    throw new RangeError(
      `${where}: ${capacity} entries of ${entryBytes} bytes (maxKeyBytes ${maxKeyBytes}, maxValueBytes ${maxValueBytes}, two value buffers each) need ${byteLength} bytes, more than the ${MAX_BYTE_LENGTH} a map can have`,
    );
  }
  return { byteLength, capacity, bucketCount, stripeCount, maxKeyBytes, maxValueBytes, keyBytes, valueBytes, entryBytes, eviction, defaultTtl, bucketsOffset, entriesOffset };
}

/** Writes the map's fields; entries, buckets and stripes start zeroed (free, empty, unlocked). */
export function initMap(buffer: SharedArrayBuffer, g: MapGeometry): void {
  const i32 = new Int32Array(buffer, 0, STRIPES_OFFSET >> 2);
  i32[W.capacity] = g.capacity;
  i32[W.bucketCount] = g.bucketCount;
  i32[W.stripeCount] = g.stripeCount;
  i32[W.maxKeyBytes] = g.maxKeyBytes;
  i32[W.maxValueBytes] = g.maxValueBytes;
  i32[W.entryBytes] = g.entryBytes;
  i32[W.flags] = g.eviction === 'lru' ? FLAG_LRU : 0;
  i32[W.seed] = (Math.random() * 2 ** 32) | 0;
  new Float64Array(buffer, OFF.defaultTtl, 1)[0] = g.defaultTtl;
  i32[W.stripesOffset] = STRIPES_OFFSET;
  i32[W.bucketsOffset] = g.bucketsOffset;
  i32[W.entriesOffset] = g.entriesOffset;
  // Published by publishHeader's release store of the header's state word.
}

const isPow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/**
 * Reads and checks the geometry of an opened map: a corrupt or foreign segment must not make
 * us index outside the buffer. Returns a reason when it does not add up.
 */
export function readGeometry(buffer: SharedArrayBuffer): MapGeometry | string {
  if (buffer.byteLength < STRIPES_OFFSET) return `byteLength ${buffer.byteLength} is smaller than the map header (${STRIPES_OFFSET})`;
  const i32 = new Int32Array(buffer, 0, STRIPES_OFFSET >> 2);
  const capacity = i32[W.capacity]!;
  const bucketCount = i32[W.bucketCount]!;
  const stripeCount = i32[W.stripeCount]!;
  const maxKeyBytes = i32[W.maxKeyBytes]!;
  const maxValueBytes = i32[W.maxValueBytes]!;
  const entryBytes = i32[W.entryBytes]!;
  const flags = i32[W.flags]!;
  const defaultTtl = new Float64Array(buffer, OFF.defaultTtl, 1)[0]!;
  if (capacity < 1 || capacity > MAX_CAPACITY) return `capacity ${capacity} is out of range`;
  if (!isPow2(stripeCount) || stripeCount > MAX_STRIPES) return `stripeCount ${stripeCount} is not a power of two <= ${MAX_STRIPES}`;
  if (!isPow2(bucketCount) || bucketCount < stripeCount || bucketCount < capacity) return `bucketCount ${bucketCount} does not fit capacity ${capacity}`;
  if (maxKeyBytes < 1 || maxKeyBytes > MAX_KEY_BYTES) return `maxKeyBytes ${maxKeyBytes} is out of range`;
  if (maxValueBytes < 0 || maxValueBytes > MAX_BYTE_LENGTH) return `maxValueBytes ${maxValueBytes} is out of range`;
  if (entryBytes !== entryBytesFor(maxKeyBytes, maxValueBytes)) return `entryBytes ${entryBytes} does not match the key and value limits`;
  if ((flags & ~FLAG_LRU) !== 0) return `flags ${flags} has unknown bits`;
  if (!(defaultTtl >= 0) || !Number.isFinite(defaultTtl)) return `defaultTtl ${defaultTtl} is not a number of ms >= 0`;
  let g: MapGeometry;
  try {
    g = geometry(capacity, maxKeyBytes, maxValueBytes, flags & FLAG_LRU ? 'lru' : 'none', defaultTtl, 'map');
  } catch (err) {
    return (err as Error).message;
  }
  if (i32[W.stripesOffset] !== STRIPES_OFFSET || i32[W.bucketsOffset] !== g.bucketsOffset || i32[W.entriesOffset] !== g.entriesOffset) {
    return 'section offsets do not match the geometry';
  }
  if (g.byteLength !== buffer.byteLength) return `${capacity} entries need ${g.byteLength} bytes, the segment has ${buffer.byteLength}`;
  return g;
}

/**
 * A map's numbers for `interprocess ls` / `inspect`, read only (no handle, no lock): plug into
 * src/cli/kinds.ts as [Kind.Map, describeMap]. Held stripe locks are listed with whether their
 * owners live (the kernel's answer, through a lifeline on the map).
 */
export function describeMap(buffer: SharedArrayBuffer): Record<string, unknown> {
  const g = readGeometry(buffer);
  if (typeof g === 'string') return { error: g };
  const i32 = new Int32Array(buffer, 0, g.bucketsOffset >> 2);
  let entries = 0;
  const locks: Record<string, unknown>[] = [];
  for (let s = 0; s < g.stripeCount; s++) {
    const base = (STRIPES_OFFSET + s * STRIPE_BYTES) >> 2;
    entries += Atomics.load(i32, base + S_COUNT);
    const word = Atomics.load(i32, base + S_LOCK);
    if (word !== 0) locks.push({ stripe: s, ...describeLockWord(word, buffer) });
  }
  return {
    entries,
    capacity: g.capacity,
    maxKeyBytes: g.maxKeyBytes,
    maxValueBytes: g.maxValueBytes,
    eviction: g.eviction,
    ...(g.defaultTtl > 0 ? { ttl: g.defaultTtl } : {}),
    bytesPerEntry: Math.round((g.byteLength / g.capacity) * 10) / 10,
    stripes: g.stripeCount,
    locksHeld: locks.length,
    ...(locks.length > 0 ? { locks } : {}),
    evictions: Atomics.load(i32, W.evictions) >>> 0,
    expiredReclaimed: Atomics.load(i32, W.expiredReclaimed) >>> 0,
    recoveries: Atomics.load(i32, W.recoveries) >>> 0,
  };
}

