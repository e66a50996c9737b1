/**
 * The client side of shm:// (layout.ts has the protocol): creates a connection's objects, posts
 * a request, and runs the handshake as a small state machine. Each step looks at the shared
 * words once and either ends the handshake or says how long to sleep on the state word:
 *
 *   phase      state word   what the step sees                     then
 *   unposted   requested    a free request slot: post, wake server  posted, sleep CHECK_MS
 *   unposted   requested    no free slot                            unposted, sleep POST_RETRY_MS
 *   posted     requested    nothing new                             posted, sleep CHECK_MS
 *   any        accepted     the server's CAS won                    open: the link
 *   any        refused      the server could not use our objects    withdrawn: IPC_ERR_PROTOCOL
 *   any        requested    the server closed or died               withdrawn: IPC_ERR_NOT_FOUND
 *   any        requested    deadline passed or signal aborted       withdrawn: IPC_ERR_TIMEOUT / ABORTED
 *
 * The server wakes the sleeping client when it accepts or refuses; armDeadline wakes it when
 * the time is up or the signal aborts. Withdrawing CASes state requested -> withdrawn: if the
 * server's accepting CAS came first, the accepted connection is closed properly (the server
 * sees a clean end). A withdrawn client removes the names it created, and connect rejects.
 */
import { armDeadline } from '../../deadline.js';
import { IpcError, isIpcError } from '../../errors.js';
import { futex } from '../../os/futex.js';
import { openLifeline, type Lifeline } from '../../os/lifeline.js';
import { checkBoolean } from '../../options.js';
import type { Queue } from '../../queue/queue.js';
import { openObject } from '../../shm/segment.js';
import { objectStat } from '../../shm/shared-memory.js';
import type { ResolvedChannelOptions } from '../channel.js';
import type { Link } from '../link.js';
import {
  C,
  CHECK_MS,
  connectionLayout,
  connectionNames,
  CONNECTION_BYTES,
  openPoint,
  P,
  pointSettled,
  readGeometry,
  removeName,
  REQUEST_SLOTS,
  Role,
  shmName,
  State,
  type Mapped,
  type Point,
} from './layout.js';
import { ShmLink } from './link.js';
import { openQueue } from './pump.js';

/** How soon a client that found no free request slot looks again (ms). */
const POST_RETRY_MS = 5;
/** Ids taken before giving up on finding a name that is not a leftover. */
const MAX_ID_ATTEMPTS = 100;

/** A connection being made: its objects, and where the handshake is. */
class ClientHandshake {
  readonly #name: string;
  readonly #what: string;
  readonly #options: ResolvedChannelOptions;
  /** The accept point, and our lifeline on it: whether its server still lives. */
  #point: Point | undefined;
  /** Names this client created (removed again if it withdraws, and once accepted). */
  readonly #created: string[] = [];
  #conn: Mapped | undefined;
  /** The connection's lifeline: our token in it, and later the server's liveness. */
  #lifeline: Lifeline | undefined;
  #up: Queue<Uint8Array> | undefined;
  #down: Queue<Uint8Array> | undefined;
  #id = 0;
  /** The request slot holding our id; -1 while unposted. */
  #slot = -1;

  private constructor(name: string, what: string, options: ResolvedChannelOptions, point: Point) {
    this.#name = name;
    this.#what = what;
    this.#options = options;
    this.#point = point;
  }

  /**
   * Opens the accept point (another user's only with `allowOtherOwner`) and creates the
   * connection's objects (unposted).
   */
  static begin(name: string, what: string, options: ResolvedChannelOptions, allowOtherOwner: boolean): ClientHandshake {
    let point: Point;
    try {
      point = openPoint(name, allowOtherOwner);
    } catch (err) {
      if (isIpcError(err, 'IPC_ERR_NOT_FOUND')) throw new IpcError('IPC_ERR_NOT_FOUND', `${what}: no server is listening`, { cause: err });
      throw err;
    }
    const handshake = new ClientHandshake(name, what, options, point);
    try {
      handshake.#create();
    } catch (err) {
      handshake.#discard();
      throw err;
    }
    return handshake;
  }

  #create(): void {
    const point = this.#point!;
    const p = point.i32;
    if (!this.#serverAlive()) throw this.#noServer();
    const geometry = readGeometry(p);
    if (typeof geometry === 'string') throw new IpcError('IPC_ERR_INCOMPATIBLE', `${this.#what}: ${geometry}`);
    const { capacity, recordBytes } = geometry;
    // The mode field is only what whoever can write the point says: never wider than the point's
    // own file mode, so the connection is no more open than the accept point itself.
    const mode = geometry.mode & objectStat(point.shm).mode & 0o777;
    // A fresh id; an existing name (a leftover) just moves on to the next one.
    for (let attempt = 0; this.#conn === undefined; attempt++) {
      let id = (Atomics.add(p, P.nextId, 1) + 1) & 0x7fffffff;
      if (id === 0) id = (Atomics.add(p, P.nextId, 1) + 1) & 0x7fffffff;
      const names = connectionNames(this.#name, id);
      const made: { lifeline?: Lifeline } = {};
      try {
        const shm = openObject(
          names.state,
          'create',
          'shm channel',
          connectionLayout((buffer) => {
            made.lifeline = openLifeline(buffer);
            const i32 = new Int32Array(buffer, 0, CONNECTION_BYTES >> 2);
            i32[C.role] = Role.Connection;
            i32[C.state] = State.Requested;
            i32[C.clientToken] = made.lifeline.token;
          }),
          { mode },
        );
        this.#created.push(names.state);
        this.#conn = { shm, i32: new Int32Array(shm.buffer, 0, CONNECTION_BYTES >> 2) };
        this.#lifeline = made.lifeline;
        this.#id = id;
      } catch (err) {
        made.lifeline?.close();
        if (!isIpcError(err, 'IPC_ERR_EXISTS') || attempt >= MAX_ID_ATTEMPTS) throw err;
      }
    }
    const names = connectionNames(this.#name, this.#id);
    const queues = { capacity, maxMessageSize: recordBytes, mode };
    this.#up = openQueue(names.up, false, queues);
    this.#created.push(names.up);
    this.#down = openQueue(names.down, false, queues);
    this.#created.push(names.down);
  }

  /** One step of the machine (the table above): the link, or how long to sleep (ms). */
  step(failure: IpcError | undefined): Link | number {
    const state = Atomics.load(this.#conn!.i32, C.state); // pairs with the server's accepting CAS
    if (state === State.Accepted) return this.#open();
    if (state === State.Refused) return this.#withdraw(new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: the server refused the connection's objects`));
    if (!this.#serverAlive()) return this.#withdraw(this.#noServer());
    if (failure !== undefined) return this.#withdraw(failure);
    if (this.#slot < 0 && !this.#post()) return POST_RETRY_MS;
    return CHECK_MS;
  }

  /** Sleeps on the state word until the server moves it, `ms` pass, or `signal` aborts. */
  async sleep(ms: number, signal: AbortSignal): Promise<void> {
    try {
      await futex.waitAsync(this.#conn!.i32, C.state, State.Requested, ms, { signal });
    } catch (err) {
      if (!isIpcError(err, 'IPC_ERR_ABORTED')) this.#withdraw(err as IpcError); // the next step handles an abort
    }
  }

  /** Posts our id in a free request slot and wakes the server; false if every slot is taken. */
  #post(): boolean {
    const p = this.#point!.i32;
    for (let k = 0; k < REQUEST_SLOTS; k++) {
      if (Atomics.compareExchange(p, P.requests + k, 0, this.#id) === 0) {
        this.#slot = k;
        Atomics.add(p, P.requestEvents, 1); // seq-cst after the slot CAS; pairs with the server's load before its scan
        futex.notify(p, P.requestEvents);
        return true;
      }
    }
    return false;
  }

  #serverAlive(): boolean {
    const point = this.#point!;
    const token = Atomics.load(point.i32, P.serverToken);
    return token !== 0 && point.life.isAlive(token);
  }

  #noServer(): IpcError {
    return new IpcError('IPC_ERR_NOT_FOUND', `${this.#what}: no server is listening (the server closed or died)`);
  }

  /** The accepted connection as a link (it owns the connection's objects from here on). */
  #open(): Link {
    // The server unlinked the names once it had mapped them (it did, before accepting); a server
    // of another user cannot remove names we own (/dev/shm is sticky), so we make sure.
    this.#removeNames();
    const link = new ShmLink({
      out: this.#up!,
      in: this.#down!,
      conn: this.#conn!.shm,
      lifeline: this.#lifeline!,
      client: true,
      peerToken: Atomics.load(this.#conn!.i32, C.serverToken),
      options: this.#options,
      what: `shm channel ${connectionNames(this.#name, this.#id).state} (client)`,
    });
    this.#point?.close();
    this.#forget();
    return link;
  }

  /** Gives up on the connection; if the server accepted it meanwhile, closes it properly. */
  #withdraw(error: IpcError): never {
    const conn = this.#conn!.i32;
    if (Atomics.compareExchange(conn, C.state, State.Requested, State.Withdrawn) === State.Accepted) {
      this.#open().destroy();
    } else if (this.#slot >= 0) {
      // Take the request back if the server has not taken it yet (it would find no names).
      Atomics.compareExchange(this.#point!.i32, P.requests + this.#slot, this.#id, 0);
    }
    this.#discard();
    throw error;
  }

  /** Unmaps everything and removes the names this client created (idempotent). */
  #discard(): void {
    this.#up?.close();
    this.#down?.close();
    this.#lifeline?.close();
    this.#conn?.shm.close();
    this.#removeNames();
    this.#point?.close();
    this.#forget();
  }

  /**
   * Removes the names this client created, the state object last: a client killed halfway
   * leaves the state object, whose dead lifeline tells the server (if the request was posted)
   * or `interprocess gc` to remove the rest, never queues that nothing points to any more.
   */
  #removeNames(): void {
    for (let k = this.#created.length - 1; k >= 0; k--) removeName(this.#created[k]!);
  }

  /**
   * Drops every reference to the connection's objects. An error thrown from a step keeps this
   * handshake reachable (its stack trace records the methods' receivers) for as long as the
   * caller keeps the error: the memory must not stay mapped, nor its descriptors open, for that.
   */
  #forget(): void {
    this.#point = undefined;
    this.#conn = undefined;
    this.#lifeline = undefined;
    this.#up = undefined;
    this.#down = undefined;
    this.#created.length = 0;
  }
}

/** Connects to shm://name within `timeout` ms (Infinity: no limit) unless `signal` aborts. */
export async function connectShm(
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
  let failure: IpcError | undefined;
  const wake = new AbortController();
  const disarm = armDeadline(timeout, signal, what, (error) => {
    failure = error;
    wake.abort();
  });
  try {
    await pointSettled(name, wake.signal);
    if (failure !== undefined) throw failure; // timed out or aborted before anything was created
    const handshake = ClientHandshake.begin(name, what, options, allowOtherOwner);
    for (;;) {
      const next = handshake.step(failure);
      if (typeof next !== 'number') return next;
      await handshake.sleep(next, wake.signal);
    }
  } finally {
    disarm();
  }
}
