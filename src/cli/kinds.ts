/**
 * Kind-specific details for `ls` and `inspect` (queue depth, lock owner...). Each kind describes
 * its own body next to its layout, from the same offsets the code that writes them uses
 * (`describe` of the sync layouts, describeQueue in src/queue/layout.ts, describeShmChannel in
 * src/channel/shm/layout.ts, describeMap in src/map/layout.ts, describeTopic in src/topic/layout.ts); a describer gets a validated
 * object's whole buffer (header included) and only reads. Registering a kind is one line in
 * the table below.
 */
import { describeShmChannel } from '../channel/shm/layout.js';
import { describeMap } from '../map/layout.js';
import { describeQueue } from '../queue/layout.js';
import { describeTopic } from '../topic/layout.js';
import { Kind } from '../shm/header.js';
import { barrierLayout } from '../sync/barrier.js';
import { conditionLayout } from '../sync/condition.js';
import { mutexLayout } from '../sync/mutex.js';
import { rwlockLayout } from '../sync/rwlock.js';
import { semaphoreLayout } from '../sync/semaphore.js';

export type Describer = (buffer: SharedArrayBuffer, version: number) => Record<string, unknown>;

const describers = new Map<number, Describer>([
  [Kind.Queue, describeQueue],
  [Kind.Channel, describeShmChannel],
  [Kind.Map, describeMap],
  [Kind.Topic, describeTopic],
  [Kind.Mutex, mutexLayout.describe],
  [Kind.Semaphore, semaphoreLayout.describe],
  [Kind.Condition, conditionLayout.describe],
  [Kind.RWLock, rwlockLayout.describe],
  [Kind.Barrier, barrierLayout.describe],
]);

export function describeKind(kind: number, version: number, buffer: SharedArrayBuffer): Record<string, unknown> | undefined {
  const describer = describers.get(kind);
  if (describer === undefined) return undefined;
  try {
    return describer(buffer, version);
  } catch (err) {
    return { error: (err as Error).message };
  }
}
