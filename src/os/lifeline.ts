/**
 * Lifelines: owner identity and liveness for everything that records owners in shared memory
 * (robust lock words, queue slot owners, shm:// channel peers).
 *
 * Scoped to the object: a thread's lifeline for an object is its own open description of that
 * object's file holding a kernel byte lock (native/lifeline.cc). The token (1 .. 2^28-2) is what
 * the object's owner words record; `isAlive(token)` asks the kernel whether some thread still
 * holds that token's byte, which is false only once that thread (worker or process) is gone or
 * has closed every handle on the object. A PID is never used and a timeout never decides
 * anything. Only those who can open the object can touch its lifelines: no machine-wide file.
 *
 * One lifeline per thread per object, shared by all its handles there (reference-counted): two
 * handles of one thread on one object own as one thread, as they would with a PID-based lock.
 * The last close() lets it go, and what the thread still held through it is then abandoned:
 * others recover it as from a dead owner (IPC_ERR_OWNER_DEAD for a lock). A worker's lifelines
 * go when the worker ends.
 *
 * DEAD_TOKEN is never handed out and is always dead: a lock left in a recovered-but-unaccepted
 * state records it so that the next acquirer is told IPC_ERR_OWNER_DEAD.
 */
import { IpcError, closedError, errnoError, errnoOf } from '../errors.js';
import { native } from './native.js';

export const OWNER_MASK = 0x0fffffff;
export const DEAD_TOKEN = OWNER_MASK;

/** The owners of one shared object: this thread's token for it, and who else is alive. */
export interface Lifeline {
  /** This thread's owner token for the object (1 .. 2^28-2): what owner words record. */
  readonly token: number;
  /** True while the thread holding `token` lives (the kernel's answer; one system call). */
  isAlive(token: number): boolean;
  /** Gives up this handle's share of the lifeline (idempotent). */
  close(): void;
}

/** One native lifeline of this thread, with the handles that share it. */
interface Shared {
  readonly key: string;
  readonly id: number;
  readonly token: number;
  handles: number;
}

// Module state is per thread (every worker loads its own copy of this module).
const byObject = new Map<string, Shared>();
const objectOf = new WeakMap<SharedArrayBuffer, string>();

const WHAT = 'owner lifeline';

class Handle implements Lifeline {
  readonly token: number;
  #shared: Shared | undefined;

  constructor(shared: Shared) {
    this.#shared = shared;
    this.token = shared.token;
  }

  isAlive(token: number): boolean {
    if (token === 0 || token === DEAD_TOKEN) return false;
    const shared = this.#shared;
    if (shared === undefined) throw closedError(WHAT);
    if (token === shared.token) return true;
    try {
      return native().lifelineAlive(shared.id, token);
    } catch (err) {
      throw errnoError(err, WHAT);
    }
  }

  close(): void {
    const shared = this.#shared;
    if (shared === undefined) return;
    this.#shared = undefined;
    if (--shared.handles > 0) return;
    byObject.delete(shared.key);
    native().lifelineClose(shared.id);
  }
}

/**
 * This thread's lifeline on the shared object whose memory is `buffer`: a SharedMemory's buffer
 * (or a named object's), also one posted to a worker; or a plain `new SharedArrayBuffer`, whose
 * owners can only be threads of this process. Every structure that records owners in shared
 * memory takes its tokens from here and asks here whether an owner lives. Close it with the
 * handle that opened it.
 */
export function openLifeline(buffer: SharedArrayBuffer): Lifeline {
  if (!(buffer instanceof SharedArrayBuffer)) throw new TypeError('openLifeline: expected a SharedArrayBuffer');
  const api = native();
  let key = objectOf.get(buffer);
  if (key === undefined) {
    try {
      key = api.lifelineKey(buffer);
    } catch (err) {
      throw errnoError(err, WHAT);
    }
    if (key === undefined) {
      throw new IpcError(
        'IPC_ERR_INCOMPATIBLE',
        `${WHAT}: this SharedArrayBuffer is shared memory that this copy of interprocess did not map, so the owners ` +
          'that other processes record in it cannot be checked; use the buffer of a SharedMemory (or a plain SharedArrayBuffer between threads)',
      );
    }
    objectOf.set(buffer, key);
  }
  let shared = byObject.get(key);
  if (shared === undefined) {
    let opened;
    try {
      opened = api.lifelineOpen(buffer);
    } catch (err) {
      throw openError(err);
    }
    shared = { key, id: opened.id, token: opened.token, handles: 0 };
    byObject.set(key, shared);
  }
  shared.handles++;
  return new Handle(shared);
}

function openError(err: unknown): unknown {
  if (errnoOf(err) === 'EBADF') {
    return new IpcError('IPC_ERR_CLOSED', `${WHAT}: the SharedMemory that mapped this memory is closed; open the object again to take a new handle on it`, {
      cause: err,
      errno: 'EBADF',
    });
  }
  if (errnoOf(err) === 'EAGAIN') {
    // Every token tried is locked: only someone who can open the object can do that.
    return new IpcError(
      'IPC_ERR_SYSTEM',
      `${WHAT}: no free owner token on this object (another process that can open it holds locks on its lifeline bytes)`,
      { cause: err, errno: 'EAGAIN' },
    );
  }
  return errnoError(err, WHAT);
}
