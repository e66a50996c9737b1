/**
 * The topic's core: claims, commits, gating, subscriber cursors, wake-ups and the recovery of
 * slots and entries left by dead threads, on the layout drawn in layout.ts (read its header for
 * the protocol). topic.ts turns this into the public API (codecs, waiting, timeouts).
 *
 * Hot-path notes: one Int32Array for every control word, one Uint8Array over the segment for
 * payloads, plain stores where a later seq-cst store or CAS publishes them, and no system call
 * unless someone sleeps. Each Atomics call is a builtin call (~8 ns on Node 20), so a publish
 * costs five (owner CAS, seq load, tail CAS, commit store, sleepers load; the "writing" store is
 * plain: fenced by the tail CAS after it, or on x86 made after the CAS, see MOVE_FIRST) and a
 * receive one (the seq load; two when the copy must be validated), plus a position store every
 * FLUSH_EVERY messages. Publishers keep the gate (a lower bound of every subscriber's position)
 * locally and rescan the subscriber table only when it runs out, as the Disruptor caches its
 * gating sequence. Between processes what counts is the slot's cache line, which a caught-up
 * subscriber polls: a publish writes it only with the "writing" store, the payload and the
 * commit, with no locked instruction between them on x86; the owner word's lock and release
 * are in the owner table (layout.ts, version 2). The exclusive publisher of a topic created so
 * (layout.ts, version 3) takes a free slot with plain stores only, on x86 (see `#solo`).
 */
import { IpcError } from '../errors.js';
import { heavyFence, lightCommitsAllowed } from '../os/fence.js';
import { futex } from '../os/futex.js';
import type { Lifeline } from '../os/lifeline.js';
import {
  ENTRY_BYTES,
  JOINING,
  PUB_PID,
  PUB_PUBLISHED,
  PUB_STATE,
  ROSTER_ENTRIES,
  SKIP,
  SLOT_LENGTH,
  SLOT_SEQ,
  SUB_MISSED,
  SUB_PID,
  SUB_POSITION,
  SUB_RECEIVED,
  SUB_STATE,
  SUBSCRIBERS_OFFSET,
  TOKEN_MASK,
  W,
  type TopicGeometry,
} from './layout.js';
import { CLAIMED, COMMITTED, LOCKED, MOVED, WRITTEN, park as parkHook } from './test-hook.js';

/** The test hook (undefined outside the tests), in a module constant: one compare per use. */
const park = parkHook;

/** claim() results other than a slot: 'block' and the slowest live subscriber is a lap behind. */
export const FULL = -1;
/** claim(): the slot is held by another live publisher (claiming p, or still writing p - capacity). */
export const BUSY = -2;

const ENTRY_INTS = ENTRY_BYTES >> 2;
/** Rounds a claim retries on a slot another publisher is about to take before it says BUSY. */
const BUSY_ROUNDS = 64;
/** Failed attempts between two looks at the clock for a liveness check. */
const LOOK_EVERY = 63;

/**
 * Loads after a copy must not be satisfied before the copy's loads. x86 never reorders loads with
 * loads; other CPUs (arm64) do, and a seq-cst RMW is the fence JavaScript has.
 */
const WEAKLY_ORDERED = process.arch !== 'x64' && process.arch !== 'ia32';
const fenceWord = new Int32Array(new SharedArrayBuffer(4));
const readFence = (): void => void (WEAKLY_ORDERED && Atomics.add(fenceWord, 0, 0));
/**
 * A claim moves the tail before it marks the slot "writing" (layout.ts, step 4), so that no
 * locked instruction separates the mark from the payload and the commit: the slot's cache line,
 * which a caught-up subscriber polls, is then taken once per publish instead of twice. Only on
 * CPUs that keep stores in order (x86: the mark is seen before any payload byte without a
 * fence); elsewhere the mark comes first and the tail CAS is its fence.
 */
const MOVE_FIRST = !WEAKLY_ORDERED;

/**
 * This thread's open cursors, by topic name. Cursors publish their positions lazily, so a
 * publisher held back looks whether its own thread's cursors have unpublished progress first
 * (otherwise a thread could wait for a position only it can publish).
 */
const ownCursors = new Map<string, Set<Cursor>>();

/**
 * Exclusive publishers: a topic's `publisher` word holds a thread's token, and its
 * `publisherHandle` word which of that thread's handles publishes. This thread's handles that
 * hold the place, by id (from a random start: a dead thread's token reused by this one must not
 * make its ids look like ours). A handle collected without close() gives the place back.
 */
const holding = new Set<number>();
let nextHandleId = (Math.random() * 2 ** 30) | 0;
const releaser = new FinalizationRegistry<{ i32: Int32Array; me: number; id: number }>(({ i32, me, id }) => {
  holding.delete(id);
  if (Atomics.load(i32, W.publisherHandle) === id) Atomics.compareExchange(i32, W.publisher, me, 0);
});

/** How long a sleeper sleeps at most when its heavy fence was refused (a commit it may miss). */
const UNFENCED_SLEEP_MS = 1;

/** One handle's view of a topic: its publishing side, and what its cursors share. */
export class TopicRing {
  readonly name: string;
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  readonly capacity: number;
  readonly mask: number;
  readonly slotInts: number;
  readonly slotsInt: number;
  /** Int32 index of the owner table: slot i's owner word is ownersInt + i (layout.ts). */
  readonly ownersInt: number;
  readonly maxMessageSize: number;
  readonly block: boolean;
  /** The topic admits one publishing thread at a time (layout.ts, "An exclusive publisher"). */
  readonly exclusive: boolean;
  readonly maxSubscribers: number;
  readonly livenessInterval: number;
  readonly lifeline: Lifeline;
  /** This thread's lifeline token: what owner and state words record. */
  readonly me: number;
  readonly #rosterInt: number;

  /** Filled by a successful claim: the position claimed. */
  pos = 0;
  /** Last tail / gate this handle saw (possibly stale: see the header). */
  #tail = 0;
  #gate = 0;
  /** Int32 index of this handle's roster entry; -1 before the first publish, -2 if none was free. */
  #roster = -1;
  #published = 0;
  /**
   * This handle is the topic's exclusive publisher, on a CPU that keeps stores in order: a claim
   * of a free slot whose owner word is 0 takes it with plain stores (nobody else claims).
   */
  #solo = false;
  /** ...and its process is registered for membarrier: the commit is a plain store too. */
  #lightCommit = false;
  /** This handle holds the topic's `publisher` word. */
  #holdsExclusive = false;
  readonly #handleId = (nextHandleId = (nextHandleId + 1) | 0);
  // Liveness checks: at most one per livenessInterval while held up, or when a waiter asks.
  #misses = 0;
  #nextLook = 0;
  #lookNow = false;

  constructor(name: string, buffer: SharedArrayBuffer, g: TopicGeometry, lifeline: Lifeline, livenessInterval: number) {
    this.name = name;
    this.i32 = new Int32Array(buffer);
    this.u8 = new Uint8Array(buffer);
    this.capacity = g.capacity;
    this.mask = g.capacity - 1;
    this.slotInts = g.slotBytes >> 2;
    this.slotsInt = g.slotsOffset >> 2;
    this.ownersInt = g.ownersOffset >> 2;
    this.maxMessageSize = g.maxMessageSize;
    this.block = g.overflow === 'block';
    this.exclusive = g.exclusivePublisher;
    this.maxSubscribers = g.maxSubscribers;
    this.#rosterInt = g.publishersOffset >> 2;
    this.livenessInterval = livenessInterval;
    this.lifeline = lifeline;
    this.me = lifeline.token;
    this.#tail = Atomics.load(this.i32, W.tail);
    this.#gate = Atomics.load(this.i32, W.gate);
  }

  slotOf(pos: number): number {
    return this.slotsInt + (pos & this.mask) * this.slotInts;
  }

  /** Current tail (for stats and cursors). */
  tail(): number {
    return Atomics.load(this.i32, W.tail);
  }

  // --- publishing --------------------------------------------------------------------------

  /**
   * Claims the next position: returns its slot (int32 index; the position is in this.pos), or
   * FULL / BUSY. The slot is ours until commit(); write the payload at (slot << 2) + 16.
   */
  claim(): number {
    const i32 = this.i32;
    const cap = this.capacity;
    const mask = this.mask;
    if (this.exclusive && !this.#holdsExclusive) this.#takeExclusive();
    if (this.#roster === -1) this.#joinRoster();
    let p = this.#tail;
    if (this.#solo) {
      // The exclusive publisher's claim: plain stores in the order of the CAS path below.
      if (this.block && ((p - this.#gate) | 0) >= cap && !this.#refreshGate(p)) return FULL;
      const base = this.slotsInt + (p & mask) * this.slotInts;
      const owner = this.ownersInt + (p & mask);
      const lap = p & ~mask;
      if (i32[owner] === 0 && Atomics.load(i32, base + SLOT_SEQ) === ((lap - cap) | 0)) {
        // Only a dead token's owner word is ever CASed by a reclaimer, never a 0: the lock is ours.
        i32[owner] = this.me;
        if (park !== undefined) park(LOCKED);
        i32[W.tail] = (p + 1) | 0;
        if (park !== undefined) park(MOVED);
        i32[base + SLOT_SEQ] = lap | 1;
        if (park !== undefined) park(CLAIMED);
        this.#tail = (p + 1) | 0;
        this.pos = p;
        return base;
      }
      // Not simply free (a dead publisher's claim, a stale tail): the CAS path sorts it out.
    }
    for (let round = 0; ; round++) {
      if (this.block && ((p - this.#gate) | 0) >= cap && !this.#refreshGate(p)) {
        this.#tail = p;
        return FULL;
      }
      const base = this.slotsInt + (p & mask) * this.slotInts;
      const owner = this.ownersInt + (p & mask);
      const lap = p & ~mask;
      // The lock, taken first: from here on the slot names its holder (a kill leaves the token).
      // A retry looks before it CASes: a failing CAS still takes the holder's cache line.
      let holder = round === 0 ? 0 : Atomics.load(i32, owner);
      if (holder === 0) holder = Atomics.compareExchange(i32, owner, 0, this.me);
      // Pairs with the commit store of the previous lap's publisher (or a reclaimer's).
      const seq = Atomics.load(i32, base + SLOT_SEQ);
      if (holder === 0) {
        if (seq === ((lap - cap) | 0)) {
          if (park !== undefined) park(LOCKED);
          if (MOVE_FIRST) {
            // Moves the tail. Nobody helps a claim that is not marked yet, and our lock on a free
            // slot means p is the tail; a CAS that fails anyway (corrupt memory) gives p up.
            const seen = Atomics.compareExchange(i32, W.tail, p, (p + 1) | 0);
            if (seen !== p) {
              Atomics.store(i32, owner, 0);
              p = seen;
              continue;
            }
            if (park !== undefined) park(MOVED);
            // "Writing p": a validating reader of p - capacity sees its copy is void. A plain
            // store, before every payload store in program order, which this CPU keeps.
            i32[base + SLOT_SEQ] = lap | 1;
          } else {
            // "Writing p" first: the CAS below is the fence that makes it visible before any
            // payload store on a CPU that reorders stores.
            i32[base + SLOT_SEQ] = lap | 1;
            // Moves the tail (unless a helper did).
            Atomics.compareExchange(i32, W.tail, p, (p + 1) | 0);
          }
          if (park !== undefined) park(CLAIMED);
          this.#tail = (p + 1) | 0;
          this.pos = p;
          return base;
        }
        Atomics.store(i32, owner, 0); // not free for p: unlock
      }
      const ahead = ((seq & ~1) - lap) | 0;
      if (ahead === 0) {
        // p is taken: the tail is past p, or its claimer is about to move it. Help it.
        const seen = Atomics.compareExchange(i32, W.tail, p, (p + 1) | 0);
        p = seen === p ? (p + 1) | 0 : seen;
        continue;
      }
      if (ahead > 0) {
        // A later lap: p is a lap or more behind the tail. If the tail says p all the same, the
        // memory is corrupt: report busy, never walk it one position at a time.
        const tail = Atomics.load(i32, W.tail);
        if (tail === p) {
          this.#tail = p;
          return BUSY;
        }
        p = tail;
        continue;
      }
      // The slot still holds the previous lap: its holder writes p - capacity, or is claiming p.
      const tail = Atomics.load(i32, W.tail);
      if (tail !== p) {
        p = tail;
        continue;
      }
      if (round < BUSY_ROUNDS) continue;
      if (holder !== 0 && this.shouldLook() && this.reclaimIfDead(base, owner, holder)) {
        round = 0;
        continue;
      }
      this.#tail = p;
      return BUSY;
    }
  }

  /** Commits the claimed record at (p, base) whose payload is written: the message is out. */
  commit(p: number, base: number, length: number): void {
    const i32 = this.i32;
    i32[base + SLOT_LENGTH] = length;
    if (park !== undefined) park(WRITTEN);
    // The commit, written last: publishes length and payload to a reader whose load sees lap(p).
    // Plain for an exclusive publisher registered for membarrier: sleepers fence instead.
    if (this.#lightCommit) i32[base + SLOT_SEQ] = p & ~this.mask;
    else Atomics.store(i32, base + SLOT_SEQ, p & ~this.mask);
    if (park !== undefined) park(COMMITTED);
    i32[this.ownersInt + (p & this.mask)] = 0; // a claimer that sees this early re-checks seq under its lock
    if (this.#roster >= 0) i32[this.#roster + PUB_PUBLISHED] = ++this.#published;
    // Seq-cst load after the commit: pairs with a sleeper's increment before its re-check (after
    // a plain commit, with the sleeper's heavy fence).
    if (Atomics.load(i32, W.dataSleepers) !== 0) this.wakeData();
  }

  /** Refreshes the gate for position p from the shared hint, then by a scan; true if p fits. */
  #refreshGate(p: number): boolean {
    const cap = this.capacity;
    const hint = Atomics.load(this.i32, W.gate);
    if (((p - hint) | 0) < cap) {
      this.#gate = hint;
      return true;
    }
    if (((p - this.scan()) | 0) < cap) return true;
    if (this.#flushOwn() && ((p - this.scan()) | 0) < cap) return true;
    if (!this.shouldLook() || !this.#freeDeadSubscribers(p)) return false;
    return ((p - this.scan()) | 0) < cap;
  }

  /**
   * The gate: min(tail, every gating subscriber's position). The tail is loaded FIRST, so a
   * subscriber that joins while we scan (and that we miss) reads a tail no lower than our gate.
   */
  scan(): number {
    const i32 = this.i32;
    // An exclusive publisher moves the tail with plain stores: the RMW makes the last one visible
    // before the table is read (a joiner loads the tail after its state store).
    let gate = this.#solo ? Atomics.add(i32, W.tail, 0) : Atomics.load(i32, W.tail);
    const high = Math.min(this.maxSubscribers, Atomics.load(i32, W.subscriberHigh));
    for (let i = 0, e = SUBSCRIBERS_OFFSET >> 2; i < high; i++, e += ENTRY_INTS) {
      const state = Atomics.load(i32, e + SUB_STATE);
      if (state === 0 || (state & JOINING) !== 0) continue;
      // Pairs with the subscriber's position store (made after the reads it covers).
      const position = Atomics.load(i32, e + SUB_POSITION);
      if (((position - gate) | 0) < 0) gate = position;
    }
    Atomics.store(i32, W.gate, gate);
    this.#gate = gate;
    return gate;
  }

  /** Publishes the positions of this thread's cursors on this topic; true if any moved. */
  #flushOwn(): boolean {
    let moved = false;
    for (const cursor of ownCursors.get(this.name) ?? []) moved = cursor.flush() || moved;
    return moved;
  }

  /** Frees the entries of dead subscribers that hold position p back. True if any was freed. */
  #freeDeadSubscribers(p: number): boolean {
    const i32 = this.i32;
    let freed = false;
    for (const e of this.#holdingBack(p)) {
      const state = Atomics.load(i32, e + SUB_STATE);
      if (state === 0 || (state & JOINING) !== 0) continue;
      Atomics.add(i32, W.livenessChecks, 1);
      if (this.lifeline.isAlive(state & TOKEN_MASK)) continue;
      // Exactly one freer wins; a dead thread never writes its entry again.
      if (Atomics.compareExchange(i32, e + SUB_STATE, state, 0) === state) {
        Atomics.add(i32, W.freedSubscribers, 1);
        freed = true;
      }
    }
    return freed;
  }

  /** Entries (int32 indices) of gating subscribers a lap or more behind position p. */
  #holdingBack(p: number): number[] {
    const i32 = this.i32;
    const out: number[] = [];
    const high = Math.min(this.maxSubscribers, Atomics.load(i32, W.subscriberHigh));
    for (let i = 0, e = SUBSCRIBERS_OFFSET >> 2; i < high; i++, e += ENTRY_INTS) {
      const state = Atomics.load(i32, e + SUB_STATE);
      if (state === 0 || (state & JOINING) !== 0) continue;
      if (((p - Atomics.load(i32, e + SUB_POSITION)) | 0) >= this.capacity) out.push(e);
    }
    return out;
  }

  /**
   * True when a subscriber of this very thread holds the next publish back: a blocking publish
   * from this thread would wait for itself (a subscriber cannot read while its thread blocks).
   */
  heldBySelf(): boolean {
    if (!this.block) return false;
    const i32 = this.i32;
    return this.#holdingBack(this.#tail).some((e) => (Atomics.load(i32, e + SUB_STATE) & TOKEN_MASK) === this.me);
  }

  /** Entries of the subscriber table in use (gating or joining). */
  subscriberCount(): number {
    const i32 = this.i32;
    let n = 0;
    const high = Math.min(this.maxSubscribers, Atomics.load(i32, W.subscriberHigh));
    for (let i = 0, e = SUBSCRIBERS_OFFSET >> 2; i < high; i++, e += ENTRY_INTS) if (Atomics.load(i32, e + SUB_STATE) !== 0) n++;
    return n;
  }

  /** Lists this handle in the publisher roster (for inspect); takes a free or a dead one's entry. */
  #joinRoster(): void {
    const i32 = this.i32;
    this.#roster = -2;
    for (let pass = 0; pass < 2 && this.#roster === -2; pass++) {
      for (let i = 0, e = this.#rosterInt; i < ROSTER_ENTRIES; i++, e += ENTRY_INTS) {
        const state = Atomics.load(i32, e + PUB_STATE);
        if (pass === 0 ? state !== 0 : state === 0 || this.lifeline.isAlive(state)) continue;
        if (Atomics.compareExchange(i32, e + PUB_STATE, state, this.me) !== state) continue;
        i32[e + PUB_PID] = process.pid;
        Atomics.store(i32, e + PUB_PUBLISHED, 0);
        this.#roster = e;
        break;
      }
    }
  }

  /** Gives up the roster entry and the exclusive publisher's word (close). */
  leaveRoster(): void {
    if (this.#roster >= 0) Atomics.compareExchange(this.i32, this.#roster + PUB_STATE, this.me, 0);
    this.#roster = -2;
    if (this.#holdsExclusive) {
      this.#holdsExclusive = this.#solo = this.#lightCommit = false;
      holding.delete(this.#handleId);
      releaser.unregister(this);
      // A seq-cst RMW: every plain store of this publisher is visible before the next one starts.
      Atomics.compareExchange(this.i32, W.publisher, this.me, 0);
    }
  }

  /**
   * Becomes the topic's exclusive publisher: takes the `publisher` word when it is 0 or holds a
   * dead thread's token (whose half-done claim the CAS path recovers); IPC_ERR_LIMIT when a
   * live thread, or another handle of this thread, holds it.
   */
  #takeExclusive(): void {
    const i32 = this.i32;
    for (;;) {
      const holder = Atomics.load(i32, W.publisher);
      // This thread's token but none of its open handles: a token reused from a dead thread.
      const sameThread = holder === this.me && holding.has(Atomics.load(i32, W.publisherHandle));
      if (holder !== 0 && (sameThread || (holder !== this.me && this.lifeline.isAlive(holder)))) {
        const who = sameThread ? 'another handle of this thread' : `pid ${Atomics.load(i32, W.publisherPid)}`;
        throw new IpcError('IPC_ERR_LIMIT', `topic '${this.name}' admits one publisher (exclusivePublisher), and ${who} publishes to it`);
      }
      if (Atomics.compareExchange(i32, W.publisher, holder, this.me) !== holder) continue;
      Atomics.store(i32, W.publisherHandle, this.#handleId);
      Atomics.store(i32, W.publisherPid, process.pid);
      holding.add(this.#handleId);
      releaser.register(this, { i32, me: this.me, id: this.#handleId }, this);
      this.#holdsExclusive = true;
      this.#solo = MOVE_FIRST;
      this.#lightCommit = this.#solo && lightCommitsAllowed();
      // Whatever tail this handle saw before is stale now.
      this.#tail = Atomics.load(i32, W.tail);
      return;
    }
  }

  // --- liveness and recovery ---------------------------------------------------------------

  /** Whether a held-up attempt should ask the kernel about its holder now (rate-limited). */
  shouldLook(): boolean {
    if (this.#lookNow) {
      this.#lookNow = false;
      this.#nextLook = performance.now() + this.livenessInterval;
      return true;
    }
    if ((++this.#misses & LOOK_EVERY) !== 0) return false;
    const now = performance.now();
    if (now < this.#nextLook) return false;
    this.#nextLook = now + this.livenessInterval;
    return true;
  }

  /** Makes the next held-up attempt look (a waiter about to sleep, or back from a timed sleep). */
  lookNow(): void {
    this.#lookNow = true;
  }

  /**
   * Reclaims the slot at `base` (owner word at `owner`) if the thread holding it is dead (the
   * kernel's answer). True when the slot changed hands (the caller tries again).
   */
  reclaimIfDead(base: number, owner: number, holder: number): boolean {
    const i32 = this.i32;
    if (holder === this.me) return false;
    Atomics.add(i32, W.livenessChecks, 1);
    if (this.lifeline.isAlive(holder)) return false;
    // Exactly one reclaimer wins, and a dead holder never acts again.
    if (Atomics.compareExchange(i32, owner, holder, this.me) !== holder) return true;
    const seq = Atomics.load(i32, base + SLOT_SEQ);
    const index = ((base - this.slotsInt) / this.slotInts) & this.mask;
    if ((seq & 1) !== 0) {
      // "Writing q" with a dead writer: the record becomes padding, delivered to no one.
      const q = (seq & ~1) | index;
      i32[base + SLOT_LENGTH] = SKIP;
      // A commit like a publisher's: publishes the SKIP length to the reader whose load sees it.
      Atomics.store(i32, base + SLOT_SEQ, seq & ~1);
      Atomics.add(i32, W.skippedRecords, 1);
      // The dead claimer may have died before moving the tail past q.
      Atomics.compareExchange(i32, W.tail, q, (q + 1) | 0);
    } else {
      // Committed (lap(q')), and the tail past q = q' + capacity: the dead claimer of q moved the
      // tail and died before marking the slot (MOVE_FIRST). Only that claim can have moved the
      // tail past q while the slot was held, so q becomes padding. Otherwise (tail at q or
      // before) it died before moving the tail, or after committing: just unlock.
      const q = ((seq + this.capacity) | 0) | index;
      if (((Atomics.load(i32, W.tail) - q) | 0) > 0) {
        i32[base + SLOT_LENGTH] = SKIP;
        Atomics.store(i32, base + SLOT_SEQ, q & ~this.mask);
        Atomics.add(i32, W.skippedRecords, 1);
      }
    }
    Atomics.store(i32, owner, 0); // unlock: the next lap's claimer CASes it from 0
    this.wakeData(); // whoever waited for this slot (subscribers, publishers) looks again
    return true;
  }

  // --- wake-ups ----------------------------------------------------------------------------

  /**
   * A subscriber about to sleep for a commit, after its increment of dataSleepers: the exclusive
   * publisher's plain commit and plain load of dataSleepers rely on this fence. Returns the
   * longest it may sleep: unbounded, or UNFENCED_SLEEP_MS if the kernel refused the fence.
   */
  fenceBeforeSleep(): number {
    return !this.exclusive || heavyFence() ? Infinity : UNFENCED_SLEEP_MS;
  }

  wakeData(): void {
    // Bump first, so that a sleeper between reading the word and sleeping gets 'not-equal'.
    Atomics.add(this.i32, W.dataEvents, 1);
    futex.notify(this.i32, W.dataEvents);
  }

  wakeSpace(): void {
    Atomics.add(this.i32, W.spaceEvents, 1);
    futex.notify(this.i32, W.spaceEvents);
  }
}

export type From = 'next' | 'oldest';

/**
 * A subscriber's cursor: its entry in the subscriber table and its position. Usage: next()
 * finds the next record (its length in this.length); the caller copies or decodes it, checks
 * mustValidate() / intact() where a copy could have been overwritten meanwhile, then calls
 * advance() (taken) or lost() (overwritten while copied).
 */
export class Cursor {
  readonly ring: TopicRing;
  /** Next position to read. */
  pos: number;
  /** Filled by next(): the record's slot, length and seq. */
  base = 0;
  length = 0;
  #seq = 0;
  /** Messages taken / skipped by laps (JavaScript numbers: no wrap). */
  received = 0;
  missed = 0;
  /** True after next() found the slot at pos held by a writer (a waiter then looks again). */
  heldUp = false;
  /** Called once by close() (the Topic handle forgets the cursor). */
  onClose: (() => void) | undefined;
  readonly #entry: number;
  readonly #joinTail: number;
  readonly #flushEvery: number;
  #published: number;
  #sinceFlush = 0;
  #idle = 0;
  #closed = false;

  /** @internal use Cursor.join */
  constructor(ring: TopicRing, entry: number, pos: number, published: number, joinTail: number) {
    this.ring = ring;
    this.#entry = entry;
    this.pos = pos;
    this.#published = published;
    this.#joinTail = joinTail;
    this.#flushEvery = Math.max(1, Math.min(64, ring.capacity >> 2));
  }

  /** Takes an entry in the subscriber table; undefined when every entry is taken by a live thread. */
  static join(ring: TopicRing, from: From): Cursor | undefined {
    const i32 = ring.i32;
    const entry = Cursor.#takeEntry(ring);
    if (entry === undefined) return undefined;
    const index = (entry - (SUBSCRIBERS_OFFSET >> 2)) / ENTRY_INTS;
    for (let high = Atomics.load(i32, W.subscriberHigh); high < index + 1; ) {
      const seen = Atomics.compareExchange(i32, W.subscriberHigh, high, index + 1);
      if (seen === high) break;
      high = seen;
    }
    const tail = Atomics.load(i32, W.tail);
    const start = from === 'oldest' ? (tail - ring.capacity) | 0 : tail;
    Atomics.store(i32, entry + SUB_POSITION, start);
    i32[entry + SUB_PID] = process.pid;
    i32[entry + SUB_MISSED] = 0;
    i32[entry + SUB_RECEIVED] = 0;
    // From here the entry gates publishers (scans that see it also see its position).
    Atomics.store(i32, entry + SUB_STATE, ring.me);
    const joinTail = Atomics.load(i32, W.tail);
    const cursor = new Cursor(ring, entry, from === 'oldest' ? start : joinTail, start, joinTail);
    cursor.flush(); // 'next': the position moves on to joinTail
    let mine = ownCursors.get(ring.name);
    if (mine === undefined) ownCursors.set(ring.name, (mine = new Set()));
    mine.add(cursor);
    return cursor;
  }

  static #takeEntry(ring: TopicRing): number | undefined {
    const i32 = ring.i32;
    const first = SUBSCRIBERS_OFFSET >> 2;
    // A free entry first; then one whose thread died (joining or not) without closing it.
    for (let i = 0, e = first; i < ring.maxSubscribers; i++, e += ENTRY_INTS) {
      if (Atomics.load(i32, e + SUB_STATE) === 0 && Atomics.compareExchange(i32, e + SUB_STATE, 0, ring.me | JOINING) === 0) return e;
    }
    for (let i = 0, e = first; i < ring.maxSubscribers; i++, e += ENTRY_INTS) {
      const state = Atomics.load(i32, e + SUB_STATE);
      if (state === 0 || ring.lifeline.isAlive(state & TOKEN_MASK)) continue;
      if (Atomics.compareExchange(i32, e + SUB_STATE, state, ring.me | JOINING) === state) {
        if ((state & JOINING) === 0) Atomics.add(i32, W.freedSubscribers, 1);
        return e;
      }
    }
    return undefined;
  }

  /**
   * Finds the next message: returns its slot (length in this.length), or -1 when there is
   * nothing to read now. Padding is skipped; a lap jumps to the oldest retained position.
   */
  next(): number {
    const ring = this.ring;
    const i32 = ring.i32;
    const mask = ring.mask;
    // Padding and laps are skipped in a loop; corrupt memory could make it endless, so a call
    // gives up after a lap's worth of steps (the next call goes on from there).
    for (let steps = ring.capacity + 64; steps > 0; steps--) {
      const r = this.pos;
      const base = ring.slotsInt + (r & mask) * ring.slotInts;
      const lap = r & ~mask;
      // Acquire: pairs with the publisher's commit store.
      const seq = Atomics.load(i32, base + SLOT_SEQ);
      if (seq === lap) {
        const length = i32[base + SLOT_LENGTH]!;
        if (length >= 0 && length <= ring.maxMessageSize) {
          this.base = base;
          this.length = length;
          this.#seq = seq;
          this.heldUp = false;
          return base;
        }
        // Padding (SKIP, or a length no publisher writes): delivered to no one.
        if (this.mustValidate() && !this.#still(base, seq)) this.#lapped(r);
        else this.pos = (r + 1) | 0;
        continue;
      }
      if ((((seq & ~1) - lap) | 0) > 0) {
        this.#lapped(r);
        continue;
      }
      // Nothing at r yet: r is being written (lap | 1), or not claimed (the previous lap), or
      // claimed and not marked yet (the previous lap, the tail past r: MOVE_FIRST).
      if (this.#published !== r) this.flush();
      this.heldUp = seq === (lap | 1);
      if ((this.heldUp || MOVE_FIRST) && ring.shouldLook()) {
        const owner = ring.ownersInt + (r & mask);
        const holder = Atomics.load(i32, owner);
        if (holder !== 0 && (this.heldUp || this.claimedAhead()) && ring.reclaimIfDead(base, owner, holder)) continue;
      }
      // 'overwrite': a reader paused for 2^31 positions would see laps as the past; the tail
      // tells (now and then: it is the publishers' hot line).
      if (!ring.block && (++this.#idle & 1023) === 0) {
        const ahead = (ring.tail() - r) | 0;
        if (ahead < 0 || ahead > ring.capacity) {
          this.#lapped(r);
          continue;
        }
      }
      return -1;
    }
    return -1;
  }

  /**
   * True when the tail is past our position although next() found nothing there: its claimer
   * moved the tail and has not marked the slot yet (MOVE_FIRST), so it holds us up (and may die
   * there). Loads the tail (the publishers' line): only before a sleep or a liveness look.
   */
  claimedAhead(): boolean {
    return MOVE_FIRST && ((this.ring.tail() - this.pos) | 0) > 0;
  }

  /** Whether a copy of the current record must be validated: 'overwrite', or history before joining. */
  mustValidate(): boolean {
    return !this.ring.block || ((this.pos - this.#joinTail) | 0) < 0;
  }

  /** After copying the current record: true if no publisher started to overwrite it meanwhile. */
  intact(): boolean {
    return this.#still(this.base, this.#seq);
  }

  #still(base: number, seq: number): boolean {
    readFence();
    return Atomics.load(this.ring.i32, base + SLOT_SEQ) === seq;
  }

  /** The current record was taken (delivered, or consumed by a codec error). */
  advance(): void {
    this.pos = (this.pos + 1) | 0;
    this.received++;
    if (++this.#sinceFlush >= this.#flushEvery) this.flush();
  }

  /** The current record was overwritten while it was copied. */
  lost(): void {
    this.#lapped(this.pos);
  }

  /** Jumps from r (overwritten) to the oldest retained position, counting what is skipped. */
  #lapped(r: number): void {
    const cap = this.ring.capacity;
    let to = (this.ring.tail() - cap) | 0;
    if (((to - r) | 0) <= 0) to = (r + 1) | 0; // only r itself is known to be gone
    // History from before subscribe() is not counted: it was published before we were there.
    const from = ((r - this.#joinTail) | 0) < 0 ? this.#joinTail : r;
    const skipped = (to - from) | 0;
    if (skipped > 0) {
      this.missed += skipped;
      this.ring.i32[this.#entry + SUB_MISSED] = this.missed | 0; // informational
    }
    this.pos = to;
  }

  /**
   * Publishes the position (every read before it is done) and wakes publishers waiting for
   * subscribers, if any sleeps. False if there was nothing new to publish.
   */
  flush(): boolean {
    this.#sinceFlush = 0;
    if (this.#closed || this.#published === this.pos) return false;
    const i32 = this.ring.i32;
    this.#published = this.pos;
    i32[this.#entry + SUB_RECEIVED] = this.received | 0; // informational, visible with the store below
    // Release: the reads of every slot before pos are done. Pairs with a publisher's scan.
    Atomics.store(i32, this.#entry + SUB_POSITION, this.pos);
    // Seq-cst load after the store: pairs with a publisher's increment before its re-check.
    if (this.ring.block && Atomics.load(i32, W.spaceSleepers) !== 0) this.ring.wakeSpace();
    return true;
  }

  /** Leaves the subscriber table; publishers no longer wait for this cursor. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const mine = ownCursors.get(this.ring.name);
    mine?.delete(this);
    if (mine?.size === 0) ownCursors.delete(this.ring.name);
    this.onClose?.();
    const i32 = this.ring.i32;
    // Leaving: a scan that sees 0 ignores the entry. Then wake publishers it may hold back (the
    // seq-cst CAS before the load pairs with a sleeper's increment before its rescan).
    if (Atomics.compareExchange(i32, this.#entry + SUB_STATE, this.ring.me, 0) === this.ring.me && this.ring.block && Atomics.load(i32, W.spaceSleepers) !== 0) {
      this.ring.wakeSpace();
    }
  }
}
