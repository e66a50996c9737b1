/**
 * SharedMemory: a named POSIX shared-memory object mapped into this process and handed to
 * JavaScript as a real SharedArrayBuffer.
 *
 * - create: shm_open(O_CREAT|O_EXCL) with the mode forced by fchmod (not subject to umask), then
 *   posix_fallocate reserves every page so a full /dev/shm is IPC_ERR_NO_SPACE, never SIGBUS.
 * - open: finds the object and maps its real size (fstat). An object whose creator has not yet
 *   sized it is waited for, briefly (`sizeWait` ms), then refused with IPC_ERR_INCOMPATIBLE.
 *   An object owned by another user (another uid created the name first, or it is shared on
 *   purpose) is refused with IPC_ERR_PERMISSION unless the caller passes `allowOtherOwner`:
 *   whoever owns it can read and change everything in it, and can change its mode.
 * - close: drops this object's reference. The pages are unmapped by V8 when no JavaScript
 *   object can reach the buffer any more (including copies posted to workers), so closing can
 *   never leave a dangling view and nothing can crash the process.
 *
 * The bytes belong to the user entirely: raw shared memory has no header. The library's own
 * objects (locks, queues) are shared memory with a header, see header.ts and segment.ts.
 */
import { IpcError, closedError, errnoError, otherOwnerError } from '../errors.js';
import { native } from '../os/native.js';
import { HOW_CODE, osName, validateName, type How } from '../naming.js';
import { checkBoolean, checkInteger, checkOptions } from '../options.js';
import { listShm, statShm } from '../os/shm-dir.js';

export interface SharedMemoryCreateOptions {
  /** Size in bytes, 1 to 2^46. */
  byteLength: number;
  /** Permission bits, 0o600 (owner only) by default, applied regardless of umask. */
  mode?: number;
}

export interface SharedMemoryOpenOptions {
  /** If given, the object must have exactly this size, or IPC_ERR_INCOMPATIBLE. */
  byteLength?: number;
  /** How long to wait for a creator that has created but not yet sized the object (ms). */
  sizeWait?: number;
  /**
   * Accept an existing object owned by another user (default false: IPC_ERR_PERMISSION). Only
   * for objects shared between users on purpose; the owner controls the memory and its mode.
   */
  allowOtherOwner?: boolean;
}

const MAX_BYTE_LENGTH = 2 ** 46;
const DEFAULT_SIZE_WAIT = 1000;

const token = Symbol('SharedMemory');

/** The owner uid and permission bits of a mapped object, as fstat saw them when it was opened. */
export interface ObjectStat {
  uid: number;
  mode: number;
}

let statOf: (shm: SharedMemory) => ObjectStat;

/** @internal The owner and mode of the object behind `shm` (shm:// clamps modes with it). */
export function objectStat(shm: SharedMemory): ObjectStat {
  return statOf(shm);
}

export class SharedMemory {
  readonly name: string;
  readonly byteLength: number;
  /** True when this call created the object (false when it opened an existing one). */
  readonly created: boolean;
  #buffer: SharedArrayBuffer | undefined;
  readonly #stat: ObjectStat;

  static {
    statOf = (shm) => shm.#stat;
  }

  /** @internal use create / open / openOrCreate */
  constructor(key: symbol, name: string, buffer: SharedArrayBuffer, created: boolean, stat: ObjectStat) {
    if (key !== token) throw new TypeError('use SharedMemory.create, open or openOrCreate');
    this.name = name;
    this.byteLength = buffer.byteLength;
    this.created = created;
    this.#buffer = buffer;
    this.#stat = stat;
  }

  /** Creates `name`; fails with IPC_ERR_EXISTS if it exists. */
  static create(name: string, options: SharedMemoryCreateOptions): SharedMemory {
    const opts = checkOptions<SharedMemoryCreateOptions>(options, ['byteLength', 'mode'], 'SharedMemory.create');
    return map(name, 'create', createArgs(opts, 'SharedMemory.create'), {});
  }

  /** Opens an existing `name`; fails with IPC_ERR_NOT_FOUND if it is missing. */
  static open(name: string, options?: SharedMemoryOpenOptions): SharedMemory {
    const opts = checkOptions<SharedMemoryOpenOptions>(options, ['byteLength', 'sizeWait', 'allowOtherOwner'], 'SharedMemory.open');
    return map(name, 'open', { byteLength: 0, mode: 0 }, opts);
  }

  /** Opens `name`, creating it if it is missing. An existing object must have the same size. */
  static openOrCreate(
    name: string,
    options: SharedMemoryCreateOptions & Pick<SharedMemoryOpenOptions, 'sizeWait' | 'allowOtherOwner'>,
  ): SharedMemory {
    const opts = checkOptions<SharedMemoryCreateOptions & SharedMemoryOpenOptions>(
      options,
      ['byteLength', 'mode', 'sizeWait', 'allowOtherOwner'],
      'SharedMemory.openOrCreate',
    );
    const args = createArgs(opts, 'SharedMemory.openOrCreate');
    const { sizeWait, allowOtherOwner } = opts;
    return map(name, 'openOrCreate', args, { byteLength: args.byteLength, ...(sizeWait !== undefined ? { sizeWait } : {}), ...(allowOtherOwner !== undefined ? { allowOtherOwner } : {}) });
  }

  /** Removes the name. Processes that have it mapped keep their memory. True if it existed. */
  static remove(name: string): boolean {
    const os = osName(name);
    try {
      return native().shmUnlink(os);
    } catch (err) {
      throw errnoError(err, `shared memory '${name}'`);
    }
  }

  static exists(name: string): boolean {
    validateName(name);
    return statShm(name) !== undefined;
  }

  /** Names of this library's shared-memory objects (raw segments and the library's own objects). */
  static list(): string[] {
    return listShm().map((entry) => entry.name);
  }

  /** The mapped bytes. The same memory in every process that opened this name. */
  get buffer(): SharedArrayBuffer {
    if (this.#buffer === undefined) throw closedError(`shared memory '${this.name}'`);
    return this.#buffer;
  }

  get closed(): boolean {
    return this.#buffer === undefined;
  }

  /**
   * Idempotent. Closes the descriptor at once; views made from `buffer` stay valid, and the pages
   * go when nothing can reach them. Locks, queues and other handles already opened on this
   * memory keep working; opening a new one on this `buffer` needs an open SharedMemory.
   */
  close(): void {
    const buffer = this.#buffer;
    this.#buffer = undefined;
    if (buffer !== undefined) native().shmRelease(buffer);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function createArgs(opts: Partial<SharedMemoryCreateOptions>, where: string): { byteLength: number; mode: number } {
  if (opts.byteLength === undefined) throw new TypeError(`${where}: option 'byteLength' is required`);
  const byteLength = checkInteger(opts.byteLength, `${where}: byteLength`, 1, MAX_BYTE_LENGTH);
  const mode = opts.mode === undefined ? 0o600 : checkInteger(opts.mode, `${where}: mode`, 0, 0o777);
  return { byteLength, mode };
}

function map(
  name: string,
  how: How,
  create: { byteLength: number; mode: number },
  open: Partial<SharedMemoryOpenOptions>,
): SharedMemory {
  const os = osName(name);
  const what = `shared memory '${name}'`;
  const sizeWait = open.sizeWait === undefined ? DEFAULT_SIZE_WAIT : checkInteger(open.sizeWait, 'sizeWait', 0, 60_000);
  if (open.byteLength !== undefined) checkInteger(open.byteLength, 'byteLength', 1, MAX_BYTE_LENGTH);
  const allowOtherOwner = checkBoolean(open.allowOtherOwner, 'allowOtherOwner') ?? false;
  let result;
  try {
    result = native().shmOpen(os, HOW_CODE[how], create.mode, create.byteLength, sizeWait, allowOtherOwner);
  } catch (err) {
    throw errnoError(err, what);
  }
  if (result.refused === 'type') {
    throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: not a regular file (mode 0o${result.mode.toString(8)}); it was left alone`);
  }
  if (result.refused === 'owner') throw otherOwnerError(what, result.uid);
  if (result.buffer === undefined) {
    throw new IpcError(
      'IPC_ERR_INCOMPATIBLE',
      `${what}: size is 0 after waiting ${sizeWait} ms (its creator may have died while creating it)`,
    );
  }
  if (!result.created && open.byteLength !== undefined && result.byteLength !== open.byteLength) {
    throw new IpcError(
      'IPC_ERR_INCOMPATIBLE',
      `${what}: size is ${result.byteLength} bytes, expected ${open.byteLength}`,
    );
  }
  return new SharedMemory(token, name, result.buffer, result.created, { uid: result.uid, mode: result.mode });
}
