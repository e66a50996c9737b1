/**
 * Copies of large payloads between shared memory and private memory, for the queue and the
 * shm:// channel. Two costs dominate there, and neither is the copy itself:
 * - V8 copies to and from a SharedArrayBuffer with relaxed atomics word by word, about half the
 *   speed of memcpy (measured 22 vs 39 GiB/s for 1 MiB): the addon's memmove does it instead;
 * - a fresh buffer is fresh pages, and the first write to each takes a page fault (256 for a
 *   MiB, several times the copy): the addon's copyOut takes memory that collected buffers gave
 *   back to its pool (native/copyout.cc).
 * Both fall back to what V8 offers when the loaded addon predates them (an old prebuild).
 */
import { native } from './native.js';

/** From this size on, copyLarge goes through the addon: below it the call costs more than it saves. */
export const NATIVE_COPY = 64 * 1024;

/** The addon's copyBytes and copyOut; null when the loaded addon predates them. */
let nativeCopy: ((target: Uint8Array, source: Uint8Array) => void) | null | undefined;
let nativeCopyOut: ((source: Uint8Array, byteLength?: number) => ArrayBuffer) | null | undefined;

/** Copies `source` into `target` (same length) at memcpy speed where the addon can. */
export function copyLarge(target: Uint8Array, source: Uint8Array): void {
  if (nativeCopy === undefined) nativeCopy = native().copyBytes ?? null;
  if (nativeCopy === null) target.set(source);
  else nativeCopy(target, source);
}

/**
 * A private, plain Uint8Array (not a Buffer) of `byteLength` bytes (default: the source's) that
 * starts with a copy of `source`; the rest is for the caller to fill. For large sizes only:
 * its memory comes from the addon's pool of pre-faulted blocks (without it, allocUnsafeSlow at
 * least skips the zero-fill).
 */
export function largeCopy(source: Uint8Array, byteLength = source.length): Uint8Array {
  if (nativeCopyOut === undefined) nativeCopyOut = native().copyOut ?? null;
  if (nativeCopyOut !== null) return new Uint8Array(nativeCopyOut(source, byteLength));
  const out = new Uint8Array(Buffer.allocUnsafeSlow(byteLength).buffer, 0, byteLength);
  copyLarge(source.length === byteLength ? out : out.subarray(0, source.length), source);
  return out;
}

const EMPTY = new Uint8Array(0);

/** `byteLength` bytes of private memory for the caller to fill, from the same pool as largeCopy. */
export const largeBuffer = (byteLength: number): Uint8Array => largeCopy(EMPTY, byteLength);
