// Compile-time checks: tsc must accept every line without a directive and reject every line
// after `@ts-expect-error` (an unused directive is itself an error). Run by test/types.test.mjs.
import { Queue } from 'interprocess';

interface Job {
  id: number;
}

// No codec: bytes in and out.
const raw = Queue.create('t-types-raw', { capacity: 8 });
raw.trySend(new Uint8Array(4));
const got: Uint8Array | undefined = raw.tryReceive();
// @ts-expect-error a bytes queue does not take objects
raw.trySend({ id: 1 });
// @ts-expect-error naming a message type without a codec that can carry it does not compile
Queue.create<Job>('t-types-job', { capacity: 8 });

// A serializing codec: the type the caller names.
const jobs = Queue.create<Job>('t-types-json', { capacity: 8, codec: 'json' });
jobs.trySend({ id: 1 });
const job: Job | undefined = jobs.tryReceive();
// @ts-expect-error a Job queue takes Jobs
jobs.trySend('text');

// Without a name the values are unknown, which still sends anything.
const loose = Queue.openOrCreate('t-types-any', { capacity: 8, codec: 'msgpack' });
loose.trySend({ anything: true });
// @ts-expect-error unknown must be narrowed before use
loose.tryReceive().id;

// A user codec: its type.
const upper = Queue.open('t-types-codec', {
  codec: { name: 'upper', encode: (s: string) => new TextEncoder().encode(s), decode: (b: Uint8Array) => new TextDecoder().decode(b) },
});
const text: string | undefined = upper.tryReceive();

void [got, job, text];
