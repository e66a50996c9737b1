/**
 * The wire format of nats:// channels: what one NATS message of a connection carries.
 *
 * Contract: NATS core delivers the messages of one publishing connection to one subscriber in
 * publication order, but may drop any of them (a subscriber with no interest yet, a slow
 * consumer, a server that dies). Every data chunk therefore carries a per-direction sequence
 * number, and every control message that follows data says how many chunks preceded it, so
 * that a receiver detects any gap and fails loudly instead of delivering around it.
 *
 * Subjects (S is the address's subject, <id> a connection id of 24 hex digits):
 *
 *   S            the accept point: listeners' queue subscription; carries HELLO and PROBE
 *   S.s.<id>     one connection's client -> server direction (the server subscribes)
 *   S.c.<id>     one connection's server -> client direction (the client subscribes)
 *   S.p.<id>     a listener's probe inbox while it checks that S is free
 *
 * Data chunk (a frame of framing.ts is split into chunks that fit the server's max_payload):
 *
 *   offset 0   u8   kind: 1 message, 2 request, 3 reply, 4 failed reply (the frame's first
 *                   chunk, framing.ts types), 17 continuation of the frame in progress
 *   offset 1   u8   0 (reserved)
 *   offset 2   u16  0 (reserved)
 *   offset 4   u32  correlation id (0 exactly for a message)
 *   offset 8   u32  the whole frame's payload length; checked against maxMessageSize before
 *                   a byte of it is kept
 *   offset 12  u32  sequence number of this chunk in its direction, from 0 (mod 2^32)
 *   offset 16  ...  this chunk's bytes of the payload
 *
 * Control (all little-endian; every one after the handshake goes on the direction's subject):
 *
 *   CREDIT   0 u8 32 | 4 u32 chunks received so far (mod 2^32) | 8 f64 credit limit: total
 *            chunk bytes (header included) the peer may have published on this connection
 *   BEAT     0 u8 33 | 4 u32 chunks published before this beat (mod 2^32); sent with a reply
 *            subject so that the server answers 503 (no responders) once nobody listens
 *   END      0 u8 34 | 4 u32 chunks published before it: a clean close, nothing follows
 *   ABORT    0 u8 35 | 1... UTF-8 reason: the sender tore the connection down after an error
 *   HELLO    0 u8 40 | 1... JSON { v, id, window, heartbeat, maxMessageSize }, on S, with
 *            reply S.c.<id>
 *   WELCOME  0 u8 41 | 1... JSON { v, window, heartbeat, maxMessageSize }, on S.c.<id>
 *   REFUSE   0 u8 42 | 1... JSON { code, message }, on S.c.<id>
 *   PROBE    0 u8 43, on S with a reply subject; a listener answers HERE (0 u8 44)
 */
import { IpcError } from '../../errors.js';
import { FrameType } from '../framing.js';

export const VERSION = 1;

export const DATA_HEADER_BYTES = 16;
export const CONTINUATION = 17;
export const CREDIT = 32;
export const BEAT = 33;
export const END = 34;
export const ABORT = 35;
export const HELLO = 40;
export const WELCOME = 41;
export const REFUSE = 42;
export const PROBE = 43;
export const HERE = 44;

const CREDIT_BYTES = 16;
const COUNT_BYTES = 8;
/** Handshake messages are small JSON; anything longer is not ours. */
const MAX_HANDSHAKE_BYTES = 4096;
const MAX_REASON_BYTES = 512;

/** Connection ids: 24 hex digits, safe as a subject token. */
export const ID_PATTERN = /^[0-9a-f]{24}$/;

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A data chunk: header, then `length` bytes of `payload` from `offset` (copied: NATS keeps what it is given). */
export function encodeChunk(kind: number, id: number, payload: Uint8Array, offset: number, length: number, seq: number): Buffer {
  const out = Buffer.allocUnsafe(DATA_HEADER_BYTES + length);
  out[0] = kind;
  out[1] = 0;
  out.writeUInt16LE(0, 2);
  out.writeUInt32LE(id >>> 0, 4);
  out.writeUInt32LE(payload.byteLength, 8);
  out.writeUInt32LE(seq >>> 0, 12);
  if (length > 0) out.set(payload.subarray(offset, offset + length), DATA_HEADER_BYTES);
  return out;
}

export interface Chunk {
  kind: number;
  id: number;
  total: number;
  seq: number;
  bytes: Uint8Array;
  /** What it costs against the credit window (header included). */
  cost: number;
}

/** Parses a data chunk's header; null when the message is too short to be one. */
export function decodeChunk(data: Uint8Array): Chunk | null {
  if (data.byteLength < DATA_HEADER_BYTES) return null;
  const v = view(data);
  return {
    kind: data[0]!,
    id: v.getUint32(4, true),
    total: v.getUint32(8, true),
    seq: v.getUint32(12, true),
    bytes: data.subarray(DATA_HEADER_BYTES),
    cost: data.byteLength,
  };
}

export function isDataKind(kind: number): boolean {
  return (kind >= FrameType.Message && kind <= FrameType.Failure) || kind === CONTINUATION;
}

export function encodeCredit(received: number, limit: number): Buffer {
  const out = Buffer.alloc(CREDIT_BYTES);
  out[0] = CREDIT;
  out.writeUInt32LE(received % 2 ** 32, 4);
  out.writeDoubleLE(limit, 8);
  return out;
}

export function decodeCredit(data: Uint8Array): { received: number; limit: number } | null {
  if (data.byteLength !== CREDIT_BYTES) return null;
  const v = view(data);
  const limit = v.getFloat64(8, true);
  if (!Number.isFinite(limit) || limit < 0) return null;
  return { received: v.getUint32(4, true), limit };
}

/** BEAT or END: the kind and the count of chunks published before it. */
export function encodeCount(kind: number, sent: number): Buffer {
  const out = Buffer.alloc(COUNT_BYTES);
  out[0] = kind;
  out.writeUInt32LE(sent % 2 ** 32, 4);
  return out;
}

export function decodeCount(data: Uint8Array): number | null {
  return data.byteLength === COUNT_BYTES ? view(data).getUint32(4, true) : null;
}

export function encodeAbort(reason: string): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, MAX_REASON_BYTES);
  return Buffer.concat([Buffer.of(ABORT), text]);
}

export function decodeAbort(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset + 1, Math.min(data.byteLength - 1, MAX_REASON_BYTES)).toString('utf8');
}

export function encodeJson(kind: number, value: object): Buffer {
  return Buffer.concat([Buffer.of(kind), Buffer.from(JSON.stringify(value), 'utf8')]);
}

/** The JSON body of a handshake message; IPC_ERR_PROTOCOL when it is not one. */
export function decodeJson(data: Uint8Array, what: string): Record<string, unknown> {
  if (data.byteLength < 2 || data.byteLength > MAX_HANDSHAKE_BYTES) {
    throw new IpcError('IPC_ERR_PROTOCOL', `${what}: a ${data.byteLength}-byte handshake message`);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data.buffer, data.byteOffset + 1, data.byteLength - 1).toString('utf8'));
  } catch (cause) {
    throw new IpcError('IPC_ERR_PROTOCOL', `${what}: a handshake message that is not JSON`, { cause });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new IpcError('IPC_ERR_PROTOCOL', `${what}: a handshake message that is not an object`);
  }
  return value as Record<string, unknown>;
}

/** A positive integer field of a handshake message (window bytes, heartbeat ms), or IPC_ERR_PROTOCOL. */
export function positiveField(body: Record<string, unknown>, key: string, max: number, what: string): number {
  const value = body[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new IpcError('IPC_ERR_PROTOCOL', `${what}: the handshake's '${key}' is not an integer in [1, ${max}]`);
  }
  return value;
}
