// Compile-time checks of the sync primitives' public surface after their lifecycle moved into
// one base class: each static factory still returns its own class and takes its own options.
// Run by test/types.test.mjs (lines after `@ts-expect-error` must not compile).
import { Barrier, Condition, Mutex, RWLock, Semaphore, SharedMemory } from 'interprocess';

const m: Mutex = Mutex.openOrCreate('t-types-mutex', { mode: 0o600, initTimeout: 100 });
m.lockSync({ timeout: 5 });
const name: string | undefined = m.name;
const closed: boolean = m.closed;
m[Symbol.dispose]();
// @ts-expect-error lockSync takes no signal
m.lockSync({ signal: AbortSignal.abort() });
// @ts-expect-error open takes only initTimeout
Mutex.open('t-types-mutex', { mode: 0o600 });

const s: Semaphore = Semaphore.create('t-types-sem', { initial: 2 });
const permits: number = s.value;
// @ts-expect-error initial is for the creating calls only
Semaphore.openAt(new SharedArrayBuffer(Semaphore.byteLength), 0, { initial: 1 });

const c: Condition = Condition.createAt(SharedMemory.open('t-types-shm'), 64);
const waited: Promise<void> = c.wait(m, { timeout: 5, signal: AbortSignal.timeout(5) });

const rw: RWLock = RWLock.openAt(new SharedArrayBuffer(RWLock.byteLength), 0);
const read: Promise<void> = rw.readLock();

const b: Barrier = Barrier.create('t-types-barrier', { parties: 3 });
const parties: number = b.parties;
const last: boolean = b.waitSync();
// @ts-expect-error parties is required to create a Barrier
Barrier.create('t-types-barrier');

void [name, closed, permits, waited, read, parties, last];
