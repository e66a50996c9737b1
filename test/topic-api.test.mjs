// Topic in one process (and its worker threads): lifecycle, every error code it can produce,
// codecs, history, both overflow policies, waiting, close, iteration, and what inspect shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { Queue, SharedMemory, Topic } from 'interprocess';
import { expectCode, uniqueName, watchdog } from './helpers.mjs';

const require = createRequire(import.meta.url);
const lib = new URL('../dist/cjs/index.js', import.meta.url).pathname;

function named(t, tag = 'topic') {
  const name = uniqueName(tag);
  t.after(() => Topic.remove(name));
  return name;
}

function open(t, name, options) {
  const topic = Topic.create(name, options);
  t.after(() => topic.close());
  return topic;
}

const bytes = (...values) => Uint8Array.from(values);
/** Resolves once check() holds, looking again on a short timer (waits for a state, not a time). */
async function poll(check) {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 2));
}
const drain = (sub) => {
  const out = [];
  for (let m = sub.tryReceive(); m !== undefined; m = sub.tryReceive()) out.push(m[0]);
  return out;
};

test('create / open / openOrCreate / remove, the shape, stats and what inspect reads', (t) => {
  const name = named(t);
  const topic = open(t, name, { capacity: 8, maxMessageSize: 100 });
  assert.deepEqual(
    { name: topic.name, capacity: topic.capacity, maxMessageSize: topic.maxMessageSize, overflow: topic.overflow, maxSubscribers: topic.maxSubscribers },
    { name, capacity: 8, maxMessageSize: 100, overflow: 'block', maxSubscribers: 64 },
  );
  // 512 + 64 subscriber entries + 64 roster entries (64 B each), the owner table (8 words, in
  // one 64 B line), then 8 slots of 16 + 112.
  assert.equal(topic.stats().byteLength, 512 + 64 * 64 + 64 * 64 + 64 + 8 * 128);
  const other = Topic.open(name);
  t.after(() => other.close());
  const third = Topic.openOrCreate(name, { capacity: 8, maxMessageSize: 100 });
  t.after(() => third.close());
  const sub = other.subscribe();
  assert.ok(topic.tryPublish(bytes(1)));
  assert.ok(third.tryPublish(bytes(2)));
  assert.deepEqual(drain(sub), [1, 2]);
  assert.throws(() => Topic.create(name), { code: 'IPC_ERR_EXISTS' });
  const s = topic.stats();
  assert.deepEqual(
    { published: s.published, subscribers: s.subscribers, skippedRecords: s.skippedRecords, freedSubscribers: s.freedSubscribers },
    { published: 2, subscribers: 1, skippedRecords: 0, freedSubscribers: 0 },
  );

  // What `interprocess ls` / `inspect` show, read without a handle.
  const { describeTopic } = require('../dist/cjs/topic/layout.js');
  const raw = SharedMemory.open(name);
  t.after(() => raw.close());
  const d = describeTopic(raw.buffer);
  assert.deepEqual([d.published, d.subscribersAlive, d.slowestBehind, d.overflow], [2, 1, 0, 'block']);
  assert.deepEqual(d.subscribers.map((x) => ({ pid: x.pid, alive: x.alive, behind: x.behind, received: x.received })), [{ pid: process.pid, alive: true, behind: 0, received: 2 }]);
  assert.deepEqual(d.publishers.map((x) => ({ pid: x.pid, alive: x.alive, published: x.published })), [
    { pid: process.pid, alive: true, published: 1 },
    { pid: process.pid, alive: true, published: 1 },
  ]);

  assert.equal(Topic.remove(name), true);
  assert.equal(Topic.remove(name), false);
  assert.throws(() => Topic.open(name), { code: 'IPC_ERR_NOT_FOUND' });
  // Handles opened before the remove keep working.
  assert.ok(topic.tryPublish(bytes(3)));
  assert.deepEqual(drain(sub), [3]);
  sub.close();
  assert.equal(topic.stats().subscribers, 0);
});

test('defaults: capacity 1024, messages up to 4096 bytes, overflow block', (t) => {
  const topic = open(t, named(t));
  assert.equal(topic.capacity, 1024);
  assert.equal(topic.maxMessageSize, 4096);
  assert.equal(topic.overflow, 'block');
});

test('bad names, options and arguments are refused by name', (t) => {
  assert.throws(() => Topic.create('bad/name'), { code: 'IPC_ERR_INVALID_NAME' });
  const name = uniqueName('opts');
  const refuse = (options, error) => assert.throws(() => Topic.create(name, options), error);
  refuse({ colour: 'red' }, { name: 'TypeError', message: /unknown option 'colour'/ });
  refuse({ capacity: 6 }, { name: 'RangeError', message: /power of two/ });
  refuse({ capacity: 1 }, { name: 'RangeError', message: /capacity/ });
  refuse({ capacity: 2 ** 31 }, { name: 'RangeError', message: /capacity/ });
  refuse({ maxMessageSize: 0 }, { name: 'RangeError', message: /maxMessageSize/ });
  refuse({ maxMessageSize: 1.5 }, { name: 'TypeError', message: /maxMessageSize/ });
  refuse({ overflow: 'drop' }, { name: 'TypeError', message: /overflow/ });
  refuse({ exclusivePublisher: 'yes' }, { name: 'TypeError', message: /exclusivePublisher must be a boolean/ });
  refuse({ maxSubscribers: 0 }, { name: 'RangeError', message: /maxSubscribers/ });
  refuse({ maxSubscribers: 5000 }, { name: 'RangeError', message: /maxSubscribers/ });
  refuse({ wait: 'nap' }, { name: 'TypeError', message: /wait must be/ });
  refuse({ spinTime: -1 }, { name: 'RangeError', message: /spinTime/ });
  refuse({ livenessInterval: 0 }, { name: 'RangeError', message: /livenessInterval/ });
  refuse({ codec: 'yaml' }, { name: 'TypeError', message: /unknown codec/ });
  refuse('big', { name: 'TypeError', message: /options must be an object/ });
  assert.equal(SharedMemory.exists(name), false, 'a refused create leaves nothing behind');

  const topic = open(t, named(t), { capacity: 4 });
  assert.throws(() => topic.subscribe({ from: 'start' }), { name: 'TypeError', message: /from must be/ });
  assert.throws(() => topic.subscribe({ form: 'next' }), { name: 'TypeError', message: /unknown option 'form'/ });
  assert.throws(() => topic.tryPublish('text'), { name: 'TypeError', message: /Uint8Array/ });
  assert.throws(() => topic.publishSync(bytes(1), { timout: 5 }), { name: 'TypeError', message: /unknown option 'timout'/ });
  const sub = topic.subscribe();
  assert.throws(() => sub.receiveSync({ timeout: -1 }), { name: 'RangeError' });
  assert.throws(() => sub.receiveSync({ signal: new AbortController().signal }), { name: 'TypeError', message: /unknown option 'signal'/ });
  // Async methods reject; they never throw.
  return Promise.all([
    assert.rejects(sub.receive({ timeout: 'soon' }), { name: 'TypeError' }),
    assert.rejects(topic.publish('text'), { name: 'TypeError' }),
    assert.rejects(topic.publish(bytes(1), { signal: 'stop' }), { name: 'TypeError' }),
  ]);
});

test('IPC_ERR_INCOMPATIBLE: another kind, another layout version, another shape, a corrupt geometry', (t) => {
  const queueName = uniqueName('q');
  const q = Queue.create(queueName, { capacity: 4 });
  t.after(() => (q.close(), Queue.remove(queueName)));
  assert.throws(() => Topic.open(queueName), { code: 'IPC_ERR_INCOMPATIBLE', message: /kind is Queue, expected Topic/ });

  const name = named(t);
  open(t, name, { capacity: 8, maxMessageSize: 64, overflow: 'overwrite', maxSubscribers: 4 });
  for (const [key, value] of [['capacity', 16], ['maxMessageSize', 65], ['overflow', 'block'], ['maxSubscribers', 5], ['exclusivePublisher', true]]) {
    assert.throws(() => Topic.open(name, { [key]: value }), { code: 'IPC_ERR_INCOMPATIBLE', message: new RegExp(`${key} is`) });
    assert.throws(() => Topic.openOrCreate(name, { [key]: value }), { code: 'IPC_ERR_INCOMPATIBLE' });
  }
  const same = Topic.open(name, { capacity: 8, maxMessageSize: 64, overflow: 'overwrite', maxSubscribers: 4 });
  same.close();

  const raw = SharedMemory.open(name);
  t.after(() => raw.close());
  const i32 = new Int32Array(raw.buffer);
  i32[2] = 99; // layout version
  assert.throws(() => Topic.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /version is 99/ });
  i32[2] = 2; // the layout before exclusive publishers: its publishers would not know the flag
  assert.throws(() => Topic.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /version is 2/ });
  i32[2] = 3; // the layout version this library writes (exclusive publishers, layout.ts)
  i32[26] = 5; // exclusive: neither 0 nor 1
  assert.throws(() => Topic.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /exclusive is 5/ });
  i32[26] = 0;
  i32[16] = 6; // capacity: not a power of two
  assert.throws(() => Topic.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /capacity 6/ });
  i32[16] = 1 << 20; // capacity: more slots than the segment holds
  assert.throws(() => Topic.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /do not fit/ });
  i32[16] = 8;
  i32[19] = 7; // overflow
  assert.throws(() => Topic.open(name), { code: 'IPC_ERR_INCOMPATIBLE', message: /overflow is 7/ });
  i32[19] = 1;
  Topic.open(name).close();
});

test('IPC_ERR_MESSAGE_TOO_LARGE before anything is published, from every form', async (t) => {
  const topic = open(t, named(t), { capacity: 4, maxMessageSize: 8 });
  const sub = topic.subscribe();
  assert.throws(() => topic.tryPublish(new Uint8Array(9)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.throws(() => topic.publishSync(new Uint8Array(9)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  await expectCode(() => topic.publish(new Uint8Array(9)), 'IPC_ERR_MESSAGE_TOO_LARGE');
  const json = Topic.open(topic.name, { codec: 'json' });
  t.after(() => json.close());
  assert.throws(() => json.tryPublish('x'.repeat(20)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
  assert.ok(topic.tryPublish(new Uint8Array(8)), 'exactly maxMessageSize fits');
  assert.equal(sub.tryReceive().length, 8);
  assert.equal(sub.tryReceive(), undefined);
  assert.equal(topic.stats().published, 1);
});

test('IPC_ERR_LIMIT when every subscriber entry is taken; a closed or dead subscriber frees its entry', async (t) => {
  const name = named(t);
  const topic = open(t, name, { capacity: 4, maxSubscribers: 2 });
  const a = topic.subscribe();
  topic.subscribe();
  assert.throws(() => topic.subscribe(), { code: 'IPC_ERR_LIMIT', message: /maxSubscribers/ });
  a.close();
  const c = topic.subscribe();
  assert.throws(() => topic.subscribe(), { code: 'IPC_ERR_LIMIT' });
  c.close();
  // A worker thread subscribes and is terminated without closing: its entry dies with its thread.
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { workerData } = require('node:worker_threads');
     const { Topic } = require(workerData.lib);
     globalThis.sub = Topic.open(workerData.name).subscribe();
     Atomics.store(workerData.flag, 0, 1); Atomics.notify(workerData.flag, 0);
     setInterval(() => {}, 1000);`,
    { eval: true, workerData: { lib, name, flag } },
  );
  await watchdog(Atomics.waitAsync(flag, 0, 0).value, 10_000, 'worker subscribes');
  assert.throws(() => topic.subscribe(), { code: 'IPC_ERR_LIMIT' });
  await worker.terminate();
  const d = topic.subscribe();
  assert.equal(topic.stats().freedSubscribers, 1);
  d.close();
});

test('history: from "oldest" gets what is retained, "next" only what follows', (t) => {
  const topic = open(t, named(t), { capacity: 4 });
  for (let i = 0; i < 3; i++) topic.tryPublish(bytes(i));
  const oldest = topic.subscribe({ from: 'oldest' });
  const next = topic.subscribe({ from: 'next' });
  assert.deepEqual(drain(oldest), [0, 1, 2]);
  assert.deepEqual(drain(next), []);
  topic.tryPublish(bytes(3));
  assert.deepEqual(drain(oldest), [3]);
  assert.deepEqual(drain(next), [3]);
  // Only capacity messages are retained: a late joiner gets the last 4 of 10.
  for (let i = 4; i < 10; i++) {
    assert.ok(topic.tryPublish(bytes(i)));
    assert.deepEqual([drain(oldest), drain(next)], [[i], [i]]);
  }
  const late = topic.subscribe({ from: 'oldest' });
  assert.deepEqual(drain(late), [6, 7, 8, 9]);
  assert.equal(late.missed, 0, 'history from before subscribe() is not counted as missed');
});

test("block: a subscriber a capacity behind holds publishers back; reading or closing lets them go", async (t) => {
  const topic = open(t, named(t), { capacity: 4 });
  const fast = topic.subscribe();
  const slow = topic.subscribe();
  for (let i = 0; i < 4; i++) assert.ok(topic.tryPublish(bytes(i)));
  assert.deepEqual(drain(fast), [0, 1, 2, 3]);
  assert.equal(topic.tryPublish(bytes(4)), false, 'the slow subscriber is 4 behind');
  await expectCode(() => topic.publish(bytes(4), { timeout: 30 }), 'IPC_ERR_TIMEOUT');
  // publishSync from the thread of the subscriber it waits for would wait for itself.
  assert.throws(() => topic.publishSync(bytes(4)), { code: 'IPC_ERR_DEADLOCK' });
  const pending = topic.publish(bytes(4), { timeout: 10_000 });
  assert.equal(slow.tryReceive()[0], 0);
  await watchdog(pending, 10_000, 'publish after a read');
  const blocked = topic.publish(bytes(5), { timeout: 10_000 });
  slow.close();
  await watchdog(blocked, 10_000, 'publish after close');
  assert.deepEqual(drain(fast), [4, 5]);
  assert.equal(fast.missed, 0);
});

test("overwrite: publishers never wait; a subscriber a lap behind skips to the oldest retained and counts what it missed", (t) => {
  const topic = open(t, named(t), { capacity: 8, overflow: 'overwrite' });
  const sub = topic.subscribe();
  const oldest = topic.subscribe({ from: 'oldest' });
  for (let i = 0; i < 3; i++) topic.tryPublish(bytes(i));
  assert.deepEqual(drain(sub), [0, 1, 2]);
  for (let i = 3; i < 30; i++) assert.ok(topic.tryPublish(bytes(i)), 'never waits');
  assert.deepEqual(drain(sub), [22, 23, 24, 25, 26, 27, 28, 29]);
  assert.equal(sub.missed, 19);
  assert.equal(sub.received + sub.missed, 30);
  assert.deepEqual(drain(oldest), [22, 23, 24, 25, 26, 27, 28, 29]);
  assert.equal(oldest.missed, 22);
});

test('receive: timeout, abort, close and iteration; tryReceive never waits', async (t) => {
  const topic = open(t, named(t), { capacity: 4 });
  const sub = topic.subscribe();
  assert.equal(sub.tryReceive(), undefined);
  await expectCode(() => sub.receive({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
  assert.throws(() => sub.receiveSync({ timeout: 20 }), { code: 'IPC_ERR_TIMEOUT' });
  const ac = new AbortController();
  const aborted = sub.receive({ signal: ac.signal });
  ac.abort();
  await expectCode(() => aborted, 'IPC_ERR_ABORTED');
  await expectCode(() => sub.receive({ signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
  await expectCode(() => topic.publish(bytes(1), { signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');

  // A receive waiting when a message comes.
  const later = sub.receive({ timeout: 10_000 });
  setImmediate(() => topic.publishSync(bytes(7)));
  assert.deepEqual([...(await watchdog(later, 10_000, 'receive'))], [7]);

  // Iteration ends quietly when the subscriber closes; pending receives reject.
  const seen = [];
  const loop = (async () => {
    for await (const m of sub) seen.push(m[0]);
  })();
  topic.publishSync(bytes(8));
  topic.publishSync(bytes(9));
  await watchdog(poll(() => seen.length === 2), 10_000, 'iteration');
  sub.close();
  await watchdog(loop, 10_000, 'iteration ends');
  assert.deepEqual(seen, [8, 9]);
  assert.throws(() => sub.tryReceive(), { code: 'IPC_ERR_CLOSED' });
  sub.close(); // idempotent

  // Closing the topic handle closes its subscribers and rejects what waits.
  const other = topic.subscribe();
  const waiting = other.receive();
  const ahead = topic.subscribe();
  for (let i = 0; i < 4; i++) topic.tryPublish(bytes(i));
  drain(other);
  const publishing = topic.publish(bytes(4));
  topic.close();
  await expectCode(() => waiting, 'IPC_ERR_CLOSED');
  await expectCode(() => publishing, 'IPC_ERR_CLOSED');
  assert.equal(other.closed, true);
  assert.throws(() => ahead.tryReceive(), { code: 'IPC_ERR_CLOSED' });
  assert.throws(() => topic.tryPublish(bytes(1)), { code: 'IPC_ERR_CLOSED' });
  assert.throws(() => topic.subscribe(), { code: 'IPC_ERR_CLOSED' });
  topic.close(); // idempotent
  await expectCode(() => topic.publish(bytes(1)), 'IPC_ERR_CLOSED');
});

test('codecs: json, msgpack, structured and a custom codec; a bad message is IPC_ERR_PROTOCOL and consumed', (t) => {
  const value = { id: 1, tags: ['a', 'b'], nested: { ok: true } };
  const rich = new Map([['when', new Date(0)], ['big', 2n ** 70n]]);
  const upper = { name: 'upper', encode: (s) => new TextEncoder().encode(s.toUpperCase()), decode: (b) => new TextDecoder().decode(b) };
  for (const [codec, sent, expected] of [['json', value, value], ['msgpack', value, value], ['structured', rich, rich], [upper, 'hello', 'HELLO']]) {
    const topic = open(t, named(t), { capacity: 4, codec });
    const sub = topic.subscribe();
    topic.publishSync(sent);
    assert.deepEqual(sub.tryReceive(), expected);
  }

  // Bytes the json codec cannot decode: that message is consumed, the next one arrives.
  const name = named(t);
  const raw = open(t, name, { capacity: 4 });
  const json = Topic.open(name, { codec: 'json' });
  t.after(() => json.close());
  const sub = json.subscribe();
  raw.publishSync(new TextEncoder().encode('{not json'));
  json.publishSync({ after: true });
  assert.throws(() => sub.tryReceive(), { code: 'IPC_ERR_PROTOCOL' });
  assert.deepEqual(sub.tryReceive(), { after: true });

  // 'bytes' receivers get private copies.
  const a = raw.subscribe();
  const b = raw.subscribe();
  raw.publishSync(bytes(1, 2, 3));
  const first = a.tryReceive();
  first[0] = 99;
  assert.deepEqual([...b.tryReceive()], [1, 2, 3]);
});

test('receiveMany, receiveManySync, tryReceiveMany: batches in order, at most max; waits, bad max, timeout, close; a bad message mid-batch is thrown next', async (t) => {
  const topic = open(t, named(t), { capacity: 256 });
  const sub = topic.subscribe();
  const seqOf = (m) => new DataView(m.buffer, m.byteOffset).getUint32(0);
  const msg = (i) => {
    const m = new Uint8Array(100);
    new DataView(m.buffer).setUint32(0, i);
    return m;
  };
  for (let i = 0; i < 100; i++) assert.ok(topic.tryPublish(msg(i)));
  const got = [...sub.tryReceiveMany(7), ...sub.receiveManySync(50), ...(await sub.receiveMany(1000))];
  assert.deepEqual(got.map(seqOf), Array.from({ length: 100 }, (_, i) => i));
  assert.deepEqual(sub.tryReceiveMany(5), []);
  // Waiting for the next: resolved by a later publish, with what came with it.
  const waiting = sub.receiveMany(10);
  setTimeout(() => {
    for (let i = 100; i < 103; i++) topic.tryPublish(msg(i));
  }, 10);
  const batch = await watchdog(waiting, 10_000, 'receiveMany waits');
  assert.ok(batch.length >= 1 && batch.length <= 3);
  const rest = sub.tryReceiveMany(10);
  assert.deepEqual([...batch, ...rest].map(seqOf), [100, 101, 102]);
  for (const bad of [0, 2 ** 31 + 1]) {
    assert.throws(() => sub.tryReceiveMany(bad), RangeError);
    assert.throws(() => sub.receiveManySync(bad), RangeError);
    await assert.rejects(sub.receiveMany(bad), RangeError);
  }
  for (const bad of [1.5, '2', undefined]) {
    assert.throws(() => sub.tryReceiveMany(bad), TypeError);
    await assert.rejects(sub.receiveMany(bad), TypeError);
  }
  await expectCode(() => sub.receiveMany(4, { timeout: 20 }), 'IPC_ERR_TIMEOUT');
  assert.throws(() => sub.receiveManySync(4, { timeout: 20 }), { code: 'IPC_ERR_TIMEOUT' });

  // A message the codec cannot decode, in the middle: the batch ends before it, the next call
  // throws IPC_ERR_PROTOCOL (it is consumed), and the one after goes on.
  const name = named(t);
  const raw = open(t, name, { capacity: 8 });
  const json = Topic.open(name, { codec: 'json' });
  t.after(() => json.close());
  const jsub = json.subscribe();
  json.publishSync({ n: 1 });
  json.publishSync({ n: 2 });
  raw.publishSync(new TextEncoder().encode('{not json'));
  json.publishSync({ n: 3 });
  assert.deepEqual(jsub.tryReceiveMany(10), [{ n: 1 }, { n: 2 }]);
  assert.throws(() => jsub.tryReceiveMany(10), { code: 'IPC_ERR_PROTOCOL' });
  assert.deepEqual(jsub.tryReceiveMany(10), [{ n: 3 }]);
  raw.publishSync(new TextEncoder().encode('{not json either'));
  json.publishSync({ n: 4 });
  await assert.rejects(jsub.receiveMany(10), { code: 'IPC_ERR_PROTOCOL' });
  assert.deepEqual(await jsub.receiveMany(10), [{ n: 4 }]);

  sub.close();
  assert.throws(() => sub.tryReceiveMany(1), { code: 'IPC_ERR_CLOSED' });
  assert.throws(() => sub.receiveManySync(1), { code: 'IPC_ERR_CLOSED' });
  await expectCode(() => sub.receiveMany(1), 'IPC_ERR_CLOSED');
});

test('many subscribers in one thread, awaiting: each gets every message', async (t) => {
  const topic = open(t, named(t), { capacity: 16, codec: 'json' });
  const subs = Array.from({ length: 5 }, () => topic.subscribe());
  const got = subs.map(async (sub) => {
    const out = [];
    for await (const m of sub) {
      if (m === 'end') break;
      out.push(m);
    }
    return out;
  });
  for (let i = 0; i < 100; i++) await topic.publish(i);
  await topic.publish('end');
  const results = await watchdog(Promise.all(got), 20_000, 'subscribers');
  for (const r of results) assert.deepEqual(r, Array.from({ length: 100 }, (_, i) => i));
});

test('worker threads: a publisher thread and subscriber threads share a topic by name', async (t) => {
  const name = named(t);
  const topic = open(t, name, { capacity: 8, codec: 'json' });
  const source = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { Topic } = require(workerData.lib);
    const t = Topic.open(workerData.name, { codec: 'json' });
    if (workerData.role === 'publisher') {
      for (let i = 0; i < workerData.count; i++) t.publishSync(i);
      t.publishSync('end');
      parentPort.postMessage('done');
    } else {
      const sub = t.subscribe();
      parentPort.postMessage('ready');
      let expected = 0;
      for (;;) {
        const m = sub.receiveSync();
        if (m === 'end') break;
        if (m !== expected++) throw new Error('out of order: ' + m);
      }
      parentPort.postMessage(expected);
    }`;
  const count = 2000;
  const start = (role) => new Worker(source, { eval: true, workerData: { lib, name, role, count } });
  const subscribers = [start('subscriber'), start('subscriber')];
  t.after(() => subscribers.forEach((w) => w.terminate()));
  const results = subscribers.map((w) => new Promise((resolve, reject) => {
    w.once('error', reject);
    w.on('message', (m) => m !== 'ready' && resolve(m));
  }));
  await watchdog(Promise.all(subscribers.map((w) => new Promise((resolve) => w.once('message', resolve)))), 10_000, 'subscribers ready');
  const publisher = start('publisher');
  t.after(() => publisher.terminate());
  assert.deepEqual(await watchdog(Promise.all(results), 30_000, 'subscribers'), [count, count]);
  assert.equal(topic.stats().published, count + 1);
});

test('exclusivePublisher: one publishing thread at a time (IPC_ERR_LIMIT from every form), handed on at close, every message once', async (t) => {
  const name = named(t);
  const first = open(t, name, { capacity: 8, maxMessageSize: 16, exclusivePublisher: true });
  assert.equal(first.exclusivePublisher, true);
  assert.equal(first.stats().exclusivePublisher, true);
  const second = Topic.open(name, { exclusivePublisher: true });
  t.after(() => second.close());
  const reader = Topic.open(name);
  t.after(() => reader.close());
  const sub = reader.subscribe(); // subscribing never takes the publisher's place
  for (let i = 0; i < 3; i++) assert.ok(first.tryPublish(bytes(i)));
  // Another handle of this thread, in every form; nothing is published by the refusals.
  const limit = { code: 'IPC_ERR_LIMIT', message: /another handle of this thread/ };
  assert.throws(() => second.tryPublish(bytes(9)), limit);
  assert.throws(() => second.publishSync(bytes(9)), limit);
  await assert.rejects(second.publish(bytes(9)), limit);
  // A worker thread: told which process publishes.
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const { Topic } = require(workerData.lib);
     const t = Topic.open(workerData.name);
     try { t.tryPublish(new Uint8Array(1)); parentPort.postMessage('published'); }
     catch (err) { parentPort.postMessage(err.code + ': ' + err.message); }
     t.close();`,
    { eval: true, workerData: { lib, name } },
  );
  t.after(() => worker.terminate());
  const answer = await watchdog(new Promise((resolve) => worker.once('message', resolve)), 10_000, 'worker publish');
  assert.match(answer, new RegExp(`^IPC_ERR_LIMIT: .*pid ${process.pid} publishes to it`));
  // What inspect reads: the holder, alive.
  const { describeTopic } = require('../dist/cjs/topic/layout.js');
  const raw = SharedMemory.open(name);
  t.after(() => raw.close());
  assert.deepEqual([describeTopic(raw.buffer).exclusivePublisher, describeTopic(raw.buffer).exclusiveHolder], [true, { pid: process.pid, alive: true }]);
  // Closed: the next handle publishes, in order after the first's messages.
  first.close();
  assert.equal(describeTopic(raw.buffer).exclusiveHolder, undefined);
  for (let i = 3; i < 20; i++) {
    assert.ok(second.tryPublish(bytes(i)));
    if (i % 4 === 0) assert.deepEqual(drain(sub).at(-1), i); // keep within the capacity ('block')
  }
  assert.throws(() => reader.tryPublish(bytes(99)), limit);
  const rest = drain(sub);
  assert.equal(rest.at(-1), 19);
  assert.equal(second.stats().published, 20);
});

test('exclusivePublisher: a full topic waits and resumes, a late joiner sees exactly what follows, overwrite skips exactly', async (t) => {
  const topic = open(t, named(t), { capacity: 4, maxMessageSize: 8, exclusivePublisher: true });
  const sub = topic.subscribe();
  for (let i = 0; i < 4; i++) assert.ok(topic.tryPublish(bytes(i)));
  assert.equal(topic.tryPublish(bytes(4)), false, 'full: the subscriber is a capacity behind');
  const waiting = topic.publish(bytes(4), { timeout: 10_000 });
  assert.deepEqual(drain(sub), [0, 1, 2, 3]);
  await watchdog(waiting, 10_000, 'publish after room');
  const late = topic.subscribe();
  assert.ok(topic.tryPublish(bytes(5)));
  assert.deepEqual([drain(sub), drain(late)], [[4, 5], [5]]);

  const over = open(t, named(t), { capacity: 4, maxMessageSize: 8, overflow: 'overwrite', exclusivePublisher: true });
  const behind = over.subscribe();
  for (let i = 0; i < 10; i++) assert.ok(over.tryPublish(bytes(i)));
  assert.deepEqual(drain(behind), [6, 7, 8, 9]);
  assert.equal(behind.missed, 6);
});

test('a subscriber that is garbage collected without close() stops holding publishers back', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  const topic = open(t, named(t), { capacity: 4 });
  (() => void topic.subscribe())();
  assert.equal(topic.stats().subscribers, 1);
  for (let i = 0; i < 50 && topic.stats().subscribers !== 0; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(topic.stats().subscribers, 0);
  for (let i = 0; i < 10; i++) assert.ok(topic.tryPublish(bytes(i)));
});

test('received copies from 65 B to 4 KiB (the receive arena, shared with the queue) stay private and intact, also when one is transferred', (t) => {
  const topic = open(t, named(t), { capacity: 64, maxMessageSize: 5000 });
  const queueName = uniqueName('arena-q');
  const q = Queue.create(queueName, { capacity: 64, maxMessageSize: 5000 });
  t.after(() => (q.close(), Queue.remove(queueName)));
  const subs = [topic.subscribe(), topic.subscribe()];
  const sizes = [];
  for (let i = 0; sizes.length < 200; i++) sizes.push([64, 65, 100, 1000, 4095, 4096, 4097, 3000][i % 8]);
  const fill = (size, seq) => new Uint8Array(size).map((_, k) => (seq * 31 + k) & 255);
  const kept = [[], [], []];
  for (let seq = 0; seq < sizes.length; seq++) {
    assert.ok(topic.tryPublish(fill(sizes[seq], seq)));
    assert.ok(q.trySend(fill(sizes[seq], seq)));
    // Two subscribers and a queue carve their copies from the same arena, interleaved.
    kept[0].push(subs[0].tryReceive());
    kept[2].push(q.tryReceive());
    kept[1].push(subs[1].tryReceive());
  }
  for (const got of kept) {
    for (let seq = 0; seq < sizes.length; seq++) {
      assert.equal(Object.getPrototypeOf(got[seq]), Uint8Array.prototype);
      assert.ok(!(got[seq].buffer instanceof SharedArrayBuffer));
      assert.deepEqual(got[seq], fill(sizes[seq], seq), `message ${seq}`);
    }
  }
  // One subscriber's copy is its own: writing it changes nobody else's.
  kept[0][1].fill(0xee);
  assert.deepEqual([kept[1][1], kept[0][2]], [fill(sizes[1], 1), fill(sizes[2], 2)]);
  // A transfer copies that message (Node 20) or is refused (later Nodes), and never touches
  // another (see the queue's arena test).
  const latest = kept[1][3];
  if (Number(process.versions.node.split('.')[0]) >= 21) assert.throws(() => structuredClone(latest, { transfer: [latest.buffer] }), { name: 'DataCloneError' });
  else assert.deepEqual(new Uint8Array(structuredClone(latest, { transfer: [latest.buffer] })), fill(sizes[3], 3));
  assert.deepEqual([latest, kept[0][3], kept[1][4]], [fill(sizes[3], 3), fill(sizes[3], 3), fill(sizes[4], 4)]);
});

test('an exclusive publisher handle garbage collected without close() gives its place back', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  const name = named(t);
  const topic = open(t, name, { capacity: 4, exclusivePublisher: true });
  (() => {
    const leaked = Topic.open(name);
    assert.ok(leaked.tryPublish(bytes(1)));
  })();
  assert.throws(() => topic.tryPublish(bytes(2)), { code: 'IPC_ERR_LIMIT', message: /another handle of this thread/ });
  let published = false;
  for (let i = 0; i < 50 && !published; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
    try {
      published = topic.tryPublish(bytes(2));
    } catch (err) {
      if (err.code !== 'IPC_ERR_LIMIT') throw err;
    }
  }
  assert.ok(published, 'the collected handle let go');
  assert.equal(topic.stats().published, 2);
});

test('interprocess inspect shows subscribers, publishers, how far behind and whether alive', async (t) => {
  const name = named(t);
  const topic = open(t, name, { capacity: 8 });
  const sub = topic.subscribe();
  for (let i = 0; i < 5; i++) topic.tryPublish(bytes(i));
  // A subscriber publishes its position every capacity/4 messages (and whenever it finds nothing
  // to read): after two of five, inspect sees it three behind.
  sub.tryReceive();
  sub.tryReceive();
  const bin = new URL('../bin/interprocess.js', import.meta.url).pathname;
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, [bin, 'inspect', name, '--json'], (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout)))),
  );
  assert.equal(out.kind, 'Topic');
  assert.equal(out.details.published, 5);
  assert.equal(out.details.subscribers.length, 1);
  assert.equal(out.details.subscribers[0].alive, true);
  assert.equal(out.details.subscribers[0].behind, 3);
  assert.equal(out.details.slowestBehind, 3);
  assert.equal(out.details.subscribers[0].pid, process.pid);
  assert.deepEqual(out.details.publishers.map((p) => p.published), [5]);
});

test('large messages (pooled pre-faulted copies from 8 KiB on) arrive byte-exact with both overflow policies', (t) => {
  const fill = (size, seq) => {
    const out = new Uint8Array(size);
    for (let k = 0; k < size; k++) out[k] = (seq * 131 + k * 7 + (k >> 11)) & 255;
    return out;
  };
  for (const overflow of ['block', 'overwrite']) {
    const topic = open(t, named(t, `large-${overflow}`), { capacity: 4, maxMessageSize: 1 << 20, overflow });
    const subs = [topic.subscribe(), topic.subscribe()];
    for (const [seq, size] of [8191, 8192, 16385, 65537, 262143, 262144, 300001, 1 << 20].entries()) {
      const want = fill(size, seq);
      assert.ok(topic.tryPublish(want));
      for (const sub of subs) {
        const got = sub.tryReceive();
        assert.equal(got.byteLength, size, `${overflow} ${size}`);
        assert.ok(Buffer.from(got).equals(Buffer.from(want)), `${overflow} ${size}`);
      }
    }
    // Each subscriber owns its copy: changing one leaves the other's as it was.
    assert.ok(topic.tryPublish(fill(1 << 20, 9)));
    const [a, b] = subs.map((sub) => sub.tryReceive());
    a.fill(0);
    assert.ok(Buffer.from(b).equals(Buffer.from(fill(1 << 20, 9))));
  }
});
