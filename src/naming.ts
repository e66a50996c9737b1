/**
 * The one place that turns a user's name into an OS object name.
 *
 * Every object this library creates in the shared-memory namespace is called
 * `/interprocess.<name>`, so `SharedMemory.list()` (and the CLI) can tell ours from everyone
 * else's by the prefix alone. POSIX message queues live in their own kernel namespace and get
 * the same prefix there.
 */
import { IpcError } from './errors.js';

export const OS_PREFIX = 'interprocess.';
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** Throws TypeError for a non-string and IPC_ERR_INVALID_NAME for a string that breaks the rules. */
export function validateName(name: unknown): string {
  if (typeof name !== 'string') {
    throw new TypeError(`name must be a string, got ${name === null ? 'null' : typeof name}`);
  }
  if (!NAME_PATTERN.test(name)) {
    throw new IpcError(
      'IPC_ERR_INVALID_NAME',
      `invalid name ${JSON.stringify(name.length > 60 ? name.slice(0, 60) + '...' : name)}: ` +
        'use 1 to 200 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit',
    );
  }
  return name;
}

/**
 * How a named object is opened; every kind has these three verbs: `create` fails if the name
 * exists (O_CREAT|O_EXCL), `open` fails if it is missing, `openOrCreate` does whichever applies.
 */
export type How = 'create' | 'open' | 'openOrCreate';

/** The addon's number for each verb (the `how` argument of shmOpen and mq open). */
export const HOW_CODE = { create: 0, open: 1, openOrCreate: 2 } as const satisfies Record<How, number>;

/** `frames` becomes `/interprocess.frames` (the argument shm_open and mq_open take). */
export function osName(name: string): string {
  return '/' + OS_PREFIX + validateName(name);
}

/** The user name for an entry of /dev/shm, or undefined when the entry is not ours. */
export function userNameOf(entry: string): string | undefined {
  if (!entry.startsWith(OS_PREFIX)) return undefined;
  const name = entry.slice(OS_PREFIX.length);
  return NAME_PATTERN.test(name) ? name : undefined;
}

