/**
 * The one place that loads the C++ addon. It is loaded lazily, on the first call that needs it,
 * so that `import 'interprocess'` never throws: where the addon cannot load (not built, another
 * OS, a Node ABI mismatch) the first operation fails with IPC_ERR_NATIVE_UNAVAILABLE and says why.
 */
import * as path from 'node:path';
import { IpcError } from '../errors.js';
import type { HOW_CODE, How } from '../naming.js';

/** The addon's code for create / open / openOrCreate. */
type HowCode = (typeof HOW_CODE)[How];

export interface AsyncWaitApi {
  /** Watches word `byteOffset` of `sab` while it equals `expected`; returns a group id. */
  watch(sab: SharedArrayBuffer, byteOffset: number, expected: number): number;
  /** One waiter of the group left; false when the group has already fired. */
  unwatch(id: number): boolean;
  watcherCount(): number;
}

/** One environment's POSIX message-queue handles (see native/mq.cc); ids name open descriptors. */
export interface MqApi {
  open(
    osName: string,
    how: HowCode,
    mode: number,
    maxMessages: number,
    maxMessageSize: number,
  ): { id: number; created: boolean; maxMessages: number; maxMessageSize: number };
  close(id: number): boolean;
  /** true sent, false full. */
  trySend(id: number, bytes: Uint8Array, priority: number): boolean;
  /** Length of the message taken into `scratch`, or -1 when empty; its priority goes to out[0]. */
  tryReceive(id: number, scratch: Uint8Array): number;
  /** Blocks up to timeoutMs (Infinity: forever); false when it timed out. */
  sendSync(id: number, bytes: Uint8Array, priority: number, timeoutMs: number): boolean;
  /** Blocks up to timeoutMs; the length, or -1 when it timed out; priority to out[0]. */
  receiveSync(id: number, scratch: Uint8Array, timeoutMs: number): number;
  /** Starts (1 readable | 2 writable) or stops (0) the event-loop watch of the descriptor. */
  watch(id: number, events: number): void;
  attributes(id: number): { maxMessages: number; maxMessageSize: number; messageCount: number; mode: number; uid: number };
}

export interface NativeBinding {
  shmOpen(
    osName: string,
    how: HowCode,
    mode: number,
    byteLength: number,
    sizeWaitMs: number,
    allowOtherOwner: boolean,
  ): {
    created: boolean;
    byteLength: number;
    /** The object's owner uid and permission bits (fstat of the mapped descriptor). */
    uid: number;
    mode: number;
    buffer?: SharedArrayBuffer;
    /** Not mapped: not a regular file, or owned by another uid without allowOtherOwner. */
    refused?: 'type' | 'owner';
  };
  shmUnlink(osName: string): boolean;
  futexWait(sab: SharedArrayBuffer, byteOffset: number, expected: number, timeoutMs: number): 0 | 1 | 2;
  futexWake(sab: SharedArrayBuffer, byteOffset: number, count: number): number;
  asyncInit(onFired: (ids: number[]) => void): AsyncWaitApi;
  pinToCpu(cpu: number): void;
  /**
   * Lifelines (native/lifeline.cc). lifelineKey names the object behind a buffer (undefined for
   * shared memory this addon did not map); lifelineOpen gives this thread a new lifeline on it
   * (`id` for the calls below, `token` held by a kernel byte lock); lifelineAlive asks whether
   * the thread holding another token on the same object lives; lifelineClose lets go.
   */
  lifelineKey(sab: SharedArrayBuffer): string | undefined;
  lifelineOpen(sab: SharedArrayBuffer): { id: number; token: number };
  lifelineAlive(id: number, token: number): boolean;
  lifelineClose(id: number): boolean;
  /** Creates a FIFO with exactly `mode` (fifo:// channels). */
  mkfifo(path: string, mode: number): void;
  /** onReady(id, events, status) runs on this thread when a watched queue is ready. */
  mqInit(onReady: (id: number, events: number, status: number) => void, out: Uint32Array): MqApi;
  mqUnlink(osName: string): boolean;
  mqExists(osName: string): boolean;
  /** Soft RLIMIT_NOFILE and RLIMIT_MSGQUEUE, and whether a descriptor can still be opened. */
  mqLimits(): { openFiles: number; msgqueueBytes: number; descriptorAvailable: boolean };
  /** sysconf(_SC_MQ_PRIO_MAX): priorities are 0 .. mqPrioMax - 1. */
  readonly mqPrioMax: number;
}

/** Where the addon is looked for; INTERPROCESS_NATIVE overrides it (used by tests and packagers). */
export const addonPath =
  process.env['INTERPROCESS_NATIVE'] ?? path.join(__dirname, '..', '..', '..', 'build', 'Release', 'interprocess.node');

let binding: NativeBinding | undefined;
let failure: IpcError | undefined;

export function native(): NativeBinding {
  if (binding !== undefined) return binding;
  if (failure !== undefined) throw failure;
  if (process.platform !== 'linux') {
    failure = new IpcError(
      'IPC_ERR_NATIVE_UNAVAILABLE',
      `the native addon supports Linux only; this is ${process.platform}`,
    );
    throw failure;
  }
  try {
    binding = require(addonPath) as NativeBinding;
    return binding;
  } catch (cause) {
    const reason = (cause as Error).message.split('\n')[0];
    failure = new IpcError(
      'IPC_ERR_NATIVE_UNAVAILABLE',
      `cannot load the native addon at ${addonPath}: ${reason}. ` +
        'Build it with `npm rebuild interprocess` (needs python3, make and a C++ compiler)',
      { cause },
    );
    throw failure;
  }
}
