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
