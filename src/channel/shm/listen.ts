/**
 * The server side of shm:// (layout.ts has the protocol): creates or takes over the accept
 * point, takes connection requests out of its slots, and accepts each one (maps its objects,
 * unlinks their names, publishes its token with the accepting CAS).
 *
 * Nothing a client does may stall the server's event loop, so no step of accept waits: a
 * request is first looked at (look in layout.ts: a few bytes read, nothing mapped), and its
 * objects are opened only once all three are sized, published and of the right kind, then with
 * no wait at all (initTimeout 0). A request whose objects are not ready yet is looked at again
 * later, on a short timer that backs off, for at most PENDING_MS, then refused; at most
 * REQUEST_SLOTS wait at once (more are refused at once). The slots themselves are emptied as
 * soon as they are read, so waiting requests never keep a good client from posting.
 *
 *   what a look sees                                 then
 *   the state object missing or bad                  dropped (nothing to tell)
 *   something not sized / published / there yet     waits (PENDING_MS at most), then refused
 *   a queue bad                                      refused
 *   all ready, opened with no wait                   accepted, unless the client is dead or a
 *                                                    queue's geometry is out of bounds: refused
 *
 * Refusing CASes the state requested -> refused and wakes the client (it removes its objects);
 * a client that is dead cannot, so the server removes them. Each turn of the loop takes at most
 * TURN_REQUESTS requests and then lets other I/O run (setImmediate): a flood of requests costs
 * the loop short turns, never a long one.
 */
import { IpcError, isIpcError } from '../../errors.js';
import { futex } from '../../os/futex.js';
import { openLifeline, type Lifeline } from '../../os/lifeline.js';
import { readShmHead } from '../../os/shm-dir.js';
import { checkBoolean, checkInteger } from '../../options.js';
import { Queue } from '../../queue/queue.js';
import { SLOT_HEADER_BYTES } from '../../queue/layout.js';
import { Kind } from '../../shm/header.js';
import { DEFAULT_INIT_TIMEOUT, openObject } from '../../shm/segment.js';
import type { ResolvedChannelOptions } from '../channel.js';
import type { Link } from '../link.js';
import type { Listener } from '../transport.js';
import {
  C,
  connectionNames,
  look,
  Look,
  MAX_CAPACITY,
  MAX_CHUNK_BYTES,
  openPoint,
  openRole,
  P,
  pointLayout,
  POINT_BYTES,
  pointSettled,
  removeName,
  REQUEST_SLOTS,
  Role,
  shmName,
  State,
  writeGeometry,
} from './layout.js';
import type { Geometry, Mapped, Point } from './layout.js';
import { ShmLink } from './link.js';
import { RECORD_HEADER_BYTES } from './record.js';

const DEFAULT_CAPACITY = 128;
/** Payload bytes per record: 8 KiB, so that power-of-two messages fill whole records. */
const DEFAULT_CHUNK_BYTES = 8192;
/** How long a request whose objects are not ready is looked at before it is refused (ms): what an open grants a creator. */
const PENDING_MS = DEFAULT_INIT_TIMEOUT;
/** The first gap between two looks at a waiting request, and the longest (it doubles) (ms). */
const RETRY_FIRST_MS = 5;
const RETRY_MAX_MS = 200;
/** Requests taken out of the slots in one turn of the event loop. */
const TURN_REQUESTS = 16;
/**
 * The sweep for connections whose client died in connect() before it posted its request (the
 * server never hears of them): how often it runs (ms), how long an id handed out may have no
 * state object before it counts as never made (ms), how far behind nextId it reaches (ids
 * further back are `interprocess gc`'s), and how many ids one sweep looks at.
 */
const SWEEP_MS = 1000;
const UNMADE_MS = 10_000;
const SWEEP_SPAN = 1024;
const SWEEP_IDS = 64;

/** What the sweep found for one connection id (Requests.sweep). */
const Swept = { Settled: 0, Live: 1, Missing: 2 } as const;
type Swept = (typeof Swept)[keyof typeof Swept];

/** A request whose objects were not ready when looked at. */
interface Waiting {
  since: number;
  /** When to look again (performance.now()), and the gap after that. */
  due: number;
  gap: number;
}

const now = (): number => performance.now();
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Whether the client that made connection `conn` lives (a token the kernel cannot check counts as alive: nothing is removed on a doubt). */
function clientAlive(lifeline: Lifeline, conn: Mapped): boolean {
  try {
    return lifeline.isAlive(Atomics.load(conn.i32, C.clientToken));
  } catch {
    return true;
  }
}

/**
 * What the server does with one connection request (the table at the top): looks at its
 * objects, then accepts it (hands the link to `onLink`) or refuses it. Synchronous and never
 * waiting: the listener's loop calls it, and so does the fuzz target for connection objects.
 */
export class Requests {
  readonly #name: string;
  /** Whether connection objects of other users are accepted (the server's mode lets them in). */
  readonly #othersAllowed: boolean;
  readonly #options: ResolvedChannelOptions;
  readonly #onLink: (link: Link) => void;

  constructor(name: string, othersAllowed: boolean, options: ResolvedChannelOptions, onLink: (link: Link) => void) {
    this.#name = name;
    this.#othersAllowed = othersAllowed;
    this.#options = options;
    this.#onLink = onLink;
  }

  /**
   * Looks at request `id` (the table at the top) and accepts or refuses it; true if it must be
   * looked at again later (never when `last`). Never waits, never throws.
   */
  handle(id: number, last: boolean): boolean {
    const names = connectionNames(this.#name, id);
    const state = look(names.state, Kind.Channel, Role.Connection);
    if (state === Look.Bad) return false; // withdrawn, a garbage id, or nothing we could use
    const up = state === Look.Ready ? look(names.up, Kind.Queue) : Look.Later;
    const down = state === Look.Ready ? look(names.down, Kind.Queue) : Look.Later;
    if (up !== Look.Bad && down !== Look.Bad && (state === Look.Later || up === Look.Later || down === Look.Later)) {
      if (!last) return true;
    }
    if (state === Look.Ready && up === Look.Ready && down === Look.Ready) this.#accept(names);
    else if (state === Look.Ready) this.#refuse(names);
    return false;
  }

  /**
   * The sweep's look at connection `id`, which may never have been posted: SETTLED once there
   * is nothing left to do for it (its client is dead, and its objects are removed now; or
   * something else has the name), LIVE while its client lives or its state is being made or
   * removed, MISSING when it has no state object: accepted (the names unlinked), removed, or not
   * made yet; `unmade` (missing for UNMADE_MS) settles that. Never waits, never throws.
   */
  sweep(id: number, unmade: boolean): Swept {
    const names = connectionNames(this.#name, id);
    const seen = look(names.state, Kind.Channel, Role.Connection);
    if (seen === Look.Later) return Swept.Live;
    // A client makes its state first, so without it nothing of the connection exists yet.
    if (seen === Look.Bad) return readShmHead(names.state, 0) !== undefined || unmade ? Swept.Settled : Swept.Missing;
    let conn: Mapped | undefined;
    let lifeline: Lifeline | undefined;
    try {
      conn = openRole(names.state, Role.Connection, this.#othersAllowed, 0);
      lifeline = openLifeline(conn.shm.buffer);
      // Alive: it will post, withdraw or be accepted, and remove what it made itself.
      if (clientAlive(lifeline, conn)) return Swept.Live;
      removeName(names.state);
      removeName(names.up);
      removeName(names.down);
      return Swept.Settled;
    } catch {
      return Swept.Live; // changed under us since the look: the next sweep looks again
    } finally {
      lifeline?.close();
      conn?.shm.close();
    }
  }

  /**
   * Refuses a request whose state object is usable: tells a live client (state refused, wake),
   * and removes the names of a dead one (nobody else will). `opened`: the state object and its
   * lifeline, when the caller has them.
   */
  #refuse(names: { state: string; up: string; down: string }, opened?: { conn: Mapped; lifeline: Lifeline }): void {
    let conn = opened?.conn;
    let lifeline = opened?.lifeline;
    try {
      conn ??= openRole(names.state, Role.Connection, this.#othersAllowed, 0);
      lifeline ??= openLifeline(conn.shm.buffer);
    } catch {
      conn?.shm.close();
      return; // changed under us since the look: nothing we can tell
    }
    if (Atomics.compareExchange(conn.i32, C.state, State.Requested, State.Refused) === State.Requested) {
      futex.notify(conn.i32, C.state);
    }
    if (!clientAlive(lifeline, conn)) {
      removeName(names.state);
      removeName(names.up);
      removeName(names.down);
    }
    if (opened === undefined) {
      lifeline.close();
      conn.shm.close();
    }
  }

  /** Maps connection `id` (no wait), unlinks its names, and accepts it (unless its client withdrew or is dead). */
  #accept(names: { state: string; up: string; down: string }): void {
    let conn: Mapped | undefined;
    let up: Queue<Uint8Array> | undefined;
    let down: Queue<Uint8Array> | undefined;
    let lifeline: Lifeline | undefined;
    const release = (): void => {
      up?.close();
      down?.close();
      lifeline?.close();
      conn?.shm.close();
    };
    try {
      conn = openRole(names.state, Role.Connection, this.#othersAllowed, 0);
      lifeline = openLifeline(conn.shm.buffer);
      // Queue.open as pump.ts's openQueue does, but with no wait for a creator.
      up = Queue.open(names.up, { wait: 'block', allowOtherOwner: this.#othersAllowed, initTimeout: 0 });
      down = Queue.open(names.down, { wait: 'block', allowOtherOwner: this.#othersAllowed, initTimeout: 0 });
      for (const queue of [up, down]) {
        // A record is one slot: queues whose messages span slots (slotSize) are not a client's.
        if (queue.capacity > MAX_CAPACITY || queue.maxMessageSize <= RECORD_HEADER_BYTES || queue.maxMessageSize > RECORD_HEADER_BYTES + MAX_CHUNK_BYTES || queue.slotSize < queue.maxMessageSize) {
          throw new IpcError('IPC_ERR_INCOMPATIBLE', `${names.state}: queues of ${queue.capacity} x ${queue.maxMessageSize} bytes`);
        }
      }
      if (!clientAlive(lifeline, conn)) throw new IpcError('IPC_ERR_CLOSED', `${names.state}: the client is gone`);
    } catch {
      // Changed since the look, unusable, or its client died: refuse, so no one waits on it.
      if (conn !== undefined && lifeline !== undefined) this.#refuse(names, { conn, lifeline });
      release();
      return;
    }
    // Mapped on both sides from here on: the names are no longer needed by anyone.
    removeName(names.state);
    removeName(names.up);
    removeName(names.down);
    const clientToken = Atomics.load(conn.i32, C.clientToken);
    Atomics.store(conn.i32, C.serverToken, lifeline.token);
    // The CAS publishes serverToken to the client (its load of state pairs with it); losing it
    // means the client withdrew first and will not use the connection.
    if (Atomics.compareExchange(conn.i32, C.state, State.Requested, State.Accepted) !== State.Requested) {
      release();
      return;
    }
    futex.notify(conn.i32, C.state);
    const link = new ShmLink({
      out: down,
      in: up,
      conn: conn.shm,
      lifeline,
      client: false,
      peerToken: clientToken,
      options: this.#options,
      what: `shm channel ${names.state} (server)`,
    });
    this.#onLink(link);
  }
}

class ShmListener implements Listener {
  readonly address: string;
  readonly #name: string;
  readonly #point: Mapped;
  readonly #lifeline: Lifeline;
  readonly #options: ResolvedChannelOptions;
  /** Whether connection objects of other users are accepted (our mode lets them in). */
  readonly #othersAllowed: boolean;
  readonly #stop = new AbortController();
  #requests: Requests | undefined;
  /** Requests waiting for their objects, by id. */
  readonly #waiting = new Map<number, Waiting>();
  /** The slot the next scan starts at (round robin, so a turn cut short is fair to every slot). */
  #cursor = 0;
  #closed = false;
  /** The sweep: every id up to this one is settled; when it runs next (performance.now()). */
  #swept: number;
  #sweepDue = 0;
  /** Ids after #swept the sweep found without a state object, and since when. */
  readonly #missingSince = new Map<number, number>();

  constructor(name: string, address: string, point: Mapped, lifeline: Lifeline, options: ResolvedChannelOptions, mode: number) {
    this.address = address;
    this.#name = name;
    this.#point = point;
    this.#lifeline = lifeline;
    this.#options = options;
    this.#othersAllowed = (mode & 0o077) !== 0;
    // Ids handed out before us were another server's (or a run before): `interprocess gc`'s.
    this.#swept = Atomics.load(point.i32, P.nextId) & 0x7fffffff;
  }

  start(onLink: (link: Link) => void): void {
    this.#requests = new Requests(this.#name, this.#othersAllowed, this.#options, onLink);
    void this.#loop();
  }

  async #loop(): Promise<void> {
    const i32 = this.#point.i32;
    while (!this.#closed) {
      // Read the event count before scanning: a request posted after the scan bumps it after
      // this read, so the wait below returns at once (seq-cst; pairs with the client's add).
      const seen = Atomics.load(i32, P.requestEvents);
      const scannedAll = this.#takeRequests(i32);
      this.#lookAgain();
      if (now() >= this.#sweepDue) this.#sweep(i32);
      if (this.#closed) return;
      if (scannedAll) {
        try {
          await futex.waitAsync(i32, P.requestEvents, seen, this.#untilDue(), { signal: this.#stop.signal });
        } catch {
          return; // closed
        }
      }
      // Let other I/O run between two turns, however fast requests come: a wait that finds the
      // count changed resolves as a microtask, which alone would never let go of the loop.
      await nextTurn();
    }
  }

  /** Takes up to TURN_REQUESTS ids out of the slots; true if every slot was looked at. */
  #takeRequests(i32: Int32Array): boolean {
    let taken = 0;
    for (let n = 0; n < REQUEST_SLOTS && !this.#closed; n++) {
      const k = this.#cursor;
      this.#cursor = (k + 1) % REQUEST_SLOTS;
      const id = Atomics.load(i32, P.requests + k);
      if (id !== 0 && Atomics.compareExchange(i32, P.requests + k, id, 0) === id) {
        this.#request(id >>> 0);
        if (++taken === TURN_REQUESTS) return n === REQUEST_SLOTS - 1;
      }
    }
    return true;
  }

  /** A request just taken: handled now, or kept waiting for its objects. */
  #request(id: number): void {
    if (this.#waiting.has(id)) return; // posted again while it waits: one is enough
    if (this.#requests!.handle(id, this.#waiting.size >= REQUEST_SLOTS)) {
      const at = now();
      this.#waiting.set(id, { since: at, due: at + RETRY_FIRST_MS, gap: RETRY_FIRST_MS });
    }
  }

  /** Looks again at the waiting requests that are due; the last look refuses what is still not ready. */
  #lookAgain(): void {
    for (const [id, waiting] of this.#waiting) {
      if (this.#closed) return;
      const at = now();
      if (waiting.due > at) continue;
      if (this.#requests!.handle(id, at - waiting.since >= PENDING_MS)) {
        waiting.gap = Math.min(waiting.gap * 2, RETRY_MAX_MS);
        waiting.due = at + waiting.gap;
      } else {
        this.#waiting.delete(id);
      }
    }
  }

  /**
   * Settles the ids clients took since the last sweep (SWEEP_IDS at most, from the oldest): a
   * client killed in connect() after making its objects and before posting them is never heard
   * of otherwise, and its objects would stay in /dev/shm. Those of a dead client are removed
   * (Requests.sweep); a live client's are left to it.
   */
  #sweep(i32: Int32Array): void {
    this.#sweepDue = now() + SWEEP_MS;
    const next = Atomics.load(i32, P.nextId) & 0x7fffffff;
    if (((next - this.#swept) & 0x7fffffff) > SWEEP_SPAN) {
      this.#swept = (next - SWEEP_SPAN) & 0x7fffffff;
      this.#missingSince.clear();
    }
    let prefix = true; // every id so far settled: #swept moves on with them
    for (let n = 0, id = this.#swept; n < SWEEP_IDS && id !== next && !this.#closed; n++) {
      id = (id + 1) & 0x7fffffff;
      const since = this.#missingSince.get(id);
      const swept = id === 0 ? Swept.Settled : this.#requests!.sweep(id, since !== undefined && now() - since >= UNMADE_MS);
      if (swept === Swept.Missing && since === undefined) this.#missingSince.set(id, now());
      if (swept === Swept.Live) this.#missingSince.delete(id);
      if (prefix && swept === Swept.Settled) {
        this.#swept = id;
        this.#missingSince.delete(id);
      } else prefix = false;
    }
  }

  /** How long the loop may sleep before a waiting request or the sweep is due (ms). */
  #untilDue(): number {
    let due = this.#sweepDue;
    for (const waiting of this.#waiting.values()) due = Math.min(due, waiting.due);
    return Math.max(0, Math.ceil(due - now()));
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#stop.abort();
      this.#waiting.clear();
      // Name first, token second: a new server can create a fresh point at once, and clients
      // still holding this one see serverToken 0 and give up.
      removeName(this.#name);
      Atomics.store(this.#point.i32, P.serverToken, 0);
      futex.notify(this.#point.i32, P.requestEvents);
      this.#lifeline.close();
      this.#point.shm.close();
    }
    return Promise.resolve();
  }
}

function listenOptions(extra: Record<string, unknown>): Geometry & { allowOtherOwner: boolean } {
  const mode = extra['mode'] === undefined ? 0o600 : checkInteger(extra['mode'], 'listen: mode', 0, 0o777);
  const capacity = extra['queueCapacity'] === undefined ? DEFAULT_CAPACITY : checkInteger(extra['queueCapacity'], 'listen: queueCapacity', 2, MAX_CAPACITY);
  if ((capacity & (capacity - 1)) !== 0) throw new RangeError(`listen: queueCapacity must be a power of two, got ${capacity}`);
  const chunkBytes = extra['queueChunkBytes'] === undefined ? DEFAULT_CHUNK_BYTES : checkInteger(extra['queueChunkBytes'], 'listen: queueChunkBytes', 1, MAX_CHUNK_BYTES);
  // Slots a whole number of cache lines long (the slots start 64-byte aligned), so that no two
  // slots share a line: a record may then carry a few more bytes than asked.
  const slotBytes = Math.ceil((SLOT_HEADER_BYTES + RECORD_HEADER_BYTES + chunkBytes) / 64) * 64;
  const allowOtherOwner = checkBoolean(extra['allowOtherOwner'], 'listen: allowOtherOwner') ?? false;
  return { mode, capacity, recordBytes: slotBytes - SLOT_HEADER_BYTES, allowOtherOwner };
}

/** Listens on shm://name: a fresh accept point, or a dead server's taken over; never a live one's. */
export async function listenShm(url: URL, address: string, options: ResolvedChannelOptions, extra: Record<string, unknown>): Promise<Listener> {
  const name = shmName(url, address);
  const geometry = listenOptions(extra);
  const what = `listen on ${address}`;
  for (let attempt = 0; ; attempt++) {
    let lifeline: Lifeline | undefined;
    try {
      const shm = openObject(
        name,
        'create',
        'shm channel',
        pointLayout((buffer) => {
          lifeline = openLifeline(buffer);
          const i32 = new Int32Array(buffer, 0, POINT_BYTES >> 2);
          i32[P.role] = Role.Point;
          i32[P.serverToken] = lifeline.token;
          writeGeometry(i32, geometry);
          // published by publishHeader's release store of the header's state word
        }),
        { mode: geometry.mode },
      );
      return new ShmListener(name, address, { shm, i32: new Int32Array(shm.buffer, 0, POINT_BYTES >> 2) }, lifeline!, options, geometry.mode);
    } catch (err) {
      lifeline?.close();
      if (!isIpcError(err, 'IPC_ERR_EXISTS') || attempt >= 20) throw err;
    }
    // The name exists: a live server's (never taken), or a dead server's (taken over).
    await pointSettled(name);
    let point: Point;
    try {
      point = openPoint(name, geometry.allowOtherOwner);
    } catch (err) {
      if (isIpcError(err, 'IPC_ERR_NOT_FOUND')) continue; // removed meanwhile: create again
      if (isIpcError(err, 'IPC_ERR_PERMISSION')) throw err; // another user's: never taken over silently
      throw new IpcError('IPC_ERR_EXISTS', `${what}: '${name}' exists and is not a usable shm channel accept point; it was left alone`, { cause: err });
    }
    const current = Atomics.load(point.i32, P.serverToken);
    // A closing server's point (token 0, being removed): create a new one. A live server's is
    // never taken. A dead server's is taken over with one CAS, so two new servers cannot both
    // win; the requests its clients already posted are served by us.
    const live = current !== 0 && point.life.isAlive(current);
    if (current === 0 || live || Atomics.compareExchange(point.i32, P.serverToken, current, point.life.token) !== current) {
      point.close();
      if (live) throw new IpcError('IPC_ERR_EXISTS', `${what}: a live server is listening on '${name}'`);
      continue;
    }
    writeGeometry(point.i32, geometry);
    return new ShmListener(name, address, point, point.life, options, geometry.mode);
  }
}
