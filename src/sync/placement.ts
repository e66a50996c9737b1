/**
 * Where a sync primitive lives: in its own named segment, or inside a user's SharedMemory (or any
 * SharedArrayBuffer) at a byte offset, next to the data it guards. Both places hold the same
 * bytes: the 64-byte common header (magic, kind, version, initialized flag, size) and then the
 * primitive's body, so an opener validates a placed lock exactly like a named one.
 *
 * Placing mirrors the named lifecycle: createAt claims zeroed memory (a CAS of the magic word
 * from 0, so of two racing creators exactly one wins and the other gets IPC_ERR_EXISTS), writes
 * the header and body and publishes the initialized flag last; openAt waits (bounded by
 * initTimeout) for that flag and checks kind and version; openOrCreateAt does whichever applies.
 */
import { IpcError } from '../errors.js';
import { checkInteger, checkOptions } from '../options.js';
import type { How } from '../naming.js';
import { HEADER_BYTES, MAGIC, publishHeader, validateHeader, writeHeader } from '../shm/header.js';
import { initTimeoutOf, openObject, type NamedObjectOptions } from '../shm/segment.js';
import { SharedMemory } from '../shm/shared-memory.js';

/**
 * A primitive's body, described once: what create writes, what open checks, and what `inspect`
 * shows, all from the offsets drawn in the primitive's file. `P` is what creating needs (the
 * initial permits of a Semaphore, the parties of a Barrier).
 */
export interface SyncLayout<P = void> {
  kind: number;
  version: number;
  /** Bytes of the body behind the header. */
  bodyBytes: number;
  /** Writes the initial body at byte offset `base`, before the object is published. */
  init(buffer: SharedArrayBuffer, base: number, params: P): void;
  /** Checks an existing body against what the caller asked for (throws IPC_ERR_INCOMPATIBLE). */
  verify?(buffer: SharedArrayBuffer, base: number, what: string, params: P): void;
  /**
   * The body's fields of a named object (behind the header of `buffer`), for `ls` and
   * `inspect`. Only reads; a plain function (the CLI registers it as is).
   */
  describe(buffer: SharedArrayBuffer): Record<string, unknown>;
}

export interface PlacedOptions {
  /** How long opening waits for a creator that has not finished initializing (ms, default 2000). */
  initTimeout?: number;
}

/** Where a primitive's body is, and what keeps it mapped. */
export interface Attached {
  buffer: SharedArrayBuffer;
  /** Byte offset of the body (just behind the header). */
  base: number;
  /** The named segment, when the primitive has its own. */
  shm: SharedMemory | undefined;
  /** For messages: `mutex 'orders'`. */
  what: string;
  created: boolean;
}

/** Bytes a primitive takes when placed: header + body, rounded up to whole cache lines. */
export function placedByteLength(layout: { bodyBytes: number }): number {
  return HEADER_BYTES + Math.ceil(layout.bodyBytes / 64) * 64;
}

export function attachNamed<P>(
  name: string,
  how: How,
  kindName: string,
  layout: SyncLayout<P>,
  params: P,
  options: NamedObjectOptions,
): Attached {
  const shm = openObject(
    name,
    how,
    kindName,
    {
      kind: layout.kind,
      version: layout.version,
      byteLength: placedByteLength(layout),
      init: (buffer) => layout.init(buffer, HEADER_BYTES, params),
    },
    options,
  );
  const what = `${kindName.toLowerCase()} '${name}'`;
  if (!shm.created && layout.verify !== undefined) {
    try {
      layout.verify(shm.buffer, HEADER_BYTES, what, params);
    } catch (err) {
      shm.close();
      throw err;
    }
  }
  return { buffer: shm.buffer, base: HEADER_BYTES, shm, what, created: shm.created };
}

export function attachAt<P>(
  memory: unknown,
  byteOffset: unknown,
  how: How,
  kindName: string,
  layout: SyncLayout<P>,
  params: P,
  options: PlacedOptions,
  where: string,
): Attached {
  let buffer: SharedArrayBuffer;
  if (memory instanceof SharedMemory) buffer = memory.buffer;
  else if (memory instanceof SharedArrayBuffer) buffer = memory;
  else throw new TypeError(`${where}: memory must be a SharedMemory or a SharedArrayBuffer`);
  const byteLength = placedByteLength(layout);
  const offset = checkInteger(byteOffset, `${where}: byteOffset`, 0, Math.max(0, buffer.byteLength - byteLength));
  if (offset % 8 !== 0) throw new RangeError(`${where}: byteOffset must be a multiple of 8, got ${offset}`);
  const initTimeout = initTimeoutOf(options.initTimeout, `${where}: initTimeout`);
  const what = `${kindName.toLowerCase()} at byte ${offset}`;
  const base = offset + HEADER_BYTES;
  if (how !== 'open') {
    const header = new Int32Array(buffer, offset, HEADER_BYTES / 4);
    // Claims the memory: only the creator whose CAS sees 0 initializes it. Openers meanwhile see
    // the magic with state 0 and wait for publishHeader (release), as for a named object.
    const previous = Atomics.compareExchange(header, 0, 0, MAGIC);
    if (previous === 0) {
      writeHeader(buffer, offset, layout.kind, layout.version, byteLength);
      layout.init(buffer, base, params);
      publishHeader(buffer, offset);
      return { buffer, base, shm: undefined, what, created: true };
    }
    if (how === 'create' && previous === MAGIC) {
      throw new IpcError('IPC_ERR_EXISTS', `${what}: memory already holds an interprocess object`);
    }
  }
  validateHeader(buffer, offset, byteLength, layout.kind, layout.version, what, initTimeout);
  layout.verify?.(buffer, base, what, params);
  return { buffer, base, shm: undefined, what, created: false };
}

export function placedOptions(options: unknown, own: readonly string[], where: string): Record<string, unknown> & PlacedOptions {
  return checkOptions<Record<string, unknown> & PlacedOptions>(options, [...own, 'initTimeout'], where);
}

export type { NamedObjectOptions };
