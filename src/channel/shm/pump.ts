/**
 * A pump: one direction of a shm:// connection. It holds that direction's Queue (the handle,
 * for creation, validation and the kernel sleeps of sendWith / receiveWith) and its Ring (for
 * the fast path, which claims, fills and commits slots in place exactly as Queue's own
 * trySend / tryReceive do), and decides when its owner looks at the queue next: after the
 * application's microtasks, after other I/O, or after a sleep in the kernel. The link uses one
 * pump to send and one to receive.
 *
 * Waiting adapts (spinBudget): while the queue is empty (or full), the owner looks again each
 * time the application's microtasks have all run, for a bounded time, and then sleeps in the
 * kernel, so that a reply a few awaits away is taken at once and an idle channel costs no CPU.
 *
 * Wake-ups are batched: the owner works in batches (the records of one write, one receive loop)
 * and closes each with endBatch(). A peer asleep in the kernel is woken by the batch's first
 * record (so it starts at once: a large frame is read while it is written), then once every
 * capacity/8 records, then at endBatch() (so no record is left without a wake-up), instead of
 * once per record: a peer that is already waking up costs no further system calls. This keeps
 * the queue's no-lost-wake-up argument (src/queue/layout.ts, "wake"): every commit (release)
 * is followed, before the batch ends, by a seq-cst read of the peer's sleeping count.
 */
import { IpcError } from '../../errors.js';
import { Queue, queueRing } from '../../queue/queue.js';
import { SKIP, SLOT_HEADER_BYTES, SLOT_LENGTH } from '../../queue/layout.js';
import type { Ring } from '../../queue/ring.js';
import { RECORD_HEADER_BYTES, writeRecord, type Read, type RecordReader } from './record.js';

/** How long a receive pump spins (yielding to microtasks) before it sleeps in the kernel (ms). */
export const RECEIVE_SPIN_MS = 0.05;
/**
 * How long a sender waiting for room spins before it sleeps (ms). Longer than the receive spin:
 * a full queue means a busy receiver, which will free a slot soon, and a sleeping sender costs
 * that receiver a system call or two per receive loop until the sender is awake again (50 µs
 * measured no different on the shared machine).
 */
export const SEND_SPIN_MS = 0.5;
/** How long a receiver spins for the next record of a frame whose first records it has (ms). */
export const MID_FRAME_SPIN_MS = 0.5;
/** The shortest a spin gets after spins that did not pay off (ms). */
const MIN_SPIN_MS = 0.005;
/** Spins in a row that end in a sleep before the spin is cut to MIN_SPIN_MS. */
const MISSES_BEFORE_SHORT = 8;

/** tryTake found no record. */
export const NO_RECORD = -1;

/**
 * How long the next spin may last. A spin that ends in a sleep bought nothing: the peer is slow,
 * idle, or shares our CPU (it cannot run while we spin, so spinning only delays it). After
 * MISSES_BEFORE_SHORT of those in a row, spins are cut short, except every 16th wait, which
 * spins fully to find out whether things changed: once one pays off, spins are full again.
 * (Without that probe two peers that both sleep could never find each other awake again.)
 */
function spinBudget(misses: number, waits: number, full: number): number {
  return misses < MISSES_BEFORE_SHORT || (waits & 15) === 0 ? full : MIN_SPIN_MS;
}

const RESOLVED = Promise.resolve();
/**
 * Runs `ticker` (which calls process.nextTick(callback)) once every microtask queued so far,
 * and every one those queue in turn, has run: a process.nextTick queued from a microtask runs
 * only after Node has drained the whole microtask queue. A pump that looks at its queue this
 * way lets the application's await chain (which usually produces the next message) finish
 * first, instead of interleaving with it.
 */
function afterMicrotasks(ticker: () => void): void {
  void RESOLVED.then(ticker);
}

/**
 * Opens (or creates, with `create`) one direction's queue, for a pump; an existing one of
 * another user only with `allowOtherOwner`. Its Ring, and the owner tokens the Ring records,
 * are the Queue handle's own (one mapping, one lifeline on the queue).
 */
export function openQueue(name: string, allowOtherOwner: boolean, create?: { capacity: number; maxMessageSize: number; mode: number }): Queue<Uint8Array> {
  const queue = create === undefined ? Queue.open(name, { wait: 'block', allowOtherOwner }) : Queue.create(name, { ...create, wait: 'block' });
  // Pumps read and write one slot per record (tryTake, tryPut): a queue whose messages can
  // span slots (made by someone else) is not one a channel made.
  if (queueRing(queue).spans) {
    queue.close();
    throw new IpcError('IPC_ERR_INCOMPATIBLE', `queue '${name}': its messages span slots (slotSize ${queue.slotSize} < maxMessageSize ${queue.maxMessageSize}); a channel's queues never do`);
  }
  return queue;
}

export class Pump {
  readonly queue: Queue<Uint8Array>;
  readonly #ring: Ring;
  /** Payload bytes one record carries. */
  readonly chunkBytes: number;
  /** Whether this pump commits records (else it releases them). */
  readonly #sending: boolean;
  /** Records committed (released) since the peer was last signalled, and whether a batch is open. */
  #unsignalled = 0;
  #batching = false;
  readonly #signalEvery: number;
  readonly #fullSpinMs: number;
  readonly #run: () => void;
  readonly #tick: () => void;
  #scheduled = false;
  #sleeping = false;
  /** When the current spin ends (performance.now()), -1 while not spinning. */
  #spinEnd = -1;
  /** Spins in a row that ended in a sleep, and waits so far (see spinBudget). */
  #misses = 0;
  #waits = 0;
  /** Wakes a sleep in the kernel (the peer is gone, or teardown). */
  #wake: AbortController | undefined;

  /** `run` looks at the queue and does the owner's work; the pump decides when it runs. */
  constructor(queue: Queue<Uint8Array>, sending: boolean, fullSpinMs: number, run: () => void) {
    this.queue = queue;
    this.#ring = queueRing(queue);
    // A multiple of 8, so that every chunk of a frame starts aligned (see record.ts), unless
    // the slots are too small for that (a peer's odd geometry costs speed, nothing else).
    const room = queue.maxMessageSize - RECORD_HEADER_BYTES;
    this.chunkBytes = room >= 8 ? room & ~7 : room;
    this.#sending = sending;
    this.#signalEvery = Math.max(1, this.#ring.capacity >> 3);
    this.#fullSpinMs = fullSpinMs;
    this.#run = () => {
      this.#scheduled = false;
      run();
    };
    this.#tick = () => process.nextTick(this.#run);
  }

  get sleeping(): boolean {
    return this.#sleeping;
  }

  /** Runs once the application's microtasks have all run (unless already arranged). */
  later(): void {
    if (this.#scheduled || this.#sleeping) return;
    this.#scheduled = true;
    afterMicrotasks(this.#tick);
  }

  /** Runs after the event loop's other work (a busy pump must not starve it). */
  afterIo(): void {
    this.#scheduled = true;
    setImmediate(this.#run);
  }

  /**
   * When the current spin ends (performance.now()); starts one at `t` if none runs: of adaptive
   * length, or of MID_FRAME_SPIN_MS when the peer is in the middle of a frame (its next record
   * is on its way: sleeping would cost a wake-up for each of the frame's next records).
   */
  spinDeadline(t: number, midFrame = false): number {
    if (this.#spinEnd < 0) this.#spinEnd = t + (midFrame ? MID_FRAME_SPIN_MS : spinBudget(this.#misses, ++this.#waits, this.#fullSpinMs));
    return this.#spinEnd;
  }

  /** The queue had what we waited for: a spin in progress paid off. */
  paidOff(): void {
    if (this.#spinEnd >= 0) {
      this.#spinEnd = -1;
      this.#misses = 0;
    }
  }

  /**
   * Sleeps in the kernel in `wait` (a Queue call that takes a signal), then calls `woken` or
   * `failed`. The spin that led here did not pay off: the next one may be shorter.
   */
  sleep<R>(wait: (signal: AbortSignal) => Promise<R>, woken: (result: R) => void, failed: (err: unknown) => void): void {
    this.#spinEnd = -1;
    this.#misses++;
    this.#sleeping = true;
    const wake = (this.#wake = new AbortController());
    wait(wake.signal).then(
      (result) => {
        this.#sleeping = false;
        this.#wake = undefined;
        woken(result);
      },
      (err: unknown) => {
        this.#sleeping = false;
        this.#wake = undefined;
        failed(err);
      },
    );
  }

  /** Ends a sleep in the kernel early: its `failed` gets IPC_ERR_ABORTED. */
  wake(): void {
    this.#wake?.abort();
  }

  /**
   * Commits the record writeRecord draws for (kind, id, total, src[from, from + chunk)) if there
   * is room; false when the queue is full. Same protocol as Queue's own send: claim, fill,
   * commit (the CAS that publishes the record); the peer is signalled as the header says.
   */
  tryPut(kind: number, id: number, total: number, src: Uint8Array, from: number, chunk: number): boolean {
    const ring = this.#ring;
    for (;;) {
      if (ring.claimSend(1) === 0) return false;
      const pos = ring.pos;
      const base = ring.base;
      writeRecord(ring.u8, (base << 2) + SLOT_HEADER_BYTES, kind, id, total, src, from, chunk);
      const committed = ring.commitSend(pos, base, RECORD_HEADER_BYTES + chunk);
      this.#counted();
      // Not committed: the slot was reclaimed under us (we were taken for dead), nothing was
      // delivered, and the same record goes again into a new slot.
      if (committed) return true;
    }
  }

  /** One more record committed (released): signal the first of a batch and every capacity/8-th. */
  #counted(): void {
    if (++this.#unsignalled >= this.#signalEvery || !this.#batching) this.#signal();
  }

  #signal(): void {
    const n = this.#unsignalled;
    this.#batching = true;
    if (n === 0) return;
    this.#unsignalled = 0;
    // A seq-cst read of the peer's sleeping count after our last commit (release), pairing with
    // the sleeper's increment before its re-check; a system call only if it sleeps (see
    // Ring.afterSend / afterReceive). One waiter per direction: wake one.
    if (this.#sending) this.#ring.afterSend(1);
    else this.#ring.afterReceive(1);
  }

  /** Closes a batch: a sleeping peer hears of every record committed (released) in it. */
  endBatch(): void {
    this.#signal();
    this.#batching = false;
  }

  /** The same record, waiting in the kernel for room (the slow path of a full queue). */
  put(kind: number, id: number, total: number, src: Uint8Array, from: number, chunk: number, signal: AbortSignal): Promise<void> {
    this.endBatch();
    return this.queue.sendWith(RECORD_HEADER_BYTES + chunk, (view) => writeRecord(view, 0, kind, id, total, src, from, chunk), { signal });
  }

  /**
   * Takes one record straight from the ring (the same protocol as Queue's own receive: claim,
   * read, release) and has `reader` parse it; NO_RECORD when there is none.
   */
  tryTake(reader: RecordReader): Read | typeof NO_RECORD {
    const ring = this.#ring;
    for (;;) {
      if (ring.claimReceive(1) === 0) return NO_RECORD;
      const pos = ring.pos;
      const base = ring.base;
      const length = ring.i32[base + SLOT_LENGTH]!;
      const valid = length !== SKIP && length >= 0 && length <= ring.maxMessageSize;
      const read = valid ? reader.read(ring.u8, (base << 2) + SLOT_HEADER_BYTES, length) : NO_RECORD;
      // The release hands the slot back to the producer (pairs with its claim's load of seq).
      const released = ring.release(pos, base);
      this.#counted();
      if (!valid) continue; // a skip record: never a message
      // Reclaimed while we read it (we were taken for dead): what we read may be torn.
      if (!released) return reader.fail('a record was reclaimed while it was being read');
      return read;
    }
  }

  /** The next record, waiting in the kernel for one (the slow path of an empty queue). */
  take(reader: RecordReader, signal: AbortSignal): Promise<Read> {
    this.endBatch();
    let read: Read | undefined;
    return this.queue.receiveWith((view) => void (read = reader.read(view, 0, view.byteLength)), { signal }).then(() => read!);
  }

  /** Unmaps the queue; a sleep in it ends with IPC_ERR_CLOSED. */
  close(): void {
    this.queue.close();
  }
}
