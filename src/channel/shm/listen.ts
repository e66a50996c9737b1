/**
 * The server side of shm:// (layout.ts has the protocol): creates or takes over the accept
 * point, takes connection requests out of its slots, and accepts each one (maps its objects,
 * unlinks their names, publishes its token with the accepting CAS).
 */
import { IpcError, isIpcError } from '../../errors.js';
import { futex } from '../../os/futex.js';
import { openLifeline, type Lifeline } from '../../os/lifeline.js';
import { checkBoolean, checkInteger } from '../../options.js';
import type { Queue } from '../../queue/queue.js';
import { SLOT_HEADER_BYTES } from '../../queue/layout.js';
import { openObject } from '../../shm/segment.js';
import type { ResolvedChannelOptions } from '../channel.js';
import type { Link } from '../link.js';
import type { Listener } from '../transport.js';
import { C, connectionNames, MAX_CAPACITY, MAX_CHUNK_BYTES, openPoint, openRole, P, pointLayout, POINT_BYTES, removeName, REQUEST_SLOTS, Role, shmName, State, writeGeometry } from './layout.js';
import type { Geometry, Mapped, Point } from './layout.js';
import { ShmLink } from './link.js';
import { openQueue } from './pump.js';
import { RECORD_HEADER_BYTES } from './record.js';

const DEFAULT_CAPACITY = 128;
/** Payload bytes per record: 8 KiB, so that power-of-two messages fill whole records. */
const DEFAULT_CHUNK_BYTES = 8192;

class ShmListener implements Listener {
  readonly address: string;
  readonly #name: string;
  readonly #point: Mapped;
  readonly #lifeline: Lifeline;
  readonly #options: ResolvedChannelOptions;
  /** Whether connection objects of other users are accepted (our mode lets them in). */
  readonly #othersAllowed: boolean;
  readonly #stop = new AbortController();
  #onLink: ((link: Link) => void) | undefined;
  #closed = false;

  constructor(name: string, address: string, point: Mapped, lifeline: Lifeline, options: ResolvedChannelOptions, mode: number) {
    this.address = address;
    this.#name = name;
    this.#point = point;
    this.#lifeline = lifeline;
    this.#options = options;
    this.#othersAllowed = (mode & 0o077) !== 0;
  }

  start(onLink: (link: Link) => void): void {
    this.#onLink = onLink;
    void this.#loop();
  }

  async #loop(): Promise<void> {
    const i32 = this.#point.i32;
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
    const names = connectionNames(this.#name, id);
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
      conn = openRole(names.state, Role.Connection, this.#othersAllowed);
      up = openQueue(names.up, this.#othersAllowed);
      down = openQueue(names.down, this.#othersAllowed);
      lifeline = openLifeline(conn.shm.buffer);
      if (up.maxMessageSize <= RECORD_HEADER_BYTES || down.maxMessageSize <= RECORD_HEADER_BYTES) {
        throw new IpcError('IPC_ERR_INCOMPATIBLE', `${names.state}: records too small`);
      }
    } catch {
      // The client withdrew (names gone) or left something unusable: refuse, so it does not wait.
      if (conn !== undefined && Atomics.compareExchange(conn.i32, C.state, State.Requested, State.Refused) === State.Requested) {
        futex.notify(conn.i32, C.state);
      }
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
    this.#onLink!(link);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#stop.abort();
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
