/**
 * How the topic's publishers and subscribers wait: the wait strategies of Queue ('spin',
 * 'block', 'spin-then-block') over the two futex words of layout.ts. An attempt says what it
 * waits for: a commit (subscribers with nothing to read; publishers whose slot another
 * publisher holds) sleeps on dataEvents, room (publishers held back by the slowest subscriber,
 * 'block') on spaceEvents. Wakers wake every sleeper of a word (a broadcast: each subscriber
 * needs every message), so a waiter that leaves early owes nobody a wake-up.
 *
 * A waiter held up by another participant sleeps at most livenessInterval ms at a time and then
 * asks the kernel again whether that participant lives; a waiter with nothing in its way sleeps
 * until woken (or its timeout). A waiter for a commit of an exclusive publisher runs a heavy
 * fence before its re-check (ring.ts fenceBeforeSleep: that publisher commits without one).
 */
import { abortError, closedError, isIpcError, timeoutError } from '../errors.js';
import { futex, type WaitResult } from '../os/futex.js';
import { W } from './layout.js';
import type { TopicRing } from './ring.js';

export type WaitStrategy = 'spin' | 'block' | 'spin-then-block';
export const WAITS: readonly WaitStrategy[] = ['spin', 'block', 'spin-then-block'];

/** What an attempt reports. */
export const DONE = 0;
export const FOR_DATA = 1;
export const FOR_SPACE = 2;
export type Outcome = typeof DONE | typeof FOR_DATA | typeof FOR_SPACE;

export interface Waiting {
  ring: TopicRing;
  strategy: WaitStrategy;
  /** Spin budget of 'spin-then-block', in ms. */
  spinMs: number;
  /** Tries once: DONE, or what to wait for. */
  attempt(): Outcome;
  /** Longest sleep before looking again (ms): livenessInterval when someone holds us up. */
  interval(reason: Outcome): number;
  /** The object in error messages: "topic 'prices'". */
  label: string;
  /** The operation: "publish". */
  op: string;
}

const now = (): number => performance.now();
const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function words(reason: Outcome): [sleepers: number, events: number] {
  return reason === FOR_SPACE ? [W.spaceSleepers, W.spaceEvents] : [W.dataSleepers, W.dataEvents];
}

/** Spins on attempt() until `until` (performance.now() ms); the last outcome. */
function spin(w: Waiting, until: number): Outcome {
  for (let i = 1; ; i++) {
    const outcome = w.attempt();
    if (outcome === DONE || ((i & 31) === 0 && now() >= until)) return outcome;
  }
}

/**
 * Blocks the thread until attempt() succeeds; `first` is what the failed first attempt waited
 * for. `beforeSleep` may throw (a publish that would wait for its own thread).
 */
export function waitSync(w: Waiting, first: Outcome, timeout: number, beforeSleep?: (reason: Outcome) => void): void {
  const start = now();
  const deadline = start + timeout;
  let reason = first;
  beforeSleep?.(reason); // a wait that can never end fails before it spins, too
  if (w.strategy !== 'block') {
    reason = spin(w, w.strategy === 'spin' ? deadline : start + Math.min(w.spinMs, timeout));
    if (reason === DONE) return;
    if (w.strategy === 'spin') throw timeoutError(`${w.label} ${w.op}`, timeout);
  }
  const i32 = w.ring.i32;
  w.ring.lookNow();
  for (;;) {
    beforeSleep?.(reason);
    const [sleepers, events] = words(reason);
    let result: WaitResult | undefined;
    Atomics.add(i32, sleepers, 1); // seq-cst; pairs with the waker's load after its change
    try {
      const longest = reason === FOR_DATA ? w.ring.fenceBeforeSleep() : Infinity;
      const seen = Atomics.load(i32, events);
      const again = w.attempt();
      if (again === DONE) return;
      if (again === reason) {
        const left = deadline - now();
        if (left <= 0) throw timeoutError(`${w.label} ${w.op}`, timeout);
        result = futex.wait(i32, events, seen, Math.min(left, w.interval(reason), longest));
      }
      reason = again;
    } finally {
      Atomics.sub(i32, sleepers, 1);
    }
    if (result === 'timed-out') w.ring.lookNow();
    if (result !== undefined && (reason = w.attempt()) === DONE) return;
  }
}

/**
 * The same without blocking the event loop. `closed()` tells whether the handle was closed
 * (the `closer` signal aborts pending sleeps then); `signal` is the caller's.
 */
export async function waitAsync(
  w: Waiting,
  first: Outcome,
  timeout: number,
  signal: AbortSignal | undefined,
  closer: AbortSignal,
  closed: () => boolean,
): Promise<void> {
  const deadline = now() + timeout;
  const stop = (): void => {
    if (closed()) throw closedError(w.label);
    if (signal?.aborted) throw abortError(`${w.label} ${w.op}`, signal.reason);
    if (now() >= deadline) throw timeoutError(`${w.label} ${w.op}`, timeout);
  };
  let reason = first;
  if (w.strategy === 'spin') {
    // Never sleeps in the kernel: spin in short bursts and let the event loop run between them.
    for (;;) {
      if (spin(w, now() + Math.min(w.spinMs || 0.02, Math.max(0, deadline - now()))) === DONE) return;
      stop();
      await immediate();
      stop();
    }
  }
  if (w.strategy === 'spin-then-block') {
    reason = spin(w, now() + Math.min(w.spinMs, timeout));
    if (reason === DONE) return;
  }
  const both = signal === undefined ? closer : AbortSignal.any([signal, closer]);
  const i32 = w.ring.i32;
  w.ring.lookNow();
  for (;;) {
    stop();
    const [sleepers, events] = words(reason);
    let result: WaitResult | undefined;
    Atomics.add(i32, sleepers, 1); // seq-cst; pairs with the waker's load after its change
    try {
      const longest = reason === FOR_DATA ? w.ring.fenceBeforeSleep() : Infinity;
      const seen = Atomics.load(i32, events);
      const again = w.attempt();
      if (again === DONE) return;
      if (again === reason) {
        if (deadline - now() <= 0) stop();
        result = await futex.waitAsync(i32, events, seen, Math.min(deadline - now(), w.interval(reason), longest), { signal: both });
      }
      reason = again;
    } catch (err) {
      if (isIpcError(err, 'IPC_ERR_ABORTED')) stop();
      throw err;
    } finally {
      Atomics.sub(i32, sleepers, 1);
    }
    if (result === 'timed-out') w.ring.lookNow();
    if (result !== undefined) {
      stop();
      if ((reason = w.attempt()) === DONE) return;
    }
  }
}
