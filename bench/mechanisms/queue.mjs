// The shared-memory Queue between two processes, in its three wait modes:
//   queue-spin   both sides busy-spin (receiveSync / sendSync with wait: 'spin')
//   queue-block  both sides sleep in the kernel when they must wait (wait: 'block')
//   queue-async  both sides `await q.receive()` on their event loop (default spin-then-block)
//   queue-async-fallback  the same through the fallback for kernels without futex_waitv
//   queue-batch  throughput only: sendManySync / receiveManySync of up to 64 (256 KiB), spinning
//   queue-zero-copy  throughput only: sendWith / receiveWith in place, spinning; the producer
//                    copies each payload into its slot from a buffer of its own
//   queue-in-place   throughput only: the same, but the producer writes only the sequence stamp
//                    in place (a producer that builds its message in the slot): the transfer
//                    alone, as iceoryx's iceperf measures zero-copy, so its cost per message
//                    should not grow with the size
//   queue-loan   receiveLoanSync (a copy into the handle's reused loan buffer, valid until the
//                next loan) with sendSync, spinning: the plain API's memory-speed form
//   queue-copy-out   throughput only: trySend copies in, receiveWith copies out into one reused
//                    buffer (one copy each side like queue-spin, without an allocation per message)
//   queue-mixed  throughput only: 99 of 100 messages 100 B, 1 of 100 1 MiB, on a queue of 2048
//                1 KiB slots (slotSize 1008) where the 1 MiB message spans 1041 of them (issue 14):
//                the segment is 2 MiB where slots sized for 1 MiB would need 2 GiB. Spinning.
//   queue-spin-then-block  idle CPU only: receiveSync with the default wait
//   memcpy       reference: Buffer#copy of each message in one process
// Idle (queue-spin, -block, -async, -spin-then-block): the CPU of a receiver waiting ~1 s on an
// empty queue. Throughput rows also give the CPU both processes spent per message and the
// shared memory per message the queue can hold.
// Round trip: two queues (ping, pong), the peer echoes each message. Throughput: one queue,
// the peer receives and checks every sequence number. bytes codec throughout, every message
// checked (size and sequence) so nothing can be silently lost.
//
// This file is also the peer: `node bench/mechanisms/queue.mjs <role> <mode> <name> <size> <count> [warmup]`.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { FALLBACK_ENV, SinkClock, capacityFor, check, forkPeer, idleCpu, inFallback, nextMessage, now, pinSelf, stamp } from '../util.mjs';

const require = createRequire(import.meta.url);
const { Queue } = require('../../dist/cjs/index.js');
const self = fileURLToPath(import.meta.url);

const WAIT = { spin: 'spin', block: 'block', async: 'spin-then-block', loan: 'spin', 'spin-then-block': 'spin-then-block' };

/** A promise awaited later: a peer that dies meanwhile must not be an unhandled rejection. */
function settled(promise) {
  promise.catch(() => {});
  return promise;
}

/** The rows' ring geometry (capacityFor: slots within RING_BYTES), one message per slot. */
function queueOptions(size, mode) {
  return { capacity: capacityFor(size), maxMessageSize: size, wait: WAIT[mode] };
}

function roundTrip(mode) {
  return async ({ size, count, cpus }) => {
    const name = `bench-q-${process.pid}-${mode}-rt`;
    const ping = Queue.create(`${name}-ping`, queueOptions(size, mode));
    const pong = Queue.create(`${name}-pong`, queueOptions(size, mode));
    const child = forkPeer(self, ['echo', mode, name, size, count], cpus[1]);
    try {
      await nextMessage(child, 'ready');
      // Listen for 'done' before the loop: an async loop lets the event loop deliver it early.
      const done = settled(nextMessage(child, 'done'));
      const samples = new Float64Array(count);
      const payload = new Uint8Array(size);
      const warmup = Math.min(2000, count);
      const label = `queue-${mode}`; // built once: a template literal per message costs ~20 ns
      for (let i = -warmup; i < count; i++) {
        const seq = i >>> 0;
        stamp(payload, seq);
        const t0 = now();
        let reply;
        if (mode === 'async') {
          await ping.send(payload);
          reply = await pong.receive();
        } else if (mode === 'loan') {
          ping.sendSync(payload);
          reply = pong.receiveLoanSync();
        } else {
          ping.sendSync(payload);
          reply = pong.receiveSync();
        }
        const t1 = now();
        check(reply, size, seq, label);
        if (i >= 0) samples[i] = Number(t1 - t0);
      }
      await done;
      return samples;
    } finally {
      child.kill();
      ping.close();
      pong.close();
      Queue.remove(`${name}-ping`);
      Queue.remove(`${name}-pong`);
    }
  };
}

function throughput(mode) {
  return async ({ size, count, warmup = 0, cpus }) => {
    const name = `bench-q-${process.pid}-${mode}-tp`;
    const q = Queue.create(name, queueOptions(size, mode));
    const child = forkPeer(self, ['sink', mode, name, size, count, warmup], cpus[1]);
    try {
      await nextMessage(child, 'ready');
      const payload = new Uint8Array(size);
      const done = settled(nextMessage(child, 'done'));
      const c0 = process.cpuUsage();
      const total = warmup + count;
      if (mode === 'async') {
        for (let i = 0; i < total; i++) {
          stamp(payload, i);
          if (!q.trySend(payload)) await q.send(payload);
        }
      } else {
        for (let i = 0; i < total; i++) {
          stamp(payload, i);
          if (!q.trySend(payload)) q.sendSync(payload);
        }
      }
      return measured(q, size, await done, c0, warmup);
    } finally {
      child.kill();
      q.close();
      Queue.remove(name);
    }
  };
}

/** µs of CPU this process used (every thread) since `c0`, a process.cpuUsage(). */
function cpuSince(c0) {
  const c = process.cpuUsage(c0);
  return c.user + c.system;
}

/**
 * A throughput trial's figures: the rate of the timed messages (the sink's clock), the CPU both
 * processes spent per message over the whole run, warm-up included (the sender from its first
 * send, the receiver from 'ready' to its last receive), and the shared memory the queue takes
 * per message it can hold (the whole segment, header and claims table included, over its
 * capacity), also per byte of payload.
 */
function measured(q, size, { received, seconds, cpuUs }, c0, warmup) {
  const { byteLength, capacity } = q.stats();
  const shmBytesPerMessage = byteLength / capacity;
  return {
    messages: received - warmup,
    seconds,
    warmup,
    cpuUsPerMessage: (cpuSince(c0) + cpuUs) / received,
    shmBytesPerMessage,
    shmBytesPerPayloadByte: shmBytesPerMessage / size,
  };
}

/** How long an idle receiver waits before its CPU is measured (past any spin), and the window. */
const IDLE_SETTLE_MS = 500;
const IDLE_SECONDS = 1;

/**
 * The CPU of a receiver waiting on an empty queue (receiveSync, or `await receive()` for
 * 'async') over IDLE_SECONDS, once it had IDLE_SETTLE_MS to settle: what waiting costs when
 * nothing comes. Then one message lets it go, which proves it was waiting in the receive.
 */
function idle(mode) {
  return async ({ cpus }) => {
    const name = `bench-q-${process.pid}-${mode}-idle`;
    const q = Queue.create(name, queueOptions(64, mode));
    const child = forkPeer(self, ['idle', mode, name, 64, 1], cpus[1]);
    try {
      await nextMessage(child, 'ready');
      const usage = await idleCpu(child.pid, IDLE_SETTLE_MS, IDLE_SECONDS);
      const done = settled(nextMessage(child, 'done'));
      q.sendSync(stamp(new Uint8Array(64), 0));
      await done;
      return usage;
    } finally {
      child.kill();
      q.close();
      Queue.remove(name);
    }
  };
}

/** One way with batches: sendManySync / receiveManySync of up to 64 messages, spinning. */
async function batchThroughput({ size, count, warmup = 0, cpus }) {
  const name = `bench-q-${process.pid}-batch-tp`;
  const q = Queue.create(name, queueOptions(size, 'spin'));
  const child = forkPeer(self, ['batch-sink', 'spin', name, size, count, warmup], cpus[1]);
  try {
    await nextMessage(child, 'ready');
    const per = batchOf(size);
    const batch = Array.from({ length: per }, () => new Uint8Array(size));
    const done = settled(nextMessage(child, 'done'));
    const c0 = process.cpuUsage();
    const total = warmup + count;
    for (let i = 0; i < total; ) {
      const n = Math.min(per, total - i);
      const values = n === per ? batch : batch.slice(0, n);
      for (let k = 0; k < n; k++) stamp(values[k], i + k);
      q.sendManySync(values);
      i += n;
    }
    return measured(q, size, await done, c0, warmup);
  } finally {
    child.kill();
    q.close();
    Queue.remove(name);
  }
}

/**
 * Zero-copy receive: the producer writes each payload straight into its slot (sendWith), the
 * consumer checks it in place (receiveWith, no copy, no allocation). Spinning. With `copy` the
 * producer copies a payload of its own into the slot (one copy); without, it writes only the
 * stamp, as a producer that builds its message in place would write only what it builds.
 */
const zeroCopyThroughput = (copy) => async ({ size, count, warmup = 0, cpus }) => {
  const name = `bench-q-${process.pid}-zc-tp`;
  const q = Queue.create(name, queueOptions(size, 'spin'));
  const child = forkPeer(self, ['zc-sink', 'spin', name, size, count, warmup], cpus[1]);
  try {
    await nextMessage(child, 'ready');
    const payload = new Uint8Array(size);
    let seq = 0;
    const write = copy
      ? (view) => {
          view.set(payload);
          stamp(view, seq);
        }
      : (view) => stamp(view, seq);
    const done = settled(nextMessage(child, 'done'));
    const c0 = process.cpuUsage();
    for (const total = warmup + count; seq < total; seq++) if (!q.trySendWith(size, write)) q.sendWithSync(size, write);
    return measured(q, size, await done, c0, warmup);
  } finally {
    child.kill();
    q.close();
    Queue.remove(name);
  }
};

/**
 * Copy in, copy out, no allocation: the producer's trySend copies into the slot, the consumer
 * copies each message out of its slot into one buffer it reuses (receiveWith) and checks that
 * copy. What an application that keeps large messages in its own buffers gets. Spinning.
 */
async function copyOutThroughput({ size, count, warmup = 0, cpus }) {
  const name = `bench-q-${process.pid}-co-tp`;
  const q = Queue.create(name, queueOptions(size, 'spin'));
  const child = forkPeer(self, ['copy-sink', 'spin', name, size, count, warmup], cpus[1]);
  try {
    await nextMessage(child, 'ready');
    const payload = new Uint8Array(size);
    const done = settled(nextMessage(child, 'done'));
    const c0 = process.cpuUsage();
    for (let i = 0, total = warmup + count; i < total; i++) {
      stamp(payload, i);
      if (!q.trySend(payload)) q.sendSync(payload);
    }
    return measured(q, size, await done, c0, warmup);
  } finally {
    child.kill();
    q.close();
    Queue.remove(name);
  }
}

/** The mixed workload: message `seq` is 1 MiB once in 100, else 100 B; the queue's slots are 1 KiB. */
const MIXED = { small: 100, large: 1 << 20, every: 100, capacity: 2048, slotSize: 1008 };
const mixedSize = (seq) => (seq % MIXED.every === MIXED.every - 1 ? MIXED.large : MIXED.small);

/**
 * Spans (issue 14): mostly small messages and a rare large one, on a queue of small slots
 * where the large one spans many. shm/msg is the segment over its capacity (1 KiB slots), and
 * per payload byte against the mean message; the note gives the segment beside what slots
 * sized for the largest message would take for the same capacity.
 */
async function mixedThroughput({ count, warmup = 0, cpus }) {
  const name = `bench-q-${process.pid}-mixed-tp`;
  const q = Queue.create(name, { capacity: MIXED.capacity, slotSize: MIXED.slotSize, maxMessageSize: MIXED.large, wait: 'spin' });
  const child = forkPeer(self, ['mixed-sink', 'spin', name, MIXED.large, count, warmup], cpus[1]);
  try {
    await nextMessage(child, 'ready');
    const small = new Uint8Array(MIXED.small);
    const large = new Uint8Array(MIXED.large);
    let bytes = 0; // of the timed messages
    const done = settled(nextMessage(child, 'done'));
    const c0 = process.cpuUsage();
    for (let i = 0, total = warmup + count; i < total; i++) {
      const payload = mixedSize(i) === MIXED.small ? small : large;
      stamp(payload, i);
      if (!q.trySend(payload)) q.sendSync(payload);
      if (i >= warmup) bytes += payload.length;
    }
    const result = measured(q, MIXED.large, await done, c0, warmup);
    const { byteLength, capacity } = q.stats();
    const fixed = byteLength - capacity * (MIXED.slotSize + 16) + capacity * (MIXED.large + 16);
    return {
      ...result,
      bytesPerSecond: bytes / result.seconds,
      shmBytesPerPayloadByte: result.shmBytesPerMessage / (bytes / count),
      note: `segment ${byteLength} B for ${capacity} slots of ${MIXED.slotSize} B payload (a 1 MiB message spans ${Math.ceil(MIXED.large / MIXED.slotSize)}); slots sized for 1 MiB: ${fixed} B (${(fixed / byteLength).toFixed(0)}x)`,
    };
  } finally {
    child.kill();
    q.close();
    Queue.remove(name);
  }
}

/**
 * memcpy reference: Buffer#copy of `size` bytes into successive places of a buffer of as many
 * places as the queue has slots (its footprint, so caches favour neither), one process, one copy
 * per message.
 */
async function memcpy({ size, count, warmup = 0 }) {
  const source = Buffer.alloc(size, 1);
  const places = capacityFor(size);
  const target = Buffer.alloc(places * size);
  const total = warmup + count;
  for (let i = 0; i < Math.min(total, places); i++) source.copy(target, i * size); // its pages touched
  let t0 = now();
  for (let i = 0; i < total; i++) {
    if (i === warmup) t0 = now();
    stamp(source, i);
    source.copy(target, (i % places) * size);
  }
  const seconds = Number(now() - t0) / 1e9;
  check(target.subarray(((total - 1) % places) * size, ((total - 1) % places + 1) * size), size, total - 1, 'memcpy');
  return { messages: count, seconds, warmup };
}

/** Up to 64 messages per batch, and no more than 256 KiB (a batch of 1 MiB messages is 1). */
const batchOf = (size) => Math.max(1, Math.min(64, Math.floor((256 << 10) / size)));

const mechanisms = ['spin', 'block', 'async'].map((mode) => ({
  id: `queue-${mode}`,
  label: {
    spin: 'shm Queue, spinning receivers',
    block: 'shm Queue, blocking (futex) receivers',
    async: 'shm Queue, await receive() on the event loop',
  }[mode],
  family: 'interprocess',
  waits: mode === 'async' ? 'event-loop' : mode,
  sizes: [64, 4096, 65536, 1048576],
  // The rows the targets compare: long trials at 64 B, and the median of three (src/cli/bench.ts).
  ...(mode === 'block' ? {} : { sustained: true, trials: 3 }),
  roundTrip: roundTrip(mode),
  throughput: throughput(mode),
  idle: idle(mode),
}));
mechanisms.push(
  {
    id: 'queue-spin-then-block',
    label: 'shm Queue, receiveSync with the default wait (spin 20 µs, then sleep in the kernel)',
    family: 'interprocess',
    waits: 'block',
    sizes: [64],
    idle: idle('spin-then-block'),
  },
  {
    id: 'queue-loan',
    label: 'shm Queue, receiveLoanSync into a reused buffer (valid until the next loan), spinning',
    family: 'interprocess',
    waits: 'spin',
    sizes: [64, 4096, 65536, 1048576],
    // Compared with MessagePort at 1 MiB; not sustained: a small loan costs microseconds on
    // Node 20 (the previous view is detached with a transferring clone), 8 M would take a minute.
    trials: 3,
    roundTrip: roundTrip('loan'),
    throughput: throughput('loan'),
  },
  {
    id: 'queue-async-fallback',
    label: 'shm Queue, await receive(), without futex_waitv (Linux < 5.16: a thread per word)',
    family: 'interprocess',
    waits: 'event-loop',
    sizes: [64, 4096, 65536, 1048576],
    env: FALLBACK_ENV,
    roundTrip: inFallback(roundTrip('async')),
    throughput: inFallback(throughput('async')),
  },
  {
    id: 'queue-batch',
    label: 'shm Queue, sendMany/receiveMany batches (up to 64, 256 KiB), spinning',
    family: 'interprocess',
    waits: 'spin',
    sizes: [64, 4096, 65536, 1048576],
    // Batched claims are one of issue 14's ways to small-message speed: measured as the one-call
    // rows are (long trials at 64 B, the median of three).
    sustained: true,
    trials: 3,
    throughput: batchThroughput,
  },
  {
    id: 'queue-zero-copy',
    label: 'shm Queue, sendWith in place / receiveWith in place, spinning',
    family: 'interprocess',
    waits: 'spin',
    sizes: [64, 4096, 65536, 1048576],
    throughput: zeroCopyThroughput(true),
  },
  {
    // A reference, not an option the advice may pick: its messages carry no payload written.
    // Its cost does not grow with the bytes, so its counts are per message, not per byte (at
    // the byte-sized 1024 messages of 1 MiB rows a trial lasts milliseconds and measures the
    // JIT's tiering, not the transfer).
    id: 'queue-in-place',
    label: 'shm Queue, the transfer alone: sendWith writes only a 4-byte stamp in place, receiveWith reads it there (reference), spinning',
    family: 'reference',
    waits: 'spin',
    sizes: [64, 4096, 65536, 1048576],
    count: { quick: 200_000, full: 2_000_000 },
    throughput: zeroCopyThroughput(false),
  },
  {
    id: 'queue-copy-out',
    label: 'shm Queue, trySend copies in / receiveWith copies out to a reused buffer, spinning',
    family: 'interprocess',
    waits: 'spin',
    sizes: [64, 4096, 65536, 1048576],
    throughput: copyOutThroughput,
  },
  {
    id: 'queue-mixed',
    label: 'shm Queue, 99% 100 B + 1% 1 MiB in 1 KiB slots (a 1 MiB message spans 1041), spinning',
    family: 'interprocess',
    waits: 'spin',
    sizes: [1048576],
    count: { quick: 20_000, full: 200_000 },
    throughput: mixedThroughput,
  },
  {
    id: 'memcpy',
    label: 'memcpy (Buffer#copy in one process, reference)',
    family: 'reference',
    waits: 'spin',
    sustained: true, // the reference of sustained rows: trials as long as theirs
    sizes: [64, 4096, 65536, 1048576],
    throughput: memcpy,
  },
);
export default mechanisms;

// --- the peer -------------------------------------------------------------------------------

async function peer([role, mode, name, sizeArg, countArg, warmupArg = '0']) {
  pinSelf();
  const size = Number(sizeArg);
  const count = Number(countArg);
  const wait = WAIT[mode];
  if (role === 'echo') {
    const ping = Queue.open(`${name}-ping`, { wait });
    const pong = Queue.open(`${name}-pong`, { wait });
    process.send({ type: 'ready' });
    const total = count + Math.min(2000, count);
    for (let i = 0; i < total; i++) {
      if (mode === 'async') await pong.send(await ping.receive());
      else if (mode === 'loan') pong.sendSync(ping.receiveLoanSync());
      else pong.sendSync(ping.receiveSync());
    }
    process.send({ type: 'done' });
    process.disconnect();
    return;
  }
  if (role === 'idle') {
    const q = Queue.open(name, { wait });
    process.send({ type: 'ready' });
    const m = mode === 'async' ? await q.receive() : q.receiveSync();
    check(m, size, 0, `queue-${mode} idle`);
    process.send({ type: 'done' });
    process.disconnect();
    return;
  }
  // A throughput sink: warmup + count messages, every one checked, the last `count` timed.
  const warmup = Number(warmupArg);
  const total = warmup + count;
  const q = Queue.open(name, { wait });
  const clock = new SinkClock(warmup, count);
  process.send({ type: 'ready' });
  const c0 = process.cpuUsage();
  let received = 0;
  if (role === 'zc-sink') {
    const read = (view) => check(view, size, received, 'queue-zero-copy sink');
    for (; received < total; clock.at(received++)) if (!q.tryReceiveWith(read)) q.receiveWithSync(read);
  } else if (role === 'copy-sink') {
    const mine = new Uint8Array(size);
    let length = 0;
    const read = (view) => {
      mine.set(view);
      length = view.byteLength;
    };
    for (; received < total; clock.at(received++)) {
      if (!q.tryReceiveWith(read)) q.receiveWithSync(read);
      check(mine.subarray(0, length), size, received, 'queue-copy-out sink');
    }
  } else if (role === 'mixed-sink') {
    for (; received < total; clock.at(received++)) check(q.tryReceive() ?? q.receiveSync(), mixedSize(received), received, 'queue-mixed sink');
  } else if (role === 'batch-sink') {
    while (received < total) {
      for (const m of q.receiveManySync(batchOf(size))) {
        check(m, size, received, 'queue-batch sink');
        clock.at(received++);
      }
    }
  } else {
    const label = `queue-${mode} sink`; // built once: a template literal per message costs ~20 ns
    if (mode === 'async') {
      for (; received < total; clock.at(received++)) check(q.tryReceive() ?? (await q.receive()), size, received, label);
    } else if (mode === 'loan') {
      for (; received < total; clock.at(received++)) check(q.tryReceiveLoan() ?? q.receiveLoanSync(), size, received, label);
    } else {
      for (; received < total; clock.at(received++)) check(q.tryReceive() ?? q.receiveSync(), size, received, label);
    }
  }
  process.send({ type: 'done', received, seconds: clock.seconds, cpuUs: cpuSince(c0) });
  process.disconnect();
}

if (process.argv[1] === self) await peer(process.argv.slice(2));
