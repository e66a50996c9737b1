// POSIX message queues (MessageQueue) between two processes. Round trip: a ping queue and a
// pong queue, the peer echoing every message back; throughput: one way over one queue, the
// peer checking every sequence number. 'posix-mq' waits on the event loop (async receive, the
// descriptor polled by libuv); 'posix-mq-block' blocks in mq_timedreceive (receiveSync).
//
// The kernel bounds a queue's messages by /proc/sys/fs/mqueue/msgsize_max (8 KiB by default,
// 16 MiB with CAP_SYS_RESOURCE) and all of a user's queues by RLIMIT_MSGQUEUE (800 KiB by
// default), so the sizes offered and the queue depth are derived from this machine's limits.
//
// This file is also the peer: `node mq.mjs peer <style> <mode> <ping> <pong> <size> <count> [warmup]`.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { SinkClock, check, forkPeer, nextMessage, now, pinSelf, stamp } from '../util.mjs';

const require = createRequire(import.meta.url);
const { MessageQueue } = require('../../dist/cjs/index.js');
const self = fileURLToPath(import.meta.url);

function readLimit(file, fallback) {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return fallback;
  }
}

function limits() {
  let privileged = false;
  let rlimit = 819200;
  try {
    const capEff = /CapEff:\s*([0-9a-f]+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1];
    privileged = ((BigInt('0x' + capEff) >> 24n) & 1n) === 1n;
    const row = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max msgqueue size'));
    const soft = row?.slice('Max msgqueue size'.length).trim().split(/\s+/)[0];
    rlimit = soft === 'unlimited' ? Infinity : Number(soft);
  } catch {
    // not Linux-like /proc: keep the defaults
  }
  return {
    msgMax: privileged ? 65536 : readLimit('/proc/sys/fs/mqueue/msg_max', 10),
    msgsizeMax: privileged ? 16 * 1024 * 1024 : readLimit('/proc/sys/fs/mqueue/msgsize_max', 8192),
    rlimit,
  };
}

/** Queue depth for two queues of `size` bytes within this user's RLIMIT_MSGQUEUE (kept 20% free). */
function depth(size) {
  const { msgMax, rlimit } = limits();
  const perMessage = size + 56; // what the kernel charges per slot (data, pointer, tree node)
  return Math.max(1, Math.min(10, msgMax, Math.floor((rlimit * 0.8) / 2 / perMessage)));
}

function sizesThatFit() {
  const { msgsizeMax, rlimit } = limits();
  return [64, 4096, 65536, 1048576].filter((s) => s <= msgsizeMax && 2 * (s + 56) <= rlimit * 0.8);
}

function openPair(tag, size) {
  const base = `bench-mq-${process.pid}-${tag}`;
  const options = { maxMessages: depth(size), maxMessageSize: Math.max(size, 8) };
  for (const n of [`${base}-ping`, `${base}-pong`]) MessageQueue.remove(n);
  return {
    names: [`${base}-ping`, `${base}-pong`],
    ping: MessageQueue.create(`${base}-ping`, options),
    pong: MessageQueue.create(`${base}-pong`, options),
    close() {
      this.ping.close();
      this.pong.close();
      MessageQueue.remove(this.names[0]);
      MessageQueue.remove(this.names[1]);
    },
  };
}

function mechanism(style) {
  // receive() itself tries before it waits, so no separate tryReceive on the way
  const receive = (q) => (style === 'block' ? q.receiveSync() : q.receive());
  return {
    async roundTrip({ size, count, cpus }) {
      const pair = openPair(`rt-${style}`, size);
      const child = forkPeer(self, ['peer', style, 'echo', ...pair.names, size, count], cpus?.[1]);
      try {
        await nextMessage(child, 'ready');
        const samples = new Float64Array(count);
        const payload = new Uint8Array(size);
        const warmup = Math.min(1000, count);
        for (let i = -warmup; i < count; i++) {
          const seq = i >>> 0;
          const t0 = now();
          pair.ping.trySend(stamp(payload, seq)) || (await pair.ping.send(payload));
          const reply = await receive(pair.pong);
          if (i >= 0) samples[i] = Number(now() - t0);
          check(reply, size, seq, 'posix-mq round trip');
        }
        await nextMessage(child, 'done');
        return samples;
      } finally {
        child.kill();
        pair.close();
      }
    },
    async throughput({ size, count, warmup = 0, cpus }) {
      const pair = openPair(`tp-${style}`, size);
      const child = forkPeer(self, ['peer', style, 'count', ...pair.names, size, count, warmup], cpus?.[1]);
      try {
        await nextMessage(child, 'ready');
        const done = nextMessage(child, 'done');
        const payload = new Uint8Array(size);
        for (let i = 0; i < warmup + count; i++) {
          stamp(payload, i);
          if (!pair.ping.trySend(payload)) await pair.ping.send(payload);
        }
        const { seconds } = await done;
        return { messages: count, seconds, warmup };
      } finally {
        child.kill();
        pair.close();
      }
    },
  };
}

async function peer([style, mode, pingName, pongName, sizeArg, countArg, warmupArg = '0']) {
  pinSelf();
  const size = Number(sizeArg);
  const count = Number(countArg);
  const ping = MessageQueue.open(pingName);
  const pong = MessageQueue.open(pongName);
  // receive() itself tries before it waits, so no separate tryReceive on the way
  const receive = (q) => (style === 'block' ? q.receiveSync() : q.receive());
  const clock = new SinkClock(Number(warmupArg), count);
  process.send({ type: 'ready' });
  if (mode === 'echo') {
    const warmup = Math.min(1000, count);
    for (let i = -warmup; i < count; i++) {
      const msg = await receive(ping);
      check(msg, size, i >>> 0, 'posix-mq peer');
      pong.trySend(msg) || (await pong.send(msg));
    }
  } else {
    for (let i = 0; i < clock.warmup + count; clock.at(i++)) check(await receive(ping), size, i, 'posix-mq peer');
  }
  ping.close();
  pong.close();
  process.send({ type: 'done', ...(mode === 'echo' ? {} : { seconds: clock.seconds }) }, () => process.exit(0));
}

if (process.argv[1] === self && process.argv[2] === 'peer') await peer(process.argv.slice(3));

const sizes = sizesThatFit();
export default [
  { id: 'posix-mq', label: 'POSIX message queue, event-loop receive', family: 'interprocess', waits: 'event-loop', sizes, ...mechanism('loop') },
  { id: 'posix-mq-block', label: 'POSIX message queue, blocking receiveSync', family: 'interprocess', waits: 'block', sizes, ...mechanism('block') },
];
