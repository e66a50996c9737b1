/**
 * Records: how a shm:// channel carries (type, id, payload) frames in queue messages. Pure code
 * (no shared memory, no I/O): writeRecord and Packer fill a slot's bytes, RecordReader turns the
 * records of one direction back into frames; the link and the pumps do the rest.
 *
 * Contract: a receiver holds at most `maxMessageSize` bytes per frame in progress, whatever the
 * peer announces (besides one pack of at most 64 KiB that it sizes itself), and any record
 * that does not fit the frame in progress (or announces a frame over the limit) is reported
 * before a byte of it is kept.
 *
 * Record layout (one queue message; a frame larger than a record is split into a first record
 * and continuation records, which one sender commits in order, so they arrive in order):
 *
 *   offset  size  field
 *   0       1     kind: 1 message, 2 request, 3 reply, 4 failed reply (framing.ts), 16 end,
 *                 17 continuation of the frame in progress, 18 pack
 *   1       1     reserved (0)
 *   2       2     reserved (0)
 *   4       4     correlation id (u32 LE)
 *   8       4     the whole frame's payload length (u32 LE); checked against maxMessageSize
 *                 before the receiver allocates anything
 *   12      4     reserved (0): the chunk starts 8-byte aligned in its slot
 *   16      ...   this record's chunk of the payload
 *
 * Alignment matters for speed, not for correctness: V8 copies to or from a SharedArrayBuffer
 * word by word only when source and destination are equally aligned modulo 8, and byte by
 * byte otherwise (measured 27 GB/s against 3.5 GB/s). Slots start 64-byte aligned and their
 * payload 16 bytes in, so a chunk at +16 of the record is aligned; a frame's chunks are a
 * multiple of 8 bytes long (the pump rounds them down), so each lands aligned in the
 * receiver's buffer too.
 *
 * A pack (kind 18, id 0) carries several whole small frames in one record, so that a stream of
 * small messages costs one slot (one claim, one commit, one release, a few cache lines) per
 * packful instead of per message. Its length field is the length of its body, which is its
 * whole chunk (a pack is never split); the body is a sequence of one or more entries, each laid
 * out as a whole-frame record whose length field is its payload's length:
 *
 *   +0  1   frame type (1..4)        +1  3  reserved (0)
 *   +4  4   correlation id (u32 LE)  +8  4  payload length n (u32 LE)
 *   +12 4   reserved (0)             +16 n  payload, then zero to 7 bytes of padding: the next
 *                                           entry starts at +16 + n rounded up to 8
 *
 * A pack body is at most PACK_MAX_BYTES (64 KiB) whatever the slot size, so a peer that made
 * its queue's slots huge cannot make the receiver allocate more for a pack (a longer one is
 * malformed). The receiver copies a pack's body out of the slot in one piece and checks every
 * entry of its own copy before it delivers any (so the peer cannot change what was checked);
 * the frames it delivers are views of that copy. The copies are carved one after the other out
 * of 64 KiB slabs (one allocation, one ArrayBuffer for the garbage collector, per several
 * packs): a message kept alive keeps its slab, as a socket's message keeps the read buffer it
 * came in. A slab is marked untransferable, like Node's Buffer pool (a transfer list naming one
 * message's buffer copies it on Node 20 and throws DataCloneError later, never detaching the
 * others).
 *
 * Memory for large frames: every frame the receiver is given is fresh memory it owns, and a
 * fresh buffer costs a page fault per 4 KiB page on its first write (on the project VM ~11 µs
 * each: ~3 ms for a MiB, ten times the copy). Frames of POOLED_COPY bytes or more, and every
 * frame split over records, are therefore copied into blocks of the addon's pool (os/copy.ts,
 * largeCopy), which collected buffers give back already faulted in. (Until stop 20 a reader
 * also pre-faulted a spare buffer while idle; on this VM that cost the faults all the same, in
 * the round trip's critical path, and kept frames out of the pool: 1 MiB round trips went from
 * ~3.5 ms to ~0.2 ms p50 without it.)
 */
import { markAsUntransferable } from 'node:worker_threads';
import { CHUNK_COPY, POOLED_COPY, copyAt, largeCopy } from '../../os/copy.js';
import { FrameType } from '../framing.js';

export const RECORD_HEADER_BYTES = 16;
/** A pack entry's header: the same 16 bytes as a record's. */
export const ENTRY_HEADER_BYTES = RECORD_HEADER_BYTES;

/** Bytes a pack entry takes for an `n`-byte payload (header, payload, padding to 8). */
export const entryBytes = (n: number): number => ENTRY_HEADER_BYTES + ((n + 7) & ~7);

/** Record kinds beyond the frame types (1..4). */
export const RecordKind = {
  End: 16,
  Continuation: 17,
  Pack: 18,
} as const;

/** What RecordReader.read found. */
export const Read = {
  /** A chunk of a frame still in progress (or nothing to act on). */
  Partial: 0,
  /** A whole frame: `type`, `id` and take(); after it, next() may find more (a pack). */
  Frame: 1,
  /** The peer's end record. */
  End: 2,
  /** A malformed record: `error` says why; the connection is over. */
  Bad: 3,
} as const;
export type Read = (typeof Read)[keyof typeof Read];

const EMPTY = new Uint8Array(0);

/** A Buffer over the same memory (received frames are Buffers, as on the socket transports). */
const asBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.length);

/** The longest pack body, and the slabs pack copies are carved from. */
export const PACK_MAX_BYTES = 64 * 1024;

/** Writes the 16-byte header of a record (or of a pack entry) at u8[at...]. */
function writeHeader(u8: Uint8Array, at: number, kind: number, id: number, length: number): void {
  u8[at] = kind;
  u8[at + 1] = 0;
  u8[at + 2] = 0;
  u8[at + 3] = 0;
  u8[at + 4] = id;
  u8[at + 5] = id >>> 8;
  u8[at + 6] = id >>> 16;
  u8[at + 7] = id >>> 24;
  u8[at + 8] = length;
  u8[at + 9] = length >>> 8;
  u8[at + 10] = length >>> 16;
  u8[at + 11] = length >>> 24;
  u8[at + 12] = 0;
  u8[at + 13] = 0;
  u8[at + 14] = 0;
  u8[at + 15] = 0;
}

/**
 * Writes, at u8[at...], the record of kind `kind` (a frame type for a frame's first record,
 * Continuation for the others, Pack, End) of a frame of `total` bytes that carries
 * src[from, from + chunk). The caller commits RECORD_HEADER_BYTES + chunk bytes.
 */
export function writeRecord(u8: Uint8Array, at: number, kind: number, id: number, total: number, src: Uint8Array, from: number, chunk: number): void {
  writeHeader(u8, at, kind, id, total);
  if (chunk === 0) return;
  // A plain view for a part (Buffer#subarray would build a Buffer, several times dearer).
  const part = from === 0 && chunk === src.byteLength ? src : new Uint8Array(src.buffer, src.byteOffset + from, chunk);
  copyAt(u8, at + RECORD_HEADER_BYTES, part, CHUNK_COPY);
}

/**
 * Gathers whole small frames into the body of a pack (private memory: the link seals it into
 * one record when it is full or at the end of the turn). `body` may be handed over (take) and
 * a fresh one is made for the next pack.
 */
export class Packer {
  /** Bytes a pack body may hold: the payload of one record. */
  readonly capacity: number;
  #body: Uint8Array = EMPTY;
  #used = 0;
  #count = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get used(): number {
    return this.#used;
  }

  /** Entries in the pack so far. */
  get count(): number {
    return this.#count;
  }

  /** Whether an entry for a `bytes`-byte payload still fits. */
  fits(bytes: number): boolean {
    return this.#used + entryBytes(bytes) <= this.capacity;
  }

  /** Appends a frame (copied: the caller may reuse `payload` at once); the caller checked fits(). */
  add(type: number, id: number, payload: Uint8Array): void {
    if (this.#body.byteLength === 0) this.#body = new Uint8Array(this.capacity);
    const at = this.#used;
    const n = payload.byteLength;
    const body = this.#body;
    writeHeader(body, at, type, id, n);
    if (n !== 0) body.set(payload, at + ENTRY_HEADER_BYTES);
    const end = at + entryBytes(n);
    // Zero padding (the receiver never reads it, but nothing stale goes into shared memory).
    for (let k = at + ENTRY_HEADER_BYTES + n; k < end; k++) body[k] = 0;
    this.#used = end;
    this.#count++;
  }

  /** The body so far (a view, valid until the next add or reset). */
  view(): Uint8Array {
    return this.#body.subarray(0, this.#used);
  }

  /** Empties the pack, keeping its memory for the next one. */
  reset(): void {
    this.#used = 0;
    this.#count = 0;
  }

  /** The body so far, handed over for good (the next pack gets fresh memory); empties the pack. */
  take(): Uint8Array {
    const body = this.#body.subarray(0, this.#used);
    this.#body = EMPTY;
    this.reset();
    return body;
  }
}

const u32 = (u8: Uint8Array, at: number): number => (u8[at]! | (u8[at + 1]! << 8) | (u8[at + 2]! << 16) | (u8[at + 3]! << 24)) >>> 0;

/**
 * Reassembles the frames of one direction from its records, in order. After read() (or next())
 * returns Read.Frame, `type`, `id` and take() describe the frame; after Read.Bad, `error` says
 * why. A pack yields its first frame from read() and each of the others from next().
 */
export class RecordReader {
  readonly #maxMessageSize: number;
  type = 0;
  id = 0;
  error = '';
  #payload: Uint8Array = EMPTY;
  /** The frame being gathered from several records. */
  #gathering: Uint8Array | undefined;
  #gatherType = 0;
  #gatherId = 0;
  #filled = 0;
  #progress = 0;
  /** The private copy of the pack being delivered, and where its next entry starts. */
  #pack: Buffer | undefined;
  #packAt = 0;
  /** The slab pack copies are carved from, and where its free part starts. */
  #slab: Buffer = Buffer.alloc(0);
  #slabAt = 0;

  constructor(maxMessageSize: number) {
    this.#maxMessageSize = maxMessageSize;
  }

  /** True while a frame split over several records is incomplete. */
  get inFrame(): boolean {
    return this.#gathering !== undefined;
  }

  /** True while frames of a pack already read wait to be delivered (call next()). */
  get pending(): boolean {
    return this.#pack !== undefined;
  }

  /** Counts the records that fed a split frame: unchanged while such a frame stalls. */
  get progress(): number {
    return this.#progress;
  }

  /** The payload of the frame read() just found; the receiver owns it (a private copy). */
  take(): Uint8Array {
    const payload = this.#payload;
    this.#payload = EMPTY;
    return payload;
  }

  /** Reports a record that must not be trusted (e.g. torn by a reclaim). */
  fail(why: string): Read {
    this.#pack = undefined;
    this.error = why;
    return Read.Bad;
  }

  /** Parses the record of `n` bytes at u8[at...] (read only during the call). */
  read(u8: Uint8Array, at: number, n: number): Read {
    if (n < RECORD_HEADER_BYTES) return this.fail(`a ${n}-byte record is shorter than its header`);
    const kind = u8[at]!;
    const total = u32(u8, at + 8);
    const chunk = n - RECORD_HEADER_BYTES;
    const body = at + RECORD_HEADER_BYTES;
    if (kind === RecordKind.Continuation) {
      const frame = this.#gathering;
      if (frame === undefined) return this.fail('a continuation record without a frame in progress');
      if (total !== frame.byteLength || chunk > total - this.#filled || chunk === 0) return this.fail('a continuation record that does not fit its frame');
      copyAt(frame, this.#filled, u8.subarray(body, at + n), CHUNK_COPY);
      this.#filled += chunk;
      this.#progress++;
      if (this.#filled < total) return Read.Partial;
      this.#gathering = undefined;
      return this.#found(this.#gatherType, this.#gatherId, frame);
    }
    const isFrame = kind >= FrameType.Message && kind <= FrameType.Failure;
    if (this.#gathering !== undefined && (isFrame || kind === RecordKind.Pack)) return this.fail('a new frame began before the previous one was complete');
    if (isFrame) {
      if (total > this.#maxMessageSize) return this.fail(`the peer announced a ${total}-byte frame, over maxMessageSize (${this.#maxMessageSize})`);
      if (chunk > total) return this.fail('a record longer than its frame');
      const id = u32(u8, at + 4);
      if (chunk === total) {
        // The receiver owns what it is given: a private copy, out of the shared slot.
        if (total >= POOLED_COPY) return this.#found(kind, id, asBuffer(largeCopy(u8.subarray(body, at + n))));
        const payload = Buffer.allocUnsafe(total);
        if (total !== 0) payload.set(u8.subarray(body, at + n));
        return this.#found(kind, id, payload);
      }
      // Gathered as it arrives; allocated once, from a length already checked against the limit
      // (pre-faulted memory from the pool, with the first chunk copied in).
      const frame = asBuffer(largeCopy(u8.subarray(body, at + n), total));
      this.#gathering = frame;
      this.#gatherType = kind;
      this.#gatherId = id;
      this.#filled = chunk;
      this.#progress++;
      return Read.Partial;
    }
    if (kind === RecordKind.Pack) {
      if (total !== chunk || chunk < ENTRY_HEADER_BYTES) return this.fail('a pack record whose length is not its body');
      if (chunk > PACK_MAX_BYTES) return this.fail(`a ${chunk}-byte pack, over ${PACK_MAX_BYTES}`);
      // One private copy of the whole body, checked there (the peer cannot change it any more).
      const pack = this.#carve(chunk);
      pack.set(u8.subarray(body, at + n));
      const bad = this.#checkPack(pack);
      if (bad !== undefined) return this.fail(bad);
      this.#pack = pack;
      this.#packAt = 0;
      return this.next();
    }
    if (kind === RecordKind.End) return Read.End;
    return this.fail(`a record of unknown kind ${kind}`);
  }

  /** `bytes` (at most PACK_MAX_BYTES) of fresh private memory for a pack's copy, 8-byte aligned. */
  #carve(bytes: number): Buffer {
    let at = this.#slabAt;
    if (at + bytes > this.#slab.byteLength) {
      this.#slab = Buffer.allocUnsafeSlow(PACK_MAX_BYTES);
      // Many messages view one slab: a transfer of one must not detach the others (see the
      // receive arena in os/copy.ts).
      markAsUntransferable(this.#slab.buffer);
      at = 0;
    }
    // Pack bodies are whole entries, so `bytes` is a multiple of 8 unless the pack is malformed.
    this.#slabAt = (at + bytes + 7) & ~7;
    return this.#slab.subarray(at, at + bytes);
  }

  /** The next frame of the pack being delivered (Read.Frame), or Read.Partial once it is done. */
  next(): Read {
    const pack = this.#pack;
    if (pack === undefined) return Read.Partial;
    const at = this.#packAt;
    const length = u32(pack, at + 8);
    const start = at + ENTRY_HEADER_BYTES;
    this.#packAt = at + entryBytes(length);
    if (this.#packAt >= pack.byteLength) this.#pack = undefined;
    return this.#found(pack[at]!, u32(pack, at + 4), pack.subarray(start, start + length));
  }

  /** Why the pack body `pack` cannot be trusted, or undefined when every entry is a whole frame. */
  #checkPack(pack: Uint8Array): string | undefined {
    const end = pack.byteLength;
    for (let at = 0; at < end; ) {
      if (end - at < ENTRY_HEADER_BYTES) return 'a pack entry shorter than its header';
      const type = pack[at]!;
      if (type < FrameType.Message || type > FrameType.Failure) return `a pack entry of unknown kind ${type}`;
      const length = u32(pack, at + 8);
      if (length > this.#maxMessageSize) return `the peer announced a ${length}-byte frame, over maxMessageSize (${this.#maxMessageSize})`;
      // (Checked before entryBytes, which could overflow past 2^31 for a hostile length.)
      if (length > end - at - ENTRY_HEADER_BYTES || entryBytes(length) > end - at) return 'a pack entry longer than its pack';
      at += entryBytes(length);
    }
    return undefined;
  }

  #found(type: number, id: number, payload: Uint8Array): Read {
    this.type = type;
    this.id = id;
    this.#payload = payload;
    return Read.Frame;
  }
}
