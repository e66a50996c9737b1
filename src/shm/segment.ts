/**
 * Named objects of the library (a Mutex, a Queue...) are SharedMemory with the common header in
 * front. This module is the one lifecycle they all share: create writes the header and the
 * kind's layout and publishes it last; open validates the header before anything else reads
 * the memory; openOrCreate does whichever applies.
 */
import { checkInteger, checkOptions } from '../options.js';
import type { How } from '../naming.js';
import { publishHeader, validateHeader, writeHeader } from './header.js';
import { SharedMemory } from './shared-memory.js';

export interface ObjectLayout {
  kind: number;
  version: number;
  /** Total bytes, header included (used when creating). */
  byteLength: number;
  /** Writes the kind's initial state behind the header, before the object is published. */
  init(buffer: SharedArrayBuffer): void;
}

export interface NamedObjectOptions {
  /** Permission bits for a new object, 0o600 by default. */
  mode?: number;
  /**
   * How long open waits, in all, for a creator that has not finished creating the object
   * (sizing it, then initializing it) (ms, default 2000; 0: never wait).
   */
  initTimeout?: number;
  /**
   * open / openOrCreate: accept an existing object owned by another user (default false:
   * IPC_ERR_PERMISSION). See SharedMemoryOpenOptions.allowOtherOwner.
   */
  allowOtherOwner?: boolean;
}

/** The options of a named object's `open` (no mode: open never creates). */
export type NamedOpenOptions = Pick<NamedObjectOptions, 'initTimeout' | 'allowOtherOwner'>;

export const NAMED_OPTIONS = ['mode', 'initTimeout', 'allowOtherOwner'] as const;

/** How long an opener waits for a creator to size the object and publish its header, unless told (ms). */
export const DEFAULT_INIT_TIMEOUT = 2000;
/** The longest size wait SharedMemory.open takes (its sizeWait option's limit). */
const MAX_SIZE_WAIT = 60_000;

/** The `initTimeout` option of a named or placed object, checked (ms, 0 .. 10 minutes). */
export function initTimeoutOf(initTimeout: unknown, where: string): number {
  return initTimeout === undefined ? DEFAULT_INIT_TIMEOUT : checkInteger(initTimeout, where, 0, 600_000);
}

/**
 * Creates, opens or opens-or-creates a named library object. `layout` is needed to create; for
 * a pure open only kind and version are checked (the size comes from the header).
 */
export function openObject(
  name: string,
  how: How,
  kindName: string,
  layout: ObjectLayout,
  options: NamedObjectOptions,
): SharedMemory {
  const mode = options.mode;
  const other = options.allowOtherOwner !== undefined ? { allowOtherOwner: options.allowOtherOwner } : {};
  const initTimeout = initTimeoutOf(options.initTimeout, 'initTimeout');
  // One budget for both waits (the size, then the initialized flag): initTimeout 0 never waits,
  // which a server looking at objects a stranger made relies on (it must not block its loop).
  const started = Date.now();
  const sizeWait = Math.min(initTimeout, MAX_SIZE_WAIT);
  const shm =
    how === 'create'
      ? SharedMemory.create(name, { byteLength: layout.byteLength, ...(mode !== undefined ? { mode } : {}) })
      : how === 'open'
        ? SharedMemory.open(name, { ...other, sizeWait })
        : SharedMemory.openOrCreate(name, { byteLength: layout.byteLength, ...(mode !== undefined ? { mode } : {}), ...other, sizeWait });
  if (shm.created) {
    try {
      writeHeader(shm.buffer, 0, layout.kind, layout.version, shm.byteLength);
      layout.init(shm.buffer);
      publishHeader(shm.buffer, 0);
    } catch (err) {
      SharedMemory.remove(name);
      throw err;
    }
    return shm;
  }
  try {
    const left = Math.max(0, initTimeout - (Date.now() - started));
    validateHeader(shm.buffer, 0, shm.byteLength, layout.kind, layout.version, `${kindName} '${name}'`, left, initTimeout);
  } catch (err) {
    shm.close();
    throw err;
  }
  return shm;
}

/** Splits an options object into the shared named-object options and the kind's own. */
export function namedOptions<T extends object>(options: unknown, own: readonly string[], where: string): Partial<T> & NamedObjectOptions {
  return checkOptions<T & NamedObjectOptions>(options, [...own, ...NAMED_OPTIONS], where);
}

export type { How };
