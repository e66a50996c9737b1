/**
 * Time limits of user operations, in one place. Every operation that takes `timeout` or
 * `signal` arms them through armDeadline, so that a timeout of any length works (Node fires a
 * setTimeout longer than 2^31-1 ms after 1 ms: long delays are chained here) and so that a
 * timeout or an abort always ends the operation with the same coded errors.
 */
import { abortError, timeoutError, type IpcError } from './errors.js';

/** The longest delay one setTimeout honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * setTimeout for any delay (Infinity: never). Returns a function that cancels it. The timer is
 * unref'd when `unref` is set (a watchdog that must not keep the process alive).
 */
export function startTimer(ms: number, fn: () => void, unref = false): () => void {
  let timer: NodeJS.Timeout | undefined;
  const deadline = performance.now() + ms;
  const arm = (left: number): void => {
    timer = setTimeout(() => {
      const remaining = deadline - performance.now();
      if (remaining > 0) arm(remaining);
      else fn();
    }, Math.min(Math.max(left, 0), MAX_TIMER_MS));
    if (unref) timer.unref();
  };
  if (ms !== Infinity) arm(ms);
  return () => clearTimeout(timer);
}

/**
 * Arms one operation's `timeout` (ms, Infinity for none) and `signal`. `giveUp` runs at most
 * once, with IPC_ERR_TIMEOUT ("<what> timed out after N ms") or IPC_ERR_ABORTED; the returned
 * function disarms both (call it when the operation ends any other way). An already aborted
 * signal gives up synchronously, before armDeadline returns.
 */
export function armDeadline(
  timeout: number,
  signal: AbortSignal | undefined,
  what: string,
  giveUp: (error: IpcError) => void,
): () => void {
  let done = false;
  const finish = (error: IpcError): void => {
    if (done) return;
    disarm();
    giveUp(error);
  };
  const onAbort = (): void => finish(abortError(what, signal?.reason));
  const cancelTimer = timeout === Infinity ? undefined : startTimer(timeout, () => finish(timeoutError(what, timeout)));
  const disarm = (): void => {
    done = true;
    cancelTimer?.();
    signal?.removeEventListener('abort', onAbort);
  };
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return disarm;
}

/** Milliseconds left of `timeout` that started at `started` (performance.now()); Infinity stays. */
export function remaining(timeout: number, started: number): number {
  return timeout === Infinity ? Infinity : Math.max(0, timeout - (performance.now() - started));
}
