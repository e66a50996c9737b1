/**
 * Argument checks shared by every public entry point: unknown options are rejected by name,
 * numbers are never clamped silently.
 */

export function checkOptions<T extends object>(
  opts: unknown,
  allowed: readonly string[],
  where: string,
): Partial<T> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object') {
    throw new TypeError(`${where}: options must be an object`);
  }
  for (const key of Object.keys(opts)) {
    if (!allowed.includes(key)) {
      throw new TypeError(`${where}: unknown option '${key}' (allowed: ${allowed.join(', ') || 'none'})`);
    }
  }
  return opts as Partial<T>;
}

/** A timeout in ms: undefined or Infinity means wait forever; otherwise a finite number >= 0. */
export function checkTimeout(timeout: unknown, where: string): number {
  if (timeout === undefined || timeout === Infinity) return Infinity;
  if (typeof timeout !== 'number' || Number.isNaN(timeout)) {
    throw new TypeError(`${where}: timeout must be a number of milliseconds`);
  }
  if (timeout < 0) throw new RangeError(`${where}: timeout must be >= 0, got ${timeout}`);
  return timeout;
}

export function checkSignal(signal: unknown, where: string): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new TypeError(`${where}: signal must be an AbortSignal`);
  return signal;
}

export function checkInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${String(value)}`);
  }
  if (value < min || value > max) throw new RangeError(`${name} must be in [${min}, ${max}], got ${value}`);
  return value;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * setTimeout for any delay: Node fires timers longer than 2^31-1 ms after 1 ms (with a warning),
 * so long delays are chained. Returns a function that cancels it.
 */
export function startTimer(ms: number, fn: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const deadline = Date.now() + ms;
  const arm = (left: number): void => {
    timer = setTimeout(() => {
      const remaining = deadline - Date.now();
      if (remaining > 0) arm(remaining);
      else fn();
    }, Math.min(left, MAX_TIMER_MS));
  };
  if (ms !== Infinity) arm(ms);
  return () => clearTimeout(timer);
}
