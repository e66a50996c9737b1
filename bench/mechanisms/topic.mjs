// Topic (broadcast in shared memory) beside the pub/sub systems people use for the same job:
//   topic-spin      1 publisher -> 1 subscriber process, both busy-spinning (wait: 'spin');
//                   round trip: two topics (ping, pong), the peer republishes each message
//   topic-exclusive the same on topics created with exclusivePublisher (a publish without a lock;
//                   on x86 without a locked instruction)
//   topic-async     the same with `await publish()` / `await receive()` (spin-then-block)
//   topic-fanout-2  throughput only: 1 publisher -> 2 subscriber processes, each `await receive()`
//   topic-fanout-4  ... -> 4 subscriber processes (this machine has 2 cores: subscribers that
//                   busy-wait beyond one would measure the scheduler, so they wait on the loop)
//   zeromq-pubsub   baseline: zeromq PUB/SUB over ipc:// (npm zeromq), when installed
//   redis-pubsub    baseline: Redis PUBLISH/SUBSCRIBE over a private Unix socket (redis-server
//                   from the OS, started here; client npm ioredis), when both are installed
// overflow 'block' throughout, so nothing may be lost: every message is checked (size and
// sequence number) by every subscriber. A fan-out trial's rate is the publisher's count over
// the time until the last subscriber has everything; each subscriber's own rate and the
// publisher's are in the result's `subscribers` / `publisherMessagesPerSecond`.
//
// Standalone: node bench/mechanisms/topic.mjs [count]   (a quick table of every mechanism)
// This file is also the peer: node bench/mechanisms/topic.mjs peer <kind> ...
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEEP_RING_BYTES, SinkClock, capacityFor, check, doneFrame, forkPeer, nextMessage, now, pinSelf, secondsOf, stamp } from '../util.mjs';

const require = createRequire(import.meta.url);
const { Topic } = require('../../dist/cjs/index.js');
const self = fileURLToPath(import.meta.url);
const SIZES = [64, 4096, 65536, 1048576];
const WAIT = { spin: 'spin', exclusive: 'spin', async: 'spin-then-block' };

/** A promise awaited later: a peer that dies meanwhile must not be an unhandled rejection. */
function settled(promise) {
  promise.catch(() => {});
  return promise;
}

/**
 * The queue rows' ring geometry (capacityFor), one message per slot; a deep ring for fan-out,
 * whose subscribers share one core and read in turns.
 */
function topicOptions(size, mode, subscribers = 1) {
  return { capacity: capacityFor(size, subscribers > 1 ? DEEP_RING_BYTES : undefined), maxMessageSize: size, overflow: 'block', wait: WAIT[mode], exclusivePublisher: mode === 'exclusive' };
}

const uniq = (tag) => `bench-t-${process.pid}-${tag}-${Math.random().toString(36).slice(2, 8)}`;

// ---- the topic -------------------------------------------------------------------------------

function roundTrip(mode) {
  return async ({ size, count, cpus }) => {
    const name = uniq(`${mode}-rt`);
    const ping = Topic.create(`${name}-ping`, topicOptions(size, mode));
    const pong = Topic.create(`${name}-pong`, topicOptions(size, mode));
    const replies = pong.subscribe();
    const child = forkPeer(self, ['peer', 'echo', mode, name, size, count], cpus[1]);
    try {
      await nextMessage(child, 'ready');
      const done = settled(nextMessage(child, 'done'));
      const samples = new Float64Array(count);
      const payload = new Uint8Array(size);
      const warmup = Math.min(2000, count);
      const label = `topic-${mode}`;
      for (let i = -warmup; i < count; i++) {
        const seq = i >>> 0;
        stamp(payload, seq);
        const t0 = now();
        let reply;
        if (mode === 'async') {
          await ping.publish(payload);
          reply = await replies.receive();
        } else {
          ping.publishSync(payload);
          reply = replies.receiveSync();
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
      Topic.remove(`${name}-ping`);
      Topic.remove(`${name}-pong`);
    }
  };
}

/**
 * One publisher (this process) to `subscribers` peer processes; every peer checks every message.
 * warmup + count messages; the timed part runs from the moment every subscriber has had its
 * warm-up to the moment the last has everything (the subscribers' clocks are one: CLOCK_MONOTONIC).
 */
function throughput(mode, subscribers) {
  return async ({ size, count, warmup = 0, cpus }) => {
    const name = uniq(`${mode}-${subscribers}-tp`);
    const t = Topic.create(name, topicOptions(size, mode, subscribers));
    const children = [];
    try {
      for (let i = 0; i < subscribers; i++) children.push(forkPeer(self, ['peer', 'sink', mode, name, size, count, warmup], cpus[1]));
      await Promise.all(children.map((c) => nextMessage(c, 'ready')));
      const done = children.map((c) => settled(nextMessage(c, 'done')));
      const payload = new Uint8Array(size);
      const total = warmup + count;
      let t0 = now();
      if (mode === 'async') {
        for (let i = 0; i < total; i++) {
          if (i === warmup) t0 = now();
          stamp(payload, i);
          if (!t.tryPublish(payload)) await t.publish(payload);
        }
      } else {
        for (let i = 0; i < total; i++) {
          if (i === warmup) t0 = now();
          stamp(payload, i);
          if (!t.tryPublish(payload)) t.publishSync(payload);
        }
      }
      const published = Number(now() - t0) / 1e9;
      const results = await Promise.all(done);
      for (const r of results) if (r.received !== total) throw new Error(`a subscriber received ${r.received} of ${total}`);
      const latest = (key) => results.reduce((m, r) => (BigInt(r[key]) > m ? BigInt(r[key]) : m), 0n);
      return {
        messages: count,
        seconds: Number(latest('end') - latest('start')) / 1e9,
        warmup,
        publisherMessagesPerSecond: count / published,
        subscribers: results.map((r) => ({ messagesPerSecond: count / r.seconds, missed: r.missed })),
      };
    } finally {
      for (const c of children) c.kill();
      t.close();
      Topic.remove(name);
    }
  };
}

async function topicPeer([kind, mode, name, sizeArg, countArg, warmupArg = '0']) {
  const size = Number(sizeArg);
  const count = Number(countArg);
  const wait = WAIT[mode];
  if (kind === 'echo') {
    const ping = Topic.open(`${name}-ping`, { wait });
    const pong = Topic.open(`${name}-pong`, { wait });
    const requests = ping.subscribe();
    process.send({ type: 'ready' });
    const total = count + Math.min(2000, count);
    for (let i = 0; i < total; i++) {
      if (mode === 'async') await pong.publish(await requests.receive());
      else pong.publishSync(requests.receiveSync());
    }
    process.send({ type: 'done' });
    return;
  }
  const t = Topic.open(name, { wait });
  const sub = t.subscribe();
  const clock = new SinkClock(Number(warmupArg), count);
  const total = clock.warmup + count;
  process.send({ type: 'ready' });
  let received = 0;
  const label = `topic-${mode} sink`;
  if (mode === 'async') {
    for (; received < total; clock.at(received++)) check(sub.tryReceive() ?? (await sub.receive()), size, received, label);
  } else {
    for (; received < total; clock.at(received++)) check(sub.tryReceive() ?? sub.receiveSync(), size, received, label);
  }
  const { seconds, start, end } = clock;
  process.send({ type: 'done', received, missed: sub.missed, seconds, start: String(start), end: String(end) });
}

// ---- baselines -------------------------------------------------------------------------------

/** Imports an optional package (a devDependency that may have failed to install). */
async function optional(name) {
  try {
    return await import(pathToFileURL(require.resolve(name)).href);
  } catch {
    return undefined;
  }
}

function versionOf(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve(`${name}/package.json`)), 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

const zmq = await optional('zeromq');
const ioredis = await optional('ioredis');
const Redis = ioredis?.Redis ?? ioredis?.default;
const redisServer = (() => {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
})();

/**
 * A pub/sub system as two duplex links (this process <-> the peer): open(role) gives
 * { publish(buf), next() -> Promise<Buffer>, close(), pipelines? } here, and starts the peer
 * that echoes (role 'echo') or counts (role 'sink') on the other side.
 */
function pubsubMechanism(id, label, open) {
  return {
    id,
    label,
    family: 'baseline',
    waits: 'event-loop',
    sizes: SIZES,
    async roundTrip({ size, count, cpus }) {
      const link = await open('echo', size, count, cpus);
      try {
        const samples = new Float64Array(count);
        const payload = Buffer.alloc(size);
        const warmup = Math.min(200, count);
        for (let i = -warmup; i < count; i++) {
          const seq = i >>> 0;
          const t0 = now();
          await link.publish(stamp(Buffer.from(payload), seq));
          const reply = await link.next();
          const t1 = now();
          check(reply, size, seq, `${id} round trip`);
          if (i >= 0) samples[i] = Number(t1 - t0);
        }
        return samples;
      } finally {
        await link.close();
      }
    },
    async throughput({ size, count, warmup = 0, cpus }) {
      const link = await open('sink', size, count, cpus, warmup);
      try {
        const payload = Buffer.alloc(size);
        // A client that pipelines gets up to 16 MiB or 256 publishes in flight (one await at a
        // time would measure its round trip again); zeromq queues inside send() by itself.
        const window = link.pipelines ? Math.max(1, Math.min(256, Math.floor((16 << 20) / size))) : 1;
        const inFlight = [];
        for (let i = 0; i < warmup + count; i++) {
          inFlight.push(link.publish(stamp(Buffer.from(payload), i)));
          if (inFlight.length >= window) await inFlight.shift();
        }
        await Promise.all(inFlight);
        // The peer's count and its clock's seconds, once it has every message.
        return { messages: count, seconds: secondsOf(await link.next(), warmup + count), warmup };
      } finally {
        await link.close();
      }
    },
  };
}

/** zeromq: a PUB socket each way over ipc://; HWM 0 (unbounded) so that nothing is dropped. */
async function zmqOpen(role, size, count, cpus, warmup = 0) {
  const base = path.join(os.tmpdir(), `interprocess-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  const down = `ipc://${base}.down`;
  const up = `ipc://${base}.up`;
  const pub = new zmq.Publisher({ sendHighWaterMark: 0 });
  await pub.bind(down);
  const sub = new zmq.Subscriber({ receiveHighWaterMark: 0 });
  await sub.bind(up);
  sub.subscribe();
  const child = forkPeer(self, ['peer', 'zeromq', down, up, role, size, count, warmup], cpus[1]);
  // PUB/SUB drops what is sent before the subscription arrives ("slow joiner"): say hello until
  // the peer has heard one.
  const heard = settled(nextMessage(child, 'ready'));
  let ready = false;
  heard.then(() => (ready = true));
  while (!ready) {
    await pub.send('hello');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const it = sub[Symbol.asyncIterator]();
  // The peer's PUB has the same problem the other way: its first echo is dropped unless our
  // subscription reached it, which one of its hellos reaching us proves. (Without this wait a
  // round trip could hang on its first message: seen once in a full run, 120 s timeout.)
  for (;;) {
    const { value } = await it.next();
    if (value[0].length === 5 && value[0].toString() === 'hello') break;
  }
  // The peer's remaining hellos until ours is the first real message.
  const next = async () => {
    for (;;) {
      const { value } = await it.next();
      const m = value[0];
      if (m.length !== 5 || m.toString() !== 'hello') return m;
    }
  };
  return {
    publish: (buf) => pub.send(buf),
    next,
    async close() {
      child.kill();
      pub.close();
      sub.close();
      for (const file of [`${base}.down`, `${base}.up`]) fs.rmSync(file, { force: true });
    },
  };
}

async function zmqPeer([down, up, role, sizeArg, countArg, warmupArg = '0']) {
  const size = Number(sizeArg);
  const count = Number(countArg);
  const clock = new SinkClock(Number(warmupArg), count);
  const sub = new zmq.Subscriber({ receiveHighWaterMark: 0 });
  sub.connect(down);
  sub.subscribe();
  const pub = new zmq.Publisher({ sendHighWaterMark: 0 });
  pub.connect(up);
  let said = false;
  let seq = 0;
  // Our PUB also needs its subscription to arrive: keep saying hello until the first real message.
  const hello = setInterval(() => void pub.send('hello'), 5);
  for await (const [m] of sub) {
    if (m.length === 5 && m.toString() === 'hello') {
      if (!said) process.send({ type: 'ready' });
      said = true;
      continue;
    }
    clearInterval(hello);
    if (role === 'echo') await pub.send(m);
    else {
      check(m, size, seq, 'zeromq sink');
      clock.at(seq++);
      if (seq === clock.warmup + count) await pub.send(doneFrame(seq, clock.seconds));
    }
  }
}

/** Redis: a private redis-server on a Unix socket; two channels, one per direction. */
async function redisOpen(role, size, count, cpus, warmup = 0) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-bench-redis-'));
  const socket = path.join(dir, 'redis.sock');
  const args = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no',
    '--client-output-buffer-limit', 'pubsub 0 0 0', '--dir', dir];
  // On the peer's core, like every other mechanism's far side.
  const pinned = cpus[1] !== undefined && fs.existsSync('/usr/bin/taskset');
  const server = pinned ? spawn('/usr/bin/taskset', ['-c', String(cpus[1]), redisServer, ...args], { stdio: 'ignore' }) : spawn(redisServer, args, { stdio: 'ignore' });
  for (let i = 0; i < 500 && !fs.existsSync(socket); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  const pub = new Redis({ path: socket, enableOfflineQueue: true });
  const sub = new Redis({ path: socket });
  const inbox = [];
  const waiting = [];
  sub.on('messageBuffer', (_channel, m) => {
    const w = waiting.shift();
    if (w) w(m);
    else inbox.push(m);
  });
  await sub.subscribe('up');
  const child = forkPeer(self, ['peer', 'redis', socket, role, size, count, warmup], cpus[1]);
  await nextMessage(child, 'ready');
  return {
    pipelines: true,
    publish: (buf) => pub.publish('down', buf),
    next: () => (inbox.length > 0 ? Promise.resolve(inbox.shift()) : new Promise((resolve) => waiting.push(resolve))),
    async close() {
      child.kill();
      pub.disconnect();
      sub.disconnect();
      server.kill();
      await new Promise((resolve) => server.once('exit', resolve));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function redisPeer([socket, role, sizeArg, countArg, warmupArg = '0']) {
  const size = Number(sizeArg);
  const count = Number(countArg);
  const clock = new SinkClock(Number(warmupArg), count);
  const pub = new Redis({ path: socket });
  const sub = new Redis({ path: socket });
  let seq = 0;
  sub.on('messageBuffer', (_channel, m) => {
    if (role === 'echo') return void pub.publish('up', m);
    check(m, size, seq, 'redis sink');
    clock.at(seq++);
    if (seq === clock.warmup + count) void pub.publish('up', doneFrame(seq, clock.seconds));
  });
  await sub.subscribe('down');
  process.send({ type: 'ready' });
}

// ---- the list --------------------------------------------------------------------------------

function redisVersion() {
  try {
    return /v=([\d.]+)/.exec(execFileSync(redisServer, ['--version'], { encoding: 'utf8' }))?.[1] ?? '?';
  } catch {
    return '?';
  }
}

/** Why a baseline sits out (the harness prints the note), or undefined when it can run. */
const zmqMissing = zmq === undefined ? 'npm zeromq is not installed (a devDependency; its install may have failed)' : undefined;
const redisMissing =
  Redis === undefined ? 'npm ioredis is not installed' : redisServer === undefined ? 'redis-server is not installed (apt-get install redis-server)' : undefined;

const mechanisms = [
  { id: 'topic-spin', label: 'shm Topic, 1 -> 1, spinning publisher and subscriber', waits: 'spin', sustained: true, trials: 3, roundTrip: roundTrip('spin'), throughput: throughput('spin', 1) },
  {
    id: 'topic-exclusive',
    label: 'shm Topic, 1 -> 1, spinning, exclusivePublisher',
    waits: 'spin',
    sustained: true,
    trials: 3,
    roundTrip: roundTrip('exclusive'),
    throughput: throughput('exclusive', 1),
  },
  { id: 'topic-async', label: 'shm Topic, 1 -> 1, await publish() / await receive()', waits: 'event-loop', sustained: true, trials: 3, roundTrip: roundTrip('async'), throughput: throughput('async', 1) },
  { id: 'topic-fanout-2', label: 'shm Topic, 1 -> 2 subscriber processes, await receive()', waits: 'event-loop', throughput: throughput('async', 2) },
  { id: 'topic-fanout-4', label: 'shm Topic, 1 -> 4 subscriber processes, await receive()', waits: 'event-loop', throughput: throughput('async', 4) },
].map((m) => ({ family: 'interprocess', sizes: SIZES, ...m }));
mechanisms.push(
  { ...pubsubMechanism('zeromq-pubsub', `zeromq ${zmqMissing ? '' : versionOf('zeromq')} PUB/SUB over ipc://`, zmqOpen), unavailable: zmqMissing },
  {
    ...pubsubMechanism('redis-pubsub', `Redis ${redisMissing ? '' : redisVersion()} PUBLISH/SUBSCRIBE over a Unix socket (ioredis ${versionOf('ioredis')})`, redisOpen),
    unavailable: redisMissing,
  },
);

export default mechanisms;

// ---- entry points ------------------------------------------------------------------------------

if (process.argv[1] === self && process.argv[2] === 'peer') {
  pinSelf();
  const [kind, ...rest] = process.argv.slice(3);
  if (kind === 'zeromq') await zmqPeer(rest);
  else if (kind === 'redis') await redisPeer(rest);
  else {
    await topicPeer([kind, ...rest]);
    process.disconnect();
  }
} else if (process.argv[1] === self) {
  // A quick standalone look: every mechanism at 64 B, in this process (unpinned).
  const count = Number(process.argv[2] ?? 200_000);
  for (const m of mechanisms) {
    if (m.unavailable) {
      console.log(`${m.id}: left out, ${m.unavailable}`);
      continue;
    }
    if (m.roundTrip) {
      const samples = Float64Array.from(await m.roundTrip({ size: 64, count: Math.min(count, 20_000), cpus: [] })).sort();
      console.log(`${m.id.padEnd(16)} round trip p50 ${(samples[samples.length >> 1] / 1000).toFixed(2)} µs`);
    }
    const r = await m.throughput({ size: 64, count, cpus: [] });
    const subs = r.subscribers?.map((s) => (s.messagesPerSecond / 1e6).toFixed(2)).join(', ');
    console.log(`${m.id.padEnd(16)} ${(r.messages / r.seconds / 1e6).toFixed(2)} M msg/s${subs ? ` (subscribers ${subs} M/s each, publisher ${(r.publisherMessagesPerSecond / 1e6).toFixed(2)} M/s)` : ''}`);
  }
}
