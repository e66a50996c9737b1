// The shm:// Channel (two shared-memory Queues per connection) for the bench harness (contract in
// bench/util.mjs), measured exactly like channel-unix in sockets.mjs: the same Channel calls,
// the same echo / sink peer, codec 'bytes'.
//
// Run directly for a quick standalone look:  node bench/mechanisms/channel-shm.mjs [count]
// The same file is also the peer process (argv[2] === 'peer').
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { check, forkPeer, nextMessage, now, pinSelf, stamp } from '../util.mjs';

const self = fileURLToPath(import.meta.url);
const require = createRequire(import.meta.url);
const lib = () => require('../../dist/cjs/index.js');
const SIZES = [64, 4096, 65536, 1048576];

function address() {
  return `shm://bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', resolve));
}

/** [channel, cleanup] with a peer process that echoes ('echo') or counts ('sink'). */
async function open(role, size, count, cpus) {
  const { listen } = lib();
  const server = await listen(address());
  const child = forkPeer(self, ['peer', server.address, role, size, count], cpus?.[1]);
  try {
    const ch = await server.accept();
    await nextMessage(child, 'ready');
    return {
      ch,
      cleanup: async () => {
        await ch.close();
        await server.close();
        await exited(child);
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    await server.close();
    throw err;
  }
}

const mechanism = {
  id: 'channel-shm',
  label: 'interprocess Channel, shm:// (two shared-memory queues)',
  family: 'interprocess',
  waits: 'event-loop',
  sizes: SIZES,
  async roundTrip({ size, count, cpus }) {
    pinSelf(cpus?.[0]);
    const { ch, cleanup } = await open('echo', size, count, cpus);
    const out = new Float64Array(count);
    const msg = Buffer.alloc(size);
    try {
      for (let i = 0; i < count; i++) {
        stamp(msg, i);
        const t0 = now();
        await ch.send(msg);
        const reply = await ch.receive();
        out[i] = Number(now() - t0);
        check(reply, size, i, 'shm channel round trip');
      }
    } finally {
      await cleanup();
    }
    return out;
  },
  async throughput({ size, count, cpus }) {
    pinSelf(cpus?.[0]);
    const { ch, cleanup } = await open('sink', size, count, cpus);
    try {
      const msg = Buffer.alloc(size);
      const t0 = now();
      for (let i = 0; i < count; i++) {
        stamp(msg, i);
        // trySend commits while there is room; when full, send waits for the peer.
        if (!ch.trySend(msg)) await ch.send(msg);
      }
      const done = await ch.receive();
      const seconds = Number(now() - t0) / 1e9;
      if (done.readUInt32LE(0) !== count) throw new Error(`peer received ${done.readUInt32LE(0)} of ${count}`);
      return { messages: count, seconds };
    } finally {
      await cleanup();
    }
  },
};

export default [mechanism];

async function peer(addr, role, size, count) {
  const { connect } = lib();
  const ch = await connect(addr);
  process.send({ type: 'ready' });
  if (role === 'echo') {
    for await (const m of ch) await ch.send(m);
  } else {
    let seq = 0;
    while (seq < count) check(await ch.receive(), size, seq++, 'shm channel sink');
    const done = Buffer.alloc(4);
    done.writeUInt32LE(seq, 0);
    await ch.send(done);
    for await (const _ of ch);
  }
  await ch.close();
  process.exit(0);
}

if (process.argv[1] === self) {
  const [mode, addr, role, size, count] = process.argv.slice(2);
  if (mode === 'peer') {
    pinSelf();
    await peer(addr, role, Number(size), Number(count));
  } else {
    const n = Number(process.argv[2] ?? 5000);
    const cpus = os.cpus().length >= 2 ? [0, 1] : undefined;
    const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))] / 1000;
    const rt = (await mechanism.roundTrip({ size: 64, count: n, cpus })).sort();
    const rows = [];
    for (const s of SIZES) {
      const m = s >= 1048576 ? Math.max(50, n / 40) : s >= 65536 ? Math.max(200, n / 4) : n * 5;
      const { messages, seconds } = await mechanism.throughput({ size: s, count: Math.round(m), cpus });
      rows.push(`${s >= 1048576 ? `${s / 1048576}M` : s >= 1024 ? `${s / 1024}K` : s}: ${Math.round(messages / seconds)}/s ${((messages * s) / seconds / 1e6).toFixed(0)} MB/s`);
    }
    console.log(`channel-shm 64 B rt p50 ${pct(rt, 0.5).toFixed(2)} µs p99 ${pct(rt, 0.99).toFixed(2)} µs | ${rows.join(' | ')}`);
  }
}
