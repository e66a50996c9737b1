/**
 * Copies between shared memory and private memory, for the queue, the topic and the shm://
 * channel. For large payloads two costs dominate, and neither is the copy itself:
 * - V8 copies to and from a SharedArrayBuffer with relaxed atomics word by word, about half the
 *   speed of memcpy (measured 22 vs 39 GiB/s for 1 MiB): the addon's memmove does it instead;
 * - a fresh buffer is fresh pages, and the first write to each takes a page fault (256 for a
 *   MiB, several times the copy): the addon's copyOut takes memory that collected buffers gave
 *   back to its pool (native/copyout.cc).
 * Both fall back to what V8 offers when the loaded addon predates them (an old prebuild).
 * For small received messages the cost is the ArrayBuffer itself: see receivedCopy.
 */
import { markAsUntransferable } from 'node:worker_threads';
import { native } from './native.js';

/**
 * From this size on, the queue's payload copies between shared and private memory go through
 * copyLarge (the addon's memmove). One copy alone, shared to private, in one process: 1 KiB set
 * 80 ns, memmove 93 ns; 4 KiB 246 vs 121 ns; 8 KiB 382 vs 167 ns; 64 KiB 2578 vs 1337 ns. But
 * the queue's 4 KiB one-way rows came out no better with a 4 KiB threshold (0.84x, within the
 * noise of alternated pairs), so the queue keeps 64 KiB; the shm:// channel's records use
 * CHUNK_COPY.
 */
export const NATIVE_COPY = 64 * 1024;
/**
 * The same for the shm:// channel's record chunks (8 KiB by default): a 64 KiB frame over 8 KiB
 * records ran 1.25x faster one way, in alternated pairs, with memmove from 4 KiB on.
 */
export const CHUNK_COPY = 4 * 1024;
/** From this size on, a private copy the channel makes comes from largeCopy's pool. */
export const POOLED_COPY = 64 * 1024;
/**
 * From this size on, a message the queue or a topic subscriber receives is copied with
 * largeCopy (memmove into a pooled block); below it, slice (a fresh ArrayBuffer, V8's copy)
 * wins or ties. Measured with warm trials, alternated (bench/results/2026-12-02-stop24-medium-receive.md):
 * against slice, the pool is 1.2x at 8 KiB, 1.6x at 16 KiB, 1.7x at 64 KiB and 3.5x at 128 KiB,
 * where slice pays a fresh ArrayBuffer and V8's half-speed copy out of shared memory; at 5-6 KiB
 * neither wins. (Until stop 24 this was 256 KiB, chosen from cold trials.) The pool's
 * blocks start at the same 8 KiB (native/copyout.cc), so a pooled copy holds at most twice its
 * size.
 */
export const LARGE_RECEIVE = 8 * 1024;

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
 * Copies `source` into `target` at `at`: with copyLarge from `large` bytes on (NATIVE_COPY, or
 * the caller's threshold), else with set, which is faster for small copies.
 */
export function copyAt(target: Uint8Array, at: number, source: Uint8Array, large = NATIVE_COPY): void {
  if (source.length >= large) copyLarge(target.subarray(at, at + source.length), source);
  else target.set(source, at);
}

/**
 * A private, plain Uint8Array (not a Buffer) of `byteLength` bytes (default: the source's) that
 * starts with a copy of `source`; the rest is for the caller to fill. For large sizes only:
 * its memory comes from the addon's pool of blocks that collected buffers gave back, already
 * faulted in (without the addon, allocUnsafeSlow at least skips the zero-fill).
 */
export function largeCopy(source: Uint8Array, byteLength = source.length): Uint8Array {
  if (nativeCopyOut === undefined) nativeCopyOut = native().copyOut ?? null;
  if (nativeCopyOut !== null) return new Uint8Array(nativeCopyOut(source, byteLength));
  const out = new Uint8Array(Buffer.allocUnsafeSlow(byteLength).buffer, 0, byteLength);
  copyLarge(source.length === byteLength ? out : out.subarray(0, source.length), source);
  return out;
}

/**
 * A private copy of `source` that the caller keeps (a borrowed payload that must wait): large
 * ones in the pool's pre-faulted memory, for the same reason as largeCopy.
 */
export function privateCopy(source: Uint8Array): Uint8Array {
  if (source.byteLength >= POOLED_COPY) return largeCopy(source);
  const copy = Buffer.allocUnsafeSlow(source.byteLength);
  copy.set(source);
  return copy;
}

/** Up to this size a received copy fits in V8's heap (no backing store to allocate): slice. */
const ON_HEAP = 64;
/**
 * Above ON_HEAP and up to this size, received copies are carved from a private arena chunk,
 * marked untransferable as Node's Buffer pool is: a transfer list naming one copy's buffer copies
 * it on Node 20 and throws DataCloneError on later versions, and never detaches the others.
 * (Until stop 22 the arena was for Node 20 only, so that these copies stayed transferable on
 * later versions; an ArrayBuffer per message made a queue's one-way rate at 1-4 KiB 1.7x-2.8x
 * slower there: bench/results/2026-12-01-stop22-arena.md.)
 */
const ARENA_MAX = 4096;
const ARENA_BYTES = 64 * 1024;
/** This thread's receive arena: a private chunk that received copies are carved from, front to back. */
let arena = new Uint8Array(0);
let arenaOff = ARENA_BYTES;

/**
 * The private copy of bytes [start, end) of shared memory that a receive returns (the queue's
 * and a topic subscriber's), a plain Uint8Array: up to 64 bytes in V8's heap (slice); above
 * that and up to ARENA_MAX carved from the receive arena; from LARGE_RECEIVE on in the addon's
 * pre-faulted memory (largeCopy); else slice.
 *
 * Why an arena: an off-heap ArrayBuffer costs 1-4 µs to allocate and free on this project's VM
 * (glibc's malloc and free under V8's backing-store bookkeeping, Node 20 to 26, 65 B to 16 KiB),
 * many times a small copy; an arena chunk is one of them per 64 KiB. Each region is written once
 * and never again, so the copy stays the caller's; the chunk is freed when the last message
 * carved from it is garbage. Like Node's Buffer pool, a chunk is marked untransferable: putting
 * one message's buffer in a transfer list copies it (Node 20) or throws DataCloneError (later
 * versions) instead of detaching the other messages carved from the same chunk.
 */
export function receivedCopy(u8: Uint8Array, start: number, end: number): Uint8Array {
  const length = end - start;
  if (length <= ON_HEAP || (length > ARENA_MAX && length < LARGE_RECEIVE)) return u8.slice(start, end);
  if (length > ARENA_MAX) return largeCopy(u8.subarray(start, end));
  let off = arenaOff;
  if (off + length > ARENA_BYTES) {
    arena = new Uint8Array(ARENA_BYTES);
    markAsUntransferable(arena.buffer);
    off = 0;
  }
  arena.set(u8.subarray(start, end), off);
  // Next region 8-byte aligned, so a message can be viewed as a Float64Array like a fresh copy.
  arenaOff = (off + length + 7) & ~7;
  return new Uint8Array(arena.buffer, off, length);
}

const EMPTY = new Uint8Array(0);

/** `byteLength` bytes of private memory for the caller to fill, from the same pool as largeCopy. */
export const largeBuffer = (byteLength: number): Uint8Array => largeCopy(EMPTY, byteLength);
