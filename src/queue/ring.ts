/**
 * The queue's lock-free core: Vyukov's bounded MPMC algorithm on the layout drawn in
 * layout.ts (read its header for the protocol, the claims table, leases and the crash-recovery
 * rules; test/model/ checks them with Spin). This module does claims, commits, releases,
 * leases, wake-ups and stall recovery on raw slots; queue.ts turns that into the public API
 * (codecs, waiting, timeouts).
 *
 * Hot-path notes: one Int32Array for every control word (no DataView), one Uint8Array over
 * the whole segment for payload copies (slice/set, the fastest copies V8 has), plain stores
 * where a later seq-cst CAS publishes them, and no system call unless a peer sleeps. Every
 * Atomics call costs a builtin call (~8 ns on Node 20, it is not inlined), so each side keeps
 * its last known head/tail locally (as Vyukov's and Agrona's rings do) and reads the shared
 * index only when the local one proved stale: a failed CAS returns the current value, a slot
 * ahead of us or an apparently empty/full queue re-reads it. The CAS on the shared index stays
 * the only arbiter of a claim, so a stale local position can cost a retry, never a wrong claim.
 * Per message a producer writes its own row (one plain store: the intent), the tail, the
 * slot's length and payload, and the slot's seq; a consumer its row, the head and the seq.
 * The 64-bit lease CASes (BigInt) are only on the lease paths.
 */
import { IpcError } from '../errors.js';
import { futex } from '../os/futex.js';
import { DEAD_TOKEN, type Lifeline } from '../os/lifeline.js';
import {
  CONTINUATION,
  ROW_BYTES,
  ROW_RECV_COUNT,
  ROW_RECV_LEASE,
  ROW_RECV_POS,
  ROW_SEND_COUNT,
  ROW_SEND_POS,
  ROW_TOKEN,
  ROWS_OFFSET,
  SLOT_HOLDER,
  SLOT_LEASE_TIME,
  SLOT_LENGTH,
  SLOT_HEADER_BYTES,
  SLOT_SEQ,
  W,
  type QueueGeometry,
} from './layout.js';

/**
 * One handle's view of a queue: its row in the claims table (taken at construction, given
 * back by close()) and its cached positions. A claim fills `pos` / `base` for the caller.
 */
export class Ring {
  readonly i32: Int32Array;
  /** The same memory as 64-bit words: (seq, holder) pairs for the lease CASes. */
  readonly i64: BigInt64Array;
  /** The whole segment as bytes, for payload copies. */
  readonly u8: Uint8Array;
  readonly capacity: number;
  readonly maxMessageSize: number;
  readonly slotBytes: number;
  /** Payload bytes per slot (slotBytes - 16): a longer message spans slots. */
  readonly slotSize: number;
  /** Whether a message can span slots (maxMessageSize > slotSize); false keeps the old paths. */
  readonly spans: boolean;
  readonly stallTimeout: number;
  readonly #mask: number;
  readonly #slotInts: number;
  readonly #slotsInt: number;
  readonly #handles: number;
  readonly #lifeline: Lifeline;
  /** This thread's lifeline token: what our row and our leases record. */
  readonly #me: number;
  /** Int32 index of our row in the claims table (-1 once closed). */
  #row: number;
  /** Last tail / head this handle saw (possibly stale; see the header). */
  #tail = 0;
  #head = 0;
  /** What our row's counts and lease flag hold now, so the hot path skips rewriting them. */
  #sendCount = 0;
  #recvCount = 0;
  #recvLease = false;

  /** Filled by a successful claimSend / claimReceive / rescueLease; read at once by the caller. */
  pos = 0;
  base = 0;

  // Stall tracking, per side: the position seen stuck, since when, and when to look again.
  #sendStallPos = 0;
  #sendStallSince = -1;
  #recvStallPos = 0;
  #recvStallSince = -1;
  // Failed attempts; every STALL_CHECK_EVERY + 1-th looks for a stall. Waiters force a look.
  #sendMisses = 0;
  #recvMisses = 0;

  // Lease rescue: when this handle last scanned, what leaseEvents said then, and the leases of
  // live holders it has seen (slot -> seq, holder, first seen), to tell when one expired.
  /** Set by the first lease taken through this handle: its waits then wake to scan. */
  leasing = false;
  #nextLeaseScan = 0;
  #leaseEventsSeen = 0;
  readonly #watched = new Map<number, [seq: number, holder: number, since: number]>();

  /**
   * `lifeline` is this thread's on the queue's memory (the caller opens it, and closes it after
   * close()). Takes a row of the claims table: IPC_ERR_LIMIT when every row has a live owner.
   */
  constructor(buffer: SharedArrayBuffer, g: QueueGeometry, stallTimeout: number, lifeline: Lifeline, what = 'queue') {
    this.i32 = new Int32Array(buffer);
    this.i64 = new BigInt64Array(buffer, 0, Math.floor(buffer.byteLength / 8));
    this.u8 = new Uint8Array(buffer);
    this.capacity = g.capacity;
    this.maxMessageSize = g.maxMessageSize;
    this.slotBytes = g.slotBytes;
    this.slotSize = g.slotBytes - SLOT_HEADER_BYTES;
    this.spans = g.maxMessageSize > this.slotSize;
    this.stallTimeout = stallTimeout;
    this.#mask = g.capacity - 1;
    this.#slotInts = g.slotBytes >> 2;
    this.#slotsInt = g.slotsOffset >> 2;
    this.#handles = g.handles;
    this.#lifeline = lifeline;
    this.#me = lifeline.token;
    this.#row = this.#takeRow(what);
    this.#tail = Atomics.load(this.i32, W.tail);
    this.#head = Atomics.load(this.i32, W.head);
  }

  /** Int32 index where the slot of `pos` starts. */
  slotOf(pos: number): number {
    return this.#slotsInt + (pos & this.#mask) * this.#slotInts;
  }

  /**
   * Slots the record whose first slot holds `length` takes: k for a valid span's first slot,
   * else 1 (a one-slot record, SKIP, CONTINUATION, or a corrupt length, read as a skip).
   */
  slotsOf(length: number): number {
    if (length <= this.slotSize || length > this.maxMessageSize) return 1;
    return Math.ceil(length / this.slotSize);
  }

  /** This handle's lifeline token (what it records as a lease holder). */
  get token(): number {
    return this.#me;
  }

  /**
   * Claims up to `max` consecutive free slots at the tail with one CAS (a batch moves the
   * shared index once). Returns how many (0 when full); the first is at this.pos / this.base,
   * the k-th at slotOf(pos + k). With `exact` (a span), exactly `max` or none: fewer free
   * slots is full.
   */
  claimSend(max: number, exact = false): number {
    const i32 = this.i32;
    const mask = this.#mask;
    const slotInts = this.#slotInts;
    const slots = this.#slotsInt;
    let pos = this.#tail;
    let fresh = false; // whether pos was read from (or returned by) the shared index just now
    let announced = false; // an intent of this call whose CAS lost: withdrawn if we give up
    for (;;) {
      const base = slots + (pos & mask) * slotInts;
      // Acquire: pairs with the releasing CAS of the consumer that freed the slot for this lap.
      const seq = Atomics.load(i32, base + SLOT_SEQ);
      const dif = (seq - pos) | 0;
      if (dif === 0) {
        let n = 1;
        while (n < max && Atomics.load(i32, slots + ((pos + n) & mask) * slotInts + SLOT_SEQ) === ((pos + n) | 0)) n++;
        if (exact && n < max) {
          // A span never takes part of its slots. A stale tail can make a later slot look
          // taken (another producer's record): check the shared tail before saying "full".
          if (!fresh) {
            fresh = true;
            const tail = Atomics.load(i32, W.tail);
            if (tail !== pos) {
              pos = this.#tail = tail;
              continue;
            }
          }
          this.#tail = pos;
          const p = (pos + n) | 0;
          const b = slots + (p & mask) * slotInts;
          if ((++this.#sendMisses & STALL_CHECK_EVERY) === 0 && this.#sendStall(p, b, Atomics.load(i32, b + SLOT_SEQ))) {
            fresh = false;
            continue;
          }
          if (announced) this.#withdraw(true);
          return 0;
        }
        // The intent, before the claim: plain stores in our own row, published by the CAS
        // below (seq-cst). While it stands and we live, nobody takes these slots from us.
        const row = this.#row;
        if (n !== this.#sendCount) i32[row + ROW_SEND_COUNT] = this.#sendCount = n;
        i32[row + ROW_SEND_POS] = pos;
        // The claim: from here the slots are ours until we commit them.
        const seen = Atomics.compareExchange(i32, W.tail, pos, (pos + n) | 0);
        if (seen === pos) {
          this.#tail = (pos + n) | 0;
          this.pos = pos;
          this.base = base;
          return n;
        }
        announced = true;
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
        if (announced) this.#withdraw(true);
        return 0;
      } else {
        // dif > 0: our position was taken; read the new tail. If it has not moved, the slot is
        // ahead of it, which only corrupted memory can do: report full, never spin here.
        const tail = Atomics.load(i32, W.tail);
        if (tail === pos) {
          if (announced) this.#withdraw(true);
          return 0;
        }
        pos = this.#tail = tail;
        fresh = true;
      }
    }
  }

  /**
   * Commits the claimed record at (pos, base) with `length` payload bytes already written (or
   * SKIP). False only if the slot was taken from us, which the protocol allows only from the
   * dead (or corrupted memory): nothing was delivered. Call afterSend once the batch is
   * committed.
   */
  commitSend(pos: number, base: number, length: number): boolean {
    const i32 = this.i32;
    i32[base + SLOT_LENGTH] = length;
    // The commit, written last: publishes length and payload to the consumer whose acquire
    // load of seq sees pos + 1 (claimReceive).
    return Atomics.compareExchange(i32, base + SLOT_SEQ, pos, (pos + 1) | 0) === pos;
  }

  /**
   * Commits an interior slot of a span (pos, base), payload already written: before the first
   * slot's commit, so that the first slot committed means the whole span is. False only if
   * the slot was taken from us (as commitSend).
   */
  commitInterior(pos: number, base: number): boolean {
    const i32 = this.i32;
    i32[base + SLOT_LENGTH] = CONTINUATION;
    // Publishes the piece; the first slot's commit, later in seq-cst order, publishes it again.
    return Atomics.compareExchange(i32, base + SLOT_SEQ, pos, (pos + 1) | 0) === pos;
  }

  /** Wakes up to `count` sleeping receivers (one per committed record), if any sleeps. */
  afterSend(count: number): void {
    // Seq-cst read after the commit: pairs with the sleeper's increment before its re-check.
    if (Atomics.load(this.i32, W.receiversSleeping) !== 0) this.wakeReceivers(count);
  }

  /**
   * Claims up to `max` consecutive committed records at the head with one CAS. Returns how
   * many slots (0 when empty); the first is at this.pos / this.base. With `lease` (max 1) the
   * claim is announced as a lease take, and the caller makes it a lease with takeLease. On a
   * queue with spans, `max` counts records (a span is one, of k slots, never split: a batch
   * stops before a span past BATCH_SLOTS slots, a span at the head is taken whole), and a
   * lease take finding a span at the head claims nothing and returns SPAN_AT_HEAD.
   */
  claimReceive(max: number, lease = false): number {
    const i32 = this.i32;
    const mask = this.#mask;
    const slotInts = this.#slotInts;
    const slots = this.#slotsInt;
    let pos = this.#head;
    let fresh = false;
    let announced = false; // as in claimSend
    let counted = false; // a lease take counts itself in `leases` before its claim
    for (;;) {
      const base = slots + (pos & mask) * slotInts;
      // Acquire: pairs with the producer's committing CAS.
      const seq = Atomics.load(i32, base + SLOT_SEQ);
      const dif = (seq - ((pos + 1) | 0)) | 0;
      if (dif === 0) {
        let n = 1;
        if (this.spans) {
          n = this.#recordsAt(pos, base, max);
          if (lease && n > 1) {
            if (announced || counted) this.#emptyHanded(announced, counted);
            return SPAN_AT_HEAD;
          }
        } else while (n < max && Atomics.load(i32, slots + ((pos + n) & mask) * slotInts + SLOT_SEQ) === ((pos + n + 1) | 0)) n++;
        if (lease && !counted) counted = this.#countLease();
        // The intent, before the claim (see claimSend).
        this.#announceReceive(pos, n, lease);
        const seen = Atomics.compareExchange(i32, W.head, pos, (pos + n) | 0);
        if (seen === pos) {
          this.#head = (pos + n) | 0;
          this.pos = pos;
          this.base = base;
          return n;
        }
        announced = true;
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
        if ((++this.#recvMisses & STALL_CHECK_EVERY) === 0) {
          if (lease && !counted) counted = this.#countLease();
          const stall = this.#receiveStall(pos, base, seq, lease);
          if (stall === RETRY) {
            announced = true; // the skip announced itself (its record is released now)
            fresh = false;
            continue;
          }
          if (stall === CLAIMED) {
            const n = this.#extendSkipped(pos, base, lease);
            this.#head = (pos + n) | 0;
            return n;
          }
        }
        if (announced || counted) this.#emptyHanded(announced, counted);
        return 0;
      } else {
        // dif > 0: another consumer took pos. If head has not moved, the slot is ahead of it:
        // corrupted memory. Report empty, never spin here.
        const head = Atomics.load(i32, W.head);
        if (head === pos) {
          if (announced || counted) this.#emptyHanded(announced, counted);
          return 0;
        }
        pos = this.#head = head;
        fresh = true;
      }
    }
  }

  /**
   * Hands the slot at (pos, base) back to producers. False only if it was taken from us (the
   * dead lose slots, not the slow; or corrupted memory): the bytes read may be torn and must
   * be discarded. Call afterReceive once the batch is released.
   */
  release(pos: number, base: number): boolean {
    // The release: pairs with the next lap's producer's acquire load of seq in claimSend.
    return Atomics.compareExchange(this.i32, base + SLOT_SEQ, (pos + 1) | 0, (pos + this.capacity) | 0) === ((pos + 1) | 0);
  }

  /**
   * Wakes up to `count` sleeping senders (one per released slot), if any sleeps. With spans,
   * all of them: a span sender woken by one free slot may need k and sleep again, and that
   * wake must not be lost to a one-slot sender behind it (the herd is the slow path only).
   */
  afterReceive(count: number): void {
    if (Atomics.load(this.i32, W.sendersSleeping) !== 0) this.wakeSenders(this.spans ? Infinity : count);
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
      if (free && Atomics.load(i32, W.sendersSleeping) !== 0) this.wakeSenders(this.spans ? Infinity : 1);
    } else {
      const head = Atomics.load(i32, W.head);
      const committed = Atomics.load(i32, this.slotOf(head) + SLOT_SEQ) === ((head + 1) | 0);
      if ((committed || this.leasing) && Atomics.load(i32, W.receiversSleeping) !== 0) this.wakeReceivers(1);
    }
  }

  /** Makes the next failed attempt look for a stall (waiters call this before they sleep). */
  lookForStalls(sending: boolean): void {
    if (sending) this.#sendMisses = STALL_CHECK_EVERY;
    else this.#recvMisses = STALL_CHECK_EVERY;
  }

  /**
   * Remaining ms before a stall this side watches could be reclaimed, or before a lease
   * consumer should scan again for leases to take over (Infinity: nothing to look at).
   */
  stallDeadline(sending: boolean): number {
    const since = sending ? this.#sendStallSince : this.#recvStallSince;
    let deadline = since < 0 ? Infinity : since + this.stallTimeout;
    if (!sending && this.leasing && Atomics.load(this.i32, W.leases) > 0) deadline = Math.min(deadline, this.#nextLeaseScan);
    return deadline === Infinity ? Infinity : Math.max(1, deadline - Date.now());
  }

  /**
   * On a queue with spans: how many slots the committed records from (pos, base) on take, up
   * to `max` records and BATCH_SLOTS slots, never splitting a span (the first record is
   * counted whole, whatever its size). Lengths are read after the acquire load of their seq:
   * if the head CAS that follows wins, nobody claimed these slots meanwhile, so they held.
   */
  #recordsAt(pos: number, base: number, max: number): number {
    const i32 = this.i32;
    let n = this.#spanAt(pos, base);
    for (let records = 1; records < max && n < BATCH_SLOTS; records++) {
      const p = (pos + n) | 0;
      const b = this.slotOf(p);
      if (Atomics.load(i32, b + SLOT_SEQ) !== ((p + 1) | 0)) break;
      const k = this.#spanAt(p, b);
      if (n + k > BATCH_SLOTS) break;
      n += k;
    }
    return n;
  }

  /**
   * Slots of the committed record at (p, b): k for a span whose k - 1 interior slots are all
   * committed (always, but for corrupted memory), else 1 (then read as a skip).
   */
  #spanAt(p: number, b: number): number {
    const i32 = this.i32;
    const k = this.slotsOf(i32[b + SLOT_LENGTH]!);
    for (let j = 1; j < k; j++) {
      const q = (p + j) | 0;
      if (Atomics.load(i32, this.slotOf(q) + SLOT_SEQ) !== ((q + 1) | 0)) return 1;
    }
    return k;
  }

  /**
   * A stall skip found the record at pos committed after all (its producer committed, then
   * died) and holds pos alone. If it is a span, claims its interior too, announced first;
   * returns the slots held. If another consumer took the interior already, the span cannot
   * be read whole and the caller drops it (the first slot, read alone, is a skip).
   */
  #extendSkipped(pos: number, base: number, lease: boolean): number {
    if (!this.spans || lease) return 1;
    const k = this.#spanAt(pos, base);
    if (k === 1) return 1;
    const next = (pos + 1) | 0;
    this.#announceReceive(pos, k, false);
    if (Atomics.compareExchange(this.i32, W.head, next, (pos + k) | 0) === next) return k;
    this.#announceReceive(pos, 1, false);
    return 1;
  }

  /**
   * Gives our row back (idempotent); the caller closes its lifeline afterwards. Call only with
   * no claim or lease take in progress. (A Ring never closed keeps its row until its lifeline
   * closes or its thread dies: the row then looks dead and is reused.)
   */
  close(): void {
    const row = this.#row;
    if (row < 0) return;
    this.#row = -1;
    const i32 = this.i32;
    i32[row + ROW_SEND_COUNT] = 0;
    i32[row + ROW_RECV_COUNT] = 0;
    i32[row + ROW_RECV_LEASE] = 0;
    // Publishes the cleared intents with the row: a later owner starts from nothing.
    Atomics.store(i32, row + ROW_TOKEN, 0);
  }

  // --- leases (at-least-once) ------------------------------------------------------------------

  /**
   * After claimReceive(1, true) returned 1: makes the claimed record at (pos, base) a lease of
   * this thread for `leaseTime` ms (0: until it dies). False if the slot was not as claimed
   * (corrupted memory): the caller drops the claim.
   */
  takeLease(pos: number, base: number, leaseTime: number): boolean {
    // Read by rescuers only once the CAS below has published it.
    this.i32[base + SLOT_LEASE_TIME] = leaseTime;
    return this.#cas64(base, (pos + 1) | 0, 0, (pos + 1) | 0, this.#me);
  }

  /** Whether this thread still holds the lease at (pos, base): checked after copying it out. */
  holds(pos: number, base: number): boolean {
    const i32 = this.i32;
    return Atomics.load(i32, base + SLOT_SEQ) === ((pos + 1) | 0) && Atomics.load(i32, base + SLOT_HOLDER) === this.#me;
  }

  /** Acknowledges the lease at (pos, base): frees the slot. False if it was taken from us. */
  ackLease(pos: number, base: number): boolean {
    // The release of a leased slot, in one CAS with the holder check (pairs with the next
    // lap's producer's acquire load of seq, as release does).
    if (!this.#cas64(base, (pos + 1) | 0, this.#me, (pos + this.capacity) | 0, 0)) return false;
    Atomics.sub(this.i32, W.leases, 1);
    this.afterReceive(1);
    return true;
  }

  /** Gives the lease at (pos, base) back for redelivery. False if it was taken from us. */
  giveBack(pos: number, base: number): boolean {
    if (!this.#cas64(base, (pos + 1) | 0, this.#me, (pos + 1) | 0, DEAD_TOKEN)) return false;
    this.#leaseGivenBack();
    return true;
  }

  /** Whether a lease consumer should scan for leases to take over now (see rescueLease). */
  leaseScanDue(): boolean {
    const i32 = this.i32;
    if (Atomics.load(i32, W.leases) <= 0) return false;
    return Atomics.load(i32, W.leaseEvents) !== this.#leaseEventsSeen || Date.now() >= this.#nextLeaseScan;
  }

  /**
   * Scans the records behind the head for a lease to take over: given back, held by a dead
   * thread, held by the same live thread for at least its lease time (seen across scans), or a
   * dead lease taker's record still in its claim window. On success this.pos / this.base name
   * it, it is leased to this thread for `leaseTime` ms, and true is returned.
   */
  rescueLease(leaseTime: number): boolean {
    const i32 = this.i32;
    const now = Date.now();
    this.#leaseEventsSeen = Atomics.load(i32, W.leaseEvents);
    this.#nextLeaseScan = now + this.stallTimeout;
    const head = Atomics.load(i32, W.head);
    const tail = Atomics.load(i32, W.tail);
    // Records that may still be in their slots: [tail - capacity, head); at most capacity.
    const span = Math.min(this.capacity, Math.max(0, (head - tail + this.capacity) | 0));
    const alive = new Map<number, boolean>();
    const isAlive = (token: number): boolean => {
      let live = alive.get(token);
      if (live === undefined) alive.set(token, (live = token !== DEAD_TOKEN && this.#lifeline.isAlive(token)));
      return live;
    };
    for (let k = 0, p = (head - span) | 0; k < span; k++, p = (p + 1) | 0) {
      const base = this.slotOf(p);
      const seq = Atomics.load(i32, base + SLOT_SEQ);
      if (seq !== ((p + 1) | 0)) continue; // released, or not a record of this lap
      const holder = Atomics.load(i32, base + SLOT_HOLDER);
      const slot = p & this.#mask;
      if (holder === 0) {
        // A receive in its claim window: ours to take only if every claimant is dead and one
        // of them was taking a lease (a plain receive's record is the at-most-once loss).
        if (this.#coverage(true, p) === DEAD_LEASE && this.#rescue(p, base, 0, leaseTime)) return true;
        continue;
      }
      if (holder === this.#me) continue; // this thread's own (another handle's) lease
      if (isAlive(holder)) {
        const limit = Atomics.load(i32, base + SLOT_LEASE_TIME);
        if (limit <= 0) continue;
        const seen = this.#watched.get(slot);
        if (seen === undefined || seen[0] !== seq || seen[1] !== holder) {
          this.#watched.set(slot, [seq, holder, now]);
          continue;
        }
        // Held by the same live thread since we first saw it, for at least its lease time.
        if (now - seen[2] < limit) continue;
      }
      if (this.#rescue(p, base, holder, leaseTime)) return true;
    }
    return false;
  }

  // --- the claims table -----------------------------------------------------------------------

  /** Takes a free row, or the row of a dead handle; IPC_ERR_LIMIT when all are live. */
  #takeRow(what: string): number {
    const i32 = this.i32;
    for (let pass = 0; pass < 2; pass++) {
      for (let r = 0; r < this.#handles; r++) {
        const row = ROWS_INT + r * ROW_INTS;
        const token = Atomics.load(i32, row + ROW_TOKEN);
        if (pass === 0 ? token !== 0 : token === 0 || this.#lifeline.isAlive(token) || !this.#settleDeadRow(row)) continue;
        if (Atomics.compareExchange(i32, row + ROW_TOKEN, token, this.#me) !== token) continue;
        // Ours (a dead owner's intents, if any, now look alive: they only delay a recovery
        // until these stores land).
        i32[row + ROW_SEND_COUNT] = 0;
        i32[row + ROW_RECV_COUNT] = 0;
        i32[row + ROW_RECV_LEASE] = 0;
        return row;
      }
    }
    throw new IpcError('IPC_ERR_LIMIT', `${what}: all ${this.#handles} handles are in use (maxHandles, set at create)`);
  }

  /**
   * A dead row may be reused once nothing depends on its intents. Only a lease take caught in
   * its claim window does: its record is given back first, so that the lease flag is not lost
   * with the row. False while a live handle also covers that position (it may hold it).
   */
  #settleDeadRow(row: number): boolean {
    const i32 = this.i32;
    if (Atomics.load(i32, row + ROW_RECV_LEASE) !== 1) return true;
    const count = Atomics.load(i32, row + ROW_RECV_COUNT);
    const first = Atomics.load(i32, row + ROW_RECV_POS);
    const head = Atomics.load(i32, W.head);
    for (let k = 0; k < count && k < this.capacity; k++) {
      const p = (first + k) | 0;
      if (((head - p) | 0) <= 0) continue; // never claimed by anyone: nothing held
      const base = this.slotOf(p);
      if (Atomics.load(i32, base + SLOT_SEQ) !== ((p + 1) | 0) || Atomics.load(i32, base + SLOT_HOLDER) !== 0) continue;
      if (this.#coverage(true, p, row) === LIVE_CLAIM) return false;
      if (this.#cas64(base, (p + 1) | 0, 0, (p + 1) | 0, DEAD_TOKEN)) this.#leaseGivenBack();
    }
    return true;
  }

  /**
   * Who covers position p with a send (recv = false) or receive intent: LIVE_CLAIM as soon as
   * one covering row's thread lives (the kernel's answer), else DEAD_LEASE if a dead one was a
   * lease take, DEAD_CLAIM if only dead plain claims, UNCOVERED if none (a dead claimant whose
   * row was reused since). Skips the row `except`.
   */
  #coverage(recv: boolean, p: number, except = -1): number {
    const i32 = this.i32;
    let result = UNCOVERED;
    for (let r = 0; r < this.#handles; r++) {
      const row = ROWS_INT + r * ROW_INTS;
      if (row === except) continue;
      const token = Atomics.load(i32, row + ROW_TOKEN);
      if (token === 0) continue;
      const count = Atomics.load(i32, row + (recv ? ROW_RECV_COUNT : ROW_SEND_COUNT));
      if (count <= 0) continue;
      const offset = (p - Atomics.load(i32, row + (recv ? ROW_RECV_POS : ROW_SEND_POS))) | 0;
      if (offset < 0 || offset >= count) continue;
      if (this.#lifeline.isAlive(token)) return LIVE_CLAIM;
      if (recv && Atomics.load(i32, row + ROW_RECV_LEASE) === 1) result = DEAD_LEASE;
      else if (result === UNCOVERED) result = DEAD_CLAIM;
    }
    return result;
  }

  #announceReceive(pos: number, n: number, lease: boolean): void {
    const i32 = this.i32;
    const row = this.#row;
    if (n !== this.#recvCount) i32[row + ROW_RECV_COUNT] = this.#recvCount = n;
    if (lease !== this.#recvLease) i32[row + ROW_RECV_LEASE] = (this.#recvLease = lease) ? 1 : 0;
    i32[row + ROW_RECV_POS] = pos;
  }

  /** A claim CAS lost and we give up: clear the intent so it covers nothing we do not hold. */
  #withdraw(sending: boolean): void {
    if (sending) this.i32[this.#row + ROW_SEND_COUNT] = this.#sendCount = 0;
    else this.i32[this.#row + ROW_RECV_COUNT] = this.#recvCount = 0;
  }

  /** A receive claim gives up: withdraw its intent, and uncount its lease take. */
  #emptyHanded(announced: boolean, counted: boolean): void {
    if (announced) this.#withdraw(false);
    if (counted) Atomics.sub(this.i32, W.leases, 1);
  }

  #countLease(): boolean {
    // Before the claim, so that a lease taker that dies in its claim window is looked for.
    Atomics.add(this.i32, W.leases, 1);
    return true;
  }

  // --- lease helpers (slow paths) --------------------------------------------------------------

  /** CAS of the 64-bit word (seq, holder) of the slot at int32 index `base`. */
  #cas64(base: number, seq: number, holder: number, newSeq: number, newHolder: number): boolean {
    const expected = pair(seq, holder);
    return Atomics.compareExchange(this.i64, base >> 1, expected, pair(newSeq, newHolder)) === expected;
  }

  #rescue(p: number, base: number, holder: number, leaseTime: number): boolean {
    // One CAS takes the lease and records us as its holder: a rescuer that dies leaves a lease
    // with a dead holder, rescued again. Several rescuers: one CAS wins.
    if (!this.#cas64(base, (p + 1) | 0, holder, (p + 1) | 0, this.#me)) return false;
    // Rescuers that read the previous holder's lease time in between see it for a moment.
    Atomics.store(this.i32, base + SLOT_LEASE_TIME, leaseTime);
    Atomics.add(this.i32, W.redelivered, 1);
    this.#watched.delete(p & this.#mask);
    this.pos = p;
    this.base = base;
    return true;
  }

  #leaseGivenBack(): void {
    const i32 = this.i32;
    Atomics.add(i32, W.leaseEvents, 1);
    if (Atomics.load(i32, W.receiversSleeping) !== 0) this.wakeReceivers(1);
  }

  // --- crash recovery (slow path only) ---------------------------------------------------------

  /** True when it freed a dead consumer's slot (the caller retries the claim). */
  #sendStall(pos: number, base: number, seq: number): boolean {
    const i32 = this.i32;
    const previous = (pos - this.capacity) | 0;
    const head = Atomics.load(i32, W.head);
    // A stall is a previous-lap record that a consumer claimed (head moved past it) but never
    // released: committed (seq previous + 1) and not leased, or still uncommitted (seq
    // previous: a consumer died skipping a dead producer's record). Anything else is a plain
    // full queue, a lease, or a slot in transition.
    const committed = seq === ((previous + 1) | 0);
    if ((!committed && seq !== previous) || ((head - previous) | 0) <= 0 || (committed && Atomics.load(i32, base + SLOT_HOLDER) !== 0)) {
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
    // Look: only claimants the kernel reports dead lose a slot; a live one (however slow, or
    // stopped) is waited for. Look again after another stallTimeout.
    const taker = this.#coverage(true, previous);
    if (taker === LIVE_CLAIM || (!committed && this.#coverage(false, previous) === LIVE_CLAIM)) {
      this.#sendStallSince = now;
      return false;
    }
    this.#sendStallSince = -1;
    // The kernel answered for this claim: the next position (a span's next slot) may be
    // looked at without another stallTimeout.
    this.#sendStallPos = (pos + 1) | 0;
    this.#sendStallSince = now - this.stallTimeout;
    if (!committed) {
      // Finish the dead consumer's skip, exactly as its CAS would have.
      if (Atomics.compareExchange(i32, base + SLOT_SEQ, previous, pos) === previous) Atomics.add(i32, W.skippedRecords, 1);
      return true;
    }
    if (taker === DEAD_LEASE) {
      // A lease taker died in its claim window: give the record back, for a lease consumer
      // to take over. The slot stays taken until that lease is acknowledged.
      this.#sendStallSince = -1;
      if (this.#cas64(base, seq, 0, seq, DEAD_TOKEN)) this.#leaseGivenBack();
      return false;
    }
    // Frees the slot for this lap, exactly as the dead consumer's release would have.
    if (this.#cas64(base, seq, 0, pos, 0)) Atomics.add(i32, W.reclaimedSlots, 1);
    return true;
  }

  #receiveStall(pos: number, base: number, seq: number, lease: boolean): number {
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
    if (this.#coverage(false, pos) === LIVE_CLAIM) {
      this.#recvStallSince = now;
      return EMPTY;
    }
    this.#recvStallSince = -1;
    // Read the slot again, after the coverage: a claimant that is not live and has not
    // committed by now never will. Without this, a producer that committed and moved on to its
    // next claim since our first read looks dead, and if its record is a span, a consumer that
    // takes the interior as an orphan (CONTINUATION at the head, once we moved it) would drop a
    // completed send. test/model/span.pml -DNORECHECK finds exactly that.
    if (Atomics.load(i32, base + SLOT_SEQ) !== pos) return RETRY;
    // Every claimant is dead. The skip takes the head as a receive would, so it announces
    // itself first: if we then died, or the record turned out committed, a producer must not
    // take the slot from under us.
    this.#announceReceive(pos, 1, lease);
    if (Atomics.compareExchange(i32, W.head, pos, (pos + 1) | 0) !== pos) return RETRY;
    // The kernel answered for this claim: the next position (a dead span's next slot) may be
    // skipped without another stallTimeout.
    this.#recvStallPos = (pos + 1) | 0;
    this.#recvStallSince = now - this.stallTimeout;
    if (Atomics.compareExchange(i32, base + SLOT_SEQ, pos, (pos + this.capacity) | 0) === pos) {
      Atomics.add(i32, W.skippedRecords, 1);
      if (Atomics.load(i32, W.sendersSleeping) !== 0) this.wakeSenders(this.spans ? Infinity : 1);
      return RETRY;
    }
    // The producer committed after all: we own a committed record at pos.
    this.pos = pos;
    this.base = base;
    return CLAIMED;
  }
}

const STALL_CHECK_EVERY = 255;
/** Most slots one receive claim takes on a queue with spans (a span at the head: all of it). */
const BATCH_SLOTS = 64;
/** claimReceive(1, true) found a span at the head, which is never leased: nothing claimed. */
export const SPAN_AT_HEAD = -1;
const ROWS_INT = ROWS_OFFSET >> 2;
const ROW_INTS = ROW_BYTES >> 2;
const EMPTY = 0;
const RETRY = 1;
const CLAIMED = 2;
// #coverage results.
const UNCOVERED = 0;
const DEAD_CLAIM = 1;
const DEAD_LEASE = 2;
const LIVE_CLAIM = 3;

/** The 64-bit little-endian word whose low half is `seq` and high half `holder`. */
function pair(seq: number, holder: number): bigint {
  return BigInt.asIntN(64, (BigInt(holder >>> 0) << 32n) | BigInt(seq >>> 0));
}

/**
 * Test hook, off unless INTERPROCESS_TEST_QUEUE_PAUSE=1 is in the environment when this module
 * loads (read once): Queue handles then call globalThis[Symbol.for('interprocess.queue.pause')]
 * with the name of the point they reached, right after a claim CAS won ('send-claimed',
 * 'receive-claimed') and right before a commit or release CAS ('send-commit',
 * 'receive-release'; 'span-commit' before each interior commit of a span, whose 'send-commit'
 * is its first slot's, last), so that tests can stop (SIGSTOP) or kill a process exactly there. It is a
 * subclass, so ordinary handles run the plain Ring with nothing added to the hot path.
 */
export const QueueRing: typeof Ring =
  process.env.INTERPROCESS_TEST_QUEUE_PAUSE === '1'
    ? class PausingRing extends Ring {
        override claimSend(max: number, exact = false): number {
          const n = super.claimSend(max, exact);
          if (n !== 0) pauseAt('send-claimed');
          return n;
        }
        override commitSend(pos: number, base: number, length: number): boolean {
          pauseAt('send-commit');
          return super.commitSend(pos, base, length);
        }
        override commitInterior(pos: number, base: number): boolean {
          pauseAt('span-commit');
          return super.commitInterior(pos, base);
        }
        override claimReceive(max: number, lease = false): number {
          const n = super.claimReceive(max, lease);
          if (n > 0) pauseAt(lease ? 'lease-claimed' : 'receive-claimed');
          return n;
        }
        override release(pos: number, base: number): boolean {
          pauseAt('receive-release');
          return super.release(pos, base);
        }
      }
    : Ring;

function pauseAt(point: string): void {
  const hook = (globalThis as Record<symbol, unknown>)[Symbol.for('interprocess.queue.pause')];
  if (typeof hook === 'function') hook(point);
}
