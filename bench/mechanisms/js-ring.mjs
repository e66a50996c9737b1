// The JavaScript limit, measured in the same run as the queue (the spec's performance targets
// are phrased against it): a single-producer single-consumer ring in a SharedArrayBuffer, both
// sides spinning, written the way a hand-tuned JS ring would be and nothing more.
//   js-ring-threads    between two worker_threads of one process (a plain SharedArrayBuffer)
//   js-ring-processes  between two processes, on a SharedMemory region from this library
//
// The ring (Lamport / Agrona style): a head index written only by the producer and a tail
// index written only by the consumer, each on its own 128-byte line (adjacent-line prefetch
// pairs 64-byte lines), published with Atomics.store and read with Atomics.load. Each side
// caches the other's index and re-reads it only when the ring looks full (producer) or empty
// (consumer), so a steady stream touches the shared lines once per lap, not once per message.
// Fixed slots of align16(16 + size) bytes like the queue's (a 16-byte header holding the
// length), capacity chosen by the queue rows' own rule, so both sides of a comparison hold the
// same messages in the same footprint.
//
// Semantics match the queue's plain API, so that the comparison is fair: the producer copies
// each message in (u8.set), the consumer takes a private copy out per message (u8.slice, as
// Queue#tryReceive returns a fresh copy) and every message is checked (size and sequence).
// What the ring does not do, and the queue pays for: several producers and consumers, crash
// recovery, blocking and async waits, native memcpy for large messages.
//
// Round trip: two rings (ping, pong), the peer echoes each message (receive a copy, send it).
// Throughput: one ring one way, the peer receives and checks every message.
//
// This file is also the peer: a worker started on it (workerData.jsRing), or a process
// `node bench/mechanisms/js-ring.mjs <echo|sink> <name> <size> <count> [warmup]`.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SinkClock, capacityFor, check, forkPeer, nextMessage, now, pinSelf, stamp } from '../util.mjs';

const self = fileURLToPath(import.meta.url);
const HEADER = 16;
const TAIL_OFFSET = 128;
const SLOTS_OFFSET = 256;
/** A spinning side gives up after this long without progress: a dead peer must not hang a trial for good. */
const STALL_MS = 30_000;

const strideFor = (size) => Math.ceil((HEADER + size) / 16) * 16;
export const ringBytes = (size) => SLOTS_OFFSET + capacityFor(size) * strideFor(size);

/** Throws once a wait has lasted STALL_MS; returns when the wait started (0 before the first check). */
function stalled(since, what) {
  const t = Date.now();
  if (since === 0) return t;
  if (t - since > STALL_MS) throw new Error(`js-ring: the peer made no progress for ${STALL_MS / 1000} s (${what})`);
  return since;
}

/** One direction of the ring, at byte `at` of `buffer`; a side uses only send or only receive. */
export class Ring {
  constructor(buffer, at, size) {
    this.i32 = new Int32Array(buffer);
    this.u8 = new Uint8Array(buffer);
    this.headAt = at >> 2;
    this.tailAt = (at + TAIL_OFFSET) >> 2;
    this.slots = at + SLOTS_OFFSET;
    this.stride = strideFor(size);
    this.capacity = capacityFor(size);
    this.mask = this.capacity - 1;
    // Each side's own index (only it writes it) and its cached copy of the other's.
    this.head = Atomics.load(this.i32, this.headAt);
    this.tail = Atomics.load(this.i32, this.tailAt);
    this.seenTail = this.tail;
    this.seenHead = this.head;
  }

  send(payload) {
    const head = this.head;
    if (((head - this.seenTail) | 0) === this.capacity) {
      let spins = 0;
      let since = 0;
      while (((head - (this.seenTail = Atomics.load(this.i32, this.tailAt))) | 0) === this.capacity) {
        if ((++spins & 0xfffff) === 0) since = stalled(since, 'ring full');
      }
    }
    const at = this.slots + (head & this.mask) * this.stride;
    this.i32[at >> 2] = payload.length;
    this.u8.set(payload, at + HEADER);
    this.head = (head + 1) | 0;
    Atomics.store(this.i32, this.headAt, this.head);
  }

  receive() {
    const tail = this.tail;
    if (tail === this.seenHead) {
      let spins = 0;
      let since = 0;
      while ((this.seenHead = Atomics.load(this.i32, this.headAt)) === tail) {
        if ((++spins & 0xfffff) === 0) since = stalled(since, 'ring empty');
      }
    }
    const at = this.slots + (tail & this.mask) * this.stride;
    const start = at + HEADER;
    const message = this.u8.slice(start, start + this.i32[at >> 2]);
    this.tail = (tail + 1) | 0;
    Atomics.store(this.i32, this.tailAt, this.tail);
    return message;
  }
}

/** Both rings of a round trip in one buffer (ping first), or the one ring of a throughput trial. */
const bytesFor = (role, size) => (role === 'echo' ? 2 : 1) * ringBytes(size);
const roundTripWarmup = (count) => Math.min(2000, count);

/**
 * Pins the calling thread (a worker: trial.mjs pins only the main thread, and a worker would
 * inherit its core) to `cpu`, through its thread id from /proc/thread-self.
 */
function pinThread(cpu) {
  if (cpu === undefined) return;
  try {
    const tid = fs.readlinkSync('/proc/thread-self').split('/').pop();
    execFileSync('taskset', ['-p', '-c', String(cpu), tid], { stdio: 'ignore' });
  } catch {
    // no taskset, or a machine with fewer cores: run unpinned
  }
}

/**
 * The peer's side, the same in a worker and in a process: echo, or receive and check
 * warmup + count messages, the last `count` timed (SinkClock). Returns { received, seconds }.
 */
function runPeer(role, buffer, size, count, warmup, label) {
  if (role === 'echo') {
    const ping = new Ring(buffer, 0, size);
    const pong = new Ring(buffer, ringBytes(size), size);
    const total = count + roundTripWarmup(count);
    for (let i = 0; i < total; i++) pong.send(ping.receive());
    return { received: total };
  }
  const ring = new Ring(buffer, 0, size);
  const clock = new SinkClock(warmup, count);
  let received = 0;
  for (const total = warmup + count; received < total; clock.at(received++)) check(ring.receive(), size, received, label);
  return { received, seconds: clock.seconds };
}

/** `count` round trips through ping and pong (the peer echoes), in ns. */
function pingPong(buffer, size, count, label) {
  const ping = new Ring(buffer, 0, size);
  const pong = new Ring(buffer, ringBytes(size), size);
  const samples = new Float64Array(count);
  const payload = new Uint8Array(size);
  for (let i = -roundTripWarmup(count); i < count; i++) {
    const seq = i >>> 0;
    stamp(payload, seq);
    const t0 = now();
    ping.send(payload);
    const reply = pong.receive();
    const t1 = now();
    check(reply, size, seq, label);
    if (i >= 0) samples[i] = Number(t1 - t0);
  }
  return samples;
}

/** Sends `count` messages one way; the caller then waits for the peer's 'done'. */
function stream(buffer, size, count) {
  const ring = new Ring(buffer, 0, size);
  const payload = new Uint8Array(size);
  for (let i = 0; i < count; i++) ring.send(stamp(payload, i));
}

/** µs of CPU this process used (every thread) since `c0`, a process.cpuUsage(). */
function cpuSince(c0) {
  const c = process.cpuUsage(c0);
  return c.user + c.system;
}

// --- between threads ----------------------------------------------------------------------

async function withWorker(role, size, count, cpus, body, warmup = 0) {
  const buffer = new SharedArrayBuffer(bytesFor(role, size));
  const worker = new Worker(self, { workerData: { jsRing: role, buffer, size, count, warmup, cpu: cpus[1] } });
  const next = () =>
    new Promise((resolve, reject) => {
      const cleanup = () => worker.off('message', onMessage).off('error', onError).off('exit', onExit);
      const onMessage = (msg) => (cleanup(), resolve(msg));
      const onError = (err) => (cleanup(), reject(err));
      const onExit = (code) => (cleanup(), reject(new Error(`js-ring worker exited (code ${code})`)));
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
    });
  try {
    await next(); // ready: pinned, spinning on an empty ring
    // The worker's 'done' (or its error) is delivered once this thread stops spinning.
    const done = next();
    done.catch(() => {});
    return await body(buffer, done);
  } finally {
    await worker.terminate();
  }
}

const threads = {
  roundTrip: ({ size, count, cpus }) => withWorker('echo', size, count, cpus, async (buffer, done) => {
    const samples = pingPong(buffer, size, count, 'js-ring-threads');
    await done;
    return samples;
  }),
  throughput: ({ size, count, warmup = 0, cpus }) => withWorker('sink', size, count, cpus, async (buffer, done) => {
    const c0 = process.cpuUsage();
    stream(buffer, size, warmup + count);
    const { received, seconds } = await done;
    // One process: its CPU covers both threads.
    return { messages: received - warmup, seconds, warmup, cpuUsPerMessage: cpuSince(c0) / received };
  }, warmup),
};

// --- between processes --------------------------------------------------------------------

let SharedMemory;
/** Loaded only here: a worker running the threads rows has no use for the native addon. */
const sharedMemory = () => (SharedMemory ??= createRequire(import.meta.url)('../../dist/cjs/index.js').SharedMemory);

async function withProcess(role, size, count, cpus, body, warmup = 0) {
  const name = `bench-jsring-${process.pid}-${role}`;
  const shm = sharedMemory().create(name, { byteLength: bytesFor(role, size) });
  const child = forkPeer(self, [role, name, size, count, warmup], cpus[1]);
  try {
    await nextMessage(child, 'ready');
    const done = nextMessage(child, 'done');
    done.catch(() => {});
    return await body(shm.buffer, done);
  } finally {
    child.kill();
    shm.close();
    sharedMemory().remove(name);
  }
}

const processes = {
  roundTrip: ({ size, count, cpus }) => withProcess('echo', size, count, cpus, async (buffer, done) => {
    const samples = pingPong(buffer, size, count, 'js-ring-processes');
    await done;
    return samples;
  }),
  throughput: ({ size, count, warmup = 0, cpus }) => withProcess('sink', size, count, cpus, async (buffer, done) => {
    const c0 = process.cpuUsage();
    stream(buffer, size, warmup + count);
    const { received, seconds, cpuUs } = await done;
    // The shared memory per message the ring holds, like the queue rows' column.
    const shmBytesPerMessage = bytesFor('sink', size) / capacityFor(size);
    return { messages: received - warmup, seconds, warmup, cpuUsPerMessage: (cpuSince(c0) + cpuUs) / received, shmBytesPerMessage, shmBytesPerPayloadByte: shmBytesPerMessage / size };
  }, warmup),
};

export default [
  {
    id: 'js-ring-threads',
    label: 'SharedArrayBuffer spin ring between two worker threads (the JavaScript limit, reference)',
    family: 'reference',
    waits: 'spin',
    sizes: [64, 4096, 65536, 1048576],
    sustained: true,
    trials: 3,
    ...threads,
  },
  {
    id: 'js-ring-processes',
    label: 'SharedArrayBuffer spin ring between two processes on SharedMemory (the JavaScript limit, reference)',
    family: 'reference',
    waits: 'spin',
    sizes: [64, 4096, 65536, 1048576],
    sustained: true,
    trials: 3,
    ...processes,
  },
];

// --- the peer -----------------------------------------------------------------------------

if (!isMainThread && workerData?.jsRing !== undefined) {
  const { jsRing: role, buffer, size, count, warmup, cpu } = workerData;
  pinThread(cpu);
  parentPort.postMessage({ type: 'ready' });
  parentPort.postMessage({ type: 'done', ...runPeer(role, buffer, size, count, warmup, 'js-ring-threads sink') });
} else if (isMainThread && process.argv[1] === self) {
  const [role, name, size, count, warmup] = process.argv.slice(2);
  pinSelf();
  const shm = sharedMemory().open(name);
  process.send({ type: 'ready' });
  const c0 = process.cpuUsage();
  const result = runPeer(role, shm.buffer, Number(size), Number(count), Number(warmup), 'js-ring-processes sink');
  process.send({ type: 'done', ...result, cpuUs: cpuSince(c0) });
  process.disconnect();
}
