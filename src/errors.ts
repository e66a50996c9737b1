/**
 * Coded errors. Every failure the library reports on purpose is an `IpcError` whose `code` is
 * one of the stable `ErrorCode` strings documented in docs/errors.md. Bad arguments are plain
 * `TypeError` / `RangeError`, as in Node's own APIs.
 *
 * The native layer never builds these: it throws `{ errno, syscall }` facts and `fromErrno`
 * below decides which code they mean, so the mapping lives in one place.
 */

export type ErrorCode =
  | 'IPC_ERR_EXISTS'
  | 'IPC_ERR_NOT_FOUND'
  | 'IPC_ERR_INVALID_NAME'
  | 'IPC_ERR_INCOMPATIBLE'
  | 'IPC_ERR_TIMEOUT'
  | 'IPC_ERR_ABORTED'
  | 'IPC_ERR_CLOSED'
  | 'IPC_ERR_OWNER_DEAD'
  | 'IPC_ERR_NOT_RECOVERABLE'
  | 'IPC_ERR_MESSAGE_TOO_LARGE'
  | 'IPC_ERR_PROTOCOL'
  | 'IPC_ERR_NATIVE_UNAVAILABLE'
  | 'IPC_ERR_NO_SPACE'
  | 'IPC_ERR_PERMISSION'
  | 'IPC_ERR_LIMIT'
  | 'IPC_ERR_SYSTEM';

export interface IpcErrorOptions {
  cause?: unknown;
  /** The system call that failed, when an OS call is the origin. */
  syscall?: string;
  /** The OS error name (`ENOENT`, `ENOSPC`...), when an OS call is the origin. */
  errno?: string;
}

export class IpcError extends Error {
  readonly code: ErrorCode;
  readonly syscall?: string;
  readonly errno?: string;

  constructor(code: ErrorCode, message: string, options: IpcErrorOptions = {}) {
    super(`${message} (${code})`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.syscall !== undefined) this.syscall = options.syscall;
    if (options.errno !== undefined) this.errno = options.errno;
  }

  override get name(): string {
    return 'IpcError';
  }
}

/** True when `err` is an IpcError, optionally with the given code. */
export function isIpcError(err: unknown, code?: ErrorCode): err is IpcError {
  return err instanceof IpcError && (code === undefined || err.code === code);
}

/** The shape the native addon throws: an Error with the failing syscall and errno name. */
interface NativeFailure {
  syscall?: string;
  errno?: string;
  message?: string;
}

const errnoCodes: Record<string, ErrorCode> = {
  EEXIST: 'IPC_ERR_EXISTS',
  ENOENT: 'IPC_ERR_NOT_FOUND',
  ENOSPC: 'IPC_ERR_NO_SPACE',
  ENOMEM: 'IPC_ERR_NO_SPACE',
  EFBIG: 'IPC_ERR_NO_SPACE',
  EACCES: 'IPC_ERR_PERMISSION',
  EPERM: 'IPC_ERR_PERMISSION',
  EMFILE: 'IPC_ERR_LIMIT',
  ENFILE: 'IPC_ERR_LIMIT',
  ENAMETOOLONG: 'IPC_ERR_INVALID_NAME',
  EINVAL: 'IPC_ERR_SYSTEM',
};

/**
 * Turns a native failure into a coded IpcError. `what` names the object for the message
 * ("shared memory 'frames'"). Anything that is not a native failure is returned unchanged.
 */
export function fromNative(err: unknown, what: string): unknown {
  const failure = err as NativeFailure | null;
  if (failure === null || typeof failure !== 'object' || typeof failure.errno !== 'string') return err;
  const code = errnoCodes[failure.errno] ?? 'IPC_ERR_SYSTEM';
  const reason = describe[code] ?? `${failure.syscall ?? 'system call'} failed`;
  return new IpcError(code, `${what}: ${reason} [${failure.syscall}: ${failure.errno}]`, {
    cause: err,
    ...(failure.syscall !== undefined ? { syscall: failure.syscall } : {}),
    errno: failure.errno,
  });
}

const describe: Partial<Record<ErrorCode, string>> = {
  IPC_ERR_EXISTS: 'already exists',
  IPC_ERR_NOT_FOUND: 'does not exist',
  IPC_ERR_NO_SPACE: 'not enough space (is /dev/shm full?)',
  IPC_ERR_PERMISSION: 'permission denied',
  IPC_ERR_LIMIT: 'a system limit was reached',
  IPC_ERR_INVALID_NAME: 'name too long for the OS',
};

export function timeoutError(what: string, timeout: number): IpcError {
  return new IpcError('IPC_ERR_TIMEOUT', `${what} timed out after ${timeout} ms`);
}

export function abortError(what: string, reason?: unknown): IpcError {
  return new IpcError('IPC_ERR_ABORTED', `${what} was aborted`, { cause: reason });
}

export function closedError(what: string): IpcError {
  return new IpcError('IPC_ERR_CLOSED', `${what} is closed`);
}
