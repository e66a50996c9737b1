/**
 * The robust lock word shared by Mutex and the write side of RWLock: a futex word that records
 * its owner's lifeline token, so that a dead owner is found by asking the kernel (lifeline.ts).
 *
 *   value            meaning
 *   0                free
 *   token            held by the thread whose lifeline is `token` (bits 0-27), no sleepers
 *   | WAITERS        (bit 29) someone may sleep in the kernel on this word: unlock must wake
 *   | INCONSISTENT   (bit 28) taken over from a dead owner, not yet accepted (markConsistent)
 *   NOT_RECOVERABLE  a dead owner's state was never accepted; every acquirer fails, forever
 *
 * The algorithm is Drepper's three-state futex mutex ("Futexes are tricky", mutex 3) with the
 * owner in the word, as glibc's robust mutexes do: acquiring is one CAS 0 -> token; a waiter
 * sets WAITERS before sleeping on the exact value it saw, and after having slept it acquires
 * with WAITERS set (it cannot know whether others still sleep), so a wake-up is never lost and
 * a waiter that died costs at most one spare wake. Recovery is a CAS from the dead owner's
 * value to ours with INCONSISTENT set: of all the processes that noticed the death, exactly
 * one wins it, and the flag travels in the same word (so unlock needs one load, no other word).
 */
import { IpcError } from '../errors.js';
import { futex } from '../os/futex.js';
import { DEAD_TOKEN, OWNER_MASK, openLifeline, type Lifeline } from '../os/lifeline.js';

export const WAITERS = 0x20000000;
export const INCONSISTENT = 0x10000000;
export const NOT_RECOVERABLE = 0x40000000;
/** How often a sleeping waiter wakes up to check that the owner's lifeline still holds (ms). */
export const CHECK_INTERVAL_MS = 50;

/** Outcome of an acquisition attempt. */
export const NO = 0;
export const YES = 1;
/** Acquired from an owner that died holding the word. */
export const RECOVERED = 2;
export type Got = typeof NO | typeof YES | typeof RECOVERED;

export function notRecoverableError(what: string): IpcError {
  return new IpcError(
    'IPC_ERR_NOT_RECOVERABLE',
    `${what}: not recoverable (a previous owner died holding it and the state was never accepted with markConsistent()); remove and recreate it`,
  );
}

export function ownerDeadError(what: string, held: string): IpcError {
  return new IpcError(
    'IPC_ERR_OWNER_DEAD',
    `${what}: acquired, but the previous owner died holding it; ${held} is held by you now: check the data it guards, ` +
      'call markConsistent() to accept it, then unlock (unlocking without markConsistent() makes it not recoverable)',
  );
}

export function notOwnerError(what: string, op: string): IpcError {
  return new IpcError('IPC_ERR_NOT_OWNER', `${what}: ${op} by a thread that does not hold it`);
}

export function deadlockError(what: string): IpcError {
  return new IpcError('IPC_ERR_DEADLOCK', `${what}: this thread already holds it; a blocking lock would wait forever`);
}

/**
 * Tries to take the word for the owner of `life` (the lifeline of the memory the word is in).
 * With `check`, an owner whose lifeline is gone is recovered (RECOVERED). `sleeper` keeps
 * WAITERS set on acquisition (the caller has slept).
 */
export function take(i32: Int32Array, index: number, life: Lifeline, sleeper: boolean, check: boolean, what: string): Got {
  const token = life.token;
  for (;;) {
    const value = Atomics.load(i32, index);
    if (value === 0) {
      // Publishes our ownership; pairs with the exchange in release / the loads of other lockers.
      if (Atomics.compareExchange(i32, index, 0, sleeper ? token | WAITERS : token) === 0) return YES;
      continue;
    }
    if (value === NOT_RECOVERABLE) throw notRecoverableError(what);
    const owner = value & OWNER_MASK;
    // DEAD_TOKEN needs no system call to be known dead: recover it without waiting for a check.
    if ((!check && owner !== DEAD_TOKEN) || owner === token || life.isAlive(owner)) return NO;
    // The owner is dead (the kernel released its lifeline). Exactly one CAS from the value we
    // saw succeeds; sleepers stay flagged so that our unlock wakes them.
    const taken = token | INCONSISTENT | (value & WAITERS) | (sleeper ? WAITERS : 0);
    if (Atomics.compareExchange(i32, index, value, taken) === value) {
      return RECOVERED;
    }
  }
}

/**
 * Flags a held word as having a sleeper. Returns the value to sleep on, or 0 when the word
 * changed meanwhile (try again).
 */
export function flagWaiting(i32: Int32Array, index: number): number {
  const value = Atomics.load(i32, index);
  if (value === 0 || value === NOT_RECOVERABLE) return 0;
  if ((value & WAITERS) !== 0) return value;
  return Atomics.compareExchange(i32, index, value, value | WAITERS) === value ? value | WAITERS : 0;
}

/** Frees the word; wakes `wake` sleepers if any are flagged. */
export function release(i32: Int32Array, index: number, wake: number): void {
  // Publishes everything written under the lock; pairs with the CAS in take.
  const previous = Atomics.exchange(i32, index, 0);
  if ((previous & WAITERS) !== 0) futex.notify(i32, index, wake);
}

/** Poisons the word: every current and future acquirer fails with IPC_ERR_NOT_RECOVERABLE. */
export function poison(i32: Int32Array, index: number): void {
  Atomics.store(i32, index, NOT_RECOVERABLE);
  futex.notify(i32, index);
}

/** Accepts a recovered state: clears INCONSISTENT (the caller holds the word). */
export function markConsistent(i32: Int32Array, index: number): void {
  for (;;) {
    const value = Atomics.load(i32, index);
    // Sleepers may add WAITERS meanwhile: a CAS keeps their flag.
    if (Atomics.compareExchange(i32, index, value, value & ~INCONSISTENT) === value) return;
  }
}

/** Frees the word held by its owner: poisons it if the owner never accepted a recovery. */
export function unlockWord(i32: Int32Array, index: number, value: number, wake: number): void {
  if ((value & INCONSISTENT) !== 0) poison(i32, index);
  else release(i32, index, wake);
}

export function ownerOf(i32: Int32Array, index: number): number {
  const value = Atomics.load(i32, index);
  return value === NOT_RECOVERABLE ? 0 : value & OWNER_MASK;
}

/** A lock word as `inspect` shows it: free or held, and whether the holder still lives. */
export function describeLockWord(word: number, buffer: SharedArrayBuffer): { state: string; ownerAlive?: boolean; waiters?: boolean } {
  if (word === 0) return { state: 'free' };
  if (word === NOT_RECOVERABLE) return { state: 'not recoverable' };
  const lifeline = openLifeline(buffer);
  try {
    return {
      state: (word & INCONSISTENT) !== 0 ? 'held, inconsistent (recovered from a dead owner)' : 'held',
      ownerAlive: lifeline.isAlive(word & OWNER_MASK),
      waiters: (word & WAITERS) !== 0,
    };
  } finally {
    lifeline.close();
  }
}
