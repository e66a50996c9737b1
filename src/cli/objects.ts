/**
 * What the CLI knows about this library's objects: the entries of /dev/shm with our prefix,
 * their header (if they are library objects), and which processes have them mapped or open.
 *
 * Attachment comes from the kernel, not from anything a process wrote: /proc/<pid>/maps lists
 * every mapping of /dev/shm/interprocess.<name> and /proc/<pid>/fd every open descriptor, so a
 * process that died (even by SIGKILL) is simply no longer there. Only processes this user may
 * inspect are seen (all of them as root; the same PID namespace).
 */
import * as fs from 'node:fs';
import { HEADER_BYTES, MAGIC, kindName, readHeader, type HeaderFields } from '../shm/header.js';
import { listShm, statShm, SHM_DIR, type ShmEntry } from '../shm/platform.js';
import { OS_PREFIX } from '../naming.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { describeKind } from './kinds.js';

export interface Attachment {
  pid: number;
  command: string;
}

export interface ObjectInfo extends ShmEntry {
  kind: string;
  modifiedAt: string;
  header?: HeaderFields & { valid: boolean };
  details?: Record<string, unknown>;
  attached: Attachment[];
}

/** name -> processes that map it or hold it open (this process excluded). */
export function attachments(): Map<string, Attachment[]> {
  const out = new Map<string, Attachment[]>();
  const prefix = `${SHM_DIR}/${OS_PREFIX}`;
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return out;
  }
  for (const pidText of pids) {
    const names = new Set<string>();
    try {
      for (const line of fs.readFileSync(`/proc/${pidText}/maps`, 'utf8').split('\n')) {
        const at = line.indexOf(prefix);
        if (at >= 0 && !line.endsWith('(deleted)')) names.add(line.slice(at + prefix.length).trim());
      }
      for (const fd of fs.readdirSync(`/proc/${pidText}/fd`)) {
        try {
          const target = fs.readlinkSync(`/proc/${pidText}/fd/${fd}`);
          if (target.startsWith(prefix) && !target.endsWith('(deleted)')) names.add(target.slice(prefix.length));
        } catch {
          // the descriptor closed while we looked
        }
      }
    } catch {
      continue; // the process exited, or we may not look at it
    }
    if (names.size === 0) continue;
    let command = '?';
    try {
      command = fs.readFileSync(`/proc/${pidText}/comm`, 'utf8').trim();
    } catch {
      // exited meanwhile
    }
    for (const name of names) {
      const list = out.get(name) ?? [];
      list.push({ pid: Number(pidText), command });
      out.set(name, list);
    }
  }
  return out;
}

/** Reads an object's header and kind details without trusting it (inspect must show broken ones). */
export function describe(entry: ShmEntry, attached: Attachment[]): ObjectInfo {
  const modifiedAt = fs.statSync(`${SHM_DIR}/${OS_PREFIX}${entry.name}`).mtime.toISOString();
  const info: ObjectInfo = { ...entry, kind: 'shm', modifiedAt, attached };
  if (entry.byteLength < HEADER_BYTES) return info;
  let shm: SharedMemory;
  try {
    shm = SharedMemory.open(entry.name, { sizeWait: 0 });
  } catch {
    return info; // not readable by us: show what stat says
  }
  try {
    const header = readHeader(shm.buffer);
    if (header.magic !== MAGIC) return info; // raw shared memory: the bytes are the user's
    const valid = header.state === 1 && header.byteLength === shm.byteLength;
    info.kind = kindName(header.kind);
    info.header = { ...header, valid };
    if (valid) info.details = describeKind(header.kind, header.version, shm.buffer);
    return info;
  } finally {
    shm.close();
  }
}

export function listObjects(): ObjectInfo[] {
  const attached = attachments();
  return listShm().map((entry) => describe(entry, attached.get(entry.name) ?? []));
}

export function findObject(name: string): ObjectInfo | undefined {
  const entry = statShm(name);
  return entry === undefined ? undefined : describe(entry, attachments().get(name) ?? []);
}

/** True when a pid names a live process (informational: PIDs can be reused). */
export function pidAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
