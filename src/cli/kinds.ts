/**
 * Kind-specific details for `ls` and `inspect` (queue depth, lock owner...). Each reader gets a
 * validated object's buffer and only reads; the offsets are those drawn in the layout header
 * of the kind's own file (src/sync/*.ts, src/queue/layout.ts).
 */
import { describeQueue } from '../queue/layout.js';
import { HEADER_BYTES, Kind } from '../shm/header.js';
import { openLifeline, OWNER_MASK } from '../os/lifeline.js';
import { INCONSISTENT, NOT_RECOVERABLE, WAITERS } from '../sync/robust.js';

type Describer = (buffer: SharedArrayBuffer, version: number) => Record<string, unknown>;

const words = (buffer: SharedArrayBuffer, count: number): Int32Array => new Int32Array(buffer, HEADER_BYTES, count);

/** Asks the kernel whether `owner` lives, through a lifeline on the object (`buffer`). */
function ownerAlive(buffer: SharedArrayBuffer, owner: number): boolean {
  const life = openLifeline(buffer);
  try {
    return life.isAlive(owner);
  } finally {
    life.close();
  }
}

/** A robust lock word (src/sync/robust.ts): who holds it and whether that owner still lives. */
function lockWord(word: number, buffer: SharedArrayBuffer): Record<string, unknown> {
  if (word === 0) return { state: 'free' };
  if (word === NOT_RECOVERABLE) return { state: 'not recoverable' };
  const owner = word & OWNER_MASK;
  return {
    state: word & INCONSISTENT ? 'held, inconsistent (recovered from a dead owner)' : 'held',
    ownerAlive: ownerAlive(buffer, owner),
    waiters: (word & WAITERS) !== 0,
  };
}

const describers = new Map<number, Describer>([
  [Kind.Queue, (buffer) => describeQueue(buffer) as unknown as Record<string, unknown>],
  [Kind.Mutex, (buffer) => lockWord(Atomics.load(words(buffer, 1), 0), buffer)],
  [Kind.Semaphore, (buffer) => {
    const w = words(buffer, 2);
    return { permits: Atomics.load(w, 0), sleepers: Atomics.load(w, 1) };
  }],
  [Kind.Condition, (buffer) => {
    const w = words(buffer, 2);
    return { sequence: Atomics.load(w, 0), sleepers: Atomics.load(w, 1) };
  }],
  [Kind.Barrier, (buffer) => {
    const w = words(buffer, 2);
    const state = Atomics.load(w, 0);
    return { parties: Atomics.load(w, 1), arrived: state & 0xffff, round: (state >>> 16) & 0x7fff };
  }],
  [Kind.RWLock, (buffer) => {
    const w = words(buffer, 68);
    let readers = Atomics.load(w, 2); // untracked (overflow) read locks
    for (let slot = 0; slot < 32; slot++) readers += Atomics.load(w, 36 + slot);
    const writer = lockWord(Atomics.load(w, 0), buffer);
    return { writer: writer['state'], ...(writer['ownerAlive'] !== undefined ? { writerAlive: writer['ownerAlive'] } : {}), readLocks: readers };
  }],
]);

export function describeKind(kind: number, version: number, buffer: SharedArrayBuffer): Record<string, unknown> | undefined {
  const describer = describers.get(kind);
  if (describer === undefined) return undefined;
  try {
    return describer(buffer, version);
  } catch (err) {
    return { error: (err as Error).message };
  }
}
