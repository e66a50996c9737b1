// The rate of one long one-way stream, window by window: what a single throughput figure hides.
//
//   node bench/timeline.mjs [queue|topic|ring] [SIZE=64] [COUNT=8000000] [WINDOW=200000]
//
// The producer (this process, pinned to core 0) sends COUNT messages of SIZE bytes as fast as
// it can, spinning (queue: trySend / sendSync; topic: tryPublish / publishSync; ring: the
// JavaScript SPSC ring of bench/mechanisms/js-ring.mjs on a SharedMemory region); the consumer
// (a child pinned to core 1) checks every message and notes the time at every WINDOW-th. Prints
// one JSON line: the rate of each window in M msg/s (and in GiB/s), and their median, 10th and
// 90th percentile (M msg/s).
//
// Why it exists: on a shared two-core VM, a spinning pair's rate moves between regimes that last
// for seconds (the consumer caught up and polling the line the producer writes, or a few slots
// behind and streaming; the host moving the virtual cores), and the first window carries the
// JIT warm-up. bench/results/2026-12-01-regimes.md shows what it printed.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Ring, ringBytes } from './mechanisms/js-ring.mjs';
import { capacityFor, check, forkPeer, nextMessage, pinSelf, stamp } from './util.mjs';

const require = createRequire(import.meta.url);
const { Queue, Topic, SharedMemory } = require('../dist/cjs/index.js');
const self = fileURLToPath(import.meta.url);

/** Each mechanism: create (producer side), open (consumer side), send, receive, close, remove. */
const mechanisms = {
  queue: {
    create: (name, size) => Queue.create(name, { capacity: capacityFor(size), maxMessageSize: size, wait: 'spin' }),
    open: (name) => Queue.open(name, { wait: 'spin' }),
    send: (q, m) => q.trySend(m) || q.sendSync(m),
    receiver: (q) => () => q.tryReceive() ?? q.receiveSync(),
    close: (q) => q.close(),
    remove: (name) => Queue.remove(name),
  },
  topic: {
    create: (name, size) => Topic.create(name, { capacity: capacityFor(size), maxMessageSize: size, overflow: 'block', wait: 'spin' }),
    open: (name) => Topic.open(name, { wait: 'spin' }),
    send: (t, m) => t.tryPublish(m) || t.publishSync(m),
    receiver: (t) => {
      const sub = t.subscribe();
      return () => sub.tryReceive() ?? sub.receiveSync();
    },
    close: (t) => t.close(),
    remove: (name) => Topic.remove(name),
  },
  ring: {
    create: (name, size) => Object.assign(SharedMemory.create(name, { byteLength: ringBytes(size) }), { size }),
    open: (name, size) => Object.assign(SharedMemory.open(name), { size }),
    send: (shm, m) => (shm.ring ??= new Ring(shm.buffer, 0, shm.size)).send(m),
    receiver: (shm) => {
      const ring = new Ring(shm.buffer, 0, shm.size);
      return () => ring.receive();
    },
    close: (shm) => shm.close(),
    remove: (name) => SharedMemory.remove(name),
  },
};

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

async function produce(kind, size, count, window) {
  const m = mechanisms[kind];
  if (m === undefined) throw new Error(`timeline: unknown mechanism ${kind} (queue, topic or ring)`);
  pinSelf(0);
  const name = `bench-timeline-${process.pid}`;
  const handle = m.create(name, size);
  const child = forkPeer(self, ['consume', kind, name, size, count, window], 1);
  try {
    await nextMessage(child, 'ready');
    const done = nextMessage(child, 'done');
    done.catch(() => {});
    const payload = new Uint8Array(size);
    for (let i = 0; i < count; i++) m.send(handle, stamp(payload, i));
    const { marks } = await done;
    const rates = [];
    for (let i = 1; i < marks.length; i++) rates.push(window / (marks[i] - marks[i - 1]) / 1e6);
    const sorted = [...rates].sort((a, b) => a - b);
    const round = (x) => Math.round(x * 100) / 100;
    console.log(JSON.stringify({ kind, size, count, window, median: round(percentile(sorted, 0.5)), p10: round(percentile(sorted, 0.1)), p90: round(percentile(sorted, 0.9)), windowsMps: rates.map(round), windowsGiBps: rates.map((r) => round((r * 1e6 * size) / 2 ** 30)) }));
  } finally {
    child.kill();
    m.close(handle);
    m.remove(name);
  }
}

function consume(kind, name, size, count, window) {
  const m = mechanisms[kind];
  pinSelf();
  const handle = m.open(name, size);
  const receive = m.receiver(handle);
  process.send({ type: 'ready' });
  // Times in ms since this process started; the first mark is the first message.
  const marks = [];
  for (let i = 0; i < count; i++) {
    check(receive(), size, i, `timeline ${kind}`);
    if (i === 0 || (i + 1) % window === 0) marks.push(performance.now());
  }
  process.send({ type: 'done', marks: marks.map((t) => t / 1e3) });
  m.close(handle);
}

const [first, ...rest] = process.argv.slice(2);
if (first === 'consume') {
  const [kind, name, size, count, window] = rest;
  consume(kind, name, Number(size), Number(count), Number(window));
} else {
  const [size = 64, count = 8_000_000, window = 200_000] = rest.map(Number);
  await produce(first ?? 'queue', size, count, window);
}
