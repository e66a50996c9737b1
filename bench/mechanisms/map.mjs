// SharedMap beside what Node services use instead, in the same run (a table of its own):
//   map-get / map-set / map-increment   one process, 10 000 keys of 15 bytes, 64 B values
//   map-get-2-readers   two processes reading at once (their total rate; compare with map-get)
//   map-get-with-writer one reader while another process overwrites the same keys (reader rate)
//   redis-get / redis-set  a real redis-server started on a private Unix socket, ioredis, one
//                       `await` at a time as a request handler does (left out, with a note,
//                       where redis-server is not installed)
//   lmdb-get / lmdb-put  the lmdb package (memory-mapped B+tree, synchronous calls, no fsync)
//   cluster-ipc-get     a Map in a node:cluster primary, asked by a worker over Node's IPC
// The map-get row's note gives the bytes of shared memory per entry for 64 B keys and values.
// One-process rates are the median of SLICES equal slices of the trial (the time reported is
// that median times SLICES), so that a busy neighbour on the machine does not decide them.
// Try it: node bin/interprocess.js bench --only map,redis,lmdb,cluster
import { execFileSync, spawn } from 'node:child_process';
import cluster from 'node:cluster';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { forkPeer, nextMessage, now } from '../util.mjs';
import { KEY_COUNT, VALUE_BYTES, keyOf } from '../peers/map-keys.mjs';

const require = createRequire(import.meta.url);
const { SharedMap, SharedMemory } = require('../../dist/cjs/index.js');
const here = path.dirname(fileURLToPath(import.meta.url));
const peer = path.join(here, '..', 'peers', 'map-peer.mjs');

const value = new Uint8Array(VALUE_BYTES).fill(1);
const seconds = (t0) => Number(now() - t0) / 1e9;
const SLICES = 10;

/** Runs `run(from, n)` over `count` operations in SLICES slices; the median slice time x SLICES. */
async function sliced(count, run) {
  const times = [];
  for (let k = 0, from = 0; k < SLICES; k++) {
    const n = Math.floor((count * (k + 1)) / SLICES) - from;
    const t0 = now();
    await run(from, n);
    times.push(seconds(t0) / n);
    from += n;
  }
  times.sort((a, b) => a - b);
  return times[SLICES >> 1] * count;
}

/** A map of KEY_COUNT entries (64 B keys and values at most), filled; removed after `body`. */
async function withMap(options, body) {
  const name = `bench-map-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const m = SharedMap.create(name, { capacity: KEY_COUNT, maxKeyBytes: 64, maxValueBytes: 64, ...options });
  const go = SharedMemory.create(`${name}-go`, { byteLength: 64 });
  try {
    for (let i = 0; i < KEY_COUNT; i++) {
      if (options.codec === 'json') m.set(keyOf(i), i);
      else m.set(keyOf(i), value);
    }
    return await body(m, name, new Int32Array(go.buffer));
  } finally {
    m.close();
    go.close();
    SharedMap.remove(name);
    SharedMemory.remove(`${name}-go`);
  }
}

function gets(m, count, from = 0) {
  let bytes = 0;
  for (let i = from; i < from + count; i++) bytes += m.get(keyOf(i % KEY_COUNT)).length;
  if (bytes !== count * VALUE_BYTES) throw new Error('map-get: a value was missing');
}

const perEntry = (m) => `${(m.byteLength / m.capacity).toFixed(0)} B of shared memory per entry (64 B keys and values)`;

async function mapGet({ count }) {
  return withMap({}, (m) => {
    gets(m, Math.min(count, 200_000)); // warm-up: let the JIT settle
    return sliced(count, (from, n) => gets(m, n, from)).then((s) => ({ messages: count, seconds: s, note: perEntry(m) }));
  });
}

async function mapSet({ count }) {
  return withMap({}, (m) => {
    for (let i = 0; i < Math.min(count, 100_000); i++) m.set(keyOf(i % KEY_COUNT), value);
    return sliced(count, (from, n) => {
      for (let i = from; i < from + n; i++) m.set(keyOf(i % KEY_COUNT), value);
    }).then((s) => ({ messages: count, seconds: s }));
  });
}

async function mapIncrement({ count }) {
  return withMap({ codec: 'json' }, (m) => {
    for (let i = 0; i < Math.min(count, 50_000); i++) m.increment(keyOf(i % KEY_COUNT), 1);
    return sliced(count, (from, n) => {
      for (let i = from; i < from + n; i++) m.increment(keyOf(i % KEY_COUNT), 1);
    }).then((s) => ({ messages: count, seconds: s, note: "codec 'json'" }));
  });
}

/** Runs `mine` here and the peer `role` on the other core, started together through the go word. */
async function withPeer(m, name, go, role, peerCount, cpus, mine) {
  const child = forkPeer(peer, [role, name, peerCount], cpus[1]);
  try {
    await nextMessage(child, 'ready');
    const done = nextMessage(child, 'done');
    Atomics.store(go, 0, 1);
    const out = mine();
    Atomics.store(go, 0, 2);
    return { ...out, peer: await done };
  } finally {
    child.kill();
  }
}

/**
 * Both readers warm up as map-get's does and time themselves as it does (the median of SLICES
 * slices), at once: the row's rate is the sum of theirs, comparable with map-get's. (Until stop
 * 27 the peer started cold, and the row was the slower reader's whole time: each reader read
 * ~0.9x map-get's rate, and a run missed "2x" by the JIT's warm-up and the slowest slice.)
 */
async function twoReaders({ count, cpus }) {
  return withMap({}, async (m, name, go) => {
    gets(m, 200_000);
    const half = Math.floor(count / 2);
    const { t, peer: p } = await withPeer(m, name, go, 'reader', count - half, cpus, () => {
      const times = [];
      for (let k = 0, from = 0; k < SLICES; k++) {
        const n = Math.floor((half * (k + 1)) / SLICES) - from;
        const t0 = now();
        gets(m, n, from);
        times.push(seconds(t0) / n);
        from += n;
      }
      times.sort((a, b) => a - b);
      return { t: times[SLICES >> 1] * half };
    });
    const mine = half / t;
    const theirs = (count - half) / p.seconds;
    return { messages: count, seconds: count / (mine + theirs), note: `each reader ${(mine / 1e6).toFixed(2)} M/s and ${(theirs / 1e6).toFixed(2)} M/s` };
  });
}

async function readerWithWriter({ count, cpus }) {
  return withMap({}, async (m, name, go) => {
    gets(m, 200_000);
    const { t, peer: p } = await withPeer(m, name, go, 'writer', 0, cpus, () => {
      const t0 = now();
      gets(m, count);
      return { t: seconds(t0) };
    });
    return { messages: count, seconds: t, note: `reader's rate while the writer set ${((p.sets / p.seconds) / 1e6).toFixed(2)} M values/s` };
  });
}

// --- Redis ------------------------------------------------------------------------------------

function redisServer() {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Whether a Unix socket accepts a connection now. */
function accepts(socket) {
  return new Promise((resolve) => {
    const probe = net.createConnection(socket);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

async function withRedis(cpus, body) {
  const { default: Redis } = await import('ioredis');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-redis-'));
  const socket = path.join(dir, 'redis.sock');
  const args = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir];
  // On the peer's core, like every other mechanism's far side.
  const pinned = cpus[1] !== undefined && fs.existsSync('/usr/bin/taskset');
  const server = pinned ? spawn('/usr/bin/taskset', ['-c', String(cpus[1]), redisServer(), ...args], { stdio: 'ignore' }) : spawn(redisServer(), args, { stdio: 'ignore' });
  const exited = new Promise((resolve) => server.once('exit', resolve));
  let client;
  try {
    // Until it accepts: the socket file appears at bind(), before listen(), and a connect in
    // between is refused (one redis-get trial in a targets run failed so).
    for (let i = 0; !(await accepts(socket)); i++) {
      if (i > 500 || server.exitCode !== null) throw new Error('redis-server did not start');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    client = new Redis({ path: socket, lazyConnect: true, enableAutoPipelining: false });
    await client.connect();
    const fill = client.pipeline();
    for (let i = 0; i < KEY_COUNT; i++) fill.set(keyOf(i), Buffer.from(value));
    await fill.exec();
    return await body(client);
  } finally {
    client?.disconnect();
    server.kill();
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function redisGet({ count, cpus }) {
  return withRedis(cpus, async (redis) => {
    const get = async (from, n) => {
      for (let i = from; i < from + n; i++) if ((await redis.getBuffer(keyOf(i % KEY_COUNT))).length !== VALUE_BYTES) throw new Error('redis-get: bad value');
    };
    await get(0, Math.min(count, 2000));
    return { messages: count, seconds: await sliced(count, get) };
  });
}

async function redisSet({ count, cpus }) {
  return withRedis(cpus, async (redis) => {
    const buf = Buffer.from(value);
    for (let i = 0; i < Math.min(count, 2000); i++) await redis.set(keyOf(i % KEY_COUNT), buf);
    const set = async (from, n) => {
      for (let i = from; i < from + n; i++) await redis.set(keyOf(i % KEY_COUNT), buf);
    };
    return { messages: count, seconds: await sliced(count, set) };
  });
}

// --- LMDB -------------------------------------------------------------------------------------

async function withLmdb(body) {
  const { open } = await import('lmdb');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-lmdb-'));
  const db = open({ path: dir, encoding: 'binary', compression: false, noSync: true });
  try {
    for (let i = 0; i < KEY_COUNT; i++) db.putSync(keyOf(i), Buffer.from(value));
    return await body(db);
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function lmdbGet({ count }) {
  return withLmdb((db) => {
    const get = (from, n) => {
      let bytes = 0;
      for (let i = from; i < from + n; i++) bytes += db.getBinary(keyOf(i % KEY_COUNT)).length;
      if (bytes !== n * VALUE_BYTES) throw new Error('lmdb-get: a value was missing');
    };
    get(0, Math.min(count, 100_000));
    return sliced(count, get).then((s) => ({ messages: count, seconds: s }));
  });
}

async function lmdbPut({ count }) {
  return withLmdb((db) => {
    const buf = Buffer.from(value);
    for (let i = 0; i < Math.min(count, 10_000); i++) db.putSync(keyOf(i % KEY_COUNT), buf);
    return sliced(count, (from, n) => {
      for (let i = from; i < from + n; i++) db.putSync(keyOf(i % KEY_COUNT), buf);
    }).then((s) => ({ messages: count, seconds: s, note: 'putSync, noSync (no fsync)' }));
  });
}

// --- a Map in the cluster primary -------------------------------------------------------------

async function clusterGet({ count, cpus }) {
  const map = new Map();
  for (let i = 0; i < KEY_COUNT; i++) map.set(keyOf(i), value);
  cluster.setupPrimary({ exec: peer, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const worker = cluster.fork({ MAP_BENCH_COUNT: String(count), BENCH_CPU: cpus[1] === undefined ? '' : String(cpus[1]) });
  try {
    const done = new Promise((resolve, reject) => {
      worker.on('message', (msg) => {
        if (msg.type === 'get') worker.send({ type: 'value', id: msg.id, value: map.get(msg.key) });
        else if (msg.type === 'done') resolve(msg);
      });
      worker.once('exit', (code) => reject(new Error(`cluster worker exited (${code})`)));
    });
    const { seconds: s } = await done;
    return { messages: count, seconds: s, note: "serialization 'advanced'" };
  } finally {
    worker.kill();
  }
}

/** Why an npm package this comparison needs cannot be loaded: they are dev dependencies, absent from an installed interprocess. */
function packageMissing(name) {
  try {
    require.resolve(name);
    return undefined;
  } catch {
    return `the ${name} package is not installed (a dev dependency of interprocess: npm install ${name})`;
  }
}
const redisMissing = redisServer() === undefined ? 'redis-server is not installed (apt-get install redis-server)' : packageMissing('ioredis');
const lmdbMissing = packageMissing('lmdb');
const map = { family: 'map', waits: 'spin', sizes: [64] };

export default [
  { ...map, id: 'map-get', label: 'SharedMap get, one process', count: { quick: 1_000_000, full: 5_000_000 }, throughput: mapGet },
  { ...map, id: 'map-set', label: 'SharedMap set (overwrite), one process', count: { quick: 300_000, full: 2_000_000 }, throughput: mapSet },
  { ...map, id: 'map-increment', label: 'SharedMap increment, one process', count: { quick: 100_000, full: 1_000_000 }, throughput: mapIncrement },
  { ...map, id: 'map-get-2-readers', label: 'SharedMap get, two reader processes together', count: { quick: 1_000_000, full: 5_000_000 }, throughput: twoReaders },
  { ...map, id: 'map-get-with-writer', label: 'SharedMap get while another process sets', count: { quick: 1_000_000, full: 5_000_000 }, throughput: readerWithWriter },
  { ...map, id: 'redis-get', label: 'Redis GET, Unix socket, ioredis, one await at a time', waits: 'event-loop', count: { quick: 5000, full: 50_000 }, unavailable: redisMissing, throughput: redisGet },
  { ...map, id: 'redis-set', label: 'Redis SET, Unix socket, ioredis, one await at a time', waits: 'event-loop', count: { quick: 5000, full: 50_000 }, unavailable: redisMissing, throughput: redisSet },
  { ...map, id: 'lmdb-get', label: 'lmdb getBinary (memory-mapped, synchronous)', count: { quick: 300_000, full: 2_000_000 }, unavailable: lmdbMissing, throughput: lmdbGet },
  { ...map, id: 'lmdb-put', label: 'lmdb putSync (no fsync)', count: { quick: 20_000, full: 200_000 }, unavailable: lmdbMissing, throughput: lmdbPut },
  { ...map, id: 'cluster-ipc-get', label: 'Map in the cluster primary, get over IPC', waits: 'event-loop', count: { quick: 10_000, full: 100_000 }, throughput: clusterGet },
];
