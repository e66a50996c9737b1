/**
 * The queue's lock-free core: Vyukov's bounded MPMC algorithm on the layout drawn in
 * layout.ts (read its header for the protocol and the crash-recovery rules). This module does
 * claims, commits, releases, wake-ups and stall reclamation on raw slots; queue.ts turns that
 * into the public API (codecs, waiting, timeouts).
 *
 * Hot-path notes: one Int32Array for every control word (no DataView), one Uint8Array over
 * the whole segment for payload copies (slice/set, the fastest copies V8 has), plain stores
 * where a later seq-cst CAS publishes them, and no system call unless a peer sleeps. Every
 * Atomics call costs a builtin call (~8 ns on Node 20, it is not inlined), so each side keeps
 * its last known head/tail locally (as Vyukov's and Agrona's rings do) and reads the shared
 * index only when the local one proved stale: a failed CAS returns the current value, a slot
 * ahead of us or an apparently empty/full queue re-reads it. The CAS on the shared index stays
 * the only arbiter of a claim, so a stale local position can cost a retry, never a wrong claim.
 */
import { futex } from '../os/futex.js';
import type { Lifeline } from '../os/lifeline.js';
import { SLOT_LENGTH, SLOT_OWNER, SLOT_SEQ, SLOTS_OFFSET, W, type QueueGeometry } from './layout.js';

/** Result of a claim: which position and where its slot starts (int32 index). */
export class Ring {
  readonly i32: Int32Array;
  /** The whole segment as bytes, for payload copies. */
  readonly u8: Uint8Array;
  readonly capacity: number;
  readonly maxMessageSize: number;
  readonly slotBytes: number;
  readonly stallTimeout: number;
  readonly #mask: number;
  readonly #slotInts: number;
  /** Last tail / head this handle saw (possibly stale; see the header). */
  #tail = 0;
  #head = 0;

  /** Filled by a successful claimSend / claimReceive; read at once by the caller. */
  pos = 0;
  base = 0;

  // Stall tracking, per side: the position seen stuck, since when, and when to look again.
  #sendStallPos = 0;
  #sendStallSince = -1;
  #recvStallPos = 0;
  #recvStallSince = -1;
  // Failed attempts; every STALL_CHECK_EVERY + 1-th looks for a stall. Waiters force a look.
  #sendMisses = 0;
  readonly #me: number;
  readonly #lifeline: Lifeline;
  #recvMisses = 0;

  /** `lifeline` is this thread's on the queue's memory (the caller opens and closes it). */
  constructor(buffer: SharedArrayBuffer, g: QueueGeometry, stallTimeout: number, lifeline: Lifeline) {
    this.i32 = new Int32Array(buffer);
    this.u8 = new Uint8Array(buffer);
    this.capacity = g.capacity;
    this.maxMessageSize = g.maxMessageSize;
    this.slotBytes = g.slotBytes;
    this.stallTimeout = stallTimeout;
    this.#mask = g.capacity - 1;
    this.#slotInts = g.slotBytes >> 2;
    // This thread's lifeline token on the queue (src/os/lifeline.ts): what slot owner words record.
    this.#lifeline = lifeline;
    this.#me = lifeline.token;
    this.#tail = Atomics.load(this.i32, W.tail);
    this.#head = Atomics.load(this.i32, W.head);
  }

  /** Int32 index where the slot of `pos` starts. */
  slotOf(pos: number): number {
    return SLOTS_INT + (pos & this.#mask) * this.#slotInts;
  }

  /**
   * Claims up to `max` consecutive free slots at the tail with one CAS (a batch moves the
   * shared index once). Returns how many (0 when full); the first is at this.pos / this.base,
   * the k-th at slotOf(pos + k).
   */
  claimSend(max: number): number {
    const i32 = this.i32;
    const mask = this.#mask;
    const slotInts = this.#slotInts;
    let pos = this.#tail;
    let fresh = false; // whether pos was read from (or returned by) the shared index just now
    for (;;) {
      const base = SLOTS_INT + (pos & mask) * slotInts;
      // Acquire: pairs with the releasing CAS of the consumer that freed the slot for this lap.
      const seq = Atomics.load(i32, base + SLOT_SEQ);
      const dif = (seq - pos) | 0;
      if (dif === 0) {
        let n = 1;
        while (n < max && Atomics.load(i32, SLOTS_INT + ((pos + n) & mask) * slotInts + SLOT_SEQ) === ((pos + n) | 0)) n++;
        // The claim: from here the slots are ours until we commit them.
        const seen = Atomics.compareExchange(i32, W.tail, pos, (pos + n) | 0);
        if (seen === pos) {
          this.#tail = (pos + n) | 0;
          // Plain stores: read by a reclaimer only after stallTimeout, long after they are visible.
          i32[base + SLOT_OWNER] = this.#me;
          for (let k = 1; k < n; k++) i32[SLOTS_INT + ((pos + k) & mask) * slotInts + SLOT_OWNER] = this.#me;
          this.pos = pos;
          this.base = base;
          return n;
        }
        // Another producer moved tail: the failed CAS returned where it is now.
        pos = seen;
        fresh = true;
      } else if (dif < 0) {
        // The slot still holds the previous lap: full, or a consumer died while taking it. A
        // stale local tail cannot get here (a slot behind tail is never a lap behind), but
        // check the shared tail before saying "full": it costs only the full path.
        if (!fresh) {
          fresh = true;
          const tail = Atomics.load(i32, W.tail);
          if (tail !== pos) {
            pos = this.#tail = tail;
            continue;
          }
        }
        this.#tail = pos;
        // Looking for a stall reads head (the consumers' line) and the clock: only now and then.
        if ((++this.#sendMisses & STALL_CHECK_EVERY) === 0 && this.#sendStall(pos, base, seq)) {
          fresh = false;
          continue;
        }
        return 0;
      } else {
        // dif > 0: our position was taken; read the new tail. If it has not moved, the slot is
        // ahead of it, which only corrupted memory can do: report full, never spin here.
        const tail = Atomics.load(i32, W.tail);
        if (tail === pos) return 0;
        pos = this.#tail = tail;
        fresh = true;
      }
    }
  }

  /**
   * Commits the claimed record at (pos, base) with `length` payload bytes already written (or
   * SKIP). False when a consumer reclaimed the slot meanwhile: nothing was delivered. Call
   * afterSend once the batch is committed.
   */
  commitSend(pos: number, base: number, length: number): boolean {
    const i32 = this.i32;
    i32[base + SLOT_LENGTH] = length;
    i32[base + SLOT_OWNER] = 0;
    // The commit, written last: publishes length and payload to the consumer whose acquire
    // load of seq sees pos + 1 (claimReceive).
    return Atomics.compareExchange(i32, base + SLOT_SEQ, pos, (pos + 1) | 0) === pos;
  }

  /** Wakes up to `count` sleeping receivers (one per committed record), if any sleeps. */
  afterSend(count: number): void {
    // Seq-cst read after the commit: pairs with the sleeper's increment before its re-check.
    if (Atomics.load(this.i32, W.receiversSleeping) !== 0) this.wakeReceivers(count);
  }

  /**
   * Claims up to `max` consecutive committed records at the head with one CAS. Returns how
   * many (0 when empty); the first is at this.pos / this.base.
   */
  claimReceive(max: number): number {
    const i32 = this.i32;
    const mask = this.#mask;
    const slotInts = this.#slotInts;
    let pos = this.#head;
    let fresh = false;
    for (;;) {
      const base = SLOTS_INT + (pos & mask) * slotInts;
      // Acquire: pairs with the producer's committing CAS.
      const seq = Atomics.load(i32, base + SLOT_SEQ);
      const dif = (seq - ((pos + 1) | 0)) | 0;
      if (dif === 0) {
        let n = 1;
        while (n < max && Atomics.load(i32, SLOTS_INT + ((pos + n) & mask) * slotInts + SLOT_SEQ) === ((pos + n + 1) | 0)) n++;
        const seen = Atomics.compareExchange(i32, W.head, pos, (pos + n) | 0);
        if (seen === pos) {
          this.#head = (pos + n) | 0;
          i32[base + SLOT_OWNER] = this.#me;
          for (let k = 1; k < n; k++) i32[SLOTS_INT + ((pos + k) & mask) * slotInts + SLOT_OWNER] = this.#me;
          this.pos = pos;
          this.base = base;
          return n;
        }
        pos = seen;
        fresh = true;
      } else if (dif < 0) {
        // Not committed: empty, or a producer claimed it and has not committed (or died). A
        // stale local head can land here while another consumer is skipping a dead producer's
        // record (head moved, seq not yet), so read the shared head before saying "empty".
        if (!fresh) {
          fresh = true;
          const head = Atomics.load(i32, W.head);
          if (head !== pos) {
            pos = this.#head = head;
            continue;
          }
        }
        this.#head = pos;
        if ((++this.#recvMisses & STALL_CHECK_EVERY) !== 0) return 0;
        const stall = this.#receiveStall(pos, base, seq);
        if (stall === RETRY) {
          fresh = false;
          continue;
        }
        if (stall === CLAIMED) this.#head = (pos + 1) | 0;
        return stall === CLAIMED ? 1 : 0;
      } else {
        // dif > 0: another consumer took pos. If head has not moved, the slot is ahead of it:
        // corrupted memory. Report empty, never spin here.
        const head = Atomics.load(i32, W.head);
        if (head === pos) return 0;
        pos = this.#head = head;
        fresh = true;
      }
    }
  }

  /**
   * Hands the slot at (pos, base) back to producers. False when a producer reclaimed it while
   * we read (we were taken for dead): the bytes read may be torn and must be discarded. Call
   * afterReceive once the batch is released.
   */
  release(pos: number, base: number): boolean {
    const i32 = this.i32;
    i32[base + SLOT_OWNER] = 0;
    // The release: pairs with the next lap's producer's acquire load of seq in claimSend.
    return Atomics.compareExchange(i32, base + SLOT_SEQ, (pos + 1) | 0, (pos + this.capacity) | 0) === ((pos + 1) | 0);
  }

  /** Wakes up to `count` sleeping senders (one per released slot), if any sleeps. */
  afterReceive(count: number): void {
    if (Atomics.load(this.i32, W.sendersSleeping) !== 0) this.wakeSenders(count);
  }

  /**
   * Each commit (release) wakes as many sleepers as it made records (slots), not all of them:
   * a woken sleeper always tries once before it sleeps again or leaves, and one that leaves
   * without trying (abort, close) passes its wake on (passOn), so no wake is swallowed.
   */
  wakeReceivers(count: number): void {
    // Bump first so that a sleeper between reading the word and sleeping gets 'not-equal'.
    Atomics.add(this.i32, W.dataEvents, 1);
    futex.notify(this.i32, W.dataEvents, count);
  }

  wakeSenders(count: number): void {
    Atomics.add(this.i32, W.spaceEvents, 1);
    futex.notify(this.i32, W.spaceEvents, count);
  }

  /** A sleeper leaving without trying hands its possible wake to another sleeper. */
  passOn(sending: boolean): void {
    const i32 = this.i32;
    if (sending) {
      const tail = Atomics.load(i32, W.tail);
      const free = Atomics.load(i32, this.slotOf(tail) + SLOT_SEQ) === tail;
      if (free && Atomics.load(i32, W.sendersSleeping) !== 0) this.wakeSenders(1);
    } else {
      const head = Atomics.load(i32, W.head);
      const committed = Atomics.load(i32, this.slotOf(head) + SLOT_SEQ) === ((head + 1) | 0);
      if (committed && Atomics.load(i32, W.receiversSleeping) !== 0) this.wakeReceivers(1);
    }
  }

  /** Makes the next failed attempt look for a stall (waiters call this before they sleep). */
  lookForStalls(sending: boolean): void {
    if (sending) this.#sendMisses = STALL_CHECK_EVERY;
    else this.#recvMisses = STALL_CHECK_EVERY;
  }

  /** Remaining ms before a stall this side watches could be reclaimed (Infinity: none seen). */
  stallDeadline(sending: boolean): number {
    const since = sending ? this.#sendStallSince : this.#recvStallSince;
    return since < 0 ? Infinity : Math.max(1, since + this.stallTimeout - Date.now());
  }

  // --- crash recovery (slow path only) ---------------------------------------------------------

  /** True when it reclaimed a dead consumer's slot (the caller retries the claim). */
  #sendStall(pos: number, base: number, seq: number): boolean {
    const i32 = this.i32;
    const previous = (pos - this.capacity) | 0;
    const head = Atomics.load(i32, W.head);
    // A stall is a previous-lap record that a consumer claimed (head moved past it) but never
    // released. Anything else is a plain full queue, or a slot in transition.
    if (seq !== ((previous + 1) | 0) || ((head - previous) | 0) <= 0) {
      this.#sendStallSince = -1;
      return false;
    }
    const now = Date.now();
    if (this.#sendStallSince < 0 || this.#sendStallPos !== pos) {
      this.#sendStallPos = pos;
      this.#sendStallSince = now;
      return false;
    }
    if (now - this.#sendStallSince < this.stallTimeout) return false;
    if (!this.#ownerDead(Atomics.load(i32, base + SLOT_OWNER))) {
      // A living consumer is slow; look again after another stallTimeout.
      this.#sendStallSince = now;
      return false;
    }
    Atomics.store(i32, base + SLOT_OWNER, 0);
    // Frees the slot for this lap, exactly as the dead consumer's release would have.
    if (Atomics.compareExchange(i32, base + SLOT_SEQ, seq, pos) === seq) {
      Atomics.add(i32, W.reclaimedSlots, 1);
    }
    this.#sendStallSince = -1;
    return true;
  }

  #receiveStall(pos: number, base: number, seq: number): number {
    const i32 = this.i32;
    const tail = Atomics.load(i32, W.tail);
    // A stall is a record a producer claimed (tail moved past it) and never committed.
    if (seq !== pos || tail === pos) {
      this.#recvStallSince = -1;
      return EMPTY;
    }
    const now = Date.now();
    if (this.#recvStallSince < 0 || this.#recvStallPos !== pos) {
      this.#recvStallPos = pos;
      this.#recvStallSince = now;
      return EMPTY;
    }
    if (now - this.#recvStallSince < this.stallTimeout) return EMPTY;
    if (!this.#ownerDead(Atomics.load(i32, base + SLOT_OWNER))) {
      this.#recvStallSince = now;
      return EMPTY;
    }
    this.#recvStallSince = -1;
    // Take the position as a consumer would, then free the slot without reading it.
    if (Atomics.compareExchange(i32, W.head, pos, (pos + 1) | 0) !== pos) return RETRY;
    if (Atomics.compareExchange(i32, base + SLOT_SEQ, pos, (pos + this.capacity) | 0) === pos) {
      Atomics.add(i32, W.skippedRecords, 1);
      if (Atomics.load(i32, W.sendersSleeping) !== 0) this.wakeSenders(1);
      return RETRY;
    }
    // The producer committed after all: we own a committed record at pos.
    i32[base + SLOT_OWNER] = this.#me;
    this.pos = pos;
    this.base = base;
    return CLAIMED;
  }

  /**
   * Whether the thread whose lifeline token is `owner` is gone. The kernel answers (a byte-range
   * lock it releases when the thread or its process dies): no pid, so no pid reuse and no pid
   * namespace can fool it, and worker threads count on their own. 0 means the owner died (or
   * stopped) in the few instructions between its claim and recording its token.
   */
  #ownerDead(owner: number): boolean {
    return owner === 0 || !this.#lifeline.isAlive(owner);
  }
}

const STALL_CHECK_EVERY = 255;
const SLOTS_INT = SLOTS_OFFSET >> 2;
const EMPTY = 0;
const RETRY = 1;
const CLAIMED = 2;

