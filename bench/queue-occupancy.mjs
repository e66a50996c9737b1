// Which side of a one-way queue stream is the bottleneck, at a given message size: a producer
// (this process, CPU 0) and a consumer (a child, CPU 1), both calling the non-blocking
// trySend / tryReceive in a loop as the spinning bench rows do, count how often they find the
// queue full and empty. A producer that finds it full on most attempts waits for the consumer,
// and the other way round. Then, in this process alone (no second core), what one send and one
// receive cost when nobody else touches the lines: a queue filled, then drained, over and over.
//
//   node bench/queue-occupancy.mjs [size] [count] [rounds]
//
// Prints one JSON line per round (the pair) and one for the solo costs (median of its loops).
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { capacityFor, pinSelf, stamp } from './util.mjs';

const require = createRequire(import.meta.url);
const { Queue } = require('../dist/cjs/index.js');
const self = fileURLToPath(import.meta.url);

if (process.argv[2] === 'consumer') {
  const [, , , name, countArg] = process.argv;
  const count = Number(countArg);
  pinSelf(1);
  const q = Queue.open(name, { wait: 'spin' });
  process.send('ready');
  let empty = 0;
  let got = 0;
  let started = 0n;
  while (got < count) {
    const m = q.tryReceive();
    if (m === undefined) {
      empty++;
      continue;
    }
    if (got === 0) started = process.hrtime.bigint();
    got++;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.send({ emptyPollsPerMessage: empty / count, messagesPerSecond: count / seconds });
  q.close();
} else {
  const size = Number(process.argv[2] ?? 64);
  const count = Number(process.argv[3] ?? 4_000_000);
  const rounds = Number(process.argv[4] ?? 3);
  // The queue rows' capacity for this size (4096 slots at 64 B), so the footprint matches theirs.
  const capacity = capacityFor(size);
  pinSelf(0);
  const msg = new Uint8Array(size);
  for (let round = 0; round < rounds; round++) {
    const name = `bench-occupancy-${process.pid}-${round}`;
    const q = Queue.create(name, { capacity, maxMessageSize: size, wait: 'spin' });
    try {
      const child = fork(self, ['consumer', name, String(count)]);
      const next = () => new Promise((resolve) => child.once('message', resolve));
      await next();
      let full = 0;
      for (let i = 0; i < count; i++) {
        stamp(msg, i);
        while (!q.trySend(msg)) full++;
      }
      const consumer = await next();
      console.log(JSON.stringify({ round: round + 1, size, fullPollsPerMessage: full / count, ...consumer }));
    } finally {
      q.close();
      Queue.remove(name);
    }
  }
  // Solo: fill and drain one queue in this process; ns per send and per receive.
  const name = `bench-occupancy-${process.pid}-solo`;
  const q = Queue.create(name, { capacity, maxMessageSize: size });
  try {
    const send = [];
    const receive = [];
    for (let loop = 0; loop < 300; loop++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < capacity; i++) q.trySend(msg);
      const t1 = process.hrtime.bigint();
      for (let i = 0; i < capacity; i++) q.tryReceive();
      const t2 = process.hrtime.bigint();
      if (loop >= 50) {
        send.push(Number(t1 - t0) / capacity);
        receive.push(Number(t2 - t1) / capacity);
      }
    }
    const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
    console.log(JSON.stringify({ solo: true, size, sendNs: median(send), receiveNs: median(receive) }));
  } finally {
    q.close();
    Queue.remove(name);
  }
}
