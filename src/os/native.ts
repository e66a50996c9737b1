/**
 * The one place that loads the C++ addon. It is loaded lazily, on the first call that needs it,
 * so that `import 'interprocess'` never throws: where the addon cannot load (not built, another
 * OS, a Node ABI mismatch) the first operation fails with IPC_ERR_NATIVE_UNAVAILABLE and says why.
 */
import * as fs from 'node:fs';
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
  /** Kernel threads this environment uses for async waits (watchers or fallback sleepers). */
  watcherCount(): number;
  /** 'futex_waitv' (Linux 5.16+), or 'threads': one pooled thread per waited word, at most maxThreads. */
  mechanism(): { name: 'futex_waitv' | 'threads'; maxThreads: number };
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
  /**
   * memmove of `source` into `target` (same length, else RangeError): copies to and from a
   * SharedArrayBuffer at memcpy speed, where TypedArray#set uses V8's relaxed atomic copy.
   * Missing from addons built before it was added (the caller falls back to set).
   */
  copyBytes?(target: Uint8Array, source: Uint8Array): void;
  /**
   * A private copy of `source` at the start of a new ArrayBuffer of `byteLength` bytes (default:
   * the source's; the rest is left as it was, for the caller to fill), whose memory is already faulted in, taken
   * from a process-wide pool of blocks that collected buffers gave back (native/copyout.cc).
   * Missing from older addons (the caller falls back to allocUnsafeSlow and copyBytes).
   */
  copyOut?(source: Uint8Array, byteLength?: number): ArrayBuffer;
  /** Bytes the copyOut pool holds ready. */
  copyOutPoolBytes?(): number;
  /** Closes the descriptor of the mapping behind `buffer` (its handle closed); the memory stays. */
  shmRelease(buffer: SharedArrayBuffer): boolean;
  futexWait(sab: SharedArrayBuffer, byteOffset: number, expected: number, timeoutMs: number): 0 | 1 | 2;
  futexWake(sab: SharedArrayBuffer, byteOffset: number, count: number): number;
  /**
   * membarrier(2), for asymmetric fences (src/os/fence.ts). Register: this process takes part in
   * global expedited barriers (false if refused, or INTERPROCESS_MEMBARRIER=0). Global: every
   * registered process's running threads execute a full barrier (false if refused). Missing
   * from addons built before they were added.
   */
  membarrierRegister?(): boolean;
  membarrierGlobal?(): boolean;
  asyncInit(onFired: (ids: number[]) => void): AsyncWaitApi;
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

/** The package root (a checkout or node_modules/interprocess): dist/cjs/os is three levels down. */
const ROOT = path.join(__dirname, '..', '..', '..');

/** The C library the prebuilds are tagged with (prebuildify --tag-libc names). */
function libc(): 'glibc' | 'musl' {
  try {
    if (fs.existsSync('/etc/alpine-release')) return 'musl';
    return fs.readdirSync('/lib').some((f) => f.startsWith('ld-musl-')) ? 'musl' : 'glibc';
  } catch {
    return 'glibc';
  }
}

/**
 * Where the addon is looked for, in order: INTERPROCESS_NATIVE (tests and packagers), a local
 * build (build/Release: a checkout, or the install-time build from source when no prebuild
 * matched), then the prebuild shipped in the package for this platform, libc and Node ABI.
 * The first that loads wins, so a checkout built for another Node still finds its prebuild.
 */
function addonCandidates(): string[] {
  const override = process.env['INTERPROCESS_NATIVE'];
  if (override !== undefined && override !== '') return [override];
  return [path.join(ROOT, 'build', 'Release', 'interprocess.node'), prebuildPath()];
}

function prebuildPath(): string {
  return path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`, `node.abi${process.versions.modules}.${libc()}.node`);
}

/** The Node ABIs this package ships prebuilds for on this platform (for the error message). */
function shippedAbis(): string {
  const dir = path.dirname(prebuildPath());
  try {
    const abis = fs
      .readdirSync(dir)
      .map((f) => /^node\.abi(\d+)\.(\w+)\.node$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null && m[2] === libc())
      .map((m) => m[1]);
    return abis.length > 0 ? `ABIs ${abis.join(', ')}` : 'none';
  } catch {
    return 'none';
  }
}

let binding: NativeBinding | undefined;
let bindingFile: string | undefined;
let failure: IpcError | undefined;

/** The file the addon was loaded from (loading it first): a build, or a prebuild (for tests). */
export function addonFile(): string {
  native();
  return bindingFile!;
}

export function native(): NativeBinding {
  if (binding !== undefined) return binding;
  if (failure !== undefined) throw failure;
  if (process.platform !== 'linux') {
    failure = new IpcError(
      'IPC_ERR_NATIVE_UNAVAILABLE',
      `the native addon supports Linux only; this is ${process.platform} (docs/platforms.md says what a port would take)`,
    );
    throw failure;
  }
  const tried: string[] = [];
  let firstCause: unknown;
  for (const file of addonCandidates()) {
    const shown = file.startsWith(ROOT + path.sep) ? path.relative(ROOT, file) : file;
    if (!fs.existsSync(file)) {
      tried.push(`${shown} (missing)`);
      continue;
    }
    try {
      binding = require(file) as NativeBinding;
      bindingFile = file;
      return binding;
    } catch (cause) {
      firstCause ??= cause;
      // Node's ABI message spans lines ("The module ... was compiled against ... NODE_MODULE_VERSION").
      tried.push(`${shown} (${(cause as Error).message.replace(/\s+/g, ' ').slice(0, 240)})`);
    }
  }
  const wanted = `Node ${process.version} (ABI ${process.versions.modules}) on ${process.platform}-${process.arch} ${libc()}`;
  failure = new IpcError(
    'IPC_ERR_NATIVE_UNAVAILABLE',
    `no native addon for ${wanted}: tried ${tried.join('; ')}. This package ships prebuilds for ` +
      `${process.platform}-${process.arch} ${libc()}: ${shippedAbis()} (Node 20, 22, 24 and 26 on linux-x64 and linux-arm64 glibc). ` +
      'Use one of those Node versions, or build from source with `npm rebuild interprocess` ' +
      '(needs python3, make and a C++ compiler; see docs/troubleshooting.md)',
    { cause: firstCause },
  );
  throw failure;
}
