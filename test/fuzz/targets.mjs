// Fuzz targets: the parsers a peer or a corrupted segment can feed bytes to. Each target has an
// input generator (fast-check arbitraries that build mostly-valid inputs and then break them,
// which reaches deeper than uniform random bytes) and a `run(input)` that throws only on a bug:
// an exception other than the coded errors the contract allows, or a wrong result against a
// reference. It returns a short outcome label, counted by the runner to show which paths the
// inputs reached. test/fuzz.test.mjs runs a few thousand inputs of
// each; `npm run fuzz` runs 10^6 each (test/fuzz/run.mjs).
import { createRequire } from 'node:module';
import * as fc from 'fast-check';
import { Barrier, Condition, Mutex, Queue, RWLock, Semaphore, SharedMemory, Topic } from 'interprocess';

const require = createRequire(import.meta.url);
const { FrameDecoder } = require('../../dist/cjs/channel/framing.js');

// ---- channel framing: differential against a one-shot reference parser ----------------------

const FRAME_HEADER = 9;

/** Every complete frame of `bytes`, and whether the stream breaks the rules (framing.ts). */
function referenceFrames(bytes, max) {
  const frames = [];
  let at = 0;
  while (bytes.length - at >= FRAME_HEADER) {
    const length = bytes.readUInt32LE(at);
    const type = bytes[at + 4];
    const id = bytes.readUInt32LE(at + 5);
    if (length > max || type < 1 || type > 4 || (type === 1) !== (id === 0)) return { frames, error: true };
    if (bytes.length - at - FRAME_HEADER < length) break;
    frames.push({ type, id, payload: bytes.subarray(at + FRAME_HEADER, at + FRAME_HEADER + length) });
    at += FRAME_HEADER + length;
  }
  return { frames, error: false };
}

const frameArb = fc
  .record({
    type: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(1, 2, 3, 4) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    id: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 32 - 1 })),
    payload: fc.uint8Array({ maxLength: 300 }),
    // Now and then the length field lies (short, long, huge).
    lie: fc.oneof({ weight: 20, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 ** 32 - 1 }) }),
  })
  .map(({ type, id, payload, lie }) => {
    const frame = Buffer.alloc(FRAME_HEADER + payload.length);
    frame.writeUInt32LE(lie ?? payload.length, 0);
    frame[4] = type;
    // An honest frame keeps the id rule (0 for a message, non-zero otherwise); a lying one may not.
    frame.writeUInt32LE(lie !== undefined ? id : type === 1 ? 0 : id || 1, 5);
    frame.set(payload, FRAME_HEADER);
    return frame;
  });

export const framing = {
  name: 'channel framing (FrameDecoder vs a reference parser)',
  arbitrary: fc.record({
    max: fc.constantFrom(0, 1, 64, 300, 1000, 65536),
    stream: fc.oneof(
      { weight: 6, arbitrary: fc.array(frameArb, { maxLength: 8 }).map((frames) => Buffer.concat(frames)) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }).map((a) => Buffer.from(a)) },
    ),
    // Chunk sizes the stream is cut into, cycled.
    cuts: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 8 }),
  }),
  run({ max, stream, cuts }) {
    const expected = referenceFrames(stream, max);
    const got = [];
    const decoder = new FrameDecoder(max, { frame: (type, id, payload) => got.push({ type, id, payload: Buffer.from(payload) }) });
    let failed = false;
    try {
      for (let at = 0, i = 0; at < stream.length; i++) {
        const size = cuts[i % cuts.length];
        decoder.push(stream.subarray(at, at + size));
        at += size;
      }
    } catch (err) {
      if (err?.code !== 'IPC_ERR_PROTOCOL') throw err;
      failed = true;
    }
    if (failed !== expected.error) throw new Error(`decoder ${failed ? 'rejected' : 'accepted'} a stream the reference ${expected.error ? 'rejects' : 'accepts'}`);
    if (got.length !== expected.frames.length) throw new Error(`decoder gave ${got.length} frames, the reference ${expected.frames.length}`);
    got.forEach((frame, i) => {
      const want = expected.frames[i];
      if (frame.type !== want.type || frame.id !== want.id || !frame.payload.equals(want.payload)) throw new Error(`frame ${i} differs from the reference`);
    });
    return failed ? 'rejected' : got.length === 0 ? 'no complete frame' : 'frames decoded';
  },
};

// ---- segments: open a corrupted object of every kind, then use it -------------------------

let counter = 0;
const uniqueName = (tag) => `t-${process.env.INTERPROCESS_TEST_RUN ?? process.pid}-${process.pid}-fuzz-${tag}-${counter++}`;

/** Kinds to corrupt: how to create a valid one, open it again, and use it without blocking. */
const KINDS = {
  queue: {
    create: (name) => Queue.create(name, { capacity: 4, maxMessageSize: 64 }),
    open: (name) => Queue.open(name, { initTimeout: 0 }),
    use(q) {
      q.trySend(new Uint8Array([1, 2, 3]));
      q.tryReceive();
      q.tryReceive();
      q.stats?.();
    },
  },
  mutex: {
    create: (name) => Mutex.create(name),
    open: (name) => Mutex.open(name, { initTimeout: 0 }),
    use(m) {
      if (m.tryLock()) m.unlock();
    },
  },
  semaphore: {
    create: (name) => Semaphore.create(name, { initial: 1 }),
    open: (name) => Semaphore.open(name, { initTimeout: 0 }),
    use(s) {
      if (s.tryAcquire()) s.release();
    },
  },
  condition: {
    create: (name) => Condition.create(name),
    open: (name) => Condition.open(name, { initTimeout: 0 }),
    use(c) {
      c.notify();
      c.notifyAll();
    },
  },
  rwlock: {
    create: (name) => RWLock.create(name),
    open: (name) => RWLock.open(name, { initTimeout: 0 }),
    use(rw) {
      if (rw.tryReadLock()) rw.readUnlock();
      if (rw.tryWriteLock()) rw.writeUnlock();
    },
  },
  topic: {
    create: (name) => {
      const t = Topic.create(name, { capacity: 4, maxMessageSize: 64, maxSubscribers: 2 });
      t.subscribe();
      t.tryPublish(new Uint8Array([1, 2]));
      return t;
    },
    open: (name) => Topic.open(name, { initTimeout: 0 }),
    use(t) {
      const sub = t.subscribe({ from: 'oldest' });
      t.tryPublish(new Uint8Array([1, 2, 3]));
      sub.tryReceive();
      sub.tryReceive();
      t.stats();
    },
  },
  barrier: {
    create: (name) => Barrier.create(name, { parties: 2 }),
    open: (name) => Barrier.open(name, { initTimeout: 0 }),
    use(b) {
      b.tryWait();
    },
  },
};

/** Codes a corrupted object may legitimately produce; anything else is a bug. */
const ALLOWED = new Set([
  'IPC_ERR_INCOMPATIBLE',
  'IPC_ERR_OWNER_DEAD',
  'IPC_ERR_NOT_RECOVERABLE',
  'IPC_ERR_NOT_OWNER',
  'IPC_ERR_PROTOCOL',
  'IPC_ERR_LIMIT',
  'IPC_ERR_MESSAGE_TOO_LARGE',
]);

/** Returns the code of an error a corrupted object may raise; rethrows anything else. */
function allowed(err) {
  if (ALLOWED.has(err?.code)) return err.code;
  throw err;
}

export const segment = {
  name: 'segments of every kind, corrupted, then opened and used',
  arbitrary: fc.record({
    kind: fc.constantFrom(...Object.keys(KINDS)),
    // Writes of random values, mostly into the first 512 bytes (header, indices, lock words).
    writes: fc.array(
      fc.record({
        at: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 511 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 2047 }) }),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
      }),
      { minLength: 1, maxLength: 6 },
    ),
  }),
  run({ kind, writes }) {
    const k = KINDS[kind];
    const name = uniqueName(kind);
    const original = k.create(name);
    try {
      const raw = SharedMemory.open(name);
      const bytes = new Uint8Array(raw.buffer);
      for (const { at, bytes: b } of writes) bytes.set(b.subarray(0, Math.max(0, bytes.length - (at % bytes.length))), at % bytes.length);
      raw.close();
      let handle;
      try {
        handle = k.open(name);
      } catch (err) {
        return `${kind} open: ${allowed(err)}`;
      }
      try {
        k.use(handle);
        return `${kind} opened and used`;
      } catch (err) {
        return `${kind} opened, use: ${allowed(err)}`;
      } finally {
        handle.close();
      }
    } finally {
      original.close();
      SharedMemory.remove(name);
    }
  },
};

// ---- nats:// links: what arrives on a connection's subject, against a reference model -------

const { NatsLink } = require('../../dist/cjs/channel/nats/link.js');

const NATS_HEADER = 16;
const NATS_WINDOW = 65536;

/** The link's rules for what arrives (src/channel/nats/link.ts), one message at a time. */
function referenceNats(messages, max) {
  const frames = [];
  let seq = 0;
  let bytes = 0;
  let remaining = 0;
  let cur;
  for (const m of messages) {
    const kind = m.length > 0 ? m[0] : -1;
    if ((kind >= 1 && kind <= 4) || kind === 17) {
      if (m.length < NATS_HEADER) return { frames, failed: true };
      const id = m.readUInt32LE(4);
      const total = m.readUInt32LE(8);
      if (m.readUInt32LE(12) !== seq % 2 ** 32) return { frames, failed: true };
      bytes += m.length;
      if (bytes > NATS_WINDOW) return { frames, failed: true };
      const chunk = m.subarray(NATS_HEADER);
      if (kind === 17) {
        if (remaining === 0 || id !== cur.id || total !== cur.total || chunk.length === 0 || chunk.length > remaining) return { frames, failed: true };
        remaining -= chunk.length;
        cur.parts.push(chunk);
      } else {
        if (remaining > 0 || total > max || (kind === 1) !== (id === 0) || chunk.length > total) return { frames, failed: true };
        remaining = total - chunk.length;
        cur = { type: kind, id, total, parts: [chunk] };
      }
      seq++;
      if (remaining === 0) frames.push({ type: cur.type, id: cur.id, payload: Buffer.concat(cur.parts) });
    } else if (kind === 33 || kind === 34) {
      if (m.length !== 8 || m.readUInt32LE(4) !== seq % 2 ** 32) return { frames, failed: true };
      if (kind === 34) return { frames, failed: false }; // the end (cut mid-frame or not): nothing after counts
    } else if (kind === 32) {
      const limit = m.length === 16 ? m.readDoubleLE(8) : NaN;
      if (!(limit >= 0 && Number.isFinite(limit)) || m.readUInt32LE(4) !== 0) return { frames, failed: true }; // nothing was sent
    } else if (kind === 35) {
      return { frames, failed: false };
    } else return { frames, failed: true };
  }
  return { frames, failed: false };
}

const natsFrameArb = fc.record({
  type: fc.constantFrom(1, 2, 3, 4),
  id: fc.integer({ min: 1, max: 2 ** 32 - 1 }),
  payload: fc.uint8Array({ maxLength: 200 }),
  cuts: fc.array(fc.integer({ min: 1, max: 80 }), { minLength: 1, maxLength: 4 }),
});

/** Honest chunk messages for `frames`, numbered from 0, with a beat now and then. */
function natsMessages(frames, beats) {
  const out = [];
  let seq = 0;
  for (const [f, frame] of frames.entries()) {
    const id = frame.type === 1 ? 0 : frame.id;
    let at = 0;
    for (let i = 0; at < frame.payload.length || i === 0; i++) {
      const take = Math.min(frame.payload.length - at, frame.cuts[i % frame.cuts.length]);
      const m = Buffer.alloc(NATS_HEADER + take);
      m[0] = i === 0 ? frame.type : 17;
      m.writeUInt32LE(id, 4);
      m.writeUInt32LE(frame.payload.length, 8);
      m.writeUInt32LE(seq++, 12);
      m.set(frame.payload.subarray(at, at + take), NATS_HEADER);
      out.push(m);
      at += take;
    }
    if (beats[f % beats.length]) out.push(Buffer.from([33, 0, 0, 0, seq & 0xff, (seq >>> 8) & 0xff, 0, 0]));
  }
  return out;
}

export const natsLink = {
  name: 'nats:// link receive path (chunks, counts, credit) vs a reference model',
  arbitrary: fc.record({
    max: fc.constantFrom(0, 64, 300, 65536),
    messages: fc.oneof(
      { weight: 4, arbitrary: fc.record({ frames: fc.array(natsFrameArb, { maxLength: 6 }), beats: fc.array(fc.boolean(), { minLength: 1, maxLength: 3 }) }).map(({ frames, beats }) => natsMessages(frames, beats)) },
      { weight: 1, arbitrary: fc.array(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), { maxLength: 6 }) },
    ),
    // Break one message: a byte overwritten, the message cut short, or one dropped.
    damage: fc.option(fc.record({ at: fc.nat(), byte: fc.nat(255), how: fc.constantFrom('byte', 'cut', 'drop') }), { freq: 2 }),
  }),
  run({ max, messages, damage }) {
    messages = messages.map((m) => Buffer.from(m));
    if (damage && messages.length > 0) {
      const i = damage.at % messages.length;
      const m = messages[i];
      if (damage.how === 'drop') messages.splice(i, 1);
      else if (damage.how === 'cut') messages[i] = m.subarray(0, damage.at % (m.length + 1));
      else if (m.length > 0) m[damage.at % Math.min(m.length, NATS_HEADER)] = damage.byte;
    }
    const expected = referenceNats(messages, max);
    // The link's side of the network: what it publishes is recorded (an ABORT says it failed).
    const published = [];
    const uplink = { maxPayload: 1 << 20, attach() {}, detach: () => Promise.resolve(), publish: (_subject, data) => published.push(Buffer.from(data)) };
    const link = new NatsLink({
      uplink,
      subscription: { unsubscribe() {} },
      inbox: 'in',
      outbox: 'out',
      window: NATS_WINDOW,
      heartbeat: 1 << 30,
      peerWindow: NATS_WINDOW,
      peerHeartbeat: 1 << 20,
      options: { maxMessageSize: max, frameTimeout: Infinity, closeTimeout: 0 },
      what: 'fuzz',
    });
    const got = [];
    link.start({ frame: (type, id, payload) => got.push({ type, id, payload: Buffer.from(payload) }), ended() {} });
    for (const data of messages) link.receive({ data, headers: undefined });
    const failed = published.some((m) => m[0] === 35);
    link.destroy();
    if (failed !== expected.failed) throw new Error(`link ${failed ? 'failed on' : 'accepted'} messages the model ${expected.failed ? 'rejects' : 'accepts'}`);
    if (got.length !== expected.frames.length) throw new Error(`link delivered ${got.length} frames, the model ${expected.frames.length}`);
    got.forEach((frame, i) => {
      const want = expected.frames[i];
      if (frame.type !== want.type || frame.id !== want.id || !frame.payload.equals(want.payload)) throw new Error(`frame ${i} differs from the model`);
    });
    return failed ? 'failed' : got.length === 0 ? 'no frame' : 'frames delivered';
  },
};

export const targets = { framing, segment, natsLink };
