// shm:// channels between real processes: the parts the conformance suite (which also runs on
// shm) cannot show in one process: a peer's death, send-then-exit, a server that never
// accepts, live vs stale accept points, a peer with a larger maxMessageSize, many clients.
// Exact counts and sequence numbers; no durations asserted; every wait under a watchdog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { listen, connect, SharedMemory, Queue, futex } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';
import { channelPair, checkPayload, checkStamped, killSenderRound, payload, serveClients } from './channel-common.mjs';
import { collect, traces } from './fixtures/traces.mjs';
import { makePoint, makeState, post, record, takeId } from './fixtures/by-hand.mjs';

const require = createRequire(import.meta.url);
const WATCHDOG = 30_000;
const SIZES = [1024, 4096, 65536, 262144, 1048576, 1048576];
const RUNS = process.env.INTERPROCESS_STRESS ? 20 : 2;

const address = () => `shm://${uniqueName('shmch')}`;
const nameOf = (addr) => new URL(addr).host;
/** Objects of this address still named in /dev/shm (the accept point and connection objects). */
const objectsOf = (addr) => SharedMemory.list().filter((n) => n === nameOf(addr) || n.startsWith(`${nameOf(addr)}.`));


test('shm: request/reply and echo with a client in another process; connections leave no names', async () => {
  const server = await listen(address(), { codec: 'json' });
  try {
    assert.deepEqual(objectsOf(server.address), [nameOf(server.address)]);
    const peer = startChild('channel-peer.mjs', ['echo', server.address, 'json']);
    const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
    await watchdog(peer.next('connected'), WATCHDOG, 'connected');
    // Only the accept point has a name: the server unlinked the connection's objects.
    assert.deepEqual(objectsOf(server.address), [nameOf(server.address)]);
    const answers = await watchdog(Promise.all(Array.from({ length: 300 }, (_, i) => ch.request(i))), WATCHDOG, 'requests');
    answers.forEach((a, i) => assert.deepEqual(a, { echo: i }));
    for (let i = 0; i < 100; i++) await ch.send({ n: i });
    for (let i = 0; i < 100; i++) assert.deepEqual(await watchdog(ch.receive(), WATCHDOG, 'echo'), { n: i });
    await ch.close();
    await watchdog(peer.next('peer-closed'), WATCHDOG, 'child saw the close');
    assert.deepEqual(await peer.exited, { code: 0, signal: null });
  } finally {
    await server.close();
  }
  assert.deepEqual(objectsOf(server.address), []);
});

test('shm: what send resolved is delivered although the sender exits at once (1 KiB..1 MiB)', async () => {
  const server = await listen(address());
  try {
    for (let run = 0; run < RUNS; run++) {
      const child = startChild('channel-peer.mjs', ['send-exit', server.address, SIZES.join(',')]);
      const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
      const got = [];
      await watchdog(
        (async () => {
          for await (const m of ch) got.push(m);
        })(),
        WATCHDOG,
        'receive all',
      );
      assert.deepEqual(await child.exited, { code: 0, signal: null });
      assert.equal(got.length, SIZES.length);
      got.forEach((m, i) => checkStamped(m, SIZES[i], i));
      await ch.close();
    }
  } finally {
    await server.close();
  }
});

test('shm: a client killed with SIGKILL ends the channel with IPC_ERR_CLOSED; blocked and later sends reject', async () => {
  const server = await listen(address(), { readBufferBytes: 64 * 1024 });
  const child = startChild('channel-peer.mjs', ['hold', server.address]);
  const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
  try {
    await watchdog(child.next('connected'), WATCHDOG, 'connected');
    const pending = expectCode(() => ch.receive(), 'IPC_ERR_CLOSED');
    const request = expectCode(() => ch.request(Buffer.from('r')), 'IPC_ERR_CLOSED');
    // The child never takes its messages: fill its read buffer and the queue until a send has
    // waited for room for 100 ms (the child's pump has paused: it would otherwise take a
    // record within microseconds).
    let committed = 0;
    for (;;) {
      const moved = await ch.send(payload(16 * 1024, committed), { timeout: 100 }).then(
        () => true,
        (e) => (e.code === 'IPC_ERR_TIMEOUT' ? false : Promise.reject(e)),
      );
      if (!moved) break;
      committed++;
    }
    const blocked = [];
    for (let i = 0; i < 20; i++) blocked.push(ch.send(payload(16 * 1024, committed + i)).then(() => 'sent', (e) => e.code));
    child.kill('SIGKILL');
    await child.exited;
    await watchdog(pending, WATCHDOG, 'pending receive');
    await watchdog(request, WATCHDOG, 'pending request');
    const outcomes = await watchdog(Promise.all(blocked), WATCHDOG, 'blocked sends');
    assert.ok(outcomes.every((o) => o === 'IPC_ERR_CLOSED'), outcomes.join());
    const err = await expectCode(() => ch.send(payload(4, 0)), 'IPC_ERR_CLOSED');
    assert.match(err.message, /died|closed/);
    console.log(`# shm: ${committed} messages committed before the send waited`);
  } finally {
    await ch.close();
    await server.close();
  }
});

test('shm: a server killed with SIGKILL ends its clients (IPC_ERR_CLOSED); its stale accept point is replaced', async () => {
  const addr = address();
  const child = startChild('channel-shm-peer.mjs', ['serve', addr]);
  await watchdog(child.next('listening'), WATCHDOG, 'child listening');
  await expectCode(() => listen(addr), 'IPC_ERR_EXISTS');
  const ch = await connect(addr, { codec: 'json' });
  try {
    await watchdog(child.next('accepted'), WATCHDOG, 'accepted');
    assert.deepEqual(await watchdog(ch.request({ x: 1 }), WATCHDOG, 'request'), { echo: { x: 1 } });
    const pending = expectCode(() => ch.receive(), 'IPC_ERR_CLOSED');
    child.kill('SIGKILL');
    await child.exited;
    const err = await watchdog(pending, WATCHDOG, 'pending receive');
    assert.match(err.message, /died/);
    await expectCode(() => ch.request({ x: 2 }), 'IPC_ERR_CLOSED');
  } finally {
    await ch.close();
  }
  assert.deepEqual(objectsOf(addr), [nameOf(addr)], 'the dead server left its accept point');
  await expectCode(() => connect(addr), 'IPC_ERR_NOT_FOUND');
  const server = await listen(addr);
  try {
    const [a, b] = await watchdog(Promise.all([connect(addr), server.accept()]), WATCHDOG, 'connect to the new server');
    await a.send(Buffer.from('alive'));
    assert.equal((await watchdog(b.receive(), WATCHDOG, 'receive')).toString(), 'alive');
    await Promise.all([a.close(), b.close()]);
  } finally {
    await server.close();
  }
  assert.deepEqual(objectsOf(addr), []);
});

test('shm: a server that never accepts: connect times out or aborts and removes its objects', async () => {
  const addr = address();
  const child = startChild('channel-shm-peer.mjs', ['freeze', addr]);
  try {
    await watchdog(child.next('listening'), WATCHDOG, 'child listening');
    await expectCode(() => connect(addr, { timeout: 50 }), 'IPC_ERR_TIMEOUT');
    const ac = new AbortController();
    const pending = expectCode(() => connect(addr, { signal: ac.signal }), 'IPC_ERR_ABORTED');
    setImmediate(() => ac.abort());
    await watchdog(pending, WATCHDOG, 'abort');
    await expectCode(() => connect(addr, { signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
    assert.deepEqual(objectsOf(addr), [nameOf(addr)], 'withdrawn connections leave nothing');
  } finally {
    child.kill('SIGKILL');
    await child.exited;
  }
  // The frozen server is dead now: its point is stale and a new server takes it over.
  const server = await listen(addr);
  await server.close();
  assert.deepEqual(objectsOf(addr), []);
});

test('shm: a peer sending over our maxMessageSize is IPC_ERR_PROTOCOL for that connection only', async () => {
  const server = await listen(address(), { maxMessageSize: 1000 });
  const child = startChild('channel-shm-peer.mjs', ['big-sender', server.address, 100_000]);
  const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
  try {
    await watchdog(child.next('connected'), WATCHDOG, 'connected');
    const err = await watchdog(expectCode(() => ch.receive(), 'IPC_ERR_PROTOCOL'), WATCHDOG, 'protocol error');
    assert.match(err.message, /maxMessageSize/);
    // The server and its other connections carry on.
    const [a, b] = await watchdog(Promise.all([connect(server.address, { maxMessageSize: 1000 }), server.accept()]), WATCHDOG, 'another client');
    await a.send(payload(1000, 3));
    checkPayload(await watchdog(b.receive(), WATCHDOG, 'receive'), 1000, 3);
    await expectCode(() => a.send(payload(1001, 4)), 'IPC_ERR_MESSAGE_TOO_LARGE');
    await Promise.all([a.close(), b.close()]);
  } finally {
    child.kill('SIGKILL');
    await child.exited;
    await ch.close();
    await server.close();
  }
});

test('shm: a live peer that stalls in the middle of a frame is IPC_ERR_PROTOCOL after frameTimeout', async () => {
  const server = await listen(address(), { frameTimeout: 300 });
  const child = startChild('channel-shm-peer.mjs', ['stall', server.address]);
  const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
  try {
    await watchdog(child.next('stalled'), WATCHDOG, 'stalled');
    const err = await watchdog(expectCode(() => ch.receive(), 'IPC_ERR_PROTOCOL'), WATCHDOG, 'protocol error');
    assert.match(err.message, /stalled in the middle of a frame/);
    await expectCode(() => ch.send(payload(4, 0)), 'IPC_ERR_CLOSED');
  } finally {
    child.kill('SIGKILL');
    await child.exited;
    await ch.close();
    await server.close();
  }
});

test('shm: senders killed mid-stream, again and again (messages span several slots): what arrives is an exact prefix', async () => {
  const rounds = process.env.INTERPROCESS_STRESS ? 200 : 8;
  // Small slots: a 64..6064-byte message spans up to 7 slots, so kills land inside messages.
  const server = await listen(address(), { queueChunkBytes: 1000, queueCapacity: 16 });
  let total = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      total += await killSenderRound(server, round, WATCHDOG);
      assert.deepEqual(objectsOf(server.address), [nameOf(server.address)], 'a killed connection leaves no object');
    }
    console.log(`# soak shm: ${rounds} kills, ${total} messages`);
  } finally {
    await server.close();
  }
});

test('shm: small messages written in one turn share slots (packs): 2000 fit a 16-slot queue, in order, between large frames and requests', async () => {
  const server = await listen(address(), { queueCapacity: 16 });
  try {
    const [a, b] = await Promise.all([connect(server.address), server.accept()]);
    // One turn, no reader running: 16 slots of one message each would refuse the 18th trySend.
    let accepted = 0;
    for (let i = 0; i < 2000; i++) if (a.trySend(payload(10, i))) accepted++;
    assert.equal(accepted, 2000);
    for (let i = 0; i < 2000; i++) checkPayload(await watchdog(b.receive(), WATCHDOG, 'packed'), 10, i);
    // Packs, whole records, split frames, empty frames and requests, all in one turn.
    b.handle((m) => Buffer.concat([Buffer.from('re:'), m]));
    const sizeOf = (i) => [0, 3, 64, 100_000, 700, 4100, 9000, 1][i % 8];
    const sends = [];
    const replies = [];
    for (let i = 0; i < 400; i++) {
      sends.push(a.send(payload(sizeOf(i), i)));
      if (i % 50 === 7) replies.push(a.request(Buffer.from(`q${i}`)));
    }
    for (let i = 0; i < 400; i++) {
      const m = await watchdog(b.receive(), WATCHDOG, 'mixed');
      if (sizeOf(i) >= 4) checkPayload(m, sizeOf(i), i);
      else assert.equal(m.byteLength, sizeOf(i), `message ${i}`);
    }
    await watchdog(Promise.all(sends), WATCHDOG, 'sends resolve');
    const answers = await watchdog(Promise.all(replies), WATCHDOG, 'replies');
    answers.forEach((r, k) => assert.equal(r.toString(), `re:q${k * 50 + 7}`));
    assert.equal(b.tryReceive(), undefined);
    await Promise.all([a.close(), b.close()]);
  } finally {
    await server.close();
  }
});

test('shm: a reader that pauses in the middle of a pack resumes there; the last turn before close is flushed', async () => {
  // readBufferBytes 64: the reader pauses after a few messages, many times inside one pack.
  const server = await listen(address(), { readBufferBytes: 64 });
  try {
    const [a, b] = await Promise.all([connect(server.address), server.accept()]);
    const count = 3000;
    for (let i = 0; i < count; i++) assert.equal(a.trySend(payload(4 + (i % 40), i)), true);
    await a.close(); // same turn: what was gathered in it goes before the end
    let n = 0;
    await watchdog(
      (async () => {
        for await (const m of b) {
          checkPayload(m, 4 + (n % 40), n);
          n++;
          if (n % 97 === 0) await new Promise((r) => setImmediate(r)); // a slow reader now and then
        }
      })(),
      WATCHDOG,
      'slow reader',
    );
    assert.equal(n, count);
    await b.close();
  } finally {
    await server.close();
  }
});

test('shm: trySend then exit in the same turn (no close): the gathered messages go out in the exit hook', async () => {
  const server = await listen(address());
  try {
    for (let run = 0; run < RUNS; run++) {
      const count = 1000;
      const child = startChild('channel-shm-peer.mjs', ['trysend-exit', server.address, count]);
      const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
      let n = 0;
      await watchdog(
        (async () => {
          for await (const m of ch) checkStamped(m, 64 + (n % 5) * 100, n++);
        })(),
        WATCHDOG,
        'receive all',
      );
      assert.deepEqual(await child.exited, { code: 0, signal: null });
      assert.equal(n, count);
      await ch.close();
    }
  } finally {
    await server.close();
  }
});

test('shm: senders with many sends in flight (packs) killed mid-stream: what arrives is an exact prefix', async () => {
  const rounds = process.env.INTERPROCESS_STRESS ? 100 : 4;
  const server = await listen(address(), { queueCapacity: 16 });
  let total = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      const child = startChild('channel-peer.mjs', ['stream-window', server.address, 64]);
      const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
      let n = 0;
      const want = 500 + ((round * 337) % 2000);
      await watchdog((async () => { while (n < want) checkStamped(await ch.receive(), 64 + (n % 7) * 1000, n++); })(), WATCHDOG, 'first messages');
      child.kill('SIGKILL');
      await child.exited;
      await watchdog((async () => { for await (const m of ch) checkStamped(m, 64 + (n % 7) * 1000, n++); })(), WATCHDOG, 'drain after kill');
      const err = await expectCode(() => ch.receive(), 'IPC_ERR_CLOSED');
      assert.match(err.message, /died/);
      await ch.close();
      total += n;
      assert.deepEqual(objectsOf(server.address), [nameOf(server.address)], 'a killed connection leaves no object');
    }
    console.log(`# shm packs: ${rounds} kills, ${total} messages`);
  } finally {
    await server.close();
  }
});

test('shm: one server serves 40 clients connecting at once, each on its own channel', async () => {
  const server = await listen(address(), { codec: 'json' });
  assert.equal(await serveClients(server, 40, WATCHDOG), 40);
  assert.deepEqual(objectsOf(server.address), []);
});

test('shm: close with the queue full still ends the reader (closed flag); resolved sends form a delivered prefix', async () => {
  const { a, b, cleanup } = await channelPair('shm', { closeTimeout: 50, readBufferBytes: 1024 });
  try {
    const size = 64 * 1024;
    const outcomes = [];
    for (let i = 0; i < 100; i++) outcomes.push(a.send(payload(size, i)).then(() => 'sent', (e) => e.code));
    await a.close();
    const results = await watchdog(Promise.all(outcomes), WATCHDOG, 'sends settle');
    const sent = results.filter((r) => r === 'sent').length;
    assert.ok(results.every((r) => r === 'sent' || r === 'IPC_ERR_CLOSED'), results.join());
    assert.ok(results.slice(0, sent).every((r) => r === 'sent'), 'resolved sends form a prefix');
    assert.ok(sent < 100, 'the stalled reader could not have taken everything');
    let n = 0;
    await watchdog(
      (async () => {
        try {
          for await (const m of b) checkPayload(m, size, n++);
        } catch (err) {
          assert.equal(err.code, 'IPC_ERR_CLOSED'); // the last frame was cut off
        }
      })(),
      WATCHDOG,
      'reader ends',
    );
    assert.ok(n >= sent, `received ${n}, but ${sent} sends resolved`);
  } finally {
    await cleanup();
  }
});

test('shm: bad addresses and options', async () => {
  await assert.rejects(() => listen('shm://name/path'), TypeError);
  await assert.rejects(() => connect('shm://name:12'), TypeError);
  await expectCode(() => listen('shm://'), 'IPC_ERR_INVALID_NAME');
  await expectCode(() => listen('shm://-dash'), 'IPC_ERR_INVALID_NAME');
  await expectCode(() => listen(`shm://t-${'x'.repeat(190)}`), 'IPC_ERR_INVALID_NAME');
  await assert.rejects(() => listen(address(), { queueCapacity: 100 }), RangeError);
  await assert.rejects(() => listen(address(), { queueChunkBytes: 0 }), RangeError);
  await assert.rejects(() => listen(address(), { bogus: 1 }), /unknown option 'bogus'/);
  await expectCode(() => connect(address()), 'IPC_ERR_NOT_FOUND');
  // A name held by another kind of object: listen leaves it alone, connect says what it is.
  const other = address();
  const queue = Queue.create(nameOf(other), { capacity: 2, maxMessageSize: 16 });
  try {
    await expectCode(() => listen(other), 'IPC_ERR_EXISTS');
    await expectCode(() => connect(other), 'IPC_ERR_INCOMPATIBLE');
    assert.equal(queue.trySend(Buffer.from('still a queue')), true);
  } finally {
    queue.close();
    Queue.remove(nameOf(other));
  }
  // A small geometry: every message spans many slots, and it still arrives whole and in order.
  const server = await listen(address(), { queueCapacity: 4, queueChunkBytes: 100 });
  try {
    const [a, b] = await Promise.all([connect(server.address), server.accept()]);
    const sends = [];
    for (let i = 0; i < 50; i++) sends.push(a.send(payload(1 + ((i * 97) % 3000), i)));
    for (let i = 0; i < 50; i++) {
      const m = await watchdog(b.receive(), WATCHDOG, 'receive');
      const size = 1 + ((i * 97) % 3000);
      if (size >= 4) checkPayload(m, size, i);
      else assert.equal(m.byteLength, size);
    }
    await Promise.all(sends);
    await Promise.all([a.close(), b.close()]);
  } finally {
    await server.close();
  }
});

test('shm: a client killed in connect() before it posted leaves nothing: the server sweeps what it made', async () => {
  const server = await listen(address());
  const exists = (name) => fs.existsSync(`/dev/shm/interprocess.${name}`);
  const child = startChild('channel-shm-peer.mjs', ['unposted', server.address]);
  try {
    const { names } = await watchdog(child.next('unposted'), WATCHDOG, 'unposted');
    assert.equal(names.length, 6);
    // While the client lives it is connecting, however long: two sweeps (1 s apart) leave it alone.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.deepEqual(names.filter((n) => !exists(n)), [], 'a live client keeps what it made');
    child.child.kill('SIGKILL');
    await child.exited;
    // Dead (the kernel says so): the next sweep removes its objects.
    await watchdog(
      (async () => {
        while (names.some(exists)) await new Promise((resolve) => setTimeout(resolve, 50));
      })(),
      WATCHDOG,
      'sweep',
    );
    // The server goes on accepting.
    const [a, b] = await Promise.all([server.accept(), connect(server.address)]);
    await Promise.all([a.close(), b.close()]);
  } finally {
    child.child.kill('SIGKILL');
    await server.close();
  }
});

/** A hand-made client (the handshake of src/channel/shm/connect.ts, done by hand) that can send any record. */
function rawClient(addr, maxMessageSize = RECORD_HEADER_BYTES + 100) {
  const point = SharedMemory.open(nameOf(addr));
  const p = new Int32Array(point.buffer, 0, 128);
  const id = takeId(p);
  const base = `${nameOf(addr)}.c${id}`;
  const conn = makeState(base);
  const up = Queue.create(`${base}.up`, { capacity: 8, maxMessageSize });
  const down = Queue.create(`${base}.down`, { capacity: 8, maxMessageSize });
  assert.equal(post(p, id), true, 'a request slot is free');
  return {
    up,
    conn: conn.shm,
    state: () => Atomics.load(conn.i32, 17),
    close() {
      up.close();
      down.close();
      conn.close();
      point.close();
      for (const n of [base, `${base}.up`, `${base}.down`]) SharedMemory.remove(n);
    },
  };
}

const { RECORD_HEADER_BYTES } = require('../dist/cjs/channel/shm/record.js');

test('shm: malformed records from a peer are IPC_ERR_PROTOCOL for that connection only', async () => {
  const server = await listen(address(), { maxMessageSize: 1000 });
  const cases = [
    ['unknown kind', [record(99, 0, 0, 0)]],
    ['short record', [Buffer.from([1, 0, 0])]],
    ['continuation without a frame', [record(17, 0, 10, 10)]],
    ['new frame inside a frame', [record(1, 0, 200, 50), record(1, 0, 10, 10)]],
    ['over maxMessageSize', [record(1, 0, 1001, 10)]],
    ['record longer than its frame', [record(1, 0, 5, 10)]],
    ['continuation past its frame', [record(1, 0, 60, 50), record(17, 0, 60, 20)]],
  ];
  try {
    for (const [what, records] of cases) {
      const client = rawClient(server.address);
      try {
        const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
        for (const r of records) assert.equal(client.up.trySend(r), true);
        const err = await watchdog(expectCode(() => ch.receive(), 'IPC_ERR_PROTOCOL'), WATCHDOG, what);
        assert.match(err.message, /malformed record/, what);
        await ch.close();
      } finally {
        client.close();
      }
    }
    // Queues whose slots cannot hold a record header: the server refuses (state 3), so the
    // client is not left waiting, and hands out no channel.
    const tiny = rawClient(server.address, 8);
    try {
      await watchdog(
        (async () => {
          while (tiny.state() !== 3) await new Promise((r) => setImmediate(r));
        })(),
        WATCHDOG,
        'refused',
      );
      await expectCode(() => server.accept({ timeout: 50 }), 'IPC_ERR_TIMEOUT');
    } finally {
      tiny.close();
    }
    // A well-formed frame split by hand over three records is delivered whole.
    const client = rawClient(server.address);
    try {
      const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
      const parts = [record(1, 0, 250, 100), record(17, 0, 250, 100), record(17, 0, 250, 50)];
      parts.forEach((r, k) => r.fill(k + 1, RECORD_HEADER_BYTES));
      for (const r of parts) assert.equal(client.up.trySend(r), true);
      const m = await watchdog(ch.receive(), WATCHDOG, 'split frame');
      assert.equal(m.byteLength, 250);
      assert.deepEqual([m[0], m[99], m[100], m[199], m[200], m[249]], [1, 1, 2, 2, 3, 3]);
      await ch.close();
    } finally {
      client.close();
    }
  } finally {
    await server.close();
  }
  assert.deepEqual(objectsOf(server.address), []);
});

/** `interprocess inspect NAME --json`: the object's details as the CLI shows them. */
function inspect(name) {
  const bin = new URL('../bin/interprocess.js', import.meta.url).pathname;
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [bin, 'inspect', name, '--json'], (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(JSON.parse(stdout)))),
  );
}

test('shm: inspect shows an accept point (server, pending requests) and a connection (handshake state, both sides)', async (t) => {
  const { describeShmChannel } = require('../dist/cjs/channel/shm/layout.js');
  const addr = address();
  const name = nameOf(addr);
  const child = startChild('channel-shm-peer.mjs', ['freeze', addr]);
  // Whatever happens below, no connect is left waiting and the dead server's point goes.
  const stop = new AbortController();
  t.after(() => {
    stop.abort();
    for (const n of objectsOf(addr)) SharedMemory.remove(n);
  });
  let connecting;
  try {
    await watchdog(child.next('listening'), WATCHDOG, 'child listening');
    const point = await inspect(name);
    assert.equal(point.kind, 'Channel');
    assert.deepEqual(point.details, {
      role: 'accept point',
      server: 'alive',
      pendingRequests: 0,
      connectionsRequested: 0,
      queueCapacity: 128,
      recordBytes: 8240,
      mode: '0o600',
    });
    // The frozen server never takes the request: it stays posted, the connection requested.
    connecting = expectCode(() => connect(addr, { signal: stop.signal }), 'IPC_ERR_NOT_FOUND');
    await watchdog(
      (async () => {
        while (SharedMemory.list().filter((n) => n.startsWith(`${name}.c1`)).length < 3 || (await inspect(name)).details.pendingRequests === 0) {
          await new Promise((r) => setImmediate(r));
        }
      })(),
      WATCHDOG,
      'request posted',
    );
    assert.deepEqual((await inspect(name)).details, { ...point.details, pendingRequests: 1, connectionsRequested: 1 });
    assert.deepEqual((await inspect(`${name}.c1`)).details, {
      role: 'connection',
      state: 'requested',
      client: 'alive',
      server: 'none',
      clientClosed: false,
      serverClosed: false,
    });
  } finally {
    child.kill('SIGKILL');
    await child.exited;
  }
  // The server died: the point says so, and the waiting client gives up and removes its objects.
  assert.equal((await inspect(name)).details.server, 'dead');
  await watchdog(connecting, WATCHDOG, 'client gives up');
  assert.deepEqual(objectsOf(addr), [name]);

  // An accepted connection has no name left: read its state object as inspect would.
  const server = await listen(address());
  const client = rawClient(server.address);
  try {
    const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
    assert.deepEqual(describeShmChannel(client.conn.buffer), {
      role: 'connection',
      state: 'accepted',
      client: 'alive',
      server: 'alive',
      clientClosed: false,
      serverClosed: false,
    });
    await ch.close();
    assert.equal(describeShmChannel(client.conn.buffer).serverClosed, true);
  } finally {
    client.close();
    await server.close();
  }
  assert.deepEqual(describeShmChannel(new SharedArrayBuffer(64)), { role: 'unknown (too small)' });
  assert.deepEqual(describeShmChannel(new SharedArrayBuffer(512)), { role: 'unknown (0)' });
});

/**
 * A hand-made accept point (what listen creates, by hand) asking for queues of `capacity` x
 * `recordBytes`; refuseNext() takes the next request and refuses it as a server does.
 */
function rawPoint(addr, geometry) {
  const name = nameOf(addr);
  const point = makePoint(name, geometry);
  return {
    async refuseNext() {
      for (;;) {
        for (let k = 0; k < 64; k++) {
          const id = Atomics.load(point.i32, 64 + k);
          if (id === 0 || Atomics.compareExchange(point.i32, 64 + k, id, 0) !== id) continue;
          const conn = SharedMemory.open(`${name}.c${id}`);
          const c = new Int32Array(conn.buffer, 0, 32);
          assert.equal(Atomics.compareExchange(c, 17, 0, 3), 0, 'requested -> refused');
          futex.notify(c, 17);
          conn.close();
          return;
        }
        await new Promise((r) => setImmediate(r));
      }
    },
    close: () => point.close(),
  };
}

/** Resolves once a request is posted on the accept point of `addr`. */
async function posted(addr) {
  const point = SharedMemory.open(nameOf(addr));
  const slots = new Int32Array(point.buffer, 256, 64);
  while (slots.every((id) => id === 0)) await new Promise((r) => setImmediate(r));
  point.close();
}

test('shm: a connect that fails (timeout, refusal, server death, bad geometry) leaves no object, mapping or descriptor', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  // The errors are kept, as a caller that logs them later would: an error must not keep the
  // failed connection's memory alive (its stack trace holds the objects it was thrown from).
  const errors = [];
  const failsWith = (code, ...args) => expectCode(() => connect(...args), code).then((err) => errors.push(err));
  const nothingLeft = async (addr, what) => {
    await collect(gc);
    assert.deepEqual(traces(nameOf(addr)), { objects: [], mappings: 0, fds: 0 }, what);
  };
  // A server whose accept loop never runs: the connect times out.
  let addr = address();
  let child = startChild('channel-shm-peer.mjs', ['freeze', addr]);
  try {
    await watchdog(child.next('listening'), WATCHDOG, 'child listening');
    await failsWith('IPC_ERR_TIMEOUT', addr, { timeout: 50 });
    await nothingLeft(addr, 'timeout');
    // The server dies after the request is posted: IPC_ERR_NOT_FOUND.
    const pending = failsWith('IPC_ERR_NOT_FOUND', addr);
    await watchdog(posted(addr), WATCHDOG, 'request posted');
    assert.equal(traces(nameOf(addr)).objects.length, 3, 'the three objects exist while the request is posted');
    child.kill('SIGKILL');
    await child.exited;
    await watchdog(pending, WATCHDOG, 'connect gives up');
    await nothingLeft(addr, 'server death');
  } finally {
    child.kill('SIGKILL');
    await child.exited;
    SharedMemory.remove(nameOf(addr));
  }
  // A server that refuses the connection's objects: IPC_ERR_PROTOCOL.
  addr = address();
  let point = rawPoint(addr);
  try {
    const pending = failsWith('IPC_ERR_PROTOCOL', addr);
    await watchdog(point.refuseNext(), WATCHDOG, 'refuse');
    await watchdog(pending, WATCHDOG, 'connect refused');
    await nothingLeft(addr, 'refusal');
  } finally {
    point.close();
  }
  // An accept point that asks for queues no one may make: IPC_ERR_INCOMPATIBLE, before creating anything.
  const header = RECORD_HEADER_BYTES;
  for (const geometry of [{ capacity: 3 }, { capacity: 2 ** 17 }, { recordBytes: header }, { recordBytes: header + 16 * 2 ** 20 + 1 }]) {
    addr = address();
    point = rawPoint(addr, geometry);
    try {
      // A timeout, so that a geometry wrongly accepted fails here instead of waiting for ever.
      await watchdog(failsWith('IPC_ERR_INCOMPATIBLE', addr, { timeout: 10_000 }), WATCHDOG, `geometry ${JSON.stringify(geometry)}`);
      await nothingLeft(addr, `bad geometry ${JSON.stringify(geometry)}`);
    } finally {
      point.close();
    }
  }
  assert.equal(errors.length, 7);
});

const PRIVATE_SHM = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=12m,mode=1777 tmpfs /dev/shm && exec "$@"', 'sh'];
const noNamespace = (() => {
  try {
    execFileSync(PRIVATE_SHM[0], [...PRIVATE_SHM.slice(1), 'true'], { stdio: 'ignore', timeout: 30_000 });
    return undefined;
  } catch {
    return 'cannot mount a private /dev/shm (unshare -m) here';
  }
})();

test('shm: a connect that finds /dev/shm full is IPC_ERR_NO_SPACE and leaves no object, mapping or descriptor', { skip: noNamespace }, async () => {
  // In a private /dev/shm of 12 MiB: queues of 8 MiB (the down queue does not fit) and of 16 MiB
  // (the up queue does not either).
  const child = startChild('channel-shm-peer.mjs', ['no-space', address()], { wrap: PRIVATE_SHM, execArgv: ['--expose-gc'] });
  const { outcomes, objects } = await watchdog(child.next('no-space'), WATCHDOG, 'no-space');
  assert.deepEqual(await child.exited, { code: 0, signal: null });
  assert.deepEqual(outcomes, [
    { code: 'IPC_ERR_NO_SPACE', traces: { objects: [], mappings: 0, fds: 0 } },
    { code: 'IPC_ERR_NO_SPACE', traces: { objects: [], mappings: 0, fds: 0 } },
  ]);
  assert.deepEqual(objects, []);
});

test('shm: an accept point its creator never finished (unsized, unpublished): connect waits without blocking the loop, for its own timeout or signal', async () => {
  const { writeHeader, Kind } = require('../dist/cjs/shm/header.js');
  for (const how of ['unsized', 'unpublished']) {
    const addr = address();
    const name = nameOf(addr);
    if (how === 'unsized') fs.writeFileSync(`/dev/shm/interprocess.${name}`, '', { mode: 0o600, flag: 'wx' });
    else {
      const shm = SharedMemory.create(name, { byteLength: 512 });
      writeHeader(shm.buffer, 0, Kind.Channel, 1, 512);
      shm.close();
    }
    try {
      // The loop runs while connect waits: timers fire, and the connect ends with its own timeout.
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 1);
      const err = await expectCode(() => connect(addr, { timeout: 100 }), 'IPC_ERR_TIMEOUT');
      clearInterval(ticker);
      assert.match(err.message, /timed out/);
      assert.ok(ticks > 0, how);
      const ac = new AbortController();
      const pending = expectCode(() => connect(addr, { signal: ac.signal }), 'IPC_ERR_ABORTED');
      setImmediate(() => ac.abort());
      await watchdog(pending, WATCHDOG, `${how}: abort`);
      assert.deepEqual(objectsOf(addr), [name], `${how}: connect created nothing`);
    } finally {
      SharedMemory.remove(name);
    }
  }
});

test('shm: a server that accepts and closes many connections holds no descriptor for the closed ones, without waiting for a GC', async () => {
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  const server = await listen(address());
  try {
    const round = async () => {
      const [client, accepted] = await Promise.all([connect(server.address), server.accept()]);
      await client.send(new Uint8Array([1]));
      await watchdog(accepted.receive(), WATCHDOG, 'receive');
      await Promise.all([client.close(), accepted.close()]);
      return [client, accepted]; // kept reachable, as an application's logs or maps may keep them
    };
    const kept = [await round()];
    const before = fds();
    for (let i = 0; i < 40; i++) kept.push(await round());
    assert.ok(fds() - before < 6, `descriptors grew from ${before} to ${fds()} over 40 closed connections`);
  } finally {
    await server.close();
  }
});
