/**
 * Owner identity and liveness for robust locks (Mutex, the write side of RWLock, RWLock reader
 * slots).
 *
 * Each thread that takes such a lock gets a token (1 .. 2^28-2) held by a kernel byte-range lock
 * on the machine-wide lifeline registry (native/lifeline.cc). The lock word stores the token;
 * `isAlive(token)` asks the kernel whether anyone still holds that byte, which is false only
 * once the owning process (or worker thread) is gone. A PID is never used and a timeout never
 * decides anything: a waiter's periodic wake-up only triggers this check.
 *
 * DEAD_TOKEN is never handed out and is always dead: a lock left in a recovered-but-unaccepted
 * state records it so that the next acquirer is told IPC_ERR_OWNER_DEAD.
 */
import { errnoError } from '../errors.js';
import { native, type LifelineApi } from './native.js';
import { LIFELINE_REGISTRY } from '../naming.js';

export const OWNER_MASK = 0x0fffffff;
export const DEAD_TOKEN = OWNER_MASK;

let lifeline: LifelineApi | undefined;

/** This thread's token (allocated on first use; the kernel releases it when the thread dies). */
export function ownToken(): number {
  if (lifeline === undefined) {
    try {
      lifeline = native().lifelineInit(LIFELINE_REGISTRY);
    } catch (err) {
      throw errnoError(err, 'lock owner lifeline');
    }
  }
  return lifeline.token;
}

/** True while the thread that holds `token` is alive. One fcntl(F_OFD_GETLK) system call. */
export function isAlive(token: number): boolean {
  if (token === DEAD_TOKEN || token === 0) return false;
  const self = ownToken();
  if (token === self) return true;
  try {
    return lifeline!.alive(token);
  } catch (err) {
    throw errnoError(err, 'lock owner lifeline');
  }
}

/** The owners of one shared object: this thread's token for it, and who else is alive. */
export interface Lifeline {
  /** This thread's owner token for the object (1 .. 2^28-2): what owner words record. */
  readonly token: number;
  /** True while the thread holding `token` lives (the kernel's answer; one system call). */
  isAlive(token: number): boolean;
  /** Gives up this handle's lifeline (idempotent). */
  close(): void;
}

/**
 * The lifeline a handle uses for the shared object whose memory is `buffer`. Every structure
 * that records owners in shared memory takes its tokens from here and asks here whether an
 * owner lives. (Today one machine-wide registry backs every object; the buffer names the
 * object so that liveness can be scoped to whoever can open it.)
 */
export function openLifeline(buffer: SharedArrayBuffer): Lifeline {
  void buffer;
  const token = ownToken();
  return { token, isAlive, close() {} };
}
