/**
 * Linux facts about POSIX message queues, kept in one place: where the kernel's limits are
 * published, how to find the mqueue file system (for listing), and how an errno from mq_open /
 * mq_send becomes an error that tells the user which limit to raise.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IpcError, closedError, errnoError } from '../errors.js';
import { OS_PREFIX, userNameOf } from '../naming.js';
import { native, type NativeBinding } from './native.js';

export const LIMITS_DIR = '/proc/sys/fs/mqueue';
// The kernel's ceilings for a process with CAP_SYS_RESOURCE (include/linux/ipc_namespace.h).
const HARD_MSGMAX = 65536;
const HARD_MSGSIZEMAX = 16 * 1024 * 1024;
const CAP_SYS_RESOURCE = 24;

function readNumber(file: string): number | undefined {
  try {
    const value = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Whether this process may exceed msg_max / msgsize_max / queues_max (up to the hard limits). */
function hasSysResource(): boolean {
  try {
    const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:'));
    if (line === undefined) return false;
    return ((BigInt('0x' + line.slice(7).trim()) >> BigInt(CAP_SYS_RESOURCE)) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** The limits that apply to this process's creates: { maxMessages, maxMessageSize } ceilings. */
export function creationLimits(): { maxMessages: number; maxMessageSize: number; privileged: boolean } {
  const privileged = hasSysResource();
  if (privileged) return { maxMessages: HARD_MSGMAX, maxMessageSize: HARD_MSGSIZEMAX, privileged };
  return {
    maxMessages: readNumber(path.join(LIMITS_DIR, 'msg_max')) ?? 10,
    maxMessageSize: readNumber(path.join(LIMITS_DIR, 'msgsize_max')) ?? 8192,
    privileged,
  };
}

/** What the kernel charges to RLIMIT_MSGQUEUE for a queue (ipc/mqueue.c: pointers, tree nodes, data). */
export function chargedBytes(maxMessages: number, maxMessageSize: number): number {
  return maxMessages * (8 + 48 + maxMessageSize);
}

/** Where an mqueue file system is mounted (usually /dev/mqueue), from /proc/self/mountinfo. */
export function mqueueMount(): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (right === undefined || right.split(' ')[0] !== 'mqueue') continue;
    // Field 5 is the mount point, with spaces and the like escaped as octal.
    const mountPoint = left!.split(' ')[4];
    if (mountPoint !== undefined) return mountPoint.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  }
  return undefined;
}

/** This library's queues, from the mqueue file system; throws when none is mounted. */
export function listQueues(): string[] {
  const dir = mqueueMount();
  if (dir === undefined) {
    throw new IpcError(
      'IPC_ERR_SYSTEM',
      'MessageQueue.list: no mqueue file system is mounted, so the kernel offers no way to list queues ' +
        '(as root: mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue). ' +
        'Everything else in MessageQueue works without it',
    );
  }
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch (err) {
    throw errnoError(err, `MessageQueue.list (${dir})`);
  }
  return entries
    .filter((e) => e.startsWith(OS_PREFIX))
    .map((e) => userNameOf(e))
    .filter((n): n is string => n !== undefined)
    .sort();
}

interface NativeFailure {
  errno?: string;
  syscall?: string;
}

/**
 * Turns a native failure of a message-queue call into a coded error. `creating` carries the
 * requested sizes when the call tried to create the queue, so that a refused size names the
 * kernel limit and its value.
 */
export function mqError(
  err: unknown,
  what: string,
  creating?: { maxMessages: number; maxMessageSize: number },
): unknown {
  const failure = err as NativeFailure | null;
  if (failure === null || typeof failure !== 'object' || typeof failure.errno !== 'string') return err;
  const facts = { cause: err, errno: failure.errno, ...(failure.syscall !== undefined ? { syscall: failure.syscall } : {}) };
  const tag = `[${failure.syscall}: ${failure.errno}]`;
  switch (failure.errno) {
    case 'EINVAL':
      if (creating !== undefined && failure.syscall === 'mq_open') {
        const limits = creationLimits();
        const where = (file: string, hard: number): string =>
          limits.privileged
            ? `the kernel's hard limit ${hard} (this process has CAP_SYS_RESOURCE, so ${LIMITS_DIR}/${file} does not apply)`
            : `the system limit ${LIMITS_DIR}/${file} = ${file === 'msg_max' ? limits.maxMessages : limits.maxMessageSize}` +
              ` (raise it as root, e.g. sysctl fs.mqueue.${file}=N)`;
        if (creating.maxMessages > limits.maxMessages) {
          return new IpcError('IPC_ERR_LIMIT', `${what}: maxMessages ${creating.maxMessages} exceeds ${where('msg_max', HARD_MSGMAX)} ${tag}`, facts);
        }
        if (creating.maxMessageSize > limits.maxMessageSize) {
          return new IpcError(
            'IPC_ERR_LIMIT',
            `${what}: maxMessageSize ${creating.maxMessageSize} exceeds ${where('msgsize_max', HARD_MSGSIZEMAX)} ${tag}`,
            facts,
          );
        }
        return new IpcError(
          'IPC_ERR_LIMIT',
          `${what}: the kernel refused maxMessages ${creating.maxMessages} x maxMessageSize ${creating.maxMessageSize} ${tag}`,
          facts,
        );
      }
      break;
    case 'EMFILE': {
      let limits: ReturnType<NativeBinding['mqLimits']> | undefined;
      try {
        limits = native().mqLimits();
      } catch {
        // cannot tell which limit: the message names both
      }
      if (limits !== undefined && !limits.descriptorAvailable) {
        return new IpcError('IPC_ERR_LIMIT', `${what}: this process has no file descriptors left (ulimit -n = ${limits.openFiles}) ${tag}`, facts);
      }
      const need = creating === undefined ? '' : `; this queue needs about ${chargedBytes(creating.maxMessages, creating.maxMessageSize)} bytes`;
      return new IpcError(
        'IPC_ERR_LIMIT',
        `${what}: RLIMIT_MSGQUEUE (ulimit -q) = ${limits?.msgqueueBytes ?? 'unknown'} bytes for all queues of this user is used up${need}. ` +
          `Remove unused queues, make them smaller, or raise the limit` +
          `${limits === undefined ? ' (or the process ran out of file descriptors, ulimit -n)' : ''} ${tag}`,
        facts,
      );
    }
    case 'ENOSPC':
      return new IpcError(
        'IPC_ERR_LIMIT',
        `${what}: the system's queue count limit ${LIMITS_DIR}/queues_max = ${readNumber(path.join(LIMITS_DIR, 'queues_max')) ?? 'unknown'} is reached ${tag}`,
        facts,
      );
    case 'EMSGSIZE':
      return new IpcError('IPC_ERR_MESSAGE_TOO_LARGE', `${what}: message larger than the queue's maxMessageSize ${tag}`, facts);
    case 'EBADF':
      return closedError(what);
  }
  return errnoError(err, what);
}
