/**
 * shm://name: a duplex channel per connection made of two shared-memory Queues (src/queue),
 * one per direction, so that the same client and server code runs at shared-memory speed.
 *
 * Contract: what every Channel promises (ordered, reliable, each frame delivered once, memory
 * bounded on both sides), between processes of one machine that map the same /dev/shm.
 *
 * Objects (names in the shm namespace; `name` is the address's host part):
 *
 *   name              the accept point (kind Channel, role 1), created by listen
 *   name.c<id>        one connection's state (kind Channel, role 2), created by connect
 *   name.c<id>.up     Queue, client -> server, created by connect
 *   name.c<id>.down   Queue, server -> client, created by connect
 *
 * The server unlinks a connection's three names as soon as it has mapped them (and the client
 * once accepted: a server of another user cannot remove them): an established connection has no name, and the kernel frees its memory when the last of the two processes
 * unmaps it (closes, exits or is killed). Nothing can be left behind by a connection that was
 * accepted; only a client killed during connect() itself can leave its three objects.
 *
 * Accept point layout (512 bytes):
 *
 *   offset  size  field
 *   0       64    common header (src/shm/header.ts), kind Channel (7), version 1
 *   64      4     role            1 = accept point
 *   68      4     serverToken     lifeline token (src/os/lifeline.ts) of the listening thread on
 *                                 this object; 0 once the server has closed
 *   72      4     nextId          last connection id handed out (clients Atomics.add it)
 *   76      4     capacity        slots per direction a client creates (power of two)
 *   80      4     recordBytes     a queue's maxMessageSize: the largest record (header + chunk)
 *   84      4     mode            permission bits for the connection objects (a client uses no
 *                                 more than the accept point's own file mode allows)
 *   128     4     requestEvents   futex word the server sleeps on; clients bump it and wake
 *   256     256   64 request slots (int32): 0 = free, else the id of a connection to accept
 *
 * Connection state layout (128 bytes):
 *
 *   0       64    common header, kind Channel (7), version 1
 *   64      4     role            2 = connection
 *   68      4     state           0 requested, 1 accepted, 2 withdrawn, 3 refused; futex word
 *                                 the connecting client sleeps on
 *   72      4     clientToken     lifeline token of the client thread on this object (written
 *                                 before posting)
 *   76      4     serverToken     lifeline token of the server thread on this object (written
 *                                 before accepting)
 *   80      4     clientClosed    1 once the client is done sending (after its last commit)
 *   84      4     serverClosed    1 once the server is done sending
 *
 * Record layout (one queue message; a frame larger than a record is split into a first
 * record and continuation records, which one sender commits in order, so they arrive in order):
 *
 *   0   u8   kind: 1 message, 2 request, 3 reply, 4 failed reply (framing.ts), 16 end,
 *            17 continuation of the frame in progress
 *   1   u8   reserved (0)
 *   2   u16  reserved (0)
 *   4   u32  correlation id (LE)
 *   8   u32  the whole frame's payload length (LE); checked against maxMessageSize before the
 *            receiver allocates anything
 *   12  ...  this record's chunk of the payload
 *
 * Owners: an accept point or connection owned by another uid is refused (IPC_ERR_PERMISSION)
 * unless the caller opts in with allowOtherOwner; a server accepts connection objects of other
 * users only when its own mode lets other users in.
 *
 * Handshake: connect opens the accept point, checks that serverToken is alive, takes an id,
 * creates `name.c<id>` (writing its own token) and both queues, then posts the id in a free
 * request slot (CAS 0 -> id) and bumps requestEvents (seq-cst add, then futex wake). The server
 * takes ids out of the slots (CAS id -> 0), maps the three objects, unlinks their names,
 * stores its token and CASes state requested -> accepted (the CAS publishes the token to the
 * client, whose acquire load of state pairs with it), then wakes the client. A client that
 * gives up (timeout, abort, server gone) CASes requested -> withdrawn; whichever CAS wins
 * decides, so a connection is either accepted by both sides or by neither.
 *
 * Data path: `write` claims, fills and commits slots straight through a Ring (src/queue/ring.ts)
 * over a second mapping of the queue, with the queue's own protocol (header and payload written
 * in place; no view, closure or allocation per record for a frame that fits one slot), and
 * calls `done` once the last record is committed: it then survives this process exiting. When
 * the queue is full, frames wait in the link (needsDrain) and a send pump retries, then sleeps
 * in the kernel through the Queue handle (sendWith, wait strategy 'block'). The receive pump
 * takes records the same way, and while the queue is empty it looks again each time the
 * application's microtasks have all run (the reply it waits for is usually a few awaits away),
 * for a bounded spin that adapts (spinBudget), then sleeps in Queue.receiveWith: an idle
 * channel costs no CPU. The pump stops taking records while the Channel is paused: the queue
 * then fills and the peer's sends wait (backpressure).
 *
 * Close and death: close() flushes (bounded by closeTimeout), commits an end record if there
 * is room, then sets its closed flag (after its last commit, seq-cst), and unmaps. Every
 * CHECK_MS each link reads the peer's flag and asks the kernel whether the peer's lifeline
 * token is still held; the link ends (cleanly after a flag, IPC_ERR_CLOSED after a death) only
 * once the queue has been drained, so what the peer committed before it closed or died is
 * delivered. A process that exits without closing sets its flags in an 'exit' hook.
 */
import { abortError, IpcError, isIpcError, timeoutError } from '../errors.js';
import { checkBoolean, checkInteger } from '../options.js';
import { Kind } from '../shm/header.js';
import { openObject } from '../shm/segment.js';
import { SharedMemory, objectStat } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';
import { openLifeline, type Lifeline } from '../os/lifeline.js';
import { Queue } from '../queue/queue.js';
import { readGeometry, SKIP, SLOT_HEADER_BYTES, SLOT_LENGTH } from '../queue/layout.js';
import { Ring } from '../queue/ring.js';
import type { ResolvedChannelOptions } from './channel.js';
import { FrameType } from './framing.js';
import type { Link, LinkHandler } from './link.js';
import type { Listener, Transport } from './transport.js';
import { validateName } from '../naming.js';

const VERSION = 1;
const ROLE_POINT = 1;
const ROLE_CONNECTION = 2;

/** Int32 indices in the accept point. */
const P = {
  role: 16,
  serverToken: 17,
  nextId: 18,
  capacity: 19,
  recordBytes: 20,
  mode: 21,
  requestEvents: 32,
  requests: 64,
} as const;
const REQUEST_SLOTS = 64;
const POINT_BYTES = (P.requests + REQUEST_SLOTS) * 4;

/** Int32 indices in a connection's state. */
const C = {
  role: 16,
  state: 17,
  clientToken: 18,
  serverToken: 19,
  clientClosed: 20,
  serverClosed: 21,
} as const;
const CONNECTION_BYTES = 128;
const REQUESTED = 0;
const ACCEPTED = 1;
const WITHDRAWN = 2;
const REFUSED = 3;

/** Record header bytes; record kinds beyond the frame types. */
const HDR = 12;
const END = 16;
const CONTINUATION = 17;

const DEFAULT_CAPACITY = 128;
/** Payload bytes per record: 8 KiB, so that power-of-two messages fill whole records. */
const DEFAULT_CHUNK_BYTES = 8192;
const MAX_CAPACITY = 65536;
const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
/** Longest suffix a connection adds to the name: `.c` + 10 digits + `.down`. */
const SUFFIX_CHARS = 17;
const MAX_NAME_CHARS = 200 - SUFFIX_CHARS;

/** How often a link looks at the peer's closed flag and lifeline (ms). */
const CHECK_MS = 100;
/** How long a pump spins (yielding to microtasks) before it sleeps in the kernel (ms). */
const SPIN_MS = 0.05;
/**
 * How long a sender waiting for room spins before it sleeps (ms). Longer than the receive spin:
 * a full queue means a busy receiver, which will free a slot soon, and a sleeping sender costs
 * that receiver a system call per slot it frees until the sender is awake again.
 */
const TX_SPIN_MS = 0.5;
/** The shortest a spin gets after spins that did not pay off (ms). */
const MIN_SPIN_MS = 0.005;
/** Spins in a row that end in a sleep before the spin is cut to MIN_SPIN_MS. */
const MISSES_BEFORE_SHORT = 8;

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
/** The longest tight loop inside one turn of that spin (ms). */
const SYNC_SPIN_MS = 0.003;
/** Frames a receive pump delivers in one go before it lets the event loop run. */
const BATCH = 256;

const now = (): number => performance.now();

const RESOLVED = Promise.resolve();
/**
 * Runs `callback` once every microtask queued so far, and every one those queue in turn, has
 * run (`ticker` calls process.nextTick(callback)): a process.nextTick queued from a microtask runs only after Node has drained the whole
 * microtask queue. A pump that looks at its queue this way lets the application's await chain
 * (which usually produces the next message) finish first, instead of interleaving with it.
 */
/** `ticker` is `() => process.nextTick(callback)`, made once per callback (no allocation here). */
function afterMicrotasks(ticker: () => void): void {
  void RESOLVED.then(ticker);
}
const EMPTY = new Uint8Array(0);

function shmName(url: URL, address: string): string {
  if (url.username !== '' || url.password !== '' || url.port !== '' || (url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
    throw new TypeError(`'${address}': a shared-memory address is shm://name (a name, nothing else)`);
  }
  const name = validateName(decodeURIComponent(url.host));
  if (name.length > MAX_NAME_CHARS) {
    throw new IpcError('IPC_ERR_INVALID_NAME', `'${address}': shm:// names are limited to ${MAX_NAME_CHARS} characters (connections add a suffix)`);
  }
  return name;
}

const pointLayout = (init: (buffer: SharedArrayBuffer) => void = () => {}) => ({ kind: Kind.Channel, version: VERSION, byteLength: POINT_BYTES, init });
const connectionLayout = (init: (buffer: SharedArrayBuffer) => void = () => {}) => ({ kind: Kind.Channel, version: VERSION, byteLength: CONNECTION_BYTES, init });

/** Opens an existing channel object and checks its role and size (IPC_ERR_INCOMPATIBLE otherwise). */
function openRole(name: string, role: number, bytes: number, allowOtherOwner: boolean): { shm: SharedMemory; i32: Int32Array } {
  const shm = openObject(name, 'open', 'shm channel', role === ROLE_POINT ? pointLayout() : connectionLayout(), { allowOtherOwner });
  if (shm.byteLength < bytes || Atomics.load(new Int32Array(shm.buffer, 0, bytes >> 2), P.role) !== role) {
    shm.close();
    throw new IpcError('IPC_ERR_INCOMPATIBLE', `shm channel '${name}' is not ${role === ROLE_POINT ? 'an accept point' : 'a connection'}`);
  }
  return { shm, i32: new Int32Array(shm.buffer, 0, bytes >> 2) };
}

/** An accept point, opened, with this thread's lifeline on it (serverToken is asked of it). */
interface Point {
  shm: SharedMemory;
  i32: Int32Array;
  life: Lifeline;
  close(): void;
}

function openPoint(name: string, allowOtherOwner: boolean): Point {
  const { shm, i32 } = openRole(name, ROLE_POINT, POINT_BYTES, allowOtherOwner);
  let life: Lifeline;
  try {
    life = openLifeline(shm.buffer);
  } catch (err) {
    shm.close();
    throw err;
  }
  return {
    shm,
    i32,
    life,
    close() {
      life.close();
      shm.close();
    },
  };
}

function removeQuietly(name: string): void {
  try {
    SharedMemory.remove(name);
  } catch {
    // already gone, or not ours to remove
  }
}

// ---- the link ------------------------------------------------------------------------------

interface PendingFrame {
  type: number;
  id: number;
  payload: Uint8Array;
  /** Bytes of the payload already committed (a frame split over several records). */
  offset: number;
  done: (error?: Error | null) => void;
}

/**
 * One direction of a connection: the Queue handle (creation, validation, and the kernel sleep
 * of receiveWith / sendWith) and a Ring over a second mapping of the same segment, through
 * which the fast path claims, fills and commits slots in place without a view or a closure per
 * record (the protocol of src/queue/layout.ts, exactly as Queue's own trySend/tryReceive).
 */
interface QueueEnd {
  queue: Queue<Uint8Array>;
  raw: SharedMemory;
  ring: Ring;
  /** The ring's lifeline on the queue (the same one the Queue handle shares). */
  life: Lifeline;
}

/** Stall timeout of the rings (the Queue's default): see src/queue/layout.ts, crash recovery. */
const STALL_MS = 1000;

function attach(queue: Queue<Uint8Array>, name: string, allowOtherOwner: boolean): QueueEnd {
  const raw = SharedMemory.open(name, { allowOtherOwner });
  try {
    const g = readGeometry(raw.buffer);
    if (typeof g === 'string' || g.capacity !== queue.capacity || g.maxMessageSize !== queue.maxMessageSize) {
      throw new IpcError('IPC_ERR_INCOMPATIBLE', `queue '${name}' changed while it was being opened`);
    }
    const life = openLifeline(raw.buffer);
    return { queue, raw, ring: new Ring(raw.buffer, g, STALL_MS, life), life };
  } catch (err) {
    raw.close();
    throw err;
  }
}

/** Opens (or creates, with `create`) the queue `name` and attaches the fast path to it. */
function openEnd(name: string, allowOtherOwner: boolean, create?: { capacity: number; maxMessageSize: number; mode: number }): QueueEnd {
  const queue = create === undefined ? Queue.open(name, { wait: 'block', allowOtherOwner }) : Queue.create(name, { ...create, wait: 'block' });
  try {
    return attach(queue, name, allowOtherOwner);
  } catch (err) {
    queue.close();
    throw err;
  }
}

function closeEnd(end: QueueEnd | undefined): void {
  end?.queue.close();
  end?.life.close();
  end?.raw.close();
}

interface LinkParts {
  tx: QueueEnd;
  rx: QueueEnd;
  conn: SharedMemory;
  /** This thread's lifeline on `conn` (its token is in the conn state); the link closes it. */
  life: Lifeline;
  client: boolean;
  peerToken: number;
  options: ResolvedChannelOptions;
  what: string;
}

/** Links that still owe their peer a closed flag when this process exits. */
const liveLinks = new Set<ShmLink>();
let exitHooked = false;
function hookExit(link: ShmLink): void {
  liveLinks.add(link);
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const live of liveLinks) live.exitNow();
  });
}

// What #readSlot found, for the pump to act on after the queue has released the slot.
const GOT_NOTHING = 0; // a chunk of a frame still in progress
const GOT_FRAME = 1;
const GOT_END = 2;
const GOT_BAD = 3;

class ShmLink implements Link {
  readonly #tx: Queue<Uint8Array>;
  readonly #rx: Queue<Uint8Array>;
  readonly #txEnd: QueueEnd;
  readonly #rxEnd: QueueEnd;
  readonly #txRing: Ring;
  readonly #rxRing: Ring;
  readonly #conn: SharedMemory;
  readonly #life: Lifeline;
  readonly #state: Int32Array;
  readonly #myClosed: number;
  readonly #peerClosed: number;
  readonly #peerToken: number;
  readonly #maxMessageSize: number;
  readonly #chunkBytes: number;
  readonly #closeTimeout: number;
  readonly #frameTimeout: number;
  readonly #what: string;

  #handler: LinkHandler | undefined;
  #ended = false;
  #endReason: IpcError | undefined;
  #released = false;
  #paused = false;
  #rxScheduled = false;
  #rxSleeping = false;
  #rxSpinEnd = -1;
  /** Receive spins in a row that ended in a sleep, and receive waits so far (see spinBudget). */
  #rxMisses = 0;
  #rxWaits = 0;
  #closing: Promise<void> | undefined;
  /** Set by the periodic check: the peer closed (reason undefined) or died; ends once drained. */
  #peerGone: { reason: IpcError | undefined } | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Wakes a pump sleeping in the kernel (peer gone, teardown). */
  #rxWake: AbortController | undefined;
  #txWake: AbortController | undefined;

  // sending: the frame #writeSlot writes (set before every trySendWith/sendWith)
  readonly #pending: PendingFrame[] = [];
  #pendingHead = 0;
  #txScheduled = false;
  #txSleeping = false;
  #txSpinEnd = -1;
  #txMisses = 0;
  #txWaits = 0;
  #drainWaiters: (() => void)[] = [];
  #wType = 0;
  #wId = 0;
  #wPayload: Uint8Array = EMPTY;
  #wOffset = 0;
  #wChunk = 0;

  // receiving: what #readSlot found, and a frame being reassembled from several records
  #got = GOT_NOTHING;
  #gotType = 0;
  #gotId = 0;
  #gotPayload: Uint8Array = EMPTY;
  #gotError = '';
  #asm: Uint8Array | undefined;
  #asmType = 0;
  #asmId = 0;
  #asmFilled = 0;
  /** #asmFilled when the periodic check last saw it move, and when (for frameTimeout). */
  #stallMark = -1;
  #stallSince = 0;

  constructor(parts: LinkParts) {
    this.#txEnd = parts.tx;
    this.#rxEnd = parts.rx;
    this.#tx = parts.tx.queue;
    this.#rx = parts.rx.queue;
    this.#txRing = parts.tx.ring;
    this.#rxRing = parts.rx.ring;
    this.#conn = parts.conn;
    this.#life = parts.life;
    this.#state = new Int32Array(parts.conn.buffer, 0, CONNECTION_BYTES >> 2);
    this.#myClosed = parts.client ? C.clientClosed : C.serverClosed;
    this.#peerClosed = parts.client ? C.serverClosed : C.clientClosed;
    this.#peerToken = parts.peerToken;
    this.#maxMessageSize = parts.options.maxMessageSize;
    this.#chunkBytes = parts.tx.queue.maxMessageSize - HDR;
    this.#closeTimeout = parts.options.closeTimeout;
    this.#frameTimeout = parts.options.frameTimeout;
    this.#what = parts.what;
    hookExit(this);
  }

  start(handler: LinkHandler): void {
    this.#handler = handler;
    if (this.#ended) {
      const reason = this.#endReason;
      process.nextTick(() => handler.ended(reason));
      return;
    }
    this.#timer = setInterval(() => this.#check(), CHECK_MS);
    this.#timer.unref();
    this.#rxScheduled = true;
    afterMicrotasks(this.#rxTick);
  }

  // ---- sending ----

  /** Writes the record header for the current frame at `at` (the slot's payload start). */
  #writeHeader(u8: Uint8Array, at: number): void {
    const id = this.#wId;
    const total = this.#wPayload.byteLength;
    u8[at] = this.#wOffset === 0 ? this.#wType : CONTINUATION;
    u8[at + 1] = 0;
    u8[at + 2] = 0;
    u8[at + 3] = 0;
    u8[at + 4] = id;
    u8[at + 5] = id >>> 8;
    u8[at + 6] = id >>> 16;
    u8[at + 7] = id >>> 24;
    u8[at + 8] = total;
    u8[at + 9] = total >>> 8;
    u8[at + 10] = total >>> 16;
    u8[at + 11] = total >>> 24;
  }

  /** For Queue.sendWith (the slow path): the record for #wChunk bytes from #wOffset. */
  readonly #writeSlot = (view: Uint8Array): void => {
    this.#writeHeader(view, 0);
    const chunk = this.#wChunk;
    if (chunk === 0) return;
    const offset = this.#wOffset;
    const payload = this.#wPayload;
    view.set(chunk === payload.byteLength ? payload : new Uint8Array(payload.buffer, payload.byteOffset + offset, chunk), HDR);
  };

  /**
   * Commits as many records of the current frame as there is room for, straight into the
   * ring's slots; true once all are in. Same protocol as Queue's own send: claim, fill,
   * commit (the CAS that publishes the record), then wake a receiver only if one sleeps.
   */
  #tryWriteCurrent(): boolean {
    const ring = this.#txRing;
    const u8 = ring.u8;
    const payload = this.#wPayload;
    const total = payload.byteLength;
    for (;;) {
      const offset = this.#wOffset;
      const chunk = Math.min(total - offset, this.#chunkBytes);
      if (ring.claimSend(1) === 0) return false;
      const pos = ring.pos;
      const base = ring.base;
      const at = (base << 2) + SLOT_HEADER_BYTES;
      this.#writeHeader(u8, at);
      // A plain view for a chunk (Buffer#subarray would build a Buffer, several times dearer).
      if (chunk !== 0) u8.set(chunk === total ? payload : new Uint8Array(payload.buffer, payload.byteOffset + offset, chunk), at + HDR);
      const committed = ring.commitSend(pos, base, HDR + chunk);
      ring.afterSend(1);
      // Not committed: the slot was reclaimed under us (we were taken for dead), nothing was
      // delivered, and the same record goes again into a new slot.
      if (!committed) continue;
      this.#wOffset = offset + chunk;
      if (this.#wOffset >= total) return true;
    }
  }

  write(type: FrameType, id: number, payload: Uint8Array, done: (error?: Error | null) => void, borrowed = false): void {
    if (this.#ended || this.#closing !== undefined) {
      process.nextTick(done, this.#closedForWrites());
      return;
    }
    if (this.#peerGone !== undefined) {
      // Known to be gone (its closed flag, or its death) while we still deliver what it sent.
      process.nextTick(done, this.#closedForPeer());
      return;
    }
    if (this.#pending.length === this.#pendingHead) {
      this.#wType = type;
      this.#wId = id;
      this.#wPayload = payload;
      this.#wOffset = 0;
      let complete: boolean;
      try {
        complete = this.#tryWriteCurrent();
      } catch (err) {
        this.#wPayload = EMPTY;
        process.nextTick(done, err);
        return;
      }
      const offset = this.#wOffset;
      this.#wPayload = EMPTY;
      if (complete) return done();
      // Some or none of it fits now: the rest waits here, in a copy if the caller may reuse it.
      this.#pending.push({ type, id, payload: borrowed ? Buffer.from(payload) : payload, offset, done });
    } else {
      this.#pending.push({ type, id, payload: borrowed ? Buffer.from(payload) : payload, offset: 0, done });
    }
    if (!this.#txScheduled && !this.#txSleeping) {
      this.#txScheduled = true;
      afterMicrotasks(this.#txTick);
    }
  }

  get needsDrain(): boolean {
    return this.#pending.length !== this.#pendingHead && !this.#ended;
  }

  onceDrain(callback: () => void): void {
    if (!this.needsDrain) {
      process.nextTick(callback);
      return;
    }
    this.#drainWaiters.push(callback);
  }

  #runDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    if (waiters.length === 0) return;
    this.#drainWaiters = [];
    for (const callback of waiters) callback();
  }

  /**
   * Commits the frames waiting for room, in order, as room appears: retries after the
   * application's microtasks (the peer may be in this thread), then sleeps in the kernel.
   */
  readonly #txPoll = (): void => {
    this.#txScheduled = false;
    if (this.#txSleeping) return;
    try {
      while (this.#pendingHead < this.#pending.length && !this.#ended) {
        const head = this.#pending[this.#pendingHead]!;
        this.#wType = head.type;
        this.#wId = head.id;
        this.#wPayload = head.payload;
        this.#wOffset = head.offset;
        const complete = this.#tryWriteCurrent();
        head.offset = this.#wOffset;
        if (complete) {
          this.#shiftPending();
          if (this.#txSpinEnd >= 0) {
            this.#txSpinEnd = -1;
            this.#txMisses = 0; // waiting by spinning paid off
          }
          head.done();
          continue;
        }
        const t = now();
        if (this.#txSpinEnd < 0) this.#txSpinEnd = t + spinBudget(this.#txMisses, ++this.#txWaits, TX_SPIN_MS);
        if (t < this.#txSpinEnd) {
          this.#txScheduled = true;
          afterMicrotasks(this.#txTick);
          return;
        }
        // Sleep in the kernel until one record fits, and commit it then; spin less next time.
        this.#txSpinEnd = -1;
        this.#txMisses++;
        this.#txSleeping = true;
        this.#wChunk = Math.min(head.payload.byteLength - head.offset, this.#chunkBytes);
        this.#txWake = new AbortController();
        this.#tx.sendWith(HDR + this.#wChunk, this.#writeSlot, { signal: this.#txWake.signal }).then(
          () => {
            this.#txSleeping = false;
            this.#txWake = undefined;
            head.offset += this.#wChunk;
            if (head.offset >= head.payload.byteLength && this.#pending[this.#pendingHead] === head) {
              this.#shiftPending();
              head.done();
            }
            this.#txPoll();
          },
          (err: unknown) => {
            this.#txSleeping = false;
            this.#txWake = undefined;
            // Woken for the peer's end or our teardown: the loop condition decides.
            if (this.#ended || isIpcError(err, 'IPC_ERR_ABORTED')) this.#txPoll();
            else this.#finish(new IpcError('IPC_ERR_CLOSED', `${this.#what}: sending failed: ${(err as Error).message}`, { cause: err }));
          },
        );
        return;
      }
    } catch (err) {
      this.#finish(new IpcError('IPC_ERR_CLOSED', `${this.#what}: sending failed: ${(err as Error).message}`, { cause: err }));
    }
    this.#wPayload = EMPTY;
    this.#runDrainWaiters();
  };

  readonly #txTick = (): void => process.nextTick(this.#txPoll);

  #shiftPending(): void {
    this.#pending[this.#pendingHead++] = undefined as unknown as PendingFrame;
    if (this.#pendingHead === this.#pending.length) {
      this.#pending.length = 0;
      this.#pendingHead = 0;
    }
  }

  #failPending(error: IpcError): void {
    const entries = this.#pending.slice(this.#pendingHead);
    this.#pending.length = 0;
    this.#pendingHead = 0;
    for (const entry of entries) entry.done(error);
  }

  #closedForWrites(): IpcError {
    const reason = this.#endReason;
    if (reason !== undefined && reason.code === 'IPC_ERR_CLOSED') return reason;
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: connection is closed`, reason !== undefined ? { cause: reason } : undefined);
  }

  // ---- receiving ----

  /** For Queue.receiveWith (the slow path): the record in the view. */
  readonly #readSlot = (view: Uint8Array): void => this.#readRecord(view, 0, view.byteLength);

  /**
   * Takes one record straight from the ring (the same protocol as Queue's own receive: claim,
   * copy out, release) and parses it; false when there is none.
   */
  #tryReceive(): boolean {
    const ring = this.#rxRing;
    for (;;) {
      if (ring.claimReceive(1) === 0) return false;
      const pos = ring.pos;
      const base = ring.base;
      const length = ring.i32[base + SLOT_LENGTH]!;
      const valid = length !== SKIP && length >= 0 && length <= ring.maxMessageSize;
      if (valid) this.#readRecord(ring.u8, (base << 2) + SLOT_HEADER_BYTES, length);
      // The release hands the slot back to the producer (pairs with its claim's load of seq).
      const released = ring.release(pos, base);
      ring.afterReceive(1);
      if (!valid) continue; // a skip record: never a message
      // Reclaimed while we copied (we were taken for dead): the copy may be torn.
      if (!released) this.#bad('a record was reclaimed while it was being read');
      return true;
    }
  }

  /** Parses the record of `n` bytes at u8[at...]; the pump acts on it after the slot is released. */
  #readRecord(u8: Uint8Array, at: number, n: number): void {
    if (n < HDR) return this.#bad(`a ${n}-byte record is shorter than its header`);
    const kind = u8[at]!;
    const total = (u8[at + 8]! | (u8[at + 9]! << 8) | (u8[at + 10]! << 16) | (u8[at + 11]! << 24)) >>> 0;
    const chunk = n - HDR;
    if (kind === CONTINUATION) {
      const asm = this.#asm;
      if (asm === undefined) return this.#bad('a continuation record without a frame in progress');
      if (total !== asm.byteLength || chunk > total - this.#asmFilled || chunk === 0) return this.#bad('a continuation record that does not fit its frame');
      asm.set(u8.subarray(at + HDR, at + n), this.#asmFilled);
      this.#asmFilled += chunk;
      if (this.#asmFilled < total) {
        this.#got = GOT_NOTHING;
        return;
      }
      this.#asm = undefined;
      this.#got = GOT_FRAME;
      this.#gotType = this.#asmType;
      this.#gotId = this.#asmId;
      this.#gotPayload = asm;
      return;
    }
    if (kind >= FrameType.Message && kind <= FrameType.Failure) {
      if (this.#asm !== undefined) return this.#bad('a new frame began before the previous one was complete');
      if (total > this.#maxMessageSize) return this.#bad(`the peer announced a ${total}-byte frame, over maxMessageSize (${this.#maxMessageSize})`);
      if (chunk > total) return this.#bad('a record longer than its frame');
      const id = (u8[at + 4]! | (u8[at + 5]! << 8) | (u8[at + 6]! << 16) | (u8[at + 7]! << 24)) >>> 0;
      if (chunk === total) {
        // The receiver owns what it is given: a private copy, out of the shared slot.
        const payload = Buffer.allocUnsafe(total);
        if (total !== 0) payload.set(u8.subarray(at + HDR, at + n));
        this.#got = GOT_FRAME;
        this.#gotType = kind;
        this.#gotId = id;
        this.#gotPayload = payload;
        return;
      }
      const asm = Buffer.allocUnsafeSlow(total);
      asm.set(u8.subarray(at + HDR, at + n));
      this.#asm = asm;
      this.#asmType = kind;
      this.#asmId = id;
      this.#asmFilled = chunk;
      this.#stallMark = -1;
      this.#got = GOT_NOTHING;
      return;
    }
    if (kind === END) {
      this.#got = GOT_END;
      return;
    }
    this.#bad(`a record of unknown kind ${kind}`);
  }

  #bad(why: string): void {
    this.#got = GOT_BAD;
    this.#gotError = why;
  }

  /** Acts on the record #readSlot just read. */
  #dispatch(): void {
    const got = this.#got;
    this.#got = GOT_NOTHING;
    if (got === GOT_FRAME) {
      const payload = this.#gotPayload;
      this.#gotPayload = EMPTY;
      this.#handler!.frame(this.#gotType as FrameType, this.#gotId, payload);
    } else if (got === GOT_END) {
      this.#finish(this.#asm === undefined ? undefined : this.#midFrame('closed the channel'));
    } else if (got === GOT_BAD) {
      this.#finish(new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: malformed record from the peer: ${this.#gotError}`));
    }
  }

  #midFrame(what: string): IpcError {
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer ${what} in the middle of a frame (the partial frame was discarded)`);
  }

  /**
   * Delivers records as they come. While the queue is empty it looks again after the
   * application's microtasks have run (a reply is usually a few awaits away and must not wait
   * for a spin to end), for up to SPIN_MS (see spinBudget), then sleeps in the kernel (no CPU
   * while idle).
   */
  readonly #rxPoll = (): void => {
    this.#rxScheduled = false;
    if (this.#ended || this.#paused || this.#rxSleeping) return;
    const rx = this.#rx;
    let delivered = 0;
    try {
      for (;;) {
        let got = this.#tryReceive();
        if (!got && delivered === 0 && this.#peerGone === undefined) {
          // Every microtask has run and nothing came: the application is waiting, most likely
          // for a reply that is on its way. Look again in a tight loop for a few µs (only the
          // other pumps of this thread wait meanwhile) before yielding.
          const t = now();
          if (this.#rxSpinEnd < 0) this.#rxSpinEnd = t + spinBudget(this.#rxMisses, ++this.#rxWaits, SPIN_MS);
          const end = Math.min(this.#rxSpinEnd, t + SYNC_SPIN_MS);
          for (let i = 1; !(got = this.#tryReceive()); i++) if ((i & 15) === 0 && now() >= end) break;
        }
        if (!got) break;
        if (this.#rxSpinEnd >= 0) {
          this.#rxSpinEnd = -1;
          this.#rxMisses = 0; // the spin paid off
        }
        this.#dispatch();
        if (this.#ended || this.#paused) return;
        if (++delivered === BATCH) {
          // A busy channel must not starve the rest of the event loop.
          this.#rxScheduled = true;
          setImmediate(this.#rxPoll);
          return;
        }
      }
    } catch (err) {
      this.#finish(new IpcError('IPC_ERR_CLOSED', `${this.#what}: receiving failed: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const gone = this.#peerGone;
    if (gone !== undefined) {
      // The peer's flag (or its death) came after its last commit, and the queue is empty
      // now: nothing more will ever arrive.
      this.#finish(this.#asm === undefined ? gone.reason : (gone.reason ?? this.#midFrame('closed the channel')));
      return;
    }
    // After a delivery, let the application act on it first (the spin's clock starts after).
    if (delivered !== 0 || now() < this.#rxSpinEnd) {
      this.#rxScheduled = true;
      afterMicrotasks(this.#rxTick);
      return;
    }
    // The spin did not pay off (the peer is slow, idle, or shares our CPU and cannot run while
    // we spin): see spinBudget.
    this.#rxSpinEnd = -1;
    this.#rxMisses++;
    this.#rxSleeping = true;
    this.#rxWake = new AbortController();
    rx.receiveWith(this.#readSlot, { signal: this.#rxWake.signal }).then(this.#rxWoken, this.#rxWakeFailed);
  };

  readonly #rxTick = (): void => process.nextTick(this.#rxPoll);

  readonly #rxWoken = (): void => {
    this.#rxSleeping = false;
    this.#rxWake = undefined;
    this.#dispatch();
    // Look again once the application has acted on it (never spin inside this microtask).
    if (!this.#ended && !this.#paused) {
      this.#rxScheduled = true;
      afterMicrotasks(this.#rxTick);
    }
  };

  readonly #rxWakeFailed = (err: unknown): void => {
    this.#rxSleeping = false;
    this.#rxWake = undefined;
    if (this.#ended) return;
    if (isIpcError(err, 'IPC_ERR_ABORTED')) this.#rxPoll();
    else this.#finish(new IpcError('IPC_ERR_CLOSED', `${this.#what}: receiving failed: ${(err as Error).message}`, { cause: err }));
  };

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (!this.#rxScheduled && !this.#rxSleeping && !this.#ended) {
      this.#rxScheduled = true;
      afterMicrotasks(this.#rxTick);
    }
  }

  // ---- the peer's liveness ----

  #check(): void {
    if (this.#ended || this.#peerGone !== undefined) return;
    if (this.#asm !== undefined && this.#frameTimeout !== Infinity) {
      // A frame that has started must keep moving (frameTimeout), unless we stopped taking it.
      const t = now();
      if (this.#asmFilled !== this.#stallMark || this.#paused) {
        this.#stallMark = this.#asmFilled;
        this.#stallSince = t;
      } else if (t - this.#stallSince >= this.#frameTimeout) {
        this.#finish(new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: the peer stalled in the middle of a frame for ${this.#frameTimeout} ms`));
        return;
      }
    }
    let alive = true;
    try {
      alive = this.#life.isAlive(this.#peerToken);
    } catch {
      // the kernel could not be asked this time: ask again at the next check
    }
    if (Atomics.load(this.#state, this.#peerClosed) !== 0) {
      this.#peerGone = { reason: undefined };
    } else if (!alive) {
      this.#peerGone = {
        reason: new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer process died (or exited) without closing the channel`),
      };
    } else {
      return;
    }
    // The peer will never take what is still waiting for room.
    this.#failPending(this.#closedForPeer());
    this.#txWake?.abort();
    this.#rxWake?.abort();
    this.#runDrainWaiters();
  }

  #closedForPeer(): IpcError {
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer is gone; the message was not sent`, { cause: this.#peerGone?.reason });
  }

  // ---- ending ----

  /** The link is over: fail what is unsent, tell the handler, tell the peer, unmap. */
  #finish(reason: IpcError | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endReason = reason;
    this.#failPending(this.#closedForWrites());
    this.#runDrainWaiters();
    const handler = this.#handler;
    if (handler !== undefined) process.nextTick(() => handler.ended(reason));
    this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    liveLinks.delete(this);
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#tellPeer();
    // Closing the queue handles rejects a pump's pending wait with IPC_ERR_CLOSED.
    closeEnd(this.#txEnd);
    closeEnd(this.#rxEnd);
    // After the closed flag: a peer that finds our token dead has already seen the flag.
    this.#life.close();
    this.#conn.close();
  }

  /** An end record if there is room (prompt), and the closed flag in any case (robust). */
  #tellPeer(): void {
    if (this.#peerGone === undefined) {
      try {
        this.#wOffset = 0;
        this.#wChunk = 0;
        this.#wPayload = EMPTY;
        this.#wType = END;
        this.#wId = 0;
        this.#tx.trySendWith(HDR, this.#writeSlot);
      } catch {
        // closed queue: the flag below still tells
      }
    }
    // seq-cst store after our last commit: a peer that reads 1 and then finds the queue empty
    // has everything we sent (pairs with the Atomics.load in #check).
    Atomics.store(this.#state, this.#myClosed, 1);
  }

  /** From the process 'exit' hook: tell the peer we are gone (nothing async runs any more). */
  exitNow(): void {
    if (this.#released) return;
    this.#released = true;
    this.#tellPeer();
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = (async () => {
      if (!this.#ended && this.needsDrain) {
        // Flush what was accepted, within closeTimeout.
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          this.#drainWaiters.push(resolve);
          if (this.#closeTimeout !== Infinity) timer = setTimeout(resolve, this.#closeTimeout);
        });
        if (timer !== undefined) clearTimeout(timer);
      }
      this.#finish(undefined);
    })();
    return this.#closing;
  }

  destroy(error?: IpcError): void {
    this.#finish(error);
  }
}

// ---- the server ----------------------------------------------------------------------------

class ShmListener implements Listener {
  readonly address: string;
  readonly #name: string;
  readonly #shm: SharedMemory;
  readonly #i32: Int32Array;
  readonly #options: ResolvedChannelOptions;
  /** This thread's lifeline on the accept point: serverToken is its token. */
  readonly #life: Lifeline;
  /** Whether connection objects of other users are accepted (our mode lets them in). */
  readonly #othersAllowed: boolean;
  readonly #stop = new AbortController();
  #onLink: ((link: Link) => void) | undefined;
  #closed = false;

  constructor(name: string, address: string, shm: SharedMemory, options: ResolvedChannelOptions, life: Lifeline, mode: number) {
    this.address = address;
    this.#name = name;
    this.#shm = shm;
    this.#i32 = new Int32Array(shm.buffer, 0, POINT_BYTES >> 2);
    this.#options = options;
    this.#life = life;
    this.#othersAllowed = (mode & 0o077) !== 0;
  }

  start(onLink: (link: Link) => void): void {
    this.#onLink = onLink;
    void this.#loop();
  }

  async #loop(): Promise<void> {
    const i32 = this.#i32;
    while (!this.#closed) {
      // Read the event count before scanning: a request posted after the scan bumps it after
      // this read, so the wait below returns at once (seq-cst; pairs with the client's add).
      const seen = Atomics.load(i32, P.requestEvents);
      for (let k = 0; k < REQUEST_SLOTS && !this.#closed; k++) {
        const id = Atomics.load(i32, P.requests + k);
        if (id !== 0 && Atomics.compareExchange(i32, P.requests + k, id, 0) === id) this.#accept(id >>> 0);
      }
      if (this.#closed) return;
      try {
        await futex.waitAsync(i32, P.requestEvents, seen, undefined, { signal: this.#stop.signal });
      } catch {
        return; // closed
      }
    }
  }

  /** Maps connection `id`, unlinks its names, and accepts it (unless its client withdrew). */
  #accept(id: number): void {
    const base = `${this.#name}.c${id}`;
    let conn: { shm: SharedMemory; i32: Int32Array } | undefined;
    let up: QueueEnd | undefined;
    let down: QueueEnd | undefined;
    let life: Lifeline | undefined;
    try {
      conn = openRole(base, ROLE_CONNECTION, CONNECTION_BYTES, this.#othersAllowed);
      up = openEnd(`${base}.up`, this.#othersAllowed);
      down = openEnd(`${base}.down`, this.#othersAllowed);
      life = openLifeline(conn.shm.buffer);
      if (up.queue.maxMessageSize <= HDR || down.queue.maxMessageSize <= HDR) throw new IpcError('IPC_ERR_INCOMPATIBLE', `${base}: records too small`);
    } catch {
      // The client withdrew (names gone) or left something unusable: refuse, so it does not wait.
      if (conn !== undefined && Atomics.compareExchange(conn.i32, C.state, REQUESTED, REFUSED) === REQUESTED) futex.notify(conn.i32, C.state);
      closeEnd(up);
      closeEnd(down);
      life?.close();
      conn?.shm.close();
      return;
    }
    // Mapped on both sides from here on: the names are no longer needed by anyone.
    removeQuietly(base);
    removeQuietly(`${base}.up`);
    removeQuietly(`${base}.down`);
    const clientToken = Atomics.load(conn.i32, C.clientToken);
    Atomics.store(conn.i32, C.serverToken, life.token);
    // The CAS publishes serverToken to the client (its load of state pairs with it); losing it
    // means the client withdrew first and will not use the connection.
    if (Atomics.compareExchange(conn.i32, C.state, REQUESTED, ACCEPTED) !== REQUESTED) {
      closeEnd(up);
      closeEnd(down);
      life.close();
      conn.shm.close();
      return;
    }
    futex.notify(conn.i32, C.state);
    const link = new ShmLink({ tx: down, rx: up, conn: conn.shm, life, client: false, peerToken: clientToken, options: this.#options, what: `shm channel ${base} (server)` });
    this.#onLink!(link);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#stop.abort();
      // Name first, token second: a new server can create a fresh point at once, and clients
      // still holding this one see serverToken 0 and give up.
      removeQuietly(this.#name);
      Atomics.store(this.#i32, P.serverToken, 0);
      futex.notify(this.#i32, P.requestEvents);
      this.#life.close();
      this.#shm.close();
    }
    return Promise.resolve();
  }
}

function listenOptions(extra: Record<string, unknown>): { mode: number; capacity: number; recordBytes: number; allowOtherOwner: boolean } {
  const mode = extra['mode'] === undefined ? 0o600 : checkInteger(extra['mode'], 'listen: mode', 0, 0o777);
  const capacity = extra['queueCapacity'] === undefined ? DEFAULT_CAPACITY : checkInteger(extra['queueCapacity'], 'listen: queueCapacity', 2, MAX_CAPACITY);
  if ((capacity & (capacity - 1)) !== 0) throw new RangeError(`listen: queueCapacity must be a power of two, got ${capacity}`);
  const chunkBytes = extra['queueChunkBytes'] === undefined ? DEFAULT_CHUNK_BYTES : checkInteger(extra['queueChunkBytes'], 'listen: queueChunkBytes', 1, MAX_CHUNK_BYTES);
  // Slots a whole number of cache lines long (the slots start 64-byte aligned), so that no two
  // slots share a line: a record may then carry a few more bytes than asked.
  const slotBytes = Math.ceil((SLOT_HEADER_BYTES + HDR + chunkBytes) / 64) * 64;
  const allowOtherOwner = checkBoolean(extra['allowOtherOwner'], 'listen: allowOtherOwner') ?? false;
  return { mode, capacity, recordBytes: slotBytes - SLOT_HEADER_BYTES, allowOtherOwner };
}

async function listenShm(url: URL, address: string, options: ResolvedChannelOptions, extra: Record<string, unknown>): Promise<Listener> {
  const name = shmName(url, address);
  const { mode, capacity, recordBytes, allowOtherOwner } = listenOptions(extra);
  const what = `listen on ${address}`;
  const writeFields = (i32: Int32Array): void => {
    i32[P.capacity] = capacity;
    i32[P.recordBytes] = recordBytes;
    i32[P.mode] = mode;
  };
  for (let attempt = 0; ; attempt++) {
    let created: Lifeline | undefined;
    try {
      const shm = openObject(
        name,
        'create',
        'shm channel',
        pointLayout((buffer) => {
          created = openLifeline(buffer);
          const i32 = new Int32Array(buffer, 0, POINT_BYTES >> 2);
          i32[P.role] = ROLE_POINT;
          i32[P.serverToken] = created.token;
          writeFields(i32);
          // published by publishHeader's release store of the header's state word
        }),
        { mode },
      );
      return new ShmListener(name, address, shm, options, created!, mode);
    } catch (err) {
      created?.close();
      if (!isIpcError(err, 'IPC_ERR_EXISTS') || attempt >= 20) throw err;
    }
    // The name exists: a live server's (never taken), or a dead server's (taken over).
    let point: Point;
    try {
      point = openPoint(name, allowOtherOwner);
    } catch (err) {
      if (isIpcError(err, 'IPC_ERR_NOT_FOUND')) continue; // removed meanwhile: create again
      if (isIpcError(err, 'IPC_ERR_PERMISSION')) throw err; // another user's: never taken over silently
      throw new IpcError('IPC_ERR_EXISTS', `${what}: '${name}' exists and is not a usable shm channel accept point; it was left alone`, { cause: err });
    }
    const current = Atomics.load(point.i32, P.serverToken);
    if (current !== 0 && point.life.isAlive(current)) {
      point.close();
      throw new IpcError('IPC_ERR_EXISTS', `${what}: a live server is listening on '${name}'`);
    }
    if (current === 0) {
      // A closing server's point, being removed: create a new one.
      point.close();
      continue;
    }
    // A dead server's point. One CAS takes it over, so two new servers cannot both win; the
    // requests its clients already posted are served by us.
    if (Atomics.compareExchange(point.i32, P.serverToken, current, point.life.token) !== current) {
      point.close();
      continue;
    }
    writeFields(point.i32);
    return new ShmListener(name, address, point.shm, options, point.life, mode);
  }
}

// ---- the client ----------------------------------------------------------------------------

async function connectShm(
  url: URL,
  address: string,
  options: ResolvedChannelOptions,
  timeout: number,
  signal: AbortSignal | undefined,
  extra: Record<string, unknown>,
): Promise<Link> {
  const name = shmName(url, address);
  const what = `connect to ${address}`;
  const allowOtherOwner = checkBoolean(extra['allowOtherOwner'], 'connect: allowOtherOwner') ?? false;
  if (signal?.aborted) throw abortError(what, signal.reason);
  const deadline = now() + timeout;
  let point: Point;
  try {
    point = openPoint(name, allowOtherOwner);
  } catch (err) {
    if (isIpcError(err, 'IPC_ERR_NOT_FOUND')) throw new IpcError('IPC_ERR_NOT_FOUND', `${what}: no server is listening`, { cause: err });
    throw err;
  }
  const pi32 = point.i32;
  const noServer = (): IpcError => new IpcError('IPC_ERR_NOT_FOUND', `${what}: no server is listening (the server closed or died)`);
  const serverAlive = (): boolean => {
    const token = Atomics.load(pi32, P.serverToken);
    return token !== 0 && point.life.isAlive(token);
  };
  let conn: { shm: SharedMemory; i32: Int32Array } | undefined;
  /** Our lifeline on the connection state, until a link takes it over. */
  let life: Lifeline | undefined;
  let up: QueueEnd | undefined;
  let down: QueueEnd | undefined;
  let base = '';
  const discard = (): void => {
    closeEnd(up);
    closeEnd(down);
    life?.close();
    conn?.shm.close();
    removeQuietly(`${base}.up`);
    removeQuietly(`${base}.down`);
    removeQuietly(base);
  };
  try {
    if (!serverAlive()) throw noServer();
    const capacity = Atomics.load(pi32, P.capacity);
    const recordBytes = Atomics.load(pi32, P.recordBytes);
    // The mode field is only what whoever can write the point says: never wider than the point's
    // own file mode, so the connection is no more open than the accept point itself.
    const mode = Atomics.load(pi32, P.mode) & objectStat(point.shm).mode & 0o777;
    if (capacity < 2 || capacity > MAX_CAPACITY || (capacity & (capacity - 1)) !== 0 || recordBytes <= HDR || recordBytes > HDR + MAX_CHUNK_BYTES) {
      throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: the accept point asks for queues of ${capacity} x ${recordBytes} bytes`);
    }
    // A fresh id; an existing name (a leftover) just moves on to the next one.
    for (let attempt = 0; conn === undefined; attempt++) {
      let id = (Atomics.add(pi32, P.nextId, 1) + 1) & 0x7fffffff;
      if (id === 0) id = (Atomics.add(pi32, P.nextId, 1) + 1) & 0x7fffffff;
      base = `${name}.c${id}`;
      try {
        const shm = openObject(
          base,
          'create',
          'shm channel',
          connectionLayout((buffer) => {
            life = openLifeline(buffer);
            const i32 = new Int32Array(buffer, 0, CONNECTION_BYTES >> 2);
            i32[C.role] = ROLE_CONNECTION;
            i32[C.state] = REQUESTED;
            i32[C.clientToken] = life.token;
          }),
          { mode },
        );
        conn = { shm, i32: new Int32Array(shm.buffer, 0, CONNECTION_BYTES >> 2) };
      } catch (err) {
        life?.close();
        life = undefined;
        if (!isIpcError(err, 'IPC_ERR_EXISTS') || attempt >= 100) throw err;
      }
    }
    const geometry = { capacity, maxMessageSize: recordBytes, mode };
    up = openEnd(`${base}.up`, false, geometry);
    down = openEnd(`${base}.down`, false, geometry);
  } catch (err) {
    discard();
    point.close();
    throw err;
  }
  const ci32 = conn.i32;
  const id = Number(base.slice(base.lastIndexOf('.c') + 2));
  let slot = -1;
  const post = (): void => {
    for (let k = 0; k < REQUEST_SLOTS; k++) {
      if (Atomics.compareExchange(pi32, P.requests + k, 0, id) === 0) {
        slot = k;
        Atomics.add(pi32, P.requestEvents, 1); // seq-cst after the slot CAS; pairs with the server's load before its scan
        futex.notify(pi32, P.requestEvents);
        return;
      }
    }
  };
  /** Gives up on the connection; if the server accepted it meanwhile, closes it properly. */
  const giveUp = (error: IpcError): never => {
    if (Atomics.compareExchange(ci32, C.state, REQUESTED, WITHDRAWN) !== ACCEPTED) {
      if (slot >= 0) Atomics.compareExchange(pi32, P.requests + slot, id, 0);
      discard();
    } else {
      new ShmLink({ tx: up!, rx: down!, conn: conn!.shm, life: life!, client: true, peerToken: Atomics.load(ci32, C.serverToken), options, what }).destroy();
      life = undefined; // the link closed it
      discard();
    }
    point.close();
    throw error;
  };
  post();
  for (;;) {
    const state = Atomics.load(ci32, C.state); // pairs with the server's accepting CAS
    if (state === ACCEPTED) break;
    if (state === REFUSED) giveUp(new IpcError('IPC_ERR_PROTOCOL', `${what}: the server refused the connection's objects`));
    if (!serverAlive()) giveUp(noServer());
    if (slot < 0) post();
    const left = deadline - now();
    if (left <= 0) giveUp(timeoutError(what, timeout));
    try {
      // Short sleeps while no request slot was free; otherwise woken by the server's accept.
      await futex.waitAsync(ci32, C.state, REQUESTED, Math.min(left, slot < 0 ? 5 : CHECK_MS), signal === undefined ? undefined : { signal });
    } catch (err) {
      if (isIpcError(err, 'IPC_ERR_ABORTED')) giveUp(abortError(what, signal?.reason));
      throw err;
    }
  }
  point.close();
  // The server unlinked the names once it had mapped them (it did, before accepting); a server
  // of another user cannot remove names we own (/dev/shm is sticky), so we make sure.
  removeQuietly(base);
  removeQuietly(`${base}.up`);
  removeQuietly(`${base}.down`);
  return new ShmLink({
    tx: up,
    rx: down,
    conn: conn.shm,
    life: life!,
    client: true,
    peerToken: Atomics.load(ci32, C.serverToken),
    options,
    what: `shm channel ${base} (client)`,
  });
}

export const shmTransport: Transport = {
  scheme: 'shm',
  listenKeys: ['mode', 'queueCapacity', 'queueChunkBytes', 'allowOtherOwner'],
  connectKeys: ['allowOtherOwner'],
  listen(url, address, { options, extra }) {
    return listenShm(url, address, options, extra);
  },
  connect(url, address, { options, timeout, signal, extra }) {
    return connectShm(url, address, options, timeout, signal, extra);
  },
};

