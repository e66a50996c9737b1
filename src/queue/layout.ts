/**
 * Queue layout: Vyukov's bounded MPMC queue (per-slot sequence numbers) over fixed-capacity
 * slots in shared memory, with crash recovery of abandoned slots.
 *
 * Contract: bounded, many producers, many consumers (processes and threads), variable-size
 * messages up to maxMessageSize, FIFO per producer, each message delivered to at most one
 * receiver, and exactly once unless that receiver is killed while taking it.
 *
 * Byte layout (offsets from the start of the segment; every hot word on its own cache line so
 * producers and consumers do not false-share):
 *
 *   offset  size  field
 *   0       64    common header (src/shm/header.ts): magic, kind = Queue (6), version, state...
 *   64      4     capacity          number of slots, a power of two >= 2
 *   68      4     slotBytes         bytes per slot, a multiple of 16, >= 16 + maxMessageSize
 *   72      4     maxMessageSize    largest message a send accepts (bytes)
 *   76      4     slotsOffset       where slot 0 starts (512)
 *   80      48    reserved (zero)
 *   128     4     tail              next position a producer claims (uint32, wraps)
 *   192     4     head              next position a consumer claims (uint32, wraps)
 *   256     4     dataEvents        futex word receivers sleep on; bumped only if one sleeps
 *   260     4     receiversSleeping receivers (sync or async) between "I sleep" and "I woke"
 *   320     4     spaceEvents       futex word senders sleep on; bumped only if one sleeps
 *   324     4     sendersSleeping
 *   384     4     skippedRecords    records reclaimed from producers that died before commit
 *   388     4     reclaimedSlots    slots reclaimed from consumers that died while receiving
 *   512     ...   capacity slots of slotBytes each:
 *                   +0  seq     Vyukov sequence (uint32, wraps): == pos free for the producer
 *                               of position pos; == pos + 1 committed; == pos + capacity
 *                               released (free for the next lap)
 *                   +4  owner   lifeline token (src/sync/lifeline.ts) of the thread working
 *                               on the slot right now, 0 if none
 *                   +8  length  payload bytes, or SKIP (0xffffffff) for a record to drop
 *                   +12 reserved
 *                   +16 payload (up to slotBytes - 16 bytes)
 *
 * Positions are 32-bit and wrap; they are only ever compared by signed difference
 * ((a - b) | 0), which is exact while fewer than 2^31 positions separate them. The slot of a
 * position is pos & (capacity - 1), exact across the wrap because capacity divides 2^32.
 *
 * Protocol (all Atomics are sequentially consistent, which is what the pairing relies on):
 *
 *   (pos below starts from the handle's last known tail/head, not a fresh read: the CAS on the
 *   shared index decides every claim, and a stale pos only costs a retry; see ring.ts.)
 *   send     pos = tail; if slot.seq == pos, CAS tail pos -> pos + 1 claims it (if seq is
 *            behind, the queue is full). Store owner = token, write payload and length (plain
 *            stores), store owner = 0, then CAS seq pos -> pos + 1: the COMMIT, written last,
 *            which publishes payload and length to the consumer whose acquire load of seq sees
 *            pos + 1. If that CAS fails, the slot was reclaimed (below): nothing was delivered,
 *            and the send starts again at a new position.
 *   receive  pos = head; if slot.seq == pos + 1, CAS head pos -> pos + 1 claims it. Store
 *            owner = token, copy the payload out, store owner = 0, then CAS seq pos + 1 ->
 *            pos + capacity: the RELEASE, which hands the slot to the next lap's producer
 *            (paired with its load of seq). If that CAS fails, the slot was reclaimed while we
 *            copied, so the copy may be torn: it is discarded and the receive starts again.
 *   batches  a producer (consumer) that sees k consecutive free (committed) slots claims them
 *            with one CAS of tail (head) by k, then commits (releases) each slot on its own,
 *            in order. Nothing else changes: each slot still has its own commit word.
 *   wake     a sleeper increments its *Sleeping count, reads the *Events word, re-checks the
 *            queue, and futex-waits on the word it read. The other side, after its commit or
 *            release, reads the count and, only if it is non-zero, bumps the word and wakes.
 *            Both orders are seq-cst, so either the waker sees the sleeper or the sleeper sees
 *            the new state: no lost wake-up, and no system call when no one sleeps. A
 *            waker wakes one sleeper per record committed (slot released), not all.
 *
 * Crash recovery (SIGKILL at any instruction):
 *
 *   - A producer killed between claim and commit leaves tail past a slot whose seq is still
 *     pos. A consumer that sees the same head position stuck like this for stallTimeout ms,
 *     with owner 0 or owner a dead thread, reclaims it: CAS head pos -> pos + 1, store owner
 *     0, CAS seq pos -> pos + capacity. The half-written record is never delivered. (If the
 *     producer did commit in between, the reclaimer owns a committed record and delivers it.)
 *   - A consumer killed between claim and release leaves head past a slot whose seq is still
 *     pos + 1 of the previous lap. A producer that sees the same tail position stuck like this
 *     for stallTimeout ms, with owner 0 or dead, reclaims it: store owner 0, CAS seq to the
 *     free value. The message that consumer was taking is lost (at most one per killed
 *     consumer), never delivered twice.
 *   - Liveness comes from the kernel, never from the timeout alone: the owner word holds the
 *     thread's lifeline token, a byte-range lock the kernel releases when that thread (worker
 *     included) or its process dies. A slow but living owner is waited for, however long.
 *     owner = 0 means "died in the few instructions between the claim CAS and the owner
 *     store" and is reclaimed on the timeout alone.
 *   - A killed sleeper leaves its *Sleeping count too high: that costs wakers a system call,
 *     never a lost wake-up. Sleepers wake at least every stallTimeout ms to look for stalls.
 */
import { HEADER_BYTES } from '../shm/header.js';

export const QUEUE_VERSION = 1;

/**
 * stallTimeout (see crash recovery above) unless the handle says otherwise, in ms: how long a
 * position stays stuck before a peer looks at its owner's lifeline and reclaims it if dead.
 */
export const DEFAULT_STALL_TIMEOUT = 1000;

/** Byte offsets of the queue's own fields. */
export const OFF = {
  capacity: 64,
  slotBytes: 68,
  maxMessageSize: 72,
  slotsOffset: 76,
  tail: 128,
  head: 192,
  dataEvents: 256,
  receiversSleeping: 260,
  spaceEvents: 320,
  sendersSleeping: 324,
  skippedRecords: 384,
  reclaimedSlots: 388,
} as const;

/** Int32 indices of the same fields (offset / 4). */
export const W = {
  capacity: OFF.capacity >> 2,
  slotBytes: OFF.slotBytes >> 2,
  maxMessageSize: OFF.maxMessageSize >> 2,
  slotsOffset: OFF.slotsOffset >> 2,
  tail: OFF.tail >> 2,
  head: OFF.head >> 2,
  dataEvents: OFF.dataEvents >> 2,
  receiversSleeping: OFF.receiversSleeping >> 2,
  spaceEvents: OFF.spaceEvents >> 2,
  sendersSleeping: OFF.sendersSleeping >> 2,
  skippedRecords: OFF.skippedRecords >> 2,
  reclaimedSlots: OFF.reclaimedSlots >> 2,
} as const;

export const SLOTS_OFFSET = 512;
export const SLOT_HEADER_BYTES = 16;
/** Int32 offsets inside a slot. */
export const SLOT_SEQ = 0;
export const SLOT_OWNER = 1;
export const SLOT_LENGTH = 2;
/** A committed record that carries no message (a zero-copy writer that threw). */
export const SKIP = -1;

export const DEFAULT_MAX_MESSAGE_SIZE = 4096;
/** Larger than any sane message; keeps slot arithmetic within int32. */
export const MAX_MESSAGE_SIZE_LIMIT = 2 ** 30;
const MAX_CAPACITY = 2 ** 30;

export interface QueueGeometry {
  byteLength: number;
  capacity: number;
  slotBytes: number;
  maxMessageSize: number;
}

const align16 = (n: number): number => Math.ceil(n / 16) * 16;
const floorPow2 = (n: number): number => 2 ** Math.floor(Math.log2(n));

/**
 * Chooses the geometry for a new queue. Either byteLength (the whole segment) or capacity (a
 * power of two) decides the size; maxMessageSize defaults to whatever the slots can hold
 * (with byteLength) or 4096 (with capacity). Spare bytes widen the slots, never go unused.
 */
export function geometry(byteLength: number | undefined, capacity: number | undefined, maxMessageSize: number | undefined, where: string): QueueGeometry {
  const needed = align16(SLOT_HEADER_BYTES + (maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE));
  if (capacity !== undefined) {
    if (capacity < 2 || capacity > MAX_CAPACITY || floorPow2(capacity) !== capacity) {
      throw new RangeError(`${where}: capacity must be a power of two in [2, 2^30], got ${capacity}`);
    }
    const minimum = SLOTS_OFFSET + capacity * needed;
    if (byteLength === undefined) byteLength = minimum;
    else if (byteLength < minimum) {
      throw new RangeError(`${where}: byteLength ${byteLength} cannot hold ${capacity} slots of ${needed} bytes plus ${SLOTS_OFFSET} (needs ${minimum})`);
    }
  }
  if (byteLength === undefined) throw new TypeError(`${where}: option 'byteLength' (or 'capacity') is required`);
  const room = byteLength - SLOTS_OFFSET;
  const fits = Math.floor(room / needed);
  if (fits < 2) {
    throw new RangeError(
      `${where}: byteLength ${byteLength} is too small for two slots of ${needed} bytes (maxMessageSize ${maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE} + 16) plus ${SLOTS_OFFSET}`,
    );
  }
  const slots = capacity ?? Math.min(floorPow2(fits), MAX_CAPACITY);
  const slotBytes = Math.floor(room / slots / 16) * 16;
  return { byteLength, capacity: slots, slotBytes, maxMessageSize: maxMessageSize ?? slotBytes - SLOT_HEADER_BYTES };
}

/** Writes the queue's fields and every slot's initial sequence (slot i free for position i). */
export function initQueue(buffer: SharedArrayBuffer, g: QueueGeometry): void {
  const i32 = new Int32Array(buffer);
  i32[W.capacity] = g.capacity;
  i32[W.slotBytes] = g.slotBytes;
  i32[W.maxMessageSize] = g.maxMessageSize;
  i32[W.slotsOffset] = SLOTS_OFFSET;
  const slotInts = g.slotBytes >> 2;
  for (let i = 0; i < g.capacity; i++) i32[(SLOTS_OFFSET >> 2) + i * slotInts + SLOT_SEQ] = i;
  // Published by publishHeader's release store of the header's state word.
}

/**
 * Reads and checks the geometry of an opened queue: a corrupt or foreign segment must not make
 * us index outside the buffer. Returns undefined plus a reason when it does not add up.
 */
export function readGeometry(buffer: SharedArrayBuffer): QueueGeometry | string {
  if (buffer.byteLength < SLOTS_OFFSET) return `byteLength ${buffer.byteLength} is smaller than the queue header (${SLOTS_OFFSET})`;
  const i32 = new Int32Array(buffer, 0, SLOTS_OFFSET >> 2);
  const capacity = i32[W.capacity]! >>> 0;
  const slotBytes = i32[W.slotBytes]! >>> 0;
  const maxMessageSize = i32[W.maxMessageSize]! >>> 0;
  const slotsOffset = i32[W.slotsOffset]! >>> 0;
  if (slotsOffset !== SLOTS_OFFSET) return `slotsOffset is ${slotsOffset}, expected ${SLOTS_OFFSET}`;
  if (capacity < 2 || capacity > MAX_CAPACITY || floorPow2(capacity) !== capacity) return `capacity ${capacity} is not a power of two >= 2`;
  if (slotBytes % 16 !== 0 || slotBytes < SLOT_HEADER_BYTES) return `slotBytes ${slotBytes} is not a multiple of 16`;
  if (maxMessageSize > slotBytes - SLOT_HEADER_BYTES) return `maxMessageSize ${maxMessageSize} does not fit slots of ${slotBytes} bytes`;
  if (SLOTS_OFFSET + capacity * slotBytes > buffer.byteLength) {
    return `${capacity} slots of ${slotBytes} bytes do not fit in ${buffer.byteLength} bytes`;
  }
  return { byteLength: buffer.byteLength, capacity, slotBytes, maxMessageSize };
}

export { HEADER_BYTES };


/**
 * A queue's numbers for `interprocess ls` / `inspect`, read only (no handle, no lifeline): plug
 * into src/cli/kinds.ts as [Kind.Queue, describeQueue].
 */
export function describeQueue(buffer: SharedArrayBuffer): Record<string, unknown> {
  const g = readGeometry(buffer);
  if (typeof g === 'string') return { error: g };
  const i32 = new Int32Array(buffer, 0, SLOTS_OFFSET >> 2);
  const tail = Atomics.load(i32, W.tail);
  const head = Atomics.load(i32, W.head);
  return {
    capacity: g.capacity,
    maxMessageSize: g.maxMessageSize,
    depth: Math.max(0, Math.min(g.capacity, (tail - head) | 0)),
    skippedRecords: Atomics.load(i32, W.skippedRecords) >>> 0,
    reclaimedSlots: Atomics.load(i32, W.reclaimedSlots) >>> 0,
    sleepingReceivers: Atomics.load(i32, W.receiversSleeping),
    sleepingSenders: Atomics.load(i32, W.sendersSleeping),
  };
}
