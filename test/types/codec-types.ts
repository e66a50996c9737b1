// Compile-time checks: tsc must accept every line without a directive and reject every line
// after `@ts-expect-error` (an unused directive is itself an error). Run by test/types.test.mjs.
import { Queue, type Lease } from 'interprocess';

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

// A lease carries the queue's message type.
const leased: Lease<Job> | undefined = jobs.tryLease({ leaseTime: 1000 });
const leasedId: number | undefined = leased?.value.id;
const rawLease: Uint8Array | undefined = raw.tryLease()?.value;
// @ts-expect-error a Job lease's value is a Job
const wrong: string | undefined = leased?.value;
// @ts-expect-error leaseTime is a number of ms
jobs.tryLease({ leaseTime: '1s' });

void [got, job, text, leasedId, rawLease, wrong];
