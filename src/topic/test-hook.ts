/**
 * A test-only hook that lets the suite stop a publisher at a named instruction of its publish,
 * so that it can be SIGKILLed or SIGSTOPped exactly there. Read once at load from
 *
 *   INTERPROCESS_TEST_TOPIC_PARK=<point>:<n>:<shm name>
 *
 * The n-th time (1-based) this process reaches <point>, it stores the point's number in word 0
 * of the named shared memory, wakes any waiter on it, and sleeps in the kernel until word 1 is
 * non-zero (the test's release). Points, in the order a publish reaches them: 'locked' (slot
 * owner taken, nothing written), 'claimed' (seq says "writing", tail moved), 'written' (payload
 * and length written, not committed), 'committed' (seq committed, owner not yet cleared), and,
 * on CPUs where a claim moves the tail before it marks the slot (x86, ring.ts MOVE_FIRST),
 * 'moved' (tail moved, slot not marked "writing"; between 'locked' and 'claimed').
 * Without the variable the hook is undefined and costs one comparison per publish.
 */
import { SharedMemory } from '../shm/shared-memory.js';
import { futex } from '../os/futex.js';

export const POINTS = ['locked', 'claimed', 'written', 'committed', 'moved'] as const;
export type ParkPoint = (typeof POINTS)[number];

function makeHook(spec: string | undefined): ((point: number) => void) | undefined {
  if (spec === undefined || spec === '') return undefined;
  const [name, count, shmName] = spec.split(':');
  const point = POINTS.indexOf(name as ParkPoint);
  if (point < 0 || !(Number(count) >= 1) || !shmName) throw new Error(`INTERPROCESS_TEST_TOPIC_PARK: expected <point>:<n>:<shm>, got '${spec}'`);
  let left = Number(count);
  let word: Int32Array | undefined;
  return (reached) => {
    if (reached !== point || --left !== 0) return;
    word ??= new Int32Array(SharedMemory.open(shmName).buffer);
    Atomics.store(word, 0, point + 1);
    futex.notify(word, 0);
    while (Atomics.load(word, 1) === 0) futex.wait(word, 1, 0);
  };
}

export const park = makeHook(process.env['INTERPROCESS_TEST_TOPIC_PARK']);
export const LOCKED = 0;
export const CLAIMED = 1;
export const WRITTEN = 2;
export const COMMITTED = 3;
export const MOVED = 4;
