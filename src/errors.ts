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
  | 'IPC_ERR_DEADLOCK'
  | 'IPC_ERR_NOT_OWNER'
  | 'IPC_ERR_FULL'
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

/**
 * An OS failure as either side reports it: the addon throws `{ errno: 'ENOENT', syscall }`;
 * Node's fs/net errors carry the name in `code` (and a number in `errno`).
 */
interface OsFailure {
  syscall?: string;
  errno?: unknown;
  code?: unknown;
  message?: string;
}

/** What the failing call was doing, where the same errno means different things. */
export type ErrnoContext = 'open' | 'listen' | 'connect' | 'io';

interface ErrnoMeaning {
  code: ErrorCode;
  reason: string;
}

/**
 * The one errno table. A row's `context` entries override its default where the call decides
 * the meaning (ENOENT from listen is a missing directory, from connect a missing server).
 */
const ERRNO: Record<string, ErrnoMeaning & { context?: Partial<Record<ErrnoContext, ErrnoMeaning>> }> = {
  EEXIST: { code: 'IPC_ERR_EXISTS', reason: 'already exists' },
  EADDRINUSE: { code: 'IPC_ERR_EXISTS', reason: 'the address is in use' },
  ENOENT: {
    code: 'IPC_ERR_NOT_FOUND',
    reason: 'does not exist',
    context: {
      listen: { code: 'IPC_ERR_NOT_FOUND', reason: 'the directory does not exist' },
      connect: { code: 'IPC_ERR_NOT_FOUND', reason: 'no server is listening' },
    },
  },
  ECONNREFUSED: { code: 'IPC_ERR_NOT_FOUND', reason: 'no server is listening' },
  ENXIO: { code: 'IPC_ERR_NOT_FOUND', reason: 'no server is listening' },
  ENOSPC: { code: 'IPC_ERR_NO_SPACE', reason: 'not enough space (is /dev/shm full?)' },
  ENOMEM: { code: 'IPC_ERR_NO_SPACE', reason: 'not enough memory' },
  EFBIG: { code: 'IPC_ERR_NO_SPACE', reason: 'larger than the system allows' },
  EACCES: { code: 'IPC_ERR_PERMISSION', reason: 'permission denied' },
  ELOOP: { code: 'IPC_ERR_PERMISSION', reason: 'is a symbolic link, which is never followed' },
  EPERM: { code: 'IPC_ERR_PERMISSION', reason: 'operation not permitted' },
  EMFILE: { code: 'IPC_ERR_LIMIT', reason: 'this process has too many open files (ulimit -n)' },
  ENFILE: { code: 'IPC_ERR_LIMIT', reason: 'the system has too many open files' },
  ENAMETOOLONG: { code: 'IPC_ERR_INVALID_NAME', reason: 'name too long for the OS' },
  EPIPE: { code: 'IPC_ERR_CLOSED', reason: 'the peer closed the connection' },
  ECONNRESET: { code: 'IPC_ERR_CLOSED', reason: 'the peer reset the connection' },
  EMSGSIZE: { code: 'IPC_ERR_MESSAGE_TOO_LARGE', reason: 'message too large' },
  ETIMEDOUT: { code: 'IPC_ERR_TIMEOUT', reason: 'timed out' },
};

/** The errno name of an OS failure, or undefined when `err` is not one. */
export function errnoOf(err: unknown): string | undefined {
  const failure = err as OsFailure | null;
  if (failure === null || typeof failure !== 'object') return undefined;
  if (typeof failure.errno === 'string') return failure.errno;
  if (typeof failure.code === 'string' && /^E[A-Z0-9]+$/.test(failure.code)) return failure.code;
  return undefined;
}

/**
 * Turns an OS failure into a coded IpcError. `what` names the object or operation for the
 * message ("shared memory 'frames'"); `context` picks the meaning where it depends on the call.
 * Anything that is not an OS failure (already coded, or a bug) is returned unchanged.
 */
export function errnoError(err: unknown, what: string, context?: ErrnoContext): unknown {
  const errno = errnoOf(err);
  if (errno === undefined) return err;
  const failure = err as OsFailure;
  const row = ERRNO[errno];
  const meaning = (context !== undefined ? row?.context?.[context] : undefined) ?? row;
  const syscall = typeof failure.syscall === 'string' ? failure.syscall : undefined;
  const reason = meaning?.reason ?? failure.message ?? `${syscall ?? 'system call'} failed`;
  return new IpcError(meaning?.code ?? 'IPC_ERR_SYSTEM', `${what}: ${reason} [${syscall ?? 'system call'}: ${errno}]`, {
    cause: err,
    ...(syscall !== undefined ? { syscall } : {}),
    errno,
  });
}

export function timeoutError(what: string, timeout: number): IpcError {
  return new IpcError('IPC_ERR_TIMEOUT', `${what} timed out after ${timeout} ms`);
}

export function abortError(what: string, reason?: unknown): IpcError {
  return new IpcError('IPC_ERR_ABORTED', `${what} was aborted`, { cause: reason });
}

export function closedError(what: string): IpcError {
  return new IpcError('IPC_ERR_CLOSED', `${what} is closed`);
}

/**
 * An existing object owned by another uid, opened without `allowOtherOwner`: whoever created a
 * name first controls what is in it (squatting), so it is never used silently.
 */
export function otherOwnerError(what: string, uid: number): IpcError {
  return new IpcError(
    'IPC_ERR_PERMISSION',
    `${what}: owned by uid ${uid}, not by this process (uid ${process.geteuid?.() ?? '?'}); another user created it, ` +
      'and could read and change everything in it. Remove it, or pass { allowOtherOwner: true } if it is shared between users on purpose',
  );
}
