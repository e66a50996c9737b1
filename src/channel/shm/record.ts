/**
 * Records: how a shm:// channel carries (type, id, payload) frames in queue messages. Pure code
 * (no shared memory, no I/O): writeRecord and Packer fill a slot's bytes, RecordReader turns the
 * records of one direction back into frames; the link and the pumps do the rest.
 *
 * Contract: a receiver holds at most `maxMessageSize` bytes per frame in progress, whatever the
 * peer announces, and any record that does not fit the frame in progress (or announces a frame
 * over the limit) is reported before a byte of it is kept.
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
 *   12      ...   this record's chunk of the payload
 *
 * A pack (kind 18, id 0) carries several whole small frames in one record, so that a stream of
 * small messages costs one slot (one claim, one commit, one release, a few cache lines) per
 * packful instead of per message. Its length field is the length of its body, which is its
 * whole chunk (a pack is never split); the body is a sequence of one or more entries, each laid
 * out as a whole-frame record whose length field is its payload's length:
 *
 *   +0  1   frame type (1..4)        +1  3  reserved (0)
 *   +4  4   correlation id (u32 LE)  +8  4  payload length n (u32 LE)
 *   +12 n   payload                  (the next entry follows at once, unaligned)
 *
 * The receiver copies a pack's body out of the slot in one piece and checks every entry of its
 * own copy before it delivers any (so the peer cannot change what was checked); the frames it
 * delivers are views of that copy.
 */
import { FrameType } from '../framing.js';

export const RECORD_HEADER_BYTES = 12;
/** A pack entry's header: the same 12 bytes as a record's. */
export const ENTRY_HEADER_BYTES = RECORD_HEADER_BYTES;

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

/** Writes the 12-byte header of a record (or of a pack entry) at u8[at...]. */
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
  u8.set(from === 0 && chunk === src.byteLength ? src : new Uint8Array(src.buffer, src.byteOffset + from, chunk), at + RECORD_HEADER_BYTES);
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
    return this.#used + ENTRY_HEADER_BYTES + bytes <= this.capacity;
  }

  /** Appends a frame (copied: the caller may reuse `payload` at once); the caller checked fits(). */
  add(type: number, id: number, payload: Uint8Array): void {
    if (this.#body.byteLength === 0) this.#body = new Uint8Array(this.capacity);
    const at = this.#used;
    const n = payload.byteLength;
    writeHeader(this.#body, at, type, id, n);
    if (n !== 0) this.#body.set(payload, at + ENTRY_HEADER_BYTES);
    this.#used = at + ENTRY_HEADER_BYTES + n;
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
      frame.set(u8.subarray(body, at + n), this.#filled);
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
        const payload = Buffer.allocUnsafe(total);
        if (total !== 0) payload.set(u8.subarray(body, at + n));
        return this.#found(kind, id, payload);
      }
      // Gathered as it arrives; allocated once, from a length already checked against the limit.
      const frame = Buffer.allocUnsafeSlow(total);
      frame.set(u8.subarray(body, at + n));
      this.#gathering = frame;
      this.#gatherType = kind;
      this.#gatherId = id;
      this.#filled = chunk;
      this.#progress++;
      return Read.Partial;
    }
    if (kind === RecordKind.Pack) {
      if (total !== chunk || chunk < ENTRY_HEADER_BYTES) return this.fail('a pack record whose length is not its body');
      // One private copy of the whole body, checked there (the peer cannot change it any more).
      const pack = Buffer.allocUnsafe(chunk);
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

  /** The next frame of the pack being delivered (Read.Frame), or Read.Partial once it is done. */
  next(): Read {
    const pack = this.#pack;
    if (pack === undefined) return Read.Partial;
    const at = this.#packAt;
    const length = u32(pack, at + 8);
    const start = at + ENTRY_HEADER_BYTES;
    this.#packAt = start + length;
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
      if (length > end - at - ENTRY_HEADER_BYTES) return 'a pack entry longer than its pack';
      at += ENTRY_HEADER_BYTES + length;
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
