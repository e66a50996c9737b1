/**
 * Topic layout: a multicast ring (the LMAX Disruptor's shape: one ring of fixed-size slots, a
 * global claim sequence, a gating cursor per subscriber) with per-slot seqlock versions (as
 * Agrona's broadcast buffer validates a lapped receiver) and kernel-checked slot owners.
 *
 * Contract: bounded, many publishers, many subscribers (processes and threads); every subscriber
 * sees the messages of the topic in one global order (the order positions were claimed); with
 * overflow 'block' nothing is lost (publishers wait for the slowest live subscriber), with
 * 'overwrite' publishers never wait for subscribers and a subscriber that falls a lap behind
 * skips to the oldest retained message, counting what it skipped.
 *
 * Byte layout (offsets from the start of the segment; hot words on cache lines of their own):
 *
 *   offset  size  field
 *   0       64    common header (src/shm/header.ts): magic, kind = Topic (9), version, state...
 *   64      4     capacity            number of slots, a power of two in [2, 2^30]
 *   68      4     slotBytes           bytes per slot, a multiple of 16, >= 16 + maxMessageSize
 *   72      4     maxMessageSize      largest message a publish accepts (bytes)
 *   76      4     overflow            0 = 'block', 1 = 'overwrite'
 *   80      4     maxSubscribers      entries in the subscriber table
 *   84      4     publisherEntries    entries in the publisher roster (ROSTER_ENTRIES)
 *   88      4     subscribersOffset   where the subscriber table starts (512)
 *   92      4     publishersOffset    where the publisher roster starts
 *   96      4     slotsOffset         where slot 0 starts (a multiple of 64)
 *   100     4     ownersOffset        where the slot owner table starts (after the roster)
 *   104     4     exclusive           1: one publisher at a time (exclusivePublisher), 0: many
 *   128     4     tail                next position to claim (int32, wraps). A hint that only
 *                                     grows: the slot's owner word arbitrates claims
 *   192     4     gate                'block': a lower bound of every live subscriber's position
 *                                     published by the last publisher that scanned the table
 *   196     4     subscriberHigh      1 + highest subscriber entry ever used (scans stop there)
 *   200     4     publisher           'exclusive': token of the thread that publishes, 0 if none
 *   204     4     publisherPid        its pid (informational, inspect)
 *   208     4     publisherHandle     which of that thread's handles (ring.ts; two handles of one
 *                                     thread share its token)
 *   256     4     dataEvents          futex word of waiters for a commit (subscribers, and
 *                                     publishers waiting for a slot another publisher holds)
 *   260     4     dataSleepers        how many sleep on dataEvents
 *   320     4     spaceEvents         futex word of publishers waiting for subscribers ('block')
 *   324     4     spaceSleepers
 *   384     4     skippedRecords      claims of dead publishers turned into padding
 *   388     4     freedSubscribers    entries of dead subscribers freed by publishers
 *   392     4     livenessChecks      times a waiter asked the kernel whether a holder lives
 *   512     64 x maxSubscribers   the subscriber table, one cache line per entry:
 *                   +0  state     0 free; token | JOINING while it joins; token once it gates
 *                                 (the lifeline token of the subscribing thread)
 *                   +4  position  next position it reads; published now and then (below)
 *                   +8  pid       informational (inspect)
 *                   +12 missed    informational, modulo 2^32
 *                   +16 received  informational, modulo 2^32, published with the position
 *   ...     64 x 64   the publisher roster (for inspect only; nothing waits on it):
 *                   +0  state     token of the publishing thread, 0 free
 *                   +4  pid
 *                   +8  published messages published by that handle, modulo 2^32 (plain store)
 *   ownersOffset 4 x capacity   the owner table, one int32 per slot (slot i's at ownersOffset + 4i):
 *                   owner         token of the thread that holds slot i (claims, writes or
 *                                 reclaims it), 0 if none. Apart from the slots on purpose: a
 *                                 publisher's lock and unlock never touch the cache line a
 *                                 subscriber is polling (see "Why the owners are a table")
 *   slotsOffset  capacity slots of slotBytes each:
 *                   +0  seq       lap(q) when position q is committed, lap(q) | 1 while q is
 *                                 being written, where lap(q) = q & ~(capacity - 1); the slot
 *                                 index gives the low bits back. Initially lap(i - capacity):
 *                                 a committed padding record one lap before position 0
 *                   +4  reserved  (the owner word of layout version 1)
 *                   +8  length    payload bytes, or SKIP (-1): padding, delivered to no one
 *                   +12 reserved
 *                   +16 payload   (up to slotBytes - 16 bytes)
 *
 * Why the owners are a table (layout version 2): with the owner word in the slot's header, a
 * publish wrote the line a caught-up subscriber polls three times (the owner CAS, the commit,
 * the owner's release) and each locked write waited for the line to come back from the
 * subscriber's core; a 64 B message then cost ~1.7x the queue's between two processes. In a
 * table of their own (16 per line), owner words are written by publishers only and read by a
 * subscriber only when it is held up; the slot line takes the "writing" store, the payload and
 * the commit, as the queue's takes its payload and commit. "owner of slot i" below means
 * the table's word i; the protocol is the same as version 1's.
 *
 * An exclusive publisher (layout version 3; Aeron's exclusive publication): a topic created
 * with exclusivePublisher admits one publishing thread at a time, recorded in `publisher` (CAS
 * 0 or a dead token -> its token, at its first publish; back to 0 when its handle closes).
 * Nobody else claims slots then, so on x86 that publisher takes steps 2 and 4 below with plain
 * stores (owner, tail, "writing") when the slot is free and its owner word 0, in the same
 * order, and makes the commit of step 5 a plain store too where this process is registered for
 * membarrier(2) (src/os/fence.ts): a publish then has no locked instruction, so it never waits
 * for its stores to reach lines a subscriber's core holds. What that moves elsewhere:
 *   - a subscriber about to sleep on dataEvents runs a global barrier (membarrier) after its
 *     increment of dataSleepers and before its re-check, which step 6's plain load pairs with;
 *   - a publisher's scan moves the tail with a seq-cst RMW (tail + 0) before it reads the
 *     subscriber table, so that a joiner that loads the tail after its state store sees it;
 *   - recovery is unchanged: a reclaimer CASes only an owner word holding a dead token, and
 *     the publisher stores its token plainly only into an owner word that is 0, so the two
 *     never race; a slot a dead publisher held is recovered by the ordinary steps (a new
 *     publisher that finds a non-zero owner word or a slot that is not free takes the CAS path).
 *
 * Positions are 32-bit and wrap; they are compared by signed difference only ((a - b) | 0),
 * exact while fewer than 2^31 positions separate them. Every Atomics call is sequentially
 * consistent, which is what each pairing below relies on.
 *
 * Protocol:
 *
 *   publish p (p from the handle's last known tail; a stale p only costs a retry)
 *     1. 'block' only: p - gate < capacity, else rescan the subscriber table (below).
 *     2. CAS owner 0 -> token: the slot LOCK, taken before anything else so that whoever holds
 *        the slot is always recorded (a publisher killed at any instruction after this leaves
 *        its token, and the kernel says when that token dies).
 *     3. load seq: == lap(p - capacity) (committed, previous lap) means p is free: go on.
 *        Otherwise unlock (store owner 0): p is taken (seq shows lap(p): help CAS tail p -> p + 1
 *        and retry at the new tail; a later lap: p is stale, retry at the tail), or the previous
 *        lap is still held (a publisher writing p - capacity, or one about to claim p: retry,
 *        wait, or ask the kernel about its owner). A retry loads owner before it CASes.
 *     4. store seq = lap(p) | 1 ("writing p"; plain), then CAS tail p -> p + 1: the CAS is the
 *        fence that makes "writing" visible before any payload store, on every CPU. On CPUs
 *        that keep stores in order (x86; ring.ts MOVE_FIRST) the other way round: CAS tail
 *        p -> p + 1 (it cannot fail: nobody else moves the tail from p while p's slot is locked
 *        and unmarked), then the plain "writing" store, ordered before the payload by the CPU.
 *        No locked instruction then comes between the mark and the commit, so the slot's line
 *        (which a caught-up subscriber polls) changes hands once per publish, as the queue's.
 *     5. payload, length (plain stores), then store seq = lap(p): the COMMIT, written last,
 *        which publishes them to a subscriber whose load of seq sees lap(p). Then owner = 0
 *        (plain: a claimer that sees it early still re-checks seq under its own lock).
 *     6. load dataSleepers; only if non-zero bump dataEvents and wake them all.
 *
 *   receive r (the subscriber's own cursor; reads never write the slot)
 *     load seq: lap(r) -> committed: read length and payload; padding is skipped silently.
 *     Copies that might be overwritten while they are made (every copy with 'overwrite', and a
 *     late joiner's history, below) are validated seqlock-style: the copy counts only if seq
 *     still reads lap(r) afterwards (a reader fence first on CPUs that reorder loads).
 *     lap(r) | 1 or an earlier lap -> nothing yet at r. A later lap -> lapped: jump to
 *     tail - capacity (the oldest retained position), adding the positions skipped to missed.
 *
 *   gating ('block')
 *     A subscriber stores its position (release: every read before it is done) every
 *     min(64, capacity / 4) messages, whenever it finds nothing to read (so before it sleeps,
 *     and when a publisher of its own thread is held back); then, if
 *     spaceSleepers is non-zero, bumps spaceEvents and wakes the publishers. A publisher that
 *     runs out of gate scans: it loads tail FIRST, then every gating entry, and publishes
 *     min(tail, positions) as the gate. Lazily published positions only make the gate lower
 *     (publishers wait a little early), never let a slot be overwritten before it is read.
 *
 *   joining
 *     CAS state 0 -> token | JOINING (entries being joined do not gate), raise subscriberHigh,
 *     store position r0 (the current tail for 'next', tail - capacity for 'oldest'), store
 *     state = token, then load tail again: joinTail. A scan that missed the new entry loaded
 *     tail before the entry gated, so its gate is <= joinTail and its publishers cannot reach
 *     position joinTail + capacity: everything from joinTail on is safe. The retained history
 *     before joinTail (from 'oldest') is read with validation and may shrink under the reader
 *     until the publishers' gates include it; what it loses there was published before the
 *     subscriber existed and is not counted as missed.
 *
 *   waking: a sleeper increments its *Sleepers count, reads the *Events word, tries again, and
 *   futex-waits on the word it read; the waker changes the state, then reads the count and
 *   only if non-zero bumps the word and wakes all. Both orders are seq-cst: no lost wake-up,
 *   and no system call while no one sleeps. A killed sleeper leaves the count high, which costs
 *   wakers a system call, never a lost wake-up.
 *
 * Crash recovery (SIGKILL at any instruction; liveness is the kernel's answer, never a clock's):
 *
 *   - A slot whose owner word holds a token whose thread is dead is reclaimed by whoever is held
 *     up by it: CAS owner dead -> own token (exactly one reclaimer wins, and a dead owner can
 *     never come back), then, if seq reads "writing q", store length = SKIP and seq = lap(q):
 *     the half-written record becomes padding that no one delivers (skippedRecords); then
 *     owner = 0 and a wake-up. With MOVE_FIRST a claimer can also die between its tail CAS and
 *     its mark: seq still reads the previous lap, and the tail is past q = that lap's position
 *     + capacity (no one else can move the tail past q while the slot is held), so the same
 *     padding is written for q. A subscriber at q is held up by it like by a writer: it looks
 *     at the owner when the tail is past q (before it sleeps, and on its liveness looks). A lock
 *     taken before step 4 or left after step 5 is just unlocked.
 *   - A paused owner (SIGSTOP) is alive: its slot is never taken from it. Everyone behind it
 *     waits until it resumes (the price of one global order), and it then finds its slot as it
 *     left it, so nothing is lost, duplicated or torn.
 *   - A dead subscriber's entry stops gating once a publisher that is held up by it finds its
 *     token dead: CAS state token -> 0 (freedSubscribers). A subscriber that closes clears its
 *     entry itself and wakes waiting publishers.
 *   - Waiters held up by another participant wake at least every livenessInterval ms to ask the
 *     kernel again; the interval only decides when to ask, never what is decided.
 */
import { openLifeline } from '../os/lifeline.js';

export const TOPIC_VERSION = 3;

/** Int32 indices of the topic's own fields (byte offset / 4). */
export const W = {
  capacity: 64 >> 2,
  slotBytes: 68 >> 2,
  maxMessageSize: 72 >> 2,
  overflow: 76 >> 2,
  maxSubscribers: 80 >> 2,
  publisherEntries: 84 >> 2,
  subscribersOffset: 88 >> 2,
  publishersOffset: 92 >> 2,
  slotsOffset: 96 >> 2,
  ownersOffset: 100 >> 2,
  exclusive: 104 >> 2,
  tail: 128 >> 2,
  gate: 192 >> 2,
  subscriberHigh: 196 >> 2,
  publisher: 200 >> 2,
  publisherPid: 204 >> 2,
  publisherHandle: 208 >> 2,
  dataEvents: 256 >> 2,
  dataSleepers: 260 >> 2,
  spaceEvents: 320 >> 2,
  spaceSleepers: 324 >> 2,
  skippedRecords: 384 >> 2,
  freedSubscribers: 388 >> 2,
  livenessChecks: 392 >> 2,
} as const;

export const SUBSCRIBERS_OFFSET = 512;
export const ENTRY_BYTES = 64;
/** Int32 offsets inside a subscriber entry. */
export const SUB_STATE = 0;
export const SUB_POSITION = 1;
export const SUB_PID = 2;
export const SUB_MISSED = 3;
export const SUB_RECEIVED = 4;
/** Int32 offsets inside a publisher roster entry. */
export const PUB_STATE = 0;
export const PUB_PID = 1;
export const PUB_PUBLISHED = 2;
/** Set in a subscriber's state while it joins: such an entry does not gate publishers. */
export const JOINING = 1 << 28;
/** Lifeline tokens are below 2^28 (src/os/lifeline.ts). */
export const TOKEN_MASK = JOINING - 1;
/** Publishers listed by `inspect`; more may publish, unlisted. */
export const ROSTER_ENTRIES = 64;

export const SLOT_HEADER_BYTES = 16;
/** Int32 offsets inside a slot. */
export const SLOT_SEQ = 0;
export const SLOT_LENGTH = 2;
/** The length of a padding record: the slot carries no message. */
export const SKIP = -1;

export type Overflow = 'block' | 'overwrite';
export const OVERFLOWS: readonly Overflow[] = ['block', 'overwrite'];

export const DEFAULT_CAPACITY = 1024;
export const DEFAULT_MAX_MESSAGE_SIZE = 4096;
export const DEFAULT_MAX_SUBSCRIBERS = 64;
export const MAX_CAPACITY = 2 ** 30;
export const MAX_MESSAGE_SIZE_LIMIT = 2 ** 30;
export const MAX_SUBSCRIBERS_LIMIT = 4096;

export interface TopicGeometry {
  byteLength: number;
  capacity: number;
  slotBytes: number;
  maxMessageSize: number;
  overflow: Overflow;
  maxSubscribers: number;
  /** One publishing thread at a time (layout.ts, "An exclusive publisher"). */
  exclusivePublisher: boolean;
  publishersOffset: number;
  ownersOffset: number;
  slotsOffset: number;
}

const align = (n: number, to: number): number => Math.ceil(n / to) * to;
const isPow2 = (n: number): boolean => n >= 2 && (n & (n - 1)) === 0;

/** The geometry of a new topic (arguments already checked for type and range). */
export function geometry(
  capacity: number,
  maxMessageSize: number,
  overflow: Overflow,
  maxSubscribers: number,
  exclusivePublisher: boolean,
  where: string,
): TopicGeometry {
  if (!isPow2(capacity) || capacity > MAX_CAPACITY) throw new RangeError(`${where}: capacity must be a power of two in [2, 2^30], got ${capacity}`);
  const slotBytes = align(SLOT_HEADER_BYTES + maxMessageSize, 16);
  const publishersOffset = SUBSCRIBERS_OFFSET + maxSubscribers * ENTRY_BYTES;
  const ownersOffset = publishersOffset + ROSTER_ENTRIES * ENTRY_BYTES;
  const slotsOffset = align(ownersOffset + capacity * 4, 64);
  return {
    byteLength: slotsOffset + capacity * slotBytes,
    capacity,
    slotBytes,
    maxMessageSize,
    overflow,
    maxSubscribers,
    exclusivePublisher,
    publishersOffset,
    ownersOffset,
    slotsOffset,
  };
}

/** Writes the topic's fields and every slot's initial state (committed padding a lap before 0). */
export function initTopic(buffer: SharedArrayBuffer, g: TopicGeometry): void {
  const i32 = new Int32Array(buffer);
  i32[W.capacity] = g.capacity;
  i32[W.slotBytes] = g.slotBytes;
  i32[W.maxMessageSize] = g.maxMessageSize;
  i32[W.overflow] = g.overflow === 'overwrite' ? 1 : 0;
  i32[W.maxSubscribers] = g.maxSubscribers;
  i32[W.publisherEntries] = ROSTER_ENTRIES;
  i32[W.subscribersOffset] = SUBSCRIBERS_OFFSET;
  i32[W.publishersOffset] = g.publishersOffset;
  i32[W.ownersOffset] = g.ownersOffset;
  i32[W.slotsOffset] = g.slotsOffset;
  i32[W.exclusive] = g.exclusivePublisher ? 1 : 0;
  const slotInts = g.slotBytes >> 2;
  const first = g.slotsOffset >> 2;
  for (let i = 0; i < g.capacity; i++) {
    i32[first + i * slotInts + SLOT_SEQ] = -g.capacity; // lap(i - capacity)
    i32[first + i * slotInts + SLOT_LENGTH] = SKIP;
  }
  // Owner words start at 0 (a new segment is zero-filled). Published by publishHeader's store of the header's state word.
}

/**
 * Reads and checks the geometry of an opened topic: a corrupt or foreign segment must not make
 * anyone index outside the buffer. Returns a reason when it does not add up.
 */
export function readGeometry(buffer: SharedArrayBuffer): TopicGeometry | string {
  if (buffer.byteLength < SUBSCRIBERS_OFFSET) return `byteLength ${buffer.byteLength} is smaller than the topic header (${SUBSCRIBERS_OFFSET})`;
  const i32 = new Int32Array(buffer, 0, SUBSCRIBERS_OFFSET >> 2);
  const capacity = i32[W.capacity]! >>> 0;
  const slotBytes = i32[W.slotBytes]! >>> 0;
  const maxMessageSize = i32[W.maxMessageSize]! >>> 0;
  const overflow = i32[W.overflow]!;
  const maxSubscribers = i32[W.maxSubscribers]! >>> 0;
  const exclusive = i32[W.exclusive]!;
  if (!isPow2(capacity) || capacity > MAX_CAPACITY) return `capacity ${capacity} is not a power of two in [2, 2^30]`;
  if (slotBytes % 16 !== 0 || slotBytes < SLOT_HEADER_BYTES) return `slotBytes ${slotBytes} is not a multiple of 16`;
  if (maxMessageSize < 1 || maxMessageSize > slotBytes - SLOT_HEADER_BYTES) return `maxMessageSize ${maxMessageSize} does not fit slots of ${slotBytes} bytes`;
  if (overflow !== 0 && overflow !== 1) return `overflow is ${overflow}, expected 0 or 1`;
  if (maxSubscribers < 1 || maxSubscribers > MAX_SUBSCRIBERS_LIMIT) return `maxSubscribers ${maxSubscribers} is outside [1, ${MAX_SUBSCRIBERS_LIMIT}]`;
  if (exclusive !== 0 && exclusive !== 1) return `exclusive is ${exclusive}, expected 0 or 1`;
  const g = geometry(capacity, maxMessageSize, overflow === 1 ? 'overwrite' : 'block', maxSubscribers, exclusive === 1, 'topic');
  // The slots are as wide as the creator made them (spare bytes in the last 16 are allowed).
  // Checked first: the offsets below grow with the capacity (the owner table), and a capacity
  // the segment cannot hold is the clearer reason.
  g.slotBytes = slotBytes;
  g.byteLength = g.slotsOffset + capacity * slotBytes;
  if (g.byteLength > buffer.byteLength) return `${capacity} slots of ${slotBytes} bytes do not fit in ${buffer.byteLength} bytes`;
  if (i32[W.publisherEntries] !== ROSTER_ENTRIES) return `publisherEntries is ${i32[W.publisherEntries]}, expected ${ROSTER_ENTRIES}`;
  if (i32[W.subscribersOffset] !== SUBSCRIBERS_OFFSET) return `subscribersOffset is ${i32[W.subscribersOffset]}, expected ${SUBSCRIBERS_OFFSET}`;
  if (i32[W.publishersOffset] !== g.publishersOffset) return `publishersOffset is ${i32[W.publishersOffset]}, expected ${g.publishersOffset}`;
  if (i32[W.ownersOffset] !== g.ownersOffset) return `ownersOffset is ${i32[W.ownersOffset]}, expected ${g.ownersOffset}`;
  if (i32[W.slotsOffset] !== g.slotsOffset) return `slotsOffset is ${i32[W.slotsOffset]}, expected ${g.slotsOffset}`;
  g.byteLength = buffer.byteLength;
  return g;
}


/**
 * A topic's state for `interprocess ls` / `inspect`, read only (no handle): plug into
 * src/cli/kinds.ts as [Kind.Topic, describeTopic]. Lists every subscriber with how far behind
 * the tail it is and whether its thread lives (the kernel's answer), and the publishers.
 */
export function describeTopic(buffer: SharedArrayBuffer): Record<string, unknown> {
  const g = readGeometry(buffer);
  if (typeof g === 'string') return { error: g };
  const i32 = new Int32Array(buffer);
  const lifeline = openLifeline(buffer);
  try {
    const tail = Atomics.load(i32, W.tail);
    const subscribers: Record<string, unknown>[] = [];
    const high = Math.min(g.maxSubscribers, Atomics.load(i32, W.subscriberHigh));
    for (let i = 0; i < high; i++) {
      const e = (SUBSCRIBERS_OFFSET >> 2) + i * (ENTRY_BYTES >> 2);
      const state = Atomics.load(i32, e + SUB_STATE);
      if (state === 0) continue;
      const position = Atomics.load(i32, e + SUB_POSITION);
      subscribers.push({
        entry: i,
        pid: Atomics.load(i32, e + SUB_PID),
        alive: lifeline.isAlive(state & TOKEN_MASK),
        ...(state & JOINING ? { joining: true } : {}),
        behind: Math.max(0, (tail - position) | 0),
        received: Atomics.load(i32, e + SUB_RECEIVED) >>> 0,
        missed: Atomics.load(i32, e + SUB_MISSED) >>> 0,
      });
    }
    const publishers: Record<string, unknown>[] = [];
    for (let i = 0; i < ROSTER_ENTRIES; i++) {
      const e = (g.publishersOffset >> 2) + i * (ENTRY_BYTES >> 2);
      const state = Atomics.load(i32, e + PUB_STATE);
      if (state === 0) continue;
      publishers.push({ pid: Atomics.load(i32, e + PUB_PID), alive: lifeline.isAlive(state), published: Atomics.load(i32, e + PUB_PUBLISHED) >>> 0 });
    }
    const alive = subscribers.filter((x) => x['alive'] === true);
    const holder = Atomics.load(i32, W.publisher);
    // The first three scalars are what `interprocess ls` shows.
    return {
      published: tail >>> 0,
      subscribersAlive: alive.length,
      slowestBehind: Math.max(0, ...alive.map((x) => x['behind'] as number)),
      capacity: g.capacity,
      maxMessageSize: g.maxMessageSize,
      overflow: g.overflow,
      exclusivePublisher: g.exclusivePublisher,
      ...(holder !== 0 ? { exclusiveHolder: { pid: Atomics.load(i32, W.publisherPid), alive: lifeline.isAlive(holder) } } : {}),
      subscribers,
      publishers,
      skippedRecords: Atomics.load(i32, W.skippedRecords) >>> 0,
      freedSubscribers: Atomics.load(i32, W.freedSubscribers) >>> 0,
      dataSleepers: Atomics.load(i32, W.dataSleepers),
      spaceSleepers: Atomics.load(i32, W.spaceSleepers),
    };
  } finally {
    lifeline.close();
  }
}
