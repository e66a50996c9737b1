/**
 * What the CLI knows about this library's objects: the entries of /dev/shm with our prefix,
 * their header (if they are library objects), POSIX message queues (when an mqueue file system
 * is mounted, the only way the kernel lists them), and which processes have them mapped or open.
 *
 * Attachment comes from the kernel, not from anything a process wrote: /proc/<pid>/maps lists
 * every mapping of /dev/shm/interprocess.<name> and /proc/<pid>/fd every open descriptor, so a
 * process that died (even by SIGKILL) is simply no longer there. Only processes this user may
 * inspect are seen (all of them as root; the same PID namespace).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HEADER_BYTES, MAGIC, kindName, readHeader, type HeaderFields } from '../shm/header.js';
import { listShm, statShm, SHM_DIR, type ShmEntry } from '../os/shm-dir.js';
import { OS_PREFIX } from '../naming.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { MessageQueue } from '../mq/message-queue.js';
import { mqueueMount } from '../os/mqueue.js';
import { describeKind } from './kinds.js';

export interface Attachment {
  pid: number;
  command: string;
}

export interface ObjectInfo extends ShmEntry {
  /** Which kernel namespace the name lives in: shared memory, or POSIX message queues. */
  namespace: 'shm' | 'mqueue';
  kind: string;
  modifiedAt: string;
  header?: HeaderFields & { valid: boolean };
  details?: Record<string, unknown>;
  attached: Attachment[];
}

export interface Attachments {
  shm: Map<string, Attachment[]>;
  mqueue: Map<string, Attachment[]>;
}

/**
 * name -> processes that map it or hold it open (this process excluded). A message-queue
 * descriptor reads back as `/interprocess.<name>` (its path in the mqueue file system).
 */
export function attachments(): Attachments {
  const out: Attachments = { shm: new Map(), mqueue: new Map() };
  const prefix = `${SHM_DIR}/${OS_PREFIX}`;
  const mqPrefix = `/${OS_PREFIX}`;
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return out;
  }
  for (const pidText of pids) {
    const names = new Set<string>();
    const queues = new Set<string>();
    try {
      for (const line of fs.readFileSync(`/proc/${pidText}/maps`, 'utf8').split('\n')) {
        const at = line.indexOf(prefix);
        if (at >= 0 && !line.endsWith('(deleted)')) names.add(line.slice(at + prefix.length).trim());
      }
      for (const fd of fs.readdirSync(`/proc/${pidText}/fd`)) {
        try {
          const target = fs.readlinkSync(`/proc/${pidText}/fd/${fd}`);
          if (target.endsWith('(deleted)')) continue;
          if (target.startsWith(prefix)) names.add(target.slice(prefix.length));
          else if (target.startsWith(mqPrefix)) queues.add(target.slice(mqPrefix.length));
        } catch {
          // the descriptor closed while we looked
        }
      }
    } catch {
      continue; // the process exited, or we may not look at it
    }
    if (names.size === 0 && queues.size === 0) continue;
    let command = '?';
    try {
      // The program that was run (argv[0]), as `ps` prints it: the kernel's comm is the main
      // thread's name, which Node 24 and later set to 'MainThread' in every process.
      const argv0 = fs.readFileSync(`/proc/${pidText}/cmdline`, 'utf8').split('\0')[0] ?? '';
      command = argv0 !== '' ? path.basename(argv0) : fs.readFileSync(`/proc/${pidText}/comm`, 'utf8').trim();
    } catch {
      // exited meanwhile
    }
    for (const [set, map] of [[names, out.shm], [queues, out.mqueue]] as const) {
      for (const name of set) {
        const list = map.get(name) ?? [];
        list.push({ pid: Number(pidText), command });
        map.set(name, list);
      }
    }
  }
  return out;
}

/**
 * Reads an object's header and kind details without trusting it (inspect must show broken
 * ones). Undefined when the object was removed since it was listed: other processes create and
 * remove objects all the time, and a listing must not fail because of it.
 */
export function describe(entry: ShmEntry, attached: Attachment[]): ObjectInfo | undefined {
  const st = fs.statSync(`${SHM_DIR}/${OS_PREFIX}${entry.name}`, { throwIfNoEntry: false });
  if (st === undefined) return undefined;
  const info: ObjectInfo = { ...entry, namespace: 'shm', kind: 'shm', modifiedAt: st.mtime.toISOString(), attached };
  if (entry.byteLength < HEADER_BYTES) return info;
  let shm: SharedMemory;
  try {
    // Reading only: objects of other users are shown too (the CLI never writes through this).
    shm = SharedMemory.open(entry.name, { sizeWait: 0, allowOtherOwner: true });
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

/** A POSIX message queue: its sizes and depth from the kernel, its file from the mqueue mount. */
function describeQueue(name: string, attached: Attachment[], mount: string | undefined): ObjectInfo | undefined {
  let q: MessageQueue;
  try {
    q = MessageQueue.open(name, { allowOtherOwner: true }); // reading only, as for shared memory
  } catch {
    return undefined; // gone meanwhile, or not ours to open
  }
  try {
    const st = mount === undefined ? undefined : fs.statSync(`${mount}/${OS_PREFIX}${name}`, { throwIfNoEntry: false });
    return {
      name,
      namespace: 'mqueue',
      kind: 'MessageQueue',
      byteLength: q.maxMessages * q.maxMessageSize,
      mode: st === undefined ? -1 : st.mode & 0o777,
      uid: st === undefined ? -1 : st.uid,
      modifiedAt: (st?.mtime ?? new Date()).toISOString(),
      details: { depth: q.messageCount, capacity: q.maxMessages, maxMessageSize: q.maxMessageSize },
      attached,
    };
  } finally {
    q.close();
  }
}

/** Message queues are listed only where an mqueue file system is mounted (see MessageQueue.list). */
function queueNames(): string[] {
  try {
    return MessageQueue.list();
  } catch {
    return [];
  }
}

export function listObjects(): ObjectInfo[] {
  const attached = attachments();
  const mount = mqueueMount();
  const queues = queueNames()
    .map((name) => describeQueue(name, attached.mqueue.get(name) ?? [], mount))
    .filter((q): q is ObjectInfo => q !== undefined);
  const shm = listShm()
    .map((entry) => describe(entry, attached.shm.get(entry.name) ?? []))
    .filter((o): o is ObjectInfo => o !== undefined);
  return [...shm, ...queues];
}

/** Every object called `name`: a shared-memory object, a message queue, or both (two namespaces). */
export function findObjects(name: string): ObjectInfo[] {
  const attached = attachments();
  const out: ObjectInfo[] = [];
  const entry = statShm(name);
  const shm = entry === undefined ? undefined : describe(entry, attached.shm.get(name) ?? []);
  if (shm !== undefined) out.push(shm);
  const queue = MessageQueue.exists(name) ? describeQueue(name, attached.mqueue.get(name) ?? [], mqueueMount()) : undefined;
  if (queue !== undefined) out.push(queue);
  return out;
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
