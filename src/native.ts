/**
 * The one place that loads the C++ addon. It is loaded lazily, on the first call that needs it,
 * so that `import 'interprocess'` never throws: where the addon cannot load (not built, another
 * OS, a Node ABI mismatch) the first operation fails with IPC_ERR_NATIVE_UNAVAILABLE and says why.
 */
import * as path from 'node:path';
import { IpcError } from './errors.js';

export interface AsyncWaitApi {
  /** Watches word `byteOffset` of `sab` while it equals `expected`; returns a group id. */
  watch(sab: SharedArrayBuffer, byteOffset: number, expected: number): number;
  /** One waiter of the group left; false when the group has already fired. */
  unwatch(id: number): boolean;
  watcherCount(): number;
}

/** This thread's lifeline (native/lifeline.cc): a token held by a kernel byte-range lock. */
export interface LifelineApi {
  token: number;
  /** True while some live thread holds `token`'s lifeline. */
  alive(token: number): boolean;
}

export interface NativeBinding {
  shmOpen(
    osName: string,
    how: 0 | 1 | 2,
    mode: number,
    byteLength: number,
    sizeWaitMs: number,
  ): { created: boolean; byteLength: number; buffer?: SharedArrayBuffer };
  shmUnlink(osName: string): boolean;
  futexWait(sab: SharedArrayBuffer, byteOffset: number, expected: number, timeoutMs: number): 0 | 1 | 2;
  futexWake(sab: SharedArrayBuffer, byteOffset: number, count: number): number;
  asyncInit(onFired: (ids: number[]) => void): AsyncWaitApi;
  pinToCpu(cpu: number): void;
  lifelineInit(registryName: string): LifelineApi;
  /** Creates a FIFO with exactly `mode` (fifo:// channels). */
  mkfifo(path: string, mode: number): void;
}

/** Where the addon is looked for; INTERPROCESS_NATIVE overrides it (used by tests and packagers). */
export const addonPath =
  process.env['INTERPROCESS_NATIVE'] ?? path.join(__dirname, '..', '..', 'build', 'Release', 'interprocess.node');

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
