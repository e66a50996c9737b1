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

/** An optional boolean option: undefined stays undefined; anything but a boolean is a TypeError. */
export function checkBoolean(value: unknown, name: string): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw new TypeError(`${name} must be a boolean, got ${String(value)}`);
}

/**
 * The `{ timeout, signal }` of an async wait (`signal: true`) or the `{ timeout }` of a sync one,
 * checked in one place: unknown keys are a TypeError naming them, so `{ timout: 5 }` never
 * silently waits forever.
 */
export function waitOptions(opts: unknown, where: string, withSignal: boolean): { timeout: number; signal: AbortSignal | undefined } {
  const o = checkOptions<{ timeout?: number; signal?: AbortSignal }>(opts, withSignal ? WAIT_KEYS : SYNC_WAIT_KEYS, where);
  return { timeout: checkTimeout(o.timeout, where), signal: withSignal ? checkSignal(o.signal, where) : undefined };
}

const WAIT_KEYS = ['timeout', 'signal'] as const;
const SYNC_WAIT_KEYS = ['timeout'] as const;
