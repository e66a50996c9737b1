// A job queue that loses nothing when a worker dies: two worker processes take jobs as leases
// and acknowledge each one when it is done. Worker a crashes (SIGKILL) in the middle of its
// 20th job; the job it held is delivered again, to worker b, and every job gets done.
// (With a plain `receive()` instead of `lease()`, that job would be lost.)
import { fork } from 'node:child_process';
import { Queue } from 'interprocess';

const name = process.argv[2] ?? `example-job-queue-${process.pid}`;
const JOBS = 200;

if (process.argv[3] === 'worker') {
  const worker = process.argv[4];
  const q = Queue.open(name, { codec: 'json', stallTimeout: 200 });
  let count = 0;
  for (;;) {
    let job;
    try {
      job = await q.lease({ timeout: 2000 });
    } catch (err) {
      if (err.code === 'IPC_ERR_TIMEOUT') break; // no more work
      throw err;
    }
    process.send({ started: job.value.id, worker });
    await new Promise((resolve) => setTimeout(resolve, 2)); // the work
    if (worker === 'a' && ++count === 20) process.kill(process.pid, 'SIGKILL'); // a crash, mid-job
    process.send({ done: job.value.id, worker });
    job.ack(); // done: only now does the job leave the queue
  }
  q.close();
  process.disconnect();
} else {
  const q = Queue.create(name, { capacity: 256, maxMessageSize: 256, codec: 'json', stallTimeout: 200 });
  try {
    const done = new Map();
    const started = new Map();
    const workers = ['a', 'b'].map((worker) => {
      const child = fork(new URL(import.meta.url).pathname, [name, 'worker', worker]);
      child.on('message', (m) => {
        if (m.started !== undefined) started.set(m.started, [...(started.get(m.started) ?? []), m.worker]);
        if (m.done !== undefined) done.set(m.done, (done.get(m.done) ?? 0) + 1);
      });
      return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ worker, code, signal })));
    });
    for (let id = 0; id < JOBS; id++) await q.send({ id });
    const exits = await Promise.all(workers);
    const crashed = exits.filter((e) => e.signal === 'SIGKILL').map((e) => e.worker);
    const again = [...started].filter(([, by]) => by.length > 1);
    const missing = Array.from({ length: JOBS }, (_, id) => id).filter((id) => !done.has(id));
    console.log(`worker ${crashed.join(', ')} crashed in the middle of a job`);
    for (const [id, by] of again) console.log(`job ${id} was started by ${by.join(', then ')}: delivered again after the crash`);
    console.log(missing.length === 0 ? `all ${JOBS} jobs done, none lost` : `LOST: ${missing.join(', ')}`);
    console.log(`queue stats: redelivered ${q.stats().redelivered}, leased ${q.stats().leased}, depth ${q.stats().depth}`);
    if (missing.length !== 0) process.exitCode = 1;
  } finally {
    q.close();
    Queue.remove(name);
  }
}
