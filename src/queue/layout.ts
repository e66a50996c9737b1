/**
 * Queue layout: Vyukov's bounded MPMC queue (per-slot sequence numbers) over fixed-capacity
 * slots in shared memory, with a claims table so that stalled slots are recovered from the
 * dead only (never from the merely slow or paused), and leases for at-least-once delivery.
 *
 * Contract: bounded, many producers, many consumers (processes and threads), variable-size
 * messages up to maxMessageSize (a message longer than one slot's payload spans consecutive
 * slots, so memory follows the bytes in flight), FIFO per producer, each message delivered to at most one
 * receiver (exactly one unless that receiver dies while taking it); a leased message whose
 * holder dies (or outlives its lease time) is delivered again (at least once).
 *
 * Byte layout (offsets from the start of the segment; every hot word on its own cache line so
 * producers and consumers do not false-share):
 *
 *   offset  size  field
 *   0       64    common header (src/shm/header.ts): magic, kind = Queue (6), version 3, state...
 *   64      4     capacity          number of slots, a power of two >= 2
 *   68      4     slotBytes         bytes per slot, a multiple of 16 (16 of header, then the
 *                                   slot's payload: slotSize = slotBytes - 16)
 *   72      4     maxMessageSize    largest message a send accepts (bytes); may exceed slotSize,
 *                                   by at most what `capacity` slots hold (see spans)
 *   76      4     slotsOffset       where slot 0 starts: 512 + 64 * handles
 *   80      4     handles           rows in the claims table (maxHandles at create)
 *   84      44    reserved (zero)
 *   128     4     tail              next position a producer claims (uint32, wraps)
 *   192     4     head              next position a consumer claims (uint32, wraps)
 *   256     4     dataEvents        futex word receivers sleep on; bumped only if one sleeps
 *   260     4     receiversSleeping receivers (sync or async) between "I sleep" and "I woke"
 *   320     4     spaceEvents       futex word senders sleep on; bumped only if one sleeps
 *   324     4     sendersSleeping
 *   384     4     skippedRecords    positions skipped because their producer died before commit
 *   388     4     reclaimedSlots    slots freed after the consumer taking them died
 *   392     4     redelivered       leases taken over from dead, expired or released holders
 *   448     4     leases            leased slots plus lease claims in progress (an upper bound)
 *   452     4     leaseEvents       bumped when a holder gives a lease back (release, close)
 *   512     64*H  claims table, one row (cache line) per open handle:
 *                   +0  token      lifeline token of the handle's thread (0: row free)
 *                   +4  sendPos    first position of the handle's send claim
 *                   +8  sendCount  positions it covers (0: none)
 *                   +12 recvPos    first position of the handle's receive claim
 *                   +16 recvCount  positions it covers (0: none)
 *                   +20 recvLease  1 when that receive claim takes a lease
 *   slotsOffset ... capacity slots of slotBytes each:
 *                   +0  seq        Vyukov sequence (uint32, wraps): == pos free for the producer
 *                                  of position pos; == pos + 1 committed; == pos + capacity
 *                                  released (free for the next lap)
 *                   +4  holder     lease holder's lifeline token while seq == pos + 1 and the
 *                                  record is leased, DEAD_TOKEN for a lease given back, else 0.
 *                                  seq and holder form one 64-bit word for lease CASes.
 *                   +8  length     payload bytes, or SKIP (-1) for a record to drop, or
 *                                  CONTINUATION (-2) for an interior slot of a span; a length
 *                                  above slotSize makes the slot the first of a span
 *                   +12 leaseTime  ms the current holder may keep the lease (0: until it dies)
 *                   +16 payload (up to slotSize = slotBytes - 16 bytes)
 *
 * Positions are 32-bit and wrap; they are only ever compared by signed difference
 * ((a - b) | 0), which is exact while fewer than 2^31 positions separate them. The slot of a
 * position is pos & (capacity - 1), exact across the wrap because capacity divides 2^32.
 *
 * Protocol (all Atomics are sequentially consistent, which is what the pairing relies on; a
 * model of it is checked with Spin, see test/model/):
 *
 *   (pos below starts from the handle's last known tail/head, not a fresh read: the CAS on the
 *   shared index decides every claim, and a stale pos only costs a retry; see ring.ts.)
 *   intent   every claim is announced BEFORE its CAS: the claimant writes (pos, count) into its
 *            own row with plain stores, which the claim CAS publishes. A claimant that loses
 *            the CAS and gives up (full, empty) clears its count, so that no stale intent of a
 *            live handle covers a position it does not hold. The intent stays until the next
 *            claim of the same side, which comes after the commits (releases) of this one.
 *   send     if slot.seq == pos: write intent, CAS tail pos -> pos + 1 claims it (if seq is
 *            behind, the queue is full). Write payload and length (plain stores), then CAS seq
 *            pos -> pos + 1: the COMMIT, written last, which publishes payload and length to
 *            the consumer whose acquire load of seq sees pos + 1.
 *   receive  if slot.seq == pos + 1: write intent, CAS head pos -> pos + 1 claims it. Copy the
 *            payload out, then CAS seq pos + 1 -> pos + capacity: the RELEASE, which hands the
 *            slot to the next lap's producer (paired with its load of seq).
 *   batches  a producer (consumer) that sees k consecutive free (committed) slots announces
 *            (pos, k) and claims them with one CAS of tail (head) by k, then commits (releases)
 *            each slot on its own, in order.
 *   spans    (issue 14) a message of L > slotSize bytes is ONE record over k = ceil(L /
 *            slotSize) consecutive positions, so that a queue of small slots carries the rare
 *            large message without every slot being sized for it. It is claimed and taken
 *            exactly as a batch of k is (one CAS of tail / head by k, intent (pos, k) first,
 *            which is all crash recovery reads), with two rules on top:
 *            - a producer claims exactly k free slots or none (never part of a span: with
 *              fewer free it is full, and waits like any send). It writes the payload in
 *              pieces of slotSize (slot headers interrupt it), marks the interior slots
 *              length = CONTINUATION and commits them first, in order, and the first slot
 *              (length = L) LAST: a consumer whose acquire load sees the first slot committed
 *              knows the interior is (seq-cst order), so the span is delivered whole or not at
 *              all. Until then the head stops at the first slot, as at any uncommitted record.
 *            - a consumer that finds length > slotSize at the head claims all k with one CAS
 *              of head. A batch never splits a span: it counts records, and stops before a
 *              span that would take it past its slot budget (a span at the very head is always
 *              taken whole). It copies the pieces into one private buffer, then releases the k
 *              slots. An interior slot met at the head (CONTINUATION: its span's first slot was
 *              skipped, see crash recovery) is dropped like SKIP, never delivered.
 *            Why this design and not a byte ring: slots keep Vyukov's per-slot commit word and
 *            the claims table unchanged (a span is a batch whose records the consumer reads as
 *            one), so the recovery rules and the Spin model carry over position by position;
 *            the cost is that the slot header (16 B) recurs every slotSize bytes, and a small
 *            message still takes a whole slot (choose slotSize near the common message size).
 *            A span is never leased (lease() of one fails IPC_ERR_MESSAGE_TOO_LARGE and leaves
 *            it at the head for a plain receive): lease state lives on one slot.
 *   wake     a sleeper increments its *Sleeping count, reads the *Events word, re-checks the
 *            queue, and futex-waits on the word it read. The other side, after its commit or
 *            release, reads the count and, only if it is non-zero, bumps the word and wakes.
 *            Both orders are seq-cst, so either the waker sees the sleeper or the sleeper sees
 *            the new state: no lost wake-up, and no system call when no one sleeps. A
 *            waker wakes one sleeper per record committed (slot released), not all.
 *
 * Leases (at-least-once; src/queue/queue.ts `lease`):
 *
 *   take     the consumer adds 1 to `leases`, claims the head as a receive whose intent says
 *            recvLease = 1, writes leaseTime, then CAS64 (seq, holder) (pos + 1, 0) ->
 *            (pos + 1, token): the slot stays committed and behind head, owned by the holder.
 *            It copies the payload and checks (seq, holder) again: a lease lost meanwhile means
 *            the copy may be torn, and it is discarded.
 *   ack      CAS64 (pos + 1, token) -> (pos + capacity, 0): releases the slot; then leases - 1.
 *            A failed CAS means the lease was taken over (it had expired): IPC_ERR_NOT_OWNER.
 *   release  CAS64 (pos + 1, token) -> (pos + 1, DEAD_TOKEN), then bump leaseEvents and wake a
 *            receiver: the message is up for redelivery.
 *   rescue   a lease consumer, before it takes from the head, while leases != 0 (at most once
 *            per stallTimeout, or when leaseEvents moved), scans positions [tail - capacity, head)
 *            for seq == pos + 1 and takes over, with one CAS64 (pos + 1, h) -> (pos + 1, token),
 *            a lease whose holder h is DEAD_TOKEN or dead (kernel), or that it has seen held by
 *            the same h for at least that slot's leaseTime. The CAS records the new holder in
 *            the same instruction that takes it, so a rescuer that dies leaves a lease that is
 *            rescued again: no window. It also takes a record in its claim window (holder 0)
 *            whose covering intents are all dead and include a lease intent.
 *   Producers never free a leased slot: a long lease holds its slot, and producers that wrap
 *   around to it wait (backpressure), as they do for a slow consumer.
 *
 * Crash recovery (SIGKILL at any instruction; SIGSTOP for any length):
 *
 *   - Liveness comes from the kernel, never from a timeout alone: a row's token is its thread's
 *     lifeline (src/os/lifeline.ts), a lock the kernel releases when the thread or its process
 *     dies. stallTimeout only decides when a survivor looks.
 *   - A producer killed between claim and commit leaves tail past a slot whose seq is still
 *     pos. A consumer that sees the same head position stuck like this for stallTimeout ms
 *     scans the claims table: while any LIVE row's send intent covers pos it waits (a paused
 *     producer is waited for, however long). Otherwise every claimant is dead (the real one
 *     announced itself before its CAS; a row is only ever taken over from a dead token), and it
 *     reads the slot again after that scan: still uncommitted, its claimant will never commit
 *     (one that committed and moved on to its next claim would also be uncovered; the re-read
 *     sees its commit, and a span's is taken whole by a normal claim), so no write can race
 *     what follows: it announces its own receive intent, CAS head pos -> pos + 1,
 *     CAS seq pos -> pos + capacity. The half-written record is never delivered. (If the
 *     producer committed in between, the CAS on seq fails and it delivers the record.)
 *   - A consumer killed between claim and release leaves head past a slot whose seq is still
 *     pos + 1. A producer that sees the same tail position stuck like this for stallTimeout ms
 *     with holder 0 scans the table for receive intents covering pos: none live -> if a dead
 *     one is a lease intent, it marks the record a lease given back (CAS64 to (pos + 1,
 *     DEAD_TOKEN)) for a lease consumer to rescue; else it frees the slot (CAS64 (pos + 1, 0)
 *     -> (pos + capacity, 0)). That message is lost (at most one per killed consumer, or the
 *     batch it held), never delivered twice.
 *   - A consumer killed half-way through skipping a dead producer's record (head taken, seq
 *     still pos) is finished by a producer at that slot once no live row covers pos.
 *   - Spans: a producer killed anywhere before its first-slot commit leaves its intent (pos,
 *     k) dead; consumers skip pos as above, then each of the k - 1 interior positions, either
 *     committed (CONTINUATION: taken and dropped like SKIP) or not (skipped like pos; once one
 *     position of a dead claim was skipped, the next is looked at without another
 *     stallTimeout, the kernel having answered). A consumer killed mid-take leaves its intent
 *     (pos, k) dead, and producers reclaim the k slots one by one (again without a new
 *     stallTimeout after the first). If a producer commits the first slot just before it
 *     dies, while a consumer is skipping it, the consumer that won the head for pos extends
 *     its claim over the interior with one more CAS of head (announced first) or, if another
 *     consumer took an interior slot already, drops the record: a send that never returned.
 *   - A dead row is reused by a later opener (CAS of its token from the dead one). A dead row
 *     whose receive intent is a lease still in its claim window is first resolved (the record
 *     given back), so the lease flag is never lost.
 *   - A killed sleeper leaves its *Sleeping count too high: that costs wakers a system call,
 *     never a lost wake-up. Sleepers wake at least every stallTimeout ms to look for stalls.
 */
// No re-exports in this module (`export { X }` of an import): TypeScript compiles one to an
// accessor on the CommonJS exports object, which puts that object in dictionary mode, and every
// read of a constant below from ring.ts and queue.ts (`layout_js_1.SLOT_SEQ`, several per
// message) then becomes a generic LoadIC call instead of an inlined field load: measured, a
// fifth of a 64 B send + receive.

// 3: spans (issue 14). Version 2 handles would read a span's first slot as one slot's payload.
export const QUEUE_VERSION = 3;

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
  handles: 80,
  tail: 128,
  head: 192,
  dataEvents: 256,
  receiversSleeping: 260,
  spaceEvents: 320,
  sendersSleeping: 324,
  skippedRecords: 384,
  reclaimedSlots: 388,
  redelivered: 392,
  leases: 448,
  leaseEvents: 452,
} as const;

/** Int32 indices of the same fields (offset / 4). */
export const W = {
  capacity: OFF.capacity >> 2,
  slotBytes: OFF.slotBytes >> 2,
  maxMessageSize: OFF.maxMessageSize >> 2,
  slotsOffset: OFF.slotsOffset >> 2,
  handles: OFF.handles >> 2,
  tail: OFF.tail >> 2,
  head: OFF.head >> 2,
  dataEvents: OFF.dataEvents >> 2,
  receiversSleeping: OFF.receiversSleeping >> 2,
  spaceEvents: OFF.spaceEvents >> 2,
  sendersSleeping: OFF.sendersSleeping >> 2,
  skippedRecords: OFF.skippedRecords >> 2,
  reclaimedSlots: OFF.reclaimedSlots >> 2,
  redelivered: OFF.redelivered >> 2,
  leases: OFF.leases >> 2,
  leaseEvents: OFF.leaseEvents >> 2,
} as const;

/** The claims table starts here; one 64-byte row per handle. */
export const ROWS_OFFSET = 512;
export const ROW_BYTES = 64;
/** Int32 offsets inside a row. */
export const ROW_TOKEN = 0;
export const ROW_SEND_POS = 1;
export const ROW_SEND_COUNT = 2;
export const ROW_RECV_POS = 3;
export const ROW_RECV_COUNT = 4;
export const ROW_RECV_LEASE = 5;

export const SLOT_HEADER_BYTES = 16;
/** Int32 offsets inside a slot. */
export const SLOT_SEQ = 0;
export const SLOT_HOLDER = 1;
export const SLOT_LENGTH = 2;
export const SLOT_LEASE_TIME = 3;
/** A committed record that carries no message (a zero-copy writer that threw). */
export const SKIP = -1;
/** An interior slot of a span (never a record of its own; dropped like SKIP if met at the head). */
export const CONTINUATION = -2;

export const DEFAULT_MAX_MESSAGE_SIZE = 4096;
/** Larger than any sane message; keeps slot arithmetic within int32. */
export const MAX_MESSAGE_SIZE_LIMIT = 2 ** 30;
const MAX_CAPACITY = 2 ** 30;
/** Handles (claims table rows) a queue gets unless `maxHandles` says otherwise. */
export const DEFAULT_HANDLES = 64;
export const MAX_HANDLES = 4096;

export interface QueueGeometry {
  byteLength: number;
  capacity: number;
  slotBytes: number;
  maxMessageSize: number;
  /** Rows of the claims table: how many handles can have the queue open at once. */
  handles: number;
  /** Where slot 0 starts (bytes). */
  slotsOffset: number;
}

const align16 = (n: number): number => Math.ceil(n / 16) * 16;
const floorPow2 = (n: number): number => 2 ** Math.floor(Math.log2(n));
const slotsOffsetFor = (handles: number): number => ROWS_OFFSET + handles * ROW_BYTES;

/** Slots a message of `length` bytes takes in slots of `slotSize` payload bytes. */
export const slotsFor = (length: number, slotSize: number): number => (length <= slotSize ? 1 : Math.ceil(length / slotSize));

/**
 * Chooses the geometry for a new queue. Either byteLength (the whole segment) or capacity (a
 * power of two) decides the size; maxMessageSize defaults to whatever the slots can hold
 * (with byteLength) or 4096 (with capacity). Without slotSize, spare bytes widen the slots,
 * never go unused, and every message fits one slot (as before spans). With slotSize (payload
 * bytes per slot, a multiple of 16), maxMessageSize may exceed it (default: slotSize): such a
 * message spans slots, and capacity must hold the largest.
 */
export function geometry(
  byteLength: number | undefined,
  capacity: number | undefined,
  maxMessageSize: number | undefined,
  where: string,
  handles = DEFAULT_HANDLES,
  slotSize?: number,
): QueueGeometry {
  if (slotSize !== undefined && (slotSize < 16 || slotSize % 16 !== 0)) {
    throw new RangeError(`${where}: slotSize must be a multiple of 16 (payload bytes per slot, after the 16-byte slot header), got ${slotSize}`);
  }
  const max = maxMessageSize ?? slotSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const needed = slotSize === undefined ? align16(SLOT_HEADER_BYTES + max) : SLOT_HEADER_BYTES + slotSize;
  const slotsOffset = slotsOffsetFor(handles);
  if (capacity !== undefined) {
    if (capacity < 2 || capacity > MAX_CAPACITY || floorPow2(capacity) !== capacity) {
      throw new RangeError(`${where}: capacity must be a power of two in [2, 2^30], got ${capacity}`);
    }
    const minimum = slotsOffset + capacity * needed;
    if (byteLength === undefined) byteLength = minimum;
    else if (byteLength < minimum) {
      throw new RangeError(`${where}: byteLength ${byteLength} cannot hold ${capacity} slots of ${needed} bytes plus ${slotsOffset} (needs ${minimum})`);
    }
  }
  if (byteLength === undefined) throw new TypeError(`${where}: option 'byteLength' (or 'capacity') is required`);
  const room = byteLength - slotsOffset;
  const fits = Math.floor(room / needed);
  if (fits < 2) {
    throw new RangeError(
      slotSize === undefined
        ? `${where}: byteLength ${byteLength} is too small for two slots of ${needed} bytes (maxMessageSize ${max} + 16) plus ${slotsOffset}`
        : `${where}: byteLength ${byteLength} is too small for two slots of ${needed} bytes (slotSize ${slotSize} + 16) plus ${slotsOffset}`,
    );
  }
  const slots = capacity ?? Math.min(floorPow2(fits), MAX_CAPACITY);
  if (slotSize === undefined) {
    const slotBytes = Math.floor(room / slots / 16) * 16;
    return { byteLength, capacity: slots, slotBytes, maxMessageSize: maxMessageSize ?? slotBytes - SLOT_HEADER_BYTES, handles, slotsOffset };
  }
  const span = slotsFor(max, slotSize);
  if (span > slots) {
    throw new RangeError(
      `${where}: maxMessageSize ${max} spans ${span} slots of slotSize ${slotSize}, more than capacity ${slots} (raise capacity or slotSize)`,
    );
  }
  return { byteLength, capacity: slots, slotBytes: needed, maxMessageSize: max, handles, slotsOffset };
}

/** Writes the queue's fields and every slot's initial sequence (slot i free for position i). */
export function initQueue(buffer: SharedArrayBuffer, g: QueueGeometry): void {
  const i32 = new Int32Array(buffer);
  i32[W.capacity] = g.capacity;
  i32[W.slotBytes] = g.slotBytes;
  i32[W.maxMessageSize] = g.maxMessageSize;
  i32[W.slotsOffset] = g.slotsOffset;
  i32[W.handles] = g.handles;
  const slotInts = g.slotBytes >> 2;
  for (let i = 0; i < g.capacity; i++) i32[(g.slotsOffset >> 2) + i * slotInts + SLOT_SEQ] = i;
  // Rows, holders and lease times start zeroed (the segment is fresh). Published by
  // publishHeader's release store of the header's state word.
}

/**
 * Reads and checks the geometry of an opened queue: a corrupt or foreign segment must not make
 * us index outside the buffer. Returns the reason as a string when it does not add up.
 */
export function readGeometry(buffer: SharedArrayBuffer): QueueGeometry | string {
  if (buffer.byteLength < ROWS_OFFSET) return `byteLength ${buffer.byteLength} is smaller than the queue header (${ROWS_OFFSET})`;
  const i32 = new Int32Array(buffer, 0, ROWS_OFFSET >> 2);
  const capacity = i32[W.capacity]! >>> 0;
  const slotBytes = i32[W.slotBytes]! >>> 0;
  const maxMessageSize = i32[W.maxMessageSize]! >>> 0;
  const slotsOffset = i32[W.slotsOffset]! >>> 0;
  const handles = i32[W.handles]! >>> 0;
  if (handles < 1 || handles > MAX_HANDLES) return `handles is ${handles}, expected 1 to ${MAX_HANDLES}`;
  if (slotsOffset !== slotsOffsetFor(handles)) return `slotsOffset is ${slotsOffset}, expected ${slotsOffsetFor(handles)} for ${handles} handles`;
  if (capacity < 2 || capacity > MAX_CAPACITY || floorPow2(capacity) !== capacity) return `capacity ${capacity} is not a power of two >= 2`;
  if (slotBytes % 16 !== 0 || slotBytes < SLOT_HEADER_BYTES) return `slotBytes ${slotBytes} is not a multiple of 16`;
  if (slotBytes === SLOT_HEADER_BYTES) return `slotBytes ${slotBytes} leaves no payload`;
  if (maxMessageSize < 1 || slotsFor(maxMessageSize, slotBytes - SLOT_HEADER_BYTES) > capacity) {
    return `maxMessageSize ${maxMessageSize} does not fit ${capacity} slots of ${slotBytes} bytes`;
  }
  if (slotsOffset + capacity * slotBytes > buffer.byteLength) {
    return `${capacity} slots of ${slotBytes} bytes do not fit in ${buffer.byteLength} bytes`;
  }
  return { byteLength: buffer.byteLength, capacity, slotBytes, maxMessageSize, handles, slotsOffset };
}


/**
 * A queue's numbers for `interprocess ls` / `inspect`, read only (no handle, no lifeline): plug
 * into src/cli/kinds.ts as [Kind.Queue, describeQueue].
 */
export function describeQueue(buffer: SharedArrayBuffer): Record<string, unknown> {
  const g = readGeometry(buffer);
  if (typeof g === 'string') return { error: g };
  const i32 = new Int32Array(buffer, 0, g.slotsOffset >> 2);
  const tail = Atomics.load(i32, W.tail);
  const head = Atomics.load(i32, W.head);
  return {
    capacity: g.capacity,
    slotSize: g.slotBytes - SLOT_HEADER_BYTES,
    maxMessageSize: g.maxMessageSize,
    depth: Math.max(0, Math.min(g.capacity, (tail - head) | 0)),
    handles: handlesInUse(i32, g.handles),
    maxHandles: g.handles,
    leased: Math.max(0, Atomics.load(i32, W.leases)),
    skippedRecords: Atomics.load(i32, W.skippedRecords) >>> 0,
    reclaimedSlots: Atomics.load(i32, W.reclaimedSlots) >>> 0,
    redelivered: Atomics.load(i32, W.redelivered) >>> 0,
    sleepingReceivers: Atomics.load(i32, W.receiversSleeping),
    sleepingSenders: Atomics.load(i32, W.sendersSleeping),
  };
}

/** Rows of the claims table with an owner token (live or dead: the kernel is not asked). */
export function handlesInUse(i32: Int32Array, handles: number): number {
  let n = 0;
  for (let i = 0; i < handles; i++) if (Atomics.load(i32, (ROWS_OFFSET + i * ROW_BYTES) >> 2) !== 0) n++;
  return n;
}
