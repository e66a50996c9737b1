/**
 * Length-prefixed framing for byte-stream transports (unix, tcp, pipes, FIFOs).
 *
 * Contract: a peer can make the decoder hold at most `maxMessageSize` payload bytes per
 * connection (plus one read chunk), never more, whatever it announces; any malformed header is
 * reported as IPC_ERR_PROTOCOL before a byte of its payload is buffered.
 *
 * Frame layout (little-endian), a fixed 9-byte header then the payload:
 *
 *   offset 0  u32  payload length in bytes (checked against maxMessageSize first)
 *   offset 4  u8   frame type: 1 message, 2 request, 3 reply, 4 failed reply
 *   offset 5  u32  correlation id: 0 for a message, non-zero for request/reply/failure
 *   offset 9  ...  payload (the codec's bytes; for a failed reply, UTF-8 JSON {message, code})
 *
 * The type byte keeps replies and plain messages apart: `receive()` only ever sees type 1.
 */
import { markAsUntransferable } from 'node:worker_threads';
import { IpcError } from '../errors.js';

export const HEADER_BYTES = 9;

export const FrameType = {
  Message: 1,
  Request: 2,
  Reply: 3,
  Failure: 4,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Default `maxMessageSize` of every channel: 16 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024;
/** The largest `maxMessageSize` accepted: 2^31 - 1 bytes (the length field could say 4 GiB). */
export const LIMIT_MAX_MESSAGE_SIZE = 2 ** 31 - 1;

/** Frames up to this size are written as one buffer (one syscall); larger ones as header + payload. */
const COPY_LIMIT = 16 * 1024;

/**
 * Encodes a frame as the buffers to write, in order. A `borrowed` payload (the caller may
 * change it once this returns) is copied; an owned large one is written by reference.
 */
export function encodeFrame(type: FrameType, id: number, payload: Uint8Array, borrowed = false): Buffer[] {
  const length = payload.byteLength;
  if (length <= COPY_LIMIT || borrowed) {
    const frame = Buffer.allocUnsafe(HEADER_BYTES + length);
    writeHeader(frame, length, type, id);
    frame.set(payload, HEADER_BYTES);
    return [frame];
  }
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(header, length, type, id);
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, length);
  return [header, body];
}

function writeHeader(buf: Buffer, length: number, type: number, id: number): void {
  buf.writeUInt32LE(length, 0);
  buf[4] = type;
  buf.writeUInt32LE(id >>> 0, 5);
}

export interface FrameSink {
  frame(type: FrameType, id: number, payload: Buffer): void;
}

/**
 * Incremental decoder: push() the chunks as they arrive. Complete frames go to the sink;
 * a violation throws IPC_ERR_PROTOCOL and the decoder must not be used again.
 *
 * A payload that arrives whole inside one chunk is handed out as a view of that chunk (no
 * copy). A payload split across chunks is gathered in a list and joined only when complete, so
 * memory grows with the bytes actually received, not with the length a peer announces.
 *
 * A chunk that more than one payload views (or one payload and a part kept for the next) is
 * marked untransferable, as Node marks its Buffer pool: a transfer list naming one message's
 * buffer would otherwise detach the memory of the others. Node 20 then copies that message;
 * later versions throw DataCloneError. A payload alone in its chunk stays transferable.
 */
export class FrameDecoder {
  readonly #maxMessageSize: number;
  readonly #sink: FrameSink;
  /** Bytes of an incomplete header carried over from the previous chunk. */
  #headerPart: Buffer | undefined;
  /** The frame whose payload is being gathered (undefined between frames). */
  #type: FrameType = FrameType.Message;
  #id = 0;
  #remaining = -1;
  #parts: Buffer[] = [];
  #partBytes = 0;
  /** The memory of the last chunk a payload or a kept part viewed, and whether it is marked (see #view). */
  #viewed: ArrayBufferLike | undefined;
  #marked = false;

  constructor(maxMessageSize: number, sink: FrameSink) {
    this.#maxMessageSize = maxMessageSize;
    this.#sink = sink;
  }

  /** True while a frame has started but not finished (used to detect a stalled peer). */
  get inFrame(): boolean {
    return this.#remaining >= 0 || this.#headerPart !== undefined;
  }

  push(chunk: Buffer): void {
    let offset = 0;
    const end = chunk.length;
    while (offset < end) {
      if (this.#remaining >= 0) {
        // Gathering a split payload.
        const take = Math.min(this.#remaining, end - offset);
        this.#parts.push(this.#view(chunk, offset, offset + take));
        this.#partBytes += take;
        this.#remaining -= take;
        offset += take;
        if (this.#remaining === 0) {
          const payload = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#partBytes);
          this.#parts = [];
          this.#partBytes = 0;
          this.#remaining = -1;
          this.#sink.frame(this.#type, this.#id, payload);
        }
        continue;
      }
      let header: Buffer;
      let headerAt: number;
      if (this.#headerPart !== undefined) {
        const need = HEADER_BYTES - this.#headerPart.length;
        const take = Math.min(need, end - offset);
        const joined = Buffer.concat([this.#headerPart, chunk.subarray(offset, offset + take)]);
        offset += take;
        if (joined.length < HEADER_BYTES) {
          this.#headerPart = joined;
          return;
        }
        this.#headerPart = undefined;
        header = joined;
        headerAt = 0;
      } else if (end - offset < HEADER_BYTES) {
        this.#headerPart = Buffer.from(chunk.subarray(offset));
        return;
      } else {
        header = chunk;
        headerAt = offset;
        offset += HEADER_BYTES;
      }
      const length = header.readUInt32LE(headerAt);
      const type = header[headerAt + 4]!;
      const id = header.readUInt32LE(headerAt + 5);
      this.#check(length, type, id);
      if (end - offset >= length) {
        // Whole payload in this chunk: a view, no copy.
        const payload = this.#view(chunk, offset, offset + length);
        offset += length;
        this.#sink.frame(type as FrameType, id, payload);
      } else {
        this.#type = type as FrameType;
        this.#id = id;
        this.#remaining = length;
      }
    }
  }

  /** A view of chunk[start, end); the chunk's memory is marked untransferable at its second view. */
  #view(chunk: Buffer, start: number, end: number): Buffer {
    if (this.#viewed !== chunk.buffer) {
      this.#viewed = chunk.buffer;
      this.#marked = false;
    } else if (!this.#marked) {
      markAsUntransferable(chunk.buffer);
      this.#marked = true;
    }
    return chunk.subarray(start, end);
  }

  #check(length: number, type: number, id: number): void {
    if (length > this.#maxMessageSize) {
      throw new IpcError(
        'IPC_ERR_PROTOCOL',
        `peer announced a ${length}-byte frame, over this channel's maxMessageSize of ${this.#maxMessageSize}`,
      );
    }
    if (type < FrameType.Message || type > FrameType.Failure) {
      throw new IpcError('IPC_ERR_PROTOCOL', `peer sent a frame of unknown type ${type}`);
    }
    if ((type === FrameType.Message) !== (id === 0)) {
      throw new IpcError(
        'IPC_ERR_PROTOCOL',
        type === FrameType.Message ? 'peer sent a message frame with a correlation id' : `peer sent a type-${type} frame without a correlation id`,
      );
    }
  }
}
