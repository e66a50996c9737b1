// A job queue in shared memory: two producer processes send numbered jobs, this process takes
// them out. Every job arrives exactly once, in order per producer.
import { fork } from 'node:child_process';
import { Queue } from 'interprocess';

const name = process.argv[2] ?? `example-queue-${process.pid}`;
const JOBS = 1000;

if (process.argv[3] === 'producer') {
  const q = Queue.open(name, { codec: 'msgpack' });
  for (let seq = 0; seq < JOBS; seq++) await q.send({ producer: process.argv[4], seq }); // waits when full
  q.close();
} else {
  const q = Queue.create(name, { byteLength: 1 << 16, maxMessageSize: 256, codec: 'msgpack' });
  try {
    for (const p of ['a', 'b']) fork(new URL(import.meta.url).pathname, [name, 'producer', p]);
    const next = { a: 0, b: 0 };
    for (let received = 0; received < 2 * JOBS; received++) {
      const job = await q.receive({ timeout: 10_000 });
      if (job.seq !== next[job.producer]++) throw new Error(`out of order: ${JSON.stringify(job)}`);
    }
    console.log(`received ${next.a} jobs from a and ${next.b} from b, each in order`);
    console.log(`queue stats: ${JSON.stringify(q.stats())}`);
  } finally {
    q.close();
    Queue.remove(name);
  }
}
