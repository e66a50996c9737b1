/**
 * Records: how a shm:// channel carries (type, id, payload) frames in queue messages. Pure code
 * (no shared memory, no I/O): writeRecord fills a slot's bytes, RecordReader turns the records
 * of one direction back into frames; the link and the pumps do the rest.
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
 *                 17 continuation of the frame in progress
 *   1       1     reserved (0)
 *   2       2     reserved (0)
 *   4       4     correlation id (u32 LE)
 *   8       4     the whole frame's payload length (u32 LE); checked against maxMessageSize
 *                 before the receiver allocates anything
 *   12      ...   this record's chunk of the payload
 */
import { FrameType } from '../framing.js';

export const RECORD_HEADER_BYTES = 12;

/** Record kinds beyond the frame types (1..4). */
export const RecordKind = {
  End: 16,
  Continuation: 17,
} as const;

/** What RecordReader.read found. */
export const Read = {
  /** A chunk of a frame still in progress (or nothing to act on). */
  Partial: 0,
  /** A whole frame: `type`, `id` and take(). */
  Frame: 1,
  /** The peer's end record. */
  End: 2,
  /** A malformed record: `error` says why; the connection is over. */
  Bad: 3,
} as const;
export type Read = (typeof Read)[keyof typeof Read];

const EMPTY = new Uint8Array(0);

/**
 * Writes the record that carries payload[offset, offset + chunk) of a frame at u8[at...]: the
 * first record of a frame has the frame's type, the others are continuations. The caller
 * commits RECORD_HEADER_BYTES + chunk bytes.
 */
export function writeRecord(u8: Uint8Array, at: number, type: number, id: number, payload: Uint8Array, offset: number, chunk: number): void {
  const total = payload.byteLength;
  u8[at] = offset === 0 ? type : RecordKind.Continuation;
  u8[at + 1] = 0;
  u8[at + 2] = 0;
  u8[at + 3] = 0;
  u8[at + 4] = id;
  u8[at + 5] = id >>> 8;
  u8[at + 6] = id >>> 16;
  u8[at + 7] = id >>> 24;
  u8[at + 8] = total;
  u8[at + 9] = total >>> 8;
  u8[at + 10] = total >>> 16;
  u8[at + 11] = total >>> 24;
  if (chunk === 0) return;
  // A plain view for a chunk (Buffer#subarray would build a Buffer, several times dearer).
  u8.set(chunk === total ? payload : new Uint8Array(payload.buffer, payload.byteOffset + offset, chunk), at + RECORD_HEADER_BYTES);
}

const u32 = (u8: Uint8Array, at: number): number => (u8[at]! | (u8[at + 1]! << 8) | (u8[at + 2]! << 16) | (u8[at + 3]! << 24)) >>> 0;

/**
 * Reassembles the frames of one direction from its records, in order. After read() returns
 * Read.Frame, `type`, `id` and take() describe the frame; after Read.Bad, `error` says why.
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

  constructor(maxMessageSize: number) {
    this.#maxMessageSize = maxMessageSize;
  }

  /** True while a frame split over several records is incomplete. */
  get inFrame(): boolean {
    return this.#gathering !== undefined;
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
    if (kind >= FrameType.Message && kind <= FrameType.Failure) {
      if (this.#gathering !== undefined) return this.fail('a new frame began before the previous one was complete');
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
    if (kind === RecordKind.End) return Read.End;
    return this.fail(`a record of unknown kind ${kind}`);
  }

  #found(type: number, id: number, payload: Uint8Array): Read {
    this.type = type;
    this.id = id;
    this.#payload = payload;
    return Read.Frame;
  }
}
