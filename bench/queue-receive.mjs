// The receive side alone, in one process (no scheduler, no second core): send one message,
// time taking it out, over and over. What each way of receiving costs per message:
//   plain  tryReceive: a private copy, fresh memory per message
//   loan   tryReceiveLoan: a copy into the handle's reused loan buffer
//   with   tryReceiveWith(view => mine.set(view)): a copy into the caller's reused buffer
//
//   node bench/queue-receive.mjs plain|loan|with [size] [count]
// Run under `/usr/bin/time -v` to see the page faults a plain receive of large messages pays.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Queue } = require('../dist/cjs/index.js');
const [mode, sizeArg, countArg] = process.argv.slice(2);
const size = Number(sizeArg ?? 1 << 20);
const count = Number(countArg ?? 2000);
if (!['plain', 'loan', 'with'].includes(mode)) throw new Error('mode: plain, loan or with');
const q = Queue.create(`bench-q-receive-${process.pid}`, { capacity: 8, maxMessageSize: size });
const payload = new Uint8Array(size).fill(3);
const mine = new Uint8Array(size);
const read = (view) => mine.set(view);
let receiveNs = 0n;
let kept; // holds the last message, as a caller would
const c0 = process.cpuUsage();
try {
  for (let i = 0; i < count; i++) {
    q.trySend(payload);
    const t0 = process.hrtime.bigint();
    if (mode === 'plain') kept = q.tryReceive();
    else if (mode === 'loan') kept = q.tryReceiveLoan();
    else q.tryReceiveWith(read);
    receiveNs += process.hrtime.bigint() - t0;
  }
} finally {
  q.close();
  Queue.remove(q.name);
}
const c = process.cpuUsage(c0);
void kept;
console.log(JSON.stringify({
  mode,
  size,
  count,
  receiveBytesPerSecond: (count * size) / (Number(receiveNs) / 1e9),
  receiveUs: Number(receiveNs) / count / 1e3,
  cpuUsPerMessageBothSides: (c.user + c.system) / count,
}));
