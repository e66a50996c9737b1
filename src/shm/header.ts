/**
 * The common header at the start of every object this library lays out in shared memory
 * (locks, queues...). An opener trusts nothing behind it until validateHeader has passed.
 *
 *   offset  size  field
 *   0       4     magic         0x31435049 ('IPC1' in memory order)
 *   4       4     kind          see Kind
 *   8       4     version       layout version of that kind
 *   12      4     state         0 = being initialized, 1 = ready; written LAST (release)
 *   16      8     byteLength    the whole object's size in bytes, header included
 *   24      4     creatorPid    informational only (never used to decide liveness)
 *   28      4     reserved
 *   32      8     createdAt     ms since the epoch, informational
 *   40      24    reserved      (zero)
 *   64            end; the kind's own layout starts here (one cache line in)
 *
 * The creator writes every field, then publishes state = 1 with Atomics.store and wakes any
 * opener waiting on it. An opener waits (bounded) for state = 1 with Atomics.load (acquire),
 * which pairs with that store, and only then reads the other fields.
 */
import { IpcError } from '../errors.js';
import { futex } from '../os/futex.js';

export const HEADER_BYTES = 64;
export const MAGIC = 0x31435049;

export const Kind = {
  Mutex: 1,
  Semaphore: 2,
  Condition: 3,
  RWLock: 4,
  Barrier: 5,
  Queue: 6,
  /** shm:// channel objects: an accept point or a connection's state (src/channel/shm/layout.ts). */
  Channel: 7,
  /** SharedMap (src/map/). */
  Map: 8,
  /** Topic (src/topic/). */
  Topic: 9,
} as const;
export type KindName = keyof typeof Kind;

export function kindName(kind: number): string {
  for (const [name, value] of Object.entries(Kind)) if (value === kind) return name;
  return `unknown(${kind})`;
}

const STATE_INDEX = 3; // int32 index of `state`
const STATE_READY = 1;

export interface HeaderFields {
  magic: number;
  kind: number;
  version: number;
  state: number;
  byteLength: number;
  creatorPid: number;
  createdAt: number;
}

/** Writes every field but `state`. Call publishHeader once the kind's own layout is initialized. */
export function writeHeader(buffer: SharedArrayBuffer, byteOffset: number, kind: number, version: number, byteLength: number): void {
  const view = new DataView(buffer, byteOffset, HEADER_BYTES);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, kind, true);
  view.setUint32(8, version, true);
  view.setBigUint64(16, BigInt(byteLength), true);
  view.setUint32(24, process.pid, true);
  view.setFloat64(32, Date.now(), true);
}

/** Publishes the object: everything written before this is visible to whoever sees state = 1. */
export function publishHeader(buffer: SharedArrayBuffer, byteOffset: number): void {
  const i32 = new Int32Array(buffer, byteOffset, HEADER_BYTES / 4);
  Atomics.store(i32, STATE_INDEX, STATE_READY); // release: pairs with the acquire load in validateHeader
  futex.notify(i32, STATE_INDEX);
}

export function readHeader(buffer: SharedArrayBuffer, byteOffset = 0): HeaderFields {
  const view = new DataView(buffer, byteOffset, HEADER_BYTES);
  return {
    magic: view.getUint32(0, true),
    kind: view.getUint32(4, true),
    version: view.getUint32(8, true),
    state: Atomics.load(new Int32Array(buffer, byteOffset, HEADER_BYTES / 4), STATE_INDEX),
    byteLength: Number(view.getBigUint64(16, true)),
    creatorPid: view.getUint32(24, true),
    createdAt: view.getFloat64(32, true),
  };
}

/**
 * Checks that the memory at byteOffset holds an initialized object of `kind` and `version`
 * whose recorded size matches `availableBytes` (the real size behind it). Waits up to
 * `initTimeout` ms for a creator that has not finished initializing. Throws
 * IPC_ERR_INCOMPATIBLE naming the first field that is wrong.
 */
export function validateHeader(
  buffer: SharedArrayBuffer,
  byteOffset: number,
  availableBytes: number,
  kind: number,
  version: number,
  what: string,
  initTimeout: number,
  /** The caller's whole initTimeout, for the message, when part of it was spent before (ms). */
  budget: number = initTimeout,
): HeaderFields {
  const fail = (field: string, detail: string): never => {
    throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: ${field} ${detail}`);
  };
  if (availableBytes < HEADER_BYTES) fail('size', `is ${availableBytes} bytes, smaller than the ${HEADER_BYTES}-byte header`);
  const i32 = new Int32Array(buffer, byteOffset, HEADER_BYTES / 4);
  const magicNow = (): number => Atomics.load(i32, 0) >>> 0;
  const deadline = Date.now() + initTimeout;
  for (;;) {
    const state = Atomics.load(i32, STATE_INDEX); // acquire: pairs with publishHeader
    if (state === STATE_READY) break;
    // A foreign object fails at once; a zero magic may be a creator that has not written it yet.
    if (magicNow() !== MAGIC && magicNow() !== 0) fail('magic', `is 0x${magicNow().toString(16)}, expected 0x${MAGIC.toString(16)} (not an interprocess object)`);
    if (state !== 0) fail('state', `is ${state}, expected 0 or 1`);
    const left = deadline - Date.now();
    if (left <= 0) {
      fail('initialized', `flag still unset after ${budget} ms (its creator may have died while initializing; remove it and create it again)`);
    }
    futex.wait(i32, STATE_INDEX, state, Math.min(left, 50));
  }
  const header = readHeader(buffer, byteOffset);
  if (header.magic !== MAGIC) fail('magic', `is 0x${header.magic.toString(16)}, expected 0x${MAGIC.toString(16)} (not an interprocess object)`);
  if (header.kind !== kind) fail('kind', `is ${kindName(header.kind)}, expected ${kindName(kind)}`);
  if (header.version !== version) fail('version', `is ${header.version}, this library reads version ${version}`);
  if (header.byteLength !== availableBytes) {
    fail('byteLength', `in the header is ${header.byteLength}, but ${availableBytes} bytes are there`);
  }
  return header;
}
