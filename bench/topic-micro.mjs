// Topic vs Queue hot paths in one process (no scheduler, no second core): publish BATCH
// messages, receive them, repeat; ns per publish and per receive, medians over REPS timed
// repetitions of ROUNDS batches. 64 B, bytes codec, 'block' overflow, capacity 4096 (as the
// throughput bench). What each side costs when it never waits.
//
//   node bench/topic-micro.mjs [dist dir (default ../dist)] [size] [reps]
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, process.argv[2] ?? '../dist');
const require = createRequire(import.meta.url);
const { Topic, Queue } = require(path.join(dist, 'cjs/index.js'));
const size = Number(process.argv[3] ?? 64);
const reps = Number(process.argv[4] ?? 15);
const BATCH = 256;
const ROUNDS = 400;
const tag = `micro-${process.pid}`;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

function measure(label, put, take) {
  const payload = new Uint8Array(size);
  const pubNs = [];
  const recvNs = [];
  for (let rep = -3; rep < reps; rep++) {
    let p = 0n;
    let r = 0n;
    for (let round = 0; round < ROUNDS; round++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < BATCH; i++) {
        payload[0] = i;
        if (!put(payload)) throw new Error(`${label}: put failed`);
      }
      const t1 = process.hrtime.bigint();
      for (let i = 0; i < BATCH; i++) {
        const m = take();
        if (m === undefined || m[0] !== (i & 255) || m.length !== size) throw new Error(`${label}: take failed`);
      }
      const t2 = process.hrtime.bigint();
      p += t1 - t0;
      r += t2 - t1;
    }
    if (rep >= 0) {
      pubNs.push(Number(p) / (ROUNDS * BATCH));
      recvNs.push(Number(r) / (ROUNDS * BATCH));
    }
  }
  return { label, publishNs: median(pubNs), receiveNs: median(recvNs) };
}

const results = [];
const q = Queue.create(`${tag}-q`, { capacity: 4096, maxMessageSize: size, wait: 'spin' });
try {
  results.push(measure('queue trySend/tryReceive', (m) => q.trySend(m), () => q.tryReceive()));
} finally {
  q.close();
  Queue.remove(`${tag}-q`);
}
for (const overflow of ['block', 'overwrite']) {
  const t = Topic.create(`${tag}-t`, { capacity: 4096, maxMessageSize: size, overflow, wait: 'spin' });
  try {
    const sub = t.subscribe();
    results.push(measure(`topic ${overflow} tryPublish/tryReceive`, (m) => t.tryPublish(m), () => sub.tryReceive()));
  } finally {
    t.close();
    Topic.remove(`${tag}-t`);
  }
}
for (const r of results) console.log(`${r.label.padEnd(40)} publish ${r.publishNs.toFixed(1)} ns  receive ${r.receiveNs.toFixed(1)} ns`);
