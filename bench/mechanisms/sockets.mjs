// Socket and pipe channels beside their baselines, for the bench harness (contract in
// bench/util.mjs):
//   channel-unix, channel-tcp, channel-pipe   interprocess Channels (codec 'bytes')
//   channel-unix-batch, channel-shm-batch      the same, the receiver taking batches with
//                       receiveMany(1024) (throughput at 64 B and 4 KiB)
//   channel-nats        the same Channel over nats:// through a nats-server that each trial
//                       starts on a free loopback port (left out, with a note, when
//                       nats-server is not installed)
//   net-unix-raw        hand-written node:net framing (4-byte length + payload) over a Unix socket
//   child-process-ipc   Node's own process.send / child.send ('advanced' serialization)
//   node-ipc, zeromq    the npm packages, when installed: they are not dependencies of this
//                       package; they are looked up in node_modules and in the folder named
//                       by INTERPROCESS_BENCH_DEPS (e.g. a scratch `npm install node-ipc zeromq`)
//                       and the mechanisms are left out when absent.
//
// Run directly for a quick standalone look:  node bench/mechanisms/sockets.mjs [count] [ids...]
// The same file is also the peer process (argv[2] === 'peer').
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { SinkClock, check, doneFrame, forkPeer, nextMessage, now, pinSelf, secondsOf, stamp } from '../util.mjs';
import { NATS_MISSING, startNatsServer } from '../nats-server.mjs';

const self = fileURLToPath(import.meta.url);
const require = createRequire(import.meta.url);
const lib = () => require('../../dist/cjs/index.js');
const SIZES = [64, 4096, 65536, 1048576];

function socketPath() {
  return path.join(os.tmpdir(), `interprocess-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}.sock`);
}

// ---- interprocess channels ----

/** Opens [channel, peer, cleanup] for one transport; the peer echoes or counts. */
async function openChannel(transport, role, size, count, cpus, warmup = 0) {
  const { listen, childChannel } = lib();
  if (transport === 'pipe') {
    const child = fork(self, ['peer', 'channel', 'pipe://fd/4', role, size, count, warmup], {
      env: { ...process.env, BENCH_CPU: cpus?.[1] === undefined ? '' : String(cpus[1]) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', 'pipe'],
    });
    const ch = childChannel(child, { fd: 4 });
    await nextMessage(child, 'ready');
    return { ch, cleanup: async () => (await ch.close(), await exited(child)) };
  }
  // nats://: a private nats-server for this trial (the broker is part of what is measured).
  const nats = transport === 'nats' ? await startNatsServer() : undefined;
  const address =
    transport === 'unix'
      ? `unix://${socketPath()}`
      : transport === 'shm'
        ? `shm://bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
        : nats !== undefined
          ? nats.address(`bench.${process.pid}`)
          : 'tcp://127.0.0.1:0';
  const server = await listen(address);
  const child = forkPeer(self, ['peer', 'channel', server.address, role, size, count, warmup], cpus?.[1]);
  const ch = await server.accept();
  await nextMessage(child, 'ready');
  return {
    ch,
    cleanup: async () => {
      await ch.close();
      await server.close();
      await exited(child);
      await nats?.kill();
    },
  };
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', resolve));
}

/**
 * The receiving peer takes one message per `await ch.receive()`, or with `batch` up to 1024 per
 * `await ch.receiveMany(1024)` (throughput only: a round trip has one message in flight).
 */
function channelMechanism(transport, label, { batch = false } = {}) {
  async function roundTrip({ size, count, cpus }) {
    pinSelf(cpus?.[0]);
    const { ch, cleanup } = await openChannel(transport, 'echo', size, count, cpus);
    const out = new Float64Array(count);
    const msg = Buffer.alloc(size);
    try {
      for (let i = 0; i < count; i++) {
        stamp(msg, i);
        const t0 = now();
        await ch.send(msg);
        const reply = await ch.receive();
        out[i] = Number(now() - t0);
        check(reply, size, i, `${transport} round trip`);
      }
    } finally {
      await cleanup();
    }
    return out;
  }
  async function throughput({ size, count, warmup = 0, cpus }) {
    pinSelf(cpus?.[0]);
    const { ch, cleanup } = await openChannel(transport, batch ? 'sink-many' : 'sink', size, count, cpus, warmup);
    try {
      const msg = Buffer.alloc(size);
      for (let i = 0; i < warmup + count; i++) {
        stamp(msg, i);
        // trySend commits while there is room; when full, send waits for the peer.
        if (!ch.trySend(msg)) await ch.send(msg);
      }
      return { messages: count, seconds: secondsOf(await ch.receive(), warmup + count), warmup };
    } finally {
      await cleanup();
    }
  }
  return {
    id: `channel-${transport}${batch ? '-batch' : ''}`,
    label,
    family: 'interprocess',
    sizes: batch ? [64, 4096] : SIZES,
    // shm:// against unix:// is a target: both rows are the median of three (src/cli/bench.ts).
    ...(transport === 'shm' || transport === 'unix' ? { trials: 3 } : {}),
    ...(batch ? {} : { roundTrip }),
    throughput,
  };
}

async function channelPeer(address, role, size, count, warmup) {
  const { connect } = lib();
  const ch = await connect(address);
  const clock = new SinkClock(warmup, count);
  process.send({ type: 'ready' });
  if (role === 'echo') {
    for await (const m of ch) await ch.send(m);
  } else {
    const total = warmup + count;
    let seq = 0;
    if (role === 'sink-many') {
      while (seq < total) {
        for (const m of await ch.receiveMany(1024)) {
          check(m, size, seq, 'channel sink');
          clock.at(seq++);
        }
      }
    } else {
      for (; seq < total; clock.at(seq++)) check(await ch.receive(), size, seq, 'channel sink');
    }
    await ch.send(doneFrame(seq, clock.seconds));
    for await (const _ of ch);
  }
  await ch.close();
  process.exit(0);
}

// ---- baseline: hand-written length framing over node:net ----

/** Minimal framing: u32 LE length + payload; calls onMessage(buf) per complete message. */
function rawFramer(socket, onMessage) {
  let parts = [];
  let buffered = 0;
  let need = -1;
  socket.on('data', (chunk) => {
    parts.push(chunk);
    buffered += chunk.length;
    for (;;) {
      if (need < 0) {
        if (buffered < 4) return;
        const head = parts.length === 1 ? parts[0] : Buffer.concat(parts, buffered);
        need = head.readUInt32LE(0);
        parts = [head.subarray(4)];
        buffered -= 4;
      }
      if (buffered < need) return;
      const all = parts.length === 1 ? parts[0] : Buffer.concat(parts, buffered);
      const msg = all.subarray(0, need);
      const rest = all.subarray(need);
      parts = rest.length > 0 ? [rest] : [];
      buffered = rest.length;
      need = -1;
      onMessage(msg);
    }
  });
}

// Copies the message into the frame, as a message-passing API must (the caller reuses its
// buffer at once; Channel.send gives the same guarantee).
function rawWrite(socket, msg) {
  const frame = Buffer.allocUnsafe(4 + msg.length);
  frame.writeUInt32LE(msg.length, 0);
  msg.copy(frame, 4);
  return socket.write(frame);
}

async function openRaw(role, size, count, cpus, warmup = 0) {
  const p = socketPath();
  const server = net.createServer();
  await new Promise((resolve) => server.listen(p, resolve));
  const child = forkPeer(self, ['peer', 'raw', p, role, size, count, warmup], cpus?.[1]);
  const socket = await new Promise((resolve) => server.once('connection', resolve));
  socket.setNoDelay(true);
  await nextMessage(child, 'ready');
  const inbox = [];
  const waiters = [];
  rawFramer(socket, (m) => (waiters.length > 0 ? waiters.shift()(m) : inbox.push(m)));
  const receive = () => (inbox.length > 0 ? Promise.resolve(inbox.shift()) : new Promise((r) => waiters.push(r)));
  return {
    socket,
    receive,
    cleanup: async () => {
      socket.end();
      await exited(child);
      await new Promise((resolve) => server.close(resolve));
      fs.rmSync(p, { force: true });
    },
  };
}

const rawMechanism = {
  id: 'net-unix-raw',
  label: 'node:net Unix socket, hand-written framing',
  family: 'baseline',
  sizes: SIZES,
  async roundTrip({ size, count, cpus }) {
    pinSelf(cpus?.[0]);
    const { socket, receive, cleanup } = await openRaw('echo', size, count, cpus);
    const out = new Float64Array(count);
    const msg = Buffer.alloc(size);
    try {
      for (let i = 0; i < count; i++) {
        stamp(msg, i);
        const t0 = now();
        rawWrite(socket, msg);
        const reply = await receive();
        out[i] = Number(now() - t0);
        check(reply, size, i, 'raw round trip');
      }
    } finally {
      await cleanup();
    }
    return out;
  },
  async throughput({ size, count, warmup = 0, cpus }) {
    pinSelf(cpus?.[0]);
    const { socket, receive, cleanup } = await openRaw('sink', size, count, cpus, warmup);
    try {
      const msg = Buffer.alloc(size);
      for (let i = 0; i < warmup + count; i++) {
        stamp(msg, i);
        if (!rawWrite(socket, msg)) await new Promise((r) => socket.once('drain', r));
      }
      return { messages: count, seconds: secondsOf(await receive(), warmup + count), warmup };
    } finally {
      await cleanup();
    }
  },
};

async function rawPeer(p, role, size, count, warmup) {
  const socket = net.connect(p);
  socket.setNoDelay(true);
  await new Promise((r) => socket.once('connect', r));
  socket.on('end', () => process.exit(0));
  const clock = new SinkClock(warmup, count);
  let seq = 0;
  rawFramer(socket, (m) => {
    if (role === 'echo') return rawWrite(socket, m);
    check(m, size, seq, 'raw sink');
    clock.at(seq++);
    if (seq === warmup + count) rawWrite(socket, doneFrame(seq, clock.seconds));
  });
  process.send({ type: 'ready' });
}

// ---- baseline: child_process IPC ----

function forkIpc(role, size, count, cpus, warmup = 0) {
  return fork(self, ['peer', 'ipc', '-', role, size, count, warmup], {
    env: { ...process.env, BENCH_CPU: cpus?.[1] === undefined ? '' : String(cpus[1]) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
}

const ipcMechanism = {
  id: 'child-process-ipc',
  label: "child_process IPC (process.send, 'advanced' serialization)",
  family: 'baseline',
  sizes: SIZES,
  async roundTrip({ size, count, cpus }) {
    pinSelf(cpus?.[0]);
    const child = forkIpc('echo', size, count, cpus);
    await nextMessage(child, 'ready');
    const out = new Float64Array(count);
    const msg = Buffer.alloc(size);
    try {
      for (let i = 0; i < count; i++) {
        stamp(msg, i);
        const t0 = now();
        const reply = nextMessage(child);
        child.send(msg);
        const got = await reply;
        out[i] = Number(now() - t0);
        check(Buffer.from(got.buffer, got.byteOffset, got.byteLength), size, i, 'ipc round trip');
      }
    } finally {
      child.disconnect();
      await exited(child);
    }
    return out;
  },
  async throughput({ size, count, warmup = 0, cpus }) {
    pinSelf(cpus?.[0]);
    const child = forkIpc('sink', size, count, cpus, warmup);
    await nextMessage(child, 'ready');
    try {
      const msg = Buffer.alloc(size);
      const done = nextMessage(child, 'done');
      for (let i = 0; i < warmup + count; i++) {
        stamp(msg, i);
        // child.send returns false when its queue is backed up: wait for the callback then.
        if (!child.send(msg)) await new Promise((r) => child.send(Buffer.alloc(0), r));
      }
      const { received, seconds } = await done;
      if (received !== warmup + count) throw new Error(`peer received ${received} of ${warmup + count}`);
      return { messages: count, seconds, warmup };
    } finally {
      child.disconnect();
      await exited(child);
    }
  },
};

function ipcPeer(role, size, count, warmup) {
  const clock = new SinkClock(warmup, count);
  let seq = 0;
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m) => {
    if (m?.type !== undefined) return;
    if (role === 'echo') return process.send(m);
    if (m.byteLength === 0) return; // a flow-control marker
    check(Buffer.from(m.buffer, m.byteOffset, m.byteLength), size, seq, 'ipc sink');
    clock.at(seq++);
    if (seq === warmup + count) process.send({ type: 'done', received: seq, seconds: clock.seconds });
  });
  process.send({ type: 'ready' });
}

// ---- optional npm comparisons ----

/** Imports an optional package from node_modules or $INTERPROCESS_BENCH_DEPS; undefined if absent. */
async function optional(name) {
  const bases = [import.meta.url];
  if (process.env.INTERPROCESS_BENCH_DEPS) bases.push(path.join(process.env.INTERPROCESS_BENCH_DEPS, 'x.js'));
  for (const base of bases) {
    try {
      const resolved = createRequire(base).resolve(name);
      return await import(pathToFileURL(resolved).href);
    } catch {
      // try the next place
    }
  }
  return undefined;
}

const nodeIpc = (await optional('node-ipc'))?.default;
const zmq = await optional('zeromq');

/** node-ipc ('fast' profile: JSON event envelopes); payloads travel as base64 strings. */
function nodeIpcMechanism() {
  const open = async (role, size, count, cpus, warmup = 0) => {
    const id = `interprocess-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const p = path.join(os.tmpdir(), `${id}.sock`);
    nodeIpc.config.silent = true;
    nodeIpc.config.id = id;
    nodeIpc.config.maxMessageSize = 64 * 1024 * 1024;
    const connected = new Promise((resolve) => {
      nodeIpc.serve(p, () => nodeIpc.server.on('ready', (_data, socket) => resolve(socket)));
      nodeIpc.server.start();
    });
    const child = forkPeer(self, ['peer', 'node-ipc', p, role, size, count, warmup], cpus?.[1]);
    const socket = await connected;
    const inbox = [];
    const waiters = [];
    nodeIpc.server.on('m', (data) => (waiters.length > 0 ? waiters.shift()(data) : inbox.push(data)));
    const receive = () => (inbox.length > 0 ? Promise.resolve(inbox.shift()) : new Promise((r) => waiters.push(r)));
    return {
      send: (buf) => nodeIpc.server.emit(socket, 'm', buf.toString('base64')),
      // node-ipc's emit writes to the socket and drops write()'s answer: the socket still knows.
      drained: () => (socket.writableNeedDrain ? new Promise((r) => socket.once('drain', r)) : undefined),
      receive,
      cleanup: async () => {
        nodeIpc.server.emit(socket, 'bye', '');
        await exited(child);
        nodeIpc.server.stop();
        fs.rmSync(p, { force: true });
      },
    };
  };
  return {
    id: 'node-ipc',
    label: `node-ipc ${createRequireVersion('node-ipc')} (unix socket, JSON envelopes, base64 payload)`,
    family: 'baseline',
    sizes: SIZES,
    // 16 MiB a trial: node-ipc's receiver appends every read to one string and parses it only
    // when a read ends on a message boundary (dao/client.js), so a one-way stream of messages
    // larger than a read costs it time quadratic in the bytes in between: a 1 GiB trial of 64
    // KiB or 1 MiB messages, or a 64 MiB one of 64 KiB, ran past the 120 s trial timeout.
    trialBytes: 16 << 20,
    async roundTrip({ size, count, cpus }) {
      pinSelf(cpus?.[0]);
      const link = await open('echo', size, count, cpus);
      const out = new Float64Array(count);
      const msg = Buffer.alloc(size);
      try {
        for (let i = 0; i < count; i++) {
          stamp(msg, i);
          const t0 = now();
          link.send(msg);
          const reply = Buffer.from(await link.receive(), 'base64');
          out[i] = Number(now() - t0);
          check(reply, size, i, 'node-ipc round trip');
        }
      } finally {
        await link.cleanup();
      }
      return out;
    },
    async throughput({ size, count, warmup = 0, cpus }) {
      pinSelf(cpus?.[0]);
      const link = await open('sink', size, count, cpus, warmup);
      try {
        const msg = Buffer.alloc(size);
        for (let i = 0; i < warmup + count; i++) {
          stamp(msg, i);
          link.send(msg);
          // Backpressure as the hand-framed socket gets it (wait for 'drain'): node-ipc gives the
          // caller none, and a sender that only yielded now and then flooded the peer, whose
          // parser then took minutes per trial (1 MiB messages timed out at 120 s).
          const drained = link.drained();
          if (drained !== undefined) await drained;
        }
        // The sink's doneFrame, as base64 (node-ipc's payloads are strings).
        return { messages: count, seconds: secondsOf(Buffer.from(await link.receive(), 'base64'), warmup + count), warmup };
      } finally {
        await link.cleanup();
      }
    },
  };
}

function createRequireVersion(name) {
  for (const base of [import.meta.url, path.join(process.env.INTERPROCESS_BENCH_DEPS ?? '.', 'x.js')]) {
    try {
      const dir = path.dirname(createRequire(base).resolve(name));
      for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
        const pkg = path.join(d, 'package.json');
        if (fs.existsSync(pkg)) {
          const json = JSON.parse(fs.readFileSync(pkg, 'utf8'));
          if (json.name === name) return json.version;
        }
      }
    } catch {
      // not here
    }
  }
  return '?';
}

function nodeIpcPeer(p, role, size, count, warmup) {
  nodeIpc.config.silent = true;
  nodeIpc.config.id = `peer-${process.pid}`;
  nodeIpc.config.maxRetries = 0;
  nodeIpc.config.maxMessageSize = 64 * 1024 * 1024;
  const clock = new SinkClock(warmup, count);
  let seq = 0;
  nodeIpc.connectTo('server', p, () => {
    const server = nodeIpc.of.server;
    server.on('connect', () => server.emit('ready', ''));
    server.on('bye', () => process.exit(0));
    server.on('m', (data) => {
      if (role === 'echo') return server.emit('m', data);
      check(Buffer.from(data, 'base64'), size, seq, 'node-ipc sink');
      clock.at(seq++);
      if (seq === warmup + count) server.emit('m', doneFrame(seq, clock.seconds).toString('base64'));
    });
  });
}

/** zeromq PAIR sockets over ipc:// (a Unix socket). */
function zmqMechanism() {
  const open = async (role, size, count, cpus, warmup = 0) => {
    const p = path.join(os.tmpdir(), `interprocess-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}.zmq`);
    const sock = new zmq.Pair({ sendHighWaterMark: 1000, receiveHighWaterMark: 1000 });
    await sock.bind(`ipc://${p}`);
    const child = forkPeer(self, ['peer', 'zeromq', p, role, size, count, warmup], cpus?.[1]);
    await nextMessage(child, 'ready');
    return {
      sock,
      cleanup: async () => {
        await sock.send(Buffer.alloc(0)); // goodbye
        await exited(child);
        sock.close();
        fs.rmSync(p, { force: true });
      },
    };
  };
  return {
    id: 'zeromq',
    label: `zeromq ${createRequireVersion('zeromq')} (PAIR over ipc://)`,
    family: 'baseline',
    sizes: SIZES,
    async roundTrip({ size, count, cpus }) {
      pinSelf(cpus?.[0]);
      const { sock, cleanup } = await open('echo', size, count, cpus);
      const out = new Float64Array(count);
      const msg = Buffer.alloc(size);
      try {
        for (let i = 0; i < count; i++) {
          stamp(msg, i);
          const t0 = now();
          await sock.send(Buffer.from(msg));
          const [reply] = await sock.receive();
          out[i] = Number(now() - t0);
          check(reply, size, i, 'zeromq round trip');
        }
      } finally {
        await cleanup();
      }
      return out;
    },
    async throughput({ size, count, warmup = 0, cpus }) {
      pinSelf(cpus?.[0]);
      const { sock, cleanup } = await open('sink', size, count, cpus, warmup);
      try {
        const msg = Buffer.alloc(size);
        // zeromq sends the Buffer without copying: give it its own copy, as Channel.send does.
        for (let i = 0; i < warmup + count; i++) await sock.send(Buffer.from(stamp(msg, i)));
        const [done] = await sock.receive();
        return { messages: count, seconds: secondsOf(done, warmup + count), warmup };
      } finally {
        await cleanup();
      }
    },
  };
}

async function zmqPeer(p, role, size, count, warmup) {
  const sock = new zmq.Pair({ sendHighWaterMark: 1000, receiveHighWaterMark: 1000 });
  sock.connect(`ipc://${p}`);
  const clock = new SinkClock(warmup, count);
  process.send({ type: 'ready' });
  let seq = 0;
  for (;;) {
    const [m] = await sock.receive();
    if (m.length === 0) break;
    if (role === 'echo') await sock.send(m);
    else {
      check(m, size, seq, 'zeromq sink');
      clock.at(seq++);
      if (seq === warmup + count) await sock.send(doneFrame(seq, clock.seconds));
    }
  }
  sock.close();
  process.exit(0);
}

const mechanisms = [
  channelMechanism('unix', 'interprocess Channel, unix://'),
  channelMechanism('tcp', 'interprocess Channel, tcp:// (loopback)'),
  channelMechanism('pipe', 'interprocess Channel, pipe to a child (fd 4)'),
  // The same Channel calls over shm:// (two shared-memory queues per connection).
  channelMechanism('shm', 'interprocess Channel, shm:// (two shared-memory queues)'),
  // Both again with a receiver that takes what arrived in batches (receiveMany): one promise per
  // batch instead of one per message, which is most of what a small message costs a receiver.
  channelMechanism('unix', 'interprocess Channel, unix://, await receiveMany(1024)', { batch: true }),
  channelMechanism('shm', 'interprocess Channel, shm://, await receiveMany(1024)', { batch: true }),
  // And over nats://, through a broker: the cost of leaving one machine's shared memory.
  { ...channelMechanism('nats', 'interprocess Channel, nats:// (through a local nats-server)'), ...(NATS_MISSING ? { unavailable: NATS_MISSING } : {}) },
  rawMechanism,
  ipcMechanism,
  ...(nodeIpc ? [nodeIpcMechanism()] : []),
  ...(zmq ? [zmqMechanism()] : []),
];
export default mechanisms;

// ---- peer process / standalone try-out ----

if (process.argv[1] === self) {
  const [mode, kind, address, role, size, count, warmup = '0'] = process.argv.slice(2);
  if (mode === 'peer') {
    pinSelf();
    const args = [role, Number(size), Number(count), Number(warmup)];
    if (kind === 'channel') await channelPeer(address, ...args);
    else if (kind === 'raw') await rawPeer(address, ...args);
    else if (kind === 'node-ipc') nodeIpcPeer(address, ...args);
    else if (kind === 'zeromq') await zmqPeer(address, ...args);
    else ipcPeer(...args);
  } else {
    const count = Number(process.argv[2] ?? 2000);
    const only = process.argv.slice(3);
    const cpus = os.cpus().length >= 2 ? [0, 1] : undefined;
    const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))] / 1000;
    console.log(`node ${process.version}, ${os.cpus().length} cpus (${os.cpus()[0]?.model}), ${count} messages per trial`);
    for (const m of mechanisms) {
      if (only.length > 0 && !only.includes(m.id)) continue;
      if (m.unavailable) {
        console.log(`${m.id.padEnd(18)} skipped: ${m.unavailable}`);
        continue;
      }
      const rt = m.roundTrip === undefined ? [NaN] : (await m.roundTrip({ size: 64, count, cpus })).sort();
      const rows = [];
      for (const size of m.sizes) {
        const n = size >= 1048576 ? Math.max(50, count / 40) : size >= 65536 ? Math.max(200, count / 4) : count * 5;
        const { messages, seconds } = await m.throughput({ size, count: Math.round(n), cpus });
        rows.push(`${size >= 1048576 ? `${size / 1048576}M` : size >= 1024 ? `${size / 1024}K` : size}: ${Math.round(messages / seconds)}/s ${((messages * size) / seconds / 1e6).toFixed(0)} MB/s`);
      }
      console.log(`${m.id.padEnd(18)} 64 B rt p50 ${pct(rt, 0.5).toFixed(1)} µs p99 ${pct(rt, 0.99).toFixed(1)} µs | ${rows.join(' | ')}`);
    }
  }
}
