/**
 * Codecs turn a message into bytes and back. Every channel and queue takes the same `codec`
 * option: 'bytes' (Uint8Array in and out, no serialization), 'json', 'structured' (structured
 * clone through v8.serialize: Map, Set, Date, BigInt, typed arrays...), 'msgpack' (msgpackr),
 * or a user object { encode(value): Uint8Array, decode(bytes): value }.
 *
 * decode receives a view that the caller owns only for the duration of the call where noted
 * (the queue's zero-copy read path); built-in decoders never keep a reference to it, except
 * 'bytes', which is always given a private copy.
 */
import * as v8 from 'node:v8';
import { Packr } from 'msgpackr';
import { IpcError } from '../errors.js';

export interface Codec<T = unknown> {
  readonly name: string;
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

export type CodecName = 'bytes' | 'json' | 'structured' | 'msgpack';
export type CodecOption<T = unknown> = CodecName | Codec<T>;
/** The built-in codecs that serialize values (the message type is the caller's to name). */
export type SerializingCodecName = 'json' | 'structured' | 'msgpack';

/**
 * How a `codec` option decides the message type of a queue, channel or map, so that TypeScript
 * catches a mismatch at compile time:
 *   - no codec or 'bytes': messages are Uint8Array (naming another type does not compile);
 *   - 'json' | 'structured' | 'msgpack': the type the caller names, `unknown` by default;
 *   - a user codec: its type.
 * Factories declare one overload per row, e.g. `create(name, o: Opts<Uint8Array> & BytesCodec)`.
 */
export interface BytesCodec {
  codec?: 'bytes';
}
export interface SerializingCodec<T> {
  codec: SerializingCodecName | Codec<T>;
}

const bytes: Codec<Uint8Array> = {
  name: 'bytes',
  encode(value) {
    if (!(value instanceof Uint8Array)) {
      throw new TypeError(`codec 'bytes' sends Uint8Array (or Buffer) values, got ${describe(value)}`);
    }
    return value;
  },
  decode(data) {
    return data;
  },
};

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

const json: Codec = {
  name: 'json',
  encode(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`codec 'json' cannot encode ${describe(value)}`);
    return encoder.encode(text);
  },
  decode(data) {
    return JSON.parse(decoder.decode(data));
  },
};

const structured: Codec = {
  name: 'structured',
  encode(value) {
    return v8.serialize(value);
  },
  decode(data) {
    return v8.deserialize(data);
  },
};

// structuredClone-compatible options are not what msgpack users expect; keep plain msgpack
// (maps as objects) so that other languages can read the bytes.
const packr = new Packr({ useRecords: false, moreTypes: false });
const msgpack: Codec = {
  name: 'msgpack',
  encode(value) {
    return packr.pack(value);
  },
  decode(data) {
    return packr.unpack(data);
  },
};

const builtIn: Record<CodecName, Codec<any>> = { bytes, json, structured, msgpack };

/** Resolves a codec option (default 'bytes' unless `fallback` says otherwise). */
export function resolveCodec<T = unknown>(option: unknown, fallback: CodecName = 'bytes'): Codec<T> {
  if (option === undefined) return builtIn[fallback] as Codec<T>;
  if (typeof option === 'string') {
    const codec = builtIn[option as CodecName];
    if (codec === undefined) {
      throw new TypeError(`unknown codec '${option}' (use 'bytes', 'json', 'structured', 'msgpack' or { encode, decode })`);
    }
    return codec as Codec<T>;
  }
  if (
    option !== null &&
    typeof option === 'object' &&
    typeof (option as Codec).encode === 'function' &&
    typeof (option as Codec).decode === 'function'
  ) {
    const user = option as Codec<T>;
    return {
      name: typeof user.name === 'string' ? user.name : 'custom',
      encode(value) {
        const out = user.encode(value);
        if (!(out instanceof Uint8Array)) throw new TypeError('custom codec: encode must return a Uint8Array');
        return out;
      },
      decode: (data) => user.decode(data),
    };
  }
  throw new TypeError("codec must be 'bytes', 'json', 'structured', 'msgpack' or an object with encode and decode");
}

/**
 * Decodes with a codec, turning a decoder failure (malformed bytes from a peer) into
 * IPC_ERR_PROTOCOL so that callers can tell a bad message from a bug.
 */
export function decodeOrThrow<T>(codec: Codec<T>, data: Uint8Array, what: string): T {
  try {
    return codec.decode(data);
  } catch (cause) {
    throw new IpcError('IPC_ERR_PROTOCOL', `${what}: codec '${codec.name}' could not decode a ${data.byteLength}-byte message`, { cause });
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return typeof value;
}
