/**
 * Linux-specific facts about the shared-memory namespace, kept in one place so that another
 * platform only has to replace this file (and native/).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OS_PREFIX, userNameOf } from '../naming.js';

/** Where glibc's shm_open keeps its objects. */
export const SHM_DIR = '/dev/shm';

export interface ShmEntry {
  name: string;
  byteLength: number;
  mode: number;
  uid: number;
}

/** This library's objects in /dev/shm, sorted by name. */
export function listShm(): ShmEntry[] {
  let entries: string[];
  try {
    entries = fs.readdirSync(SHM_DIR);
  } catch {
    return [];
  }
  const out: ShmEntry[] = [];
  for (const entry of entries.sort()) {
    const name = userNameOf(entry);
    if (name === undefined) continue;
    const info = statShm(name);
    if (info !== undefined) out.push(info);
  }
  return out;
}

export function statShm(name: string): ShmEntry | undefined {
  try {
    const st = fs.lstatSync(path.join(SHM_DIR, OS_PREFIX + name));
    if (!st.isFile()) return undefined;
    return { name, byteLength: st.size, mode: st.mode & 0o777, uid: st.uid };
  } catch {
    return undefined;
  }
}

/** What readShmHead saw: the object's size and its first bytes. */
export interface ShmHead {
  byteLength: number;
  head: Uint8Array;
}

/**
 * The size and the first `bytes` bytes of object `name`, read through a descriptor of its own
 * that is closed again at once: never mapped, and never waiting (O_NONBLOCK; O_NOFOLLOW as
 * shm_open). Undefined when it is missing, not a regular file, or not readable by us. For a
 * server that must decide, without blocking its event loop, whether an object a stranger made
 * is ready to be opened.
 */
export function readShmHead(name: string, bytes: number): ShmHead | undefined {
  const file = path.join(SHM_DIR, OS_PREFIX + name);
  let fd: number;
  try {
    // lstat first: never open what is not a regular file (a device's open may act).
    if (!fs.lstatSync(file).isFile()) return undefined;
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return undefined;
    const head = new Uint8Array(Math.min(bytes, st.size));
    const got = head.length === 0 ? 0 : fs.readSync(fd, head, 0, head.length, 0);
    return { byteLength: st.size, head: head.subarray(0, got) };
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}
