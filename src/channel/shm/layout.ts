/**
 * shm://name: a duplex channel per connection made of two shared-memory Queues (src/queue),
 * one per direction, so that the same client and server code runs at shared-memory speed. This
 * file draws the two kinds of channel object and states the protocol; record.ts draws the
 * records that travel in the queues.
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
 * once accepted: a server of another user cannot remove them): an established connection has
 * no name, and the kernel frees its memory when the last of the two processes unmaps it
 * (closes, exits or is killed). Nothing can be left behind by a connection that was accepted;
 * a client that dies after posting its request is found dead by the server, which removes its
 * objects; a client killed during connect() before it posted is found by the server's sweep
 * of the ids handed out since it started (listen.ts), which removes them the same way.
 *
 * Accept point layout (512 bytes):
 *
 *   offset  size  field
 *   0       64    common header (src/shm/header.ts), kind Channel (7), version 2
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
 *   0       64    common header, kind Channel (7), version 2
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
 * Owners: an accept point or connection owned by another uid is refused (IPC_ERR_PERMISSION)
 * unless the caller opts in with allowOtherOwner; a server accepts connection objects of other
 * users only when its own mode lets other users in.
 *
 * Handshake (connect.ts, listen.ts): connect waits (on a timer, pointSettled) for an accept
 * point still being created, opens it, checks that serverToken is alive, takes an id, creates
 * `name.c<id>` (writing its own token) and both queues, then posts the id in a free request
 * slot (CAS 0 -> id) and bumps requestEvents (seq-cst add, then futex wake). The server takes
 * ids out of the slots (CAS id -> 0), looks at the three objects (look: never waiting;
 * listen.ts says what it does with one that is not ready), maps them with no wait, unlinks
 * their names, stores its token and CASes state requested -> accepted (the CAS publishes the
 * token to the client, whose acquire load of state pairs with it), then wakes the client. A
 * client that gives up (timeout, abort, server gone) CASes requested -> withdrawn; whichever
 * CAS wins decides, so a connection is either accepted by both sides or by neither.
 *
 * Data path (pump.ts, link.ts): `write` claims, fills and commits slots straight through the
 * Ring of the connection's Queue handle (src/queue/ring.ts, reached with queueRing: one
 * mapping per queue), with the queue's own protocol (header and payload written in place; no
 * view, closure or allocation per record), and calls `done` once
 * the last record is committed: it then survives this process exiting. The first frame of a
 * turn of the event loop is committed at once; small frames written after it in the same turn
 * are gathered into one pack record (record.ts) committed at the end of the turn (or when
 * full), so that a stream of small messages costs a slot per packful, not per message. When
 * the queue is full, frames wait in the link (needsDrain) and the send pump retries, then
 * sleeps in the kernel through the Queue handle (sendWith, wait strategy 'block'). The receive
 * pump takes records the same way, and while the queue is empty it looks again each time the
 * application's microtasks have all run (the reply it waits for is usually a few awaits away),
 * for a bounded spin that adapts (spinBudget; longer in the middle of a frame, whose next
 * record is on its way), then sleeps in Queue.receiveWith: an idle channel costs no CPU. A
 * sleeping peer is woken by the first record of a batch, then every capacity/8 records and at
 * the batch's end, not by every record. The pump stops taking records while the Channel is
 * paused (also in the middle of a pack): the queue then fills and the peer's sends wait
 * (backpressure).
 *
 * Version 2: pack records (version 1 had none; the versions refuse each other at connect).
 *
 * Close and death (link.ts): close() flushes (bounded by closeTimeout), commits an end record
 * if there is room, then sets its closed flag (after its last commit, seq-cst), and unmaps.
 * Every CHECK_MS each link reads the peer's flag and asks the kernel whether the peer's
 * lifeline token is still held; the link ends (cleanly after a flag, IPC_ERR_CLOSED after a
 * death) only once the queue has been drained, so what the peer committed before it closed or
 * died is delivered. A process that exits without closing sets its flags in an 'exit' hook.
 */
import { IpcError } from '../../errors.js';
import { validateName } from '../../naming.js';
import { openLifeline, type Lifeline } from '../../os/lifeline.js';
import { readShmHead } from '../../os/shm-dir.js';
import { HEADER_BYTES, Kind, MAGIC } from '../../shm/header.js';
import { startTimer } from '../../deadline.js';
import { DEFAULT_INIT_TIMEOUT, openObject, type ObjectLayout } from '../../shm/segment.js';
import { SharedMemory } from '../../shm/shared-memory.js';
import { RECORD_HEADER_BYTES } from './record.js';

export const VERSION = 2;

export const Role = {
  Point: 1,
  Connection: 2,
} as const;

/** Int32 indices in the accept point. */
export const P = {
  role: 16,
  serverToken: 17,
  nextId: 18,
  capacity: 19,
  recordBytes: 20,
  mode: 21,
  requestEvents: 32,
  requests: 64,
} as const;
export const REQUEST_SLOTS = 64;
export const POINT_BYTES = (P.requests + REQUEST_SLOTS) * 4;

/** Int32 indices in a connection's state. */
export const C = {
  role: 16,
  state: 17,
  clientToken: 18,
  serverToken: 19,
  clientClosed: 20,
  serverClosed: 21,
} as const;
export const CONNECTION_BYTES = 128;

/** Values of a connection's `state` word. */
export const State = {
  Requested: 0,
  Accepted: 1,
  Withdrawn: 2,
  Refused: 3,
} as const;

/** Limits of the geometry an accept point may ask for (checked by listen and by connect). */
export const MAX_CAPACITY = 65536;
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;

/** What an accept point hands to its clients: the queues they create, and their mode. */
export interface Geometry {
  capacity: number;
  recordBytes: number;
  mode: number;
}

/** Writes a point's geometry (before it is published, or when a new server takes it over). */
export function writeGeometry(point: Int32Array, g: Geometry): void {
  point[P.capacity] = g.capacity;
  point[P.recordBytes] = g.recordBytes;
  point[P.mode] = g.mode;
}

/** A point's geometry as a client reads it, checked against the limits; a string says what is wrong. */
export function readGeometry(point: Int32Array): Geometry | string {
  const capacity = Atomics.load(point, P.capacity);
  const recordBytes = Atomics.load(point, P.recordBytes);
  const mode = Atomics.load(point, P.mode) & 0o777;
  if (capacity < 2 || capacity > MAX_CAPACITY || (capacity & (capacity - 1)) !== 0 || recordBytes <= RECORD_HEADER_BYTES || recordBytes > RECORD_HEADER_BYTES + MAX_CHUNK_BYTES) {
    return `the accept point asks for queues of ${capacity} x ${recordBytes} bytes`;
  }
  return { capacity, recordBytes, mode };
}

/** How often a client and a link look at the peer's liveness and flags (ms). */
export const CHECK_MS = 100;

/** Longest suffix a connection adds to the name: `.c` + 10 digits + `.down`. */
const SUFFIX_CHARS = 17;
const MAX_NAME_CHARS = 200 - SUFFIX_CHARS;

/** The object name of an address: `shm://name` and nothing else. */
export function shmName(url: URL, address: string): string {
  if (url.username !== '' || url.password !== '' || url.port !== '' || (url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
    throw new TypeError(`'${address}': a shared-memory address is shm://name (a name, nothing else)`);
  }
  const name = validateName(decodeURIComponent(url.host));
  if (name.length > MAX_NAME_CHARS) {
    throw new IpcError('IPC_ERR_INVALID_NAME', `'${address}': shm:// names are limited to ${MAX_NAME_CHARS} characters (connections add a suffix)`);
  }
  return name;
}

/** The names of connection `id` of accept point `name`. */
export function connectionNames(name: string, id: number): { state: string; up: string; down: string } {
  const state = `${name}.c${id}`;
  return { state, up: `${state}.up`, down: `${state}.down` };
}

/** Removes a name if it is still there (a connection's names are removed by whoever gets there first). */
export function removeName(name: string): void {
  try {
    SharedMemory.remove(name);
  } catch {
    // already gone, or not ours to remove
  }
}

const noInit = (): void => {};

export function pointLayout(init: (buffer: SharedArrayBuffer) => void = noInit): ObjectLayout {
  return { kind: Kind.Channel, version: VERSION, byteLength: POINT_BYTES, init };
}

export function connectionLayout(init: (buffer: SharedArrayBuffer) => void = noInit): ObjectLayout {
  return { kind: Kind.Channel, version: VERSION, byteLength: CONNECTION_BYTES, init };
}

/** A mapped channel object and its words. */
export interface Mapped {
  shm: SharedMemory;
  i32: Int32Array;
}

/**
 * Opens an existing channel object and checks its role and size (IPC_ERR_INCOMPATIBLE
 * otherwise); one of another user is IPC_ERR_PERMISSION unless `allowOtherOwner`. With
 * `initTimeout` 0 it never waits for a creator (a server on its event loop).
 */
export function openRole(name: string, role: (typeof Role)[keyof typeof Role], allowOtherOwner: boolean, initTimeout?: number): Mapped {
  const point = role === Role.Point;
  const bytes = point ? POINT_BYTES : CONNECTION_BYTES;
  const shm = openObject(name, 'open', 'shm channel', point ? pointLayout() : connectionLayout(), {
    allowOtherOwner,
    ...(initTimeout !== undefined ? { initTimeout } : {}),
  });
  if (shm.byteLength < bytes || Atomics.load(new Int32Array(shm.buffer, 0, bytes >> 2), P.role) !== role) {
    shm.close();
    throw new IpcError('IPC_ERR_INCOMPATIBLE', `shm channel '${name}' is not ${point ? 'an accept point' : 'a connection'}`);
  }
  return { shm, i32: new Int32Array(shm.buffer, 0, bytes >> 2) };
}

/** What a look at a connection object a client made says (see look). */
export const Look = {
  /** Sized, published, of the kind (and role) wanted: open it (with no wait). */
  Ready: 0,
  /** Created but not sized or not published yet (or, for a queue, not there yet): look again. */
  Later: 1,
  /** Missing (a state object), not a regular file, unreadable, foreign, or of another kind or role. */
  Bad: 2,
} as const;
export type Look = (typeof Look)[keyof typeof Look];

/** Bytes a look reads: the common header, and a state object's role word. */
const LOOK_BYTES = HEADER_BYTES + 4;

/**
 * Looks at connection object `name` without opening it: its size and first bytes, read through
 * readShmHead (nothing mapped, nothing waited for). `role` is given for a state object (kind
 * Channel), not for a queue (kind Queue). A queue that is not there yet is Later: a client
 * creates its state object first. The header fields read here are what a creator writes before
 * publishing: a state word 0 with magic 0 or MAGIC is a creator still at work.
 */
export function look(name: string, kind: number, role?: number): Look {
  const seen = readShmHead(name, LOOK_BYTES);
  if (seen === undefined) return role === undefined ? Look.Later : Look.Bad;
  if (seen.byteLength === 0) return Look.Later;
  if (seen.head.length < (role === undefined ? HEADER_BYTES : LOOK_BYTES)) return Look.Bad;
  const view = new DataView(seen.head.buffer, seen.head.byteOffset, seen.head.length);
  const magic = view.getUint32(0, true);
  const state = view.getUint32(12, true);
  if (state === 0 && (magic === 0 || magic === MAGIC)) return Look.Later;
  if (state !== 1 || magic !== MAGIC || view.getUint32(4, true) !== kind) return Look.Bad;
  if (role !== undefined && view.getInt32(ROLE_OFFSET, true) !== role) return Look.Bad;
  return Look.Ready;
}

/** Where both kinds of channel object keep their role. */
const ROLE_OFFSET = P.role * 4;

/** The longest gap between two looks at an accept point that is being created (ms). */
const POINT_LOOK_MAX_MS = 50;

/**
 * Resolves once accept point `name` can be opened without waiting for its creator (it is ready,
 * or something that never will be: the open then says what), once its creator has had
 * DEFAULT_INIT_TIMEOUT (the open then fails as for a creator that died), or when `signal`
 * aborts. A server still creating its point is waited for here, on a timer that backs off,
 * instead of in the open, which would wait in native code and block the event loop whatever
 * the caller's timeout.
 */
export async function pointSettled(name: string, signal?: AbortSignal): Promise<void> {
  const started = performance.now();
  for (let gap = 1; look(name, Kind.Channel, Role.Point) === Look.Later; gap = Math.min(gap * 2, POINT_LOOK_MAX_MS)) {
    if (signal?.aborted || performance.now() - started >= DEFAULT_INIT_TIMEOUT) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        cancel();
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const cancel = startTimer(gap, done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

/** An accept point, opened, with this thread's lifeline on it (serverToken is asked of it). */
export interface Point extends Mapped {
  life: Lifeline;
  close(): void;
}

/**
 * Opens the accept point `name` and this thread's lifeline on it (listen's takeover, connect),
 * without waiting for its creator: call pointSettled first.
 */
export function openPoint(name: string, allowOtherOwner: boolean): Point {
  const { shm, i32 } = openRole(name, Role.Point, allowOtherOwner, 0);
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

const STATE_NAMES = ['requested', 'accepted', 'withdrawn', 'refused'];

/**
 * What `interprocess inspect` shows of a shm:// channel object (its header already validated):
 * for an accept point, whether its server lives and how many connections wait to be accepted;
 * for a connection's state, where its handshake is and whether each side lives and has closed.
 * Only reads.
 */
export function describeShmChannel(buffer: SharedArrayBuffer): Record<string, unknown> {
  if (buffer.byteLength < HEADER_BYTES + 8) return { role: 'unknown (too small)' };
  const role = Atomics.load(new Int32Array(buffer, 0, P.role + 1), P.role);
  if (role !== Role.Point && role !== Role.Connection) return { role: `unknown (${role})` };
  // Liveness is asked through a lifeline on the object itself (tokens are per object).
  const life = openLifeline(buffer);
  try {
    return describeRole(buffer, role, (token) => (token === 0 ? 'none' : life.isAlive(token) ? 'alive' : 'dead'));
  } finally {
    life.close();
  }
}

function describeRole(buffer: SharedArrayBuffer, role: number, owner: (token: number) => string): Record<string, unknown> {
  if (role === Role.Point && buffer.byteLength >= POINT_BYTES) {
    const p = new Int32Array(buffer, 0, POINT_BYTES >> 2);
    let pending = 0;
    for (let k = 0; k < REQUEST_SLOTS; k++) if (Atomics.load(p, P.requests + k) !== 0) pending++;
    const token = Atomics.load(p, P.serverToken);
    return {
      role: 'accept point',
      server: token === 0 ? 'closed' : owner(token),
      pendingRequests: pending,
      connectionsRequested: Atomics.load(p, P.nextId) >>> 0,
      queueCapacity: Atomics.load(p, P.capacity),
      recordBytes: Atomics.load(p, P.recordBytes),
      mode: `0o${(Atomics.load(p, P.mode) & 0o777).toString(8)}`,
    };
  }
  if (role === Role.Connection && buffer.byteLength >= CONNECTION_BYTES) {
    const c = new Int32Array(buffer, 0, CONNECTION_BYTES >> 2);
    const state = Atomics.load(c, C.state);
    return {
      role: 'connection',
      state: STATE_NAMES[state] ?? `unknown (${state})`,
      client: owner(Atomics.load(c, C.clientToken)),
      server: owner(Atomics.load(c, C.serverToken)),
      clientClosed: Atomics.load(c, C.clientClosed) !== 0,
      serverClosed: Atomics.load(c, C.serverClosed) !== 0,
    };
  }
  return { role: `unknown (${role})` };
}
