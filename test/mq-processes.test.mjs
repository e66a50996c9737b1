// MessageQueue between real processes: producers and consumers exchanging sequence-numbered
// messages (exact counts, order within a priority, priority order), many receivers, a receiver
// killed with SIGKILL, backpressure, kernel limits, modes and listing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageQueue } from 'interprocess';
import { startChild, uniqueName, watchdog } from './helpers.mjs';
import { stageForOtherUser } from './stage.mjs';

const tool = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'mq-tool.mjs');
const WATCHDOG = 30_000;

async function withQueue(options, fn) {
  const name = uniqueName('mq');
  const q = MessageQueue.create(name, options);
  try {
    return await fn(q, name);
  } finally {
    q.close();
    MessageQueue.remove(name);
  }
}

async function stop(...children) {
  for (const c of children) c.send({ cmd: 'exit' });
  await watchdog(Promise.all(children.map((c) => c.exited)), WATCHDOG, 'children exit');
}

/**
 * Records every 'got' report of `children` (listening on the control channel directly, so no
 * report is consumed by a stale waiter); until(total) resolves once `total` have arrived.
 */
function recorder(children) {
  const got = children.map(() => []);
  let check = () => {};
  children.forEach((c, i) =>
    c.child.on('message', (msg) => {
      if (msg.state !== 'got') return;
      got[i].push(msg);
      check();
    }),
  );
  return {
    got,
    until(total) {
      return watchdog(
        new Promise((resolve) => {
          check = () => {
            if (got.flat().length >= total) resolve();
          };
          check();
        }),
        WATCHDOG,
        `${total} messages`,
      );
    },
  };
}

test('one producer process, one consumer: every message once, in order, both ways (async and sync)', async () => {
  await withQueue({ maxMessages: 10, maxMessageSize: 128, codec: 'json' }, async (q, name) => {
    const N = 2000;
    const producer = startChild('mq-peer.mjs', [name, 1]);
    try {
      await watchdog(producer.next('ready'), WATCHDOG, 'producer ready');
      producer.send({ cmd: 'send', from: 0, count: N, mode: 'async' });
      for (let seq = 0; seq < N; seq++) {
        const m = await watchdog(q.receive(), WATCHDOG, `message ${seq}`);
        assert.deepEqual(m, { p: 1, seq, priority: 0 });
      }
      await watchdog(producer.next('sent'), WATCHDOG, 'producer done');
      // and back: the child consumes with receiveSync what we send with sendSync
      producer.send({ cmd: 'receive', count: N, mode: 'sync' });
      for (let seq = 0; seq < N; seq++) q.sendSync({ p: 0, seq }, { timeout: WATCHDOG });
      const { messages } = await watchdog(producer.next('received'), WATCHDOG, 'child received');
      assert.deepEqual(messages.map((m) => m.message.seq), Array.from({ length: N }, (_, i) => i));
      assert.equal(q.messageCount, 0);
    } finally {
      await stop(producer);
    }
  });
});

test('two producers, one consumer: exact counts, FIFO per producer', async () => {
  await withQueue({ maxMessages: 10, maxMessageSize: 128, codec: 'json' }, async (q, name) => {
    const N = 1500;
    const producers = [startChild('mq-peer.mjs', [name, 1]), startChild('mq-peer.mjs', [name, 2])];
    try {
      await watchdog(Promise.all(producers.map((p) => p.next('ready'))), WATCHDOG, 'ready');
      producers[0].send({ cmd: 'send', from: 0, count: N, mode: 'async' });
      producers[1].send({ cmd: 'send', from: 0, count: N, mode: 'sync' });
      const next = { 1: 0, 2: 0 };
      for (let i = 0; i < 2 * N; i++) {
        const m = i % 2 ? q.receiveSync({ timeout: WATCHDOG }) : await watchdog(q.receive(), WATCHDOG, 'receive');
        assert.equal(m.seq, next[m.p], `producer ${m.p}: expected ${next[m.p]}, got ${m.seq}`);
        next[m.p]++;
      }
      assert.deepEqual(next, { 1: N, 2: N });
      assert.equal(q.tryReceive(), undefined);
    } finally {
      await stop(...producers);
    }
  });
});

// Quick by default; INTERPROCESS_STRESS=1 runs 4 producers x 50000 messages into 4 consumers.
const STRESS = process.env.INTERPROCESS_STRESS === '1';
test(`many producers and many consumers (${STRESS ? 'stress' : 'quick'}): each message exactly once, FIFO per producer`, async (t) => {
  const producersCount = STRESS ? 4 : 3;
  const consumersCount = STRESS ? 4 : 3;
  const N = STRESS ? 50_000 : 2_000;
  await withQueue({ maxMessages: 10, maxMessageSize: 128, codec: 'json' }, async (q, name) => {
    const producers = Array.from({ length: producersCount }, (_, i) => startChild('mq-peer.mjs', [name, i + 1]));
    const consumers = Array.from({ length: consumersCount }, (_, i) => startChild('mq-peer.mjs', [name, 100 + i]));
    try {
      await watchdog(Promise.all([...producers, ...consumers].map((c) => c.next('ready'))), WATCHDOG, 'ready');
      consumers.forEach((c, i) => c.send({ cmd: 'drain', mode: i % 2 ? 'sync' : 'async' }));
      await watchdog(Promise.all(consumers.map((c) => c.next('draining'))), WATCHDOG, 'draining');
      const started = performance.now();
      producers.forEach((p, i) => p.send({ cmd: 'send', from: 0, count: N, mode: i % 2 ? 'sync' : 'async', priorities: [0] }));
      await watchdog(Promise.all(producers.map((p) => p.next('sent'))), STRESS ? 600_000 : WATCHDOG, 'producers');
      for (let i = 0; i < consumersCount; i++) q.sendSync('stop');
      const reports = await watchdog(Promise.all(consumers.map((c) => c.next('drained'))), WATCHDOG, 'drained');
      const seconds = (performance.now() - started) / 1000;
      t.diagnostic(`${producersCount * N} messages through ${consumersCount} consumers in ${seconds.toFixed(2)} s`);
      for (let p = 1; p <= producersCount; p++) {
        const all = [];
        for (const r of reports) {
          const mine = r.byProducer[p] ?? [];
          for (let i = 1; i < mine.length; i++) assert.ok(mine[i] > mine[i - 1], `producer ${p} out of order at a consumer`);
          all.push(...mine);
        }
        all.sort((a, b) => a - b);
        assert.equal(all.length, N, `producer ${p}: ${all.length} received of ${N}`);
        assert.ok(all.every((seq, i) => seq === i), `producer ${p}: lost or duplicated messages`);
      }
      assert.equal(q.messageCount, 0);
    } finally {
      await stop(...producers, ...consumers);
    }
  });
});

test('priority order across processes: higher first, FIFO within a priority, round after round', async () => {
  await withQueue({ maxMessages: 10, maxMessageSize: 128, codec: 'json' }, async (q, name) => {
    const producer = startChild('mq-peer.mjs', [name, 1]);
    try {
      await watchdog(producer.next('ready'), WATCHDOG, 'ready');
      const priorities = [3, 0, 7, 3, 0, 7, 1, 3, 0, 2];
      for (let round = 0; round < 5; round++) {
        producer.send({ cmd: 'send', from: round * 10, count: 10, mode: 'sync', priorities });
        await watchdog(producer.next('sent'), WATCHDOG, 'round sent');
        assert.equal(q.messageCount, 10);
        const got = [];
        for (let r; (r = q.tryReceiveWithPriority()) !== undefined; ) got.push([r.message.seq, r.priority]);
        const expected = priorities
          .map((priority, i) => [round * 10 + i, priority])
          .sort((a, b) => b[1] - a[1] || a[0] - b[0]);
        assert.deepEqual(got, expected);
      }
    } finally {
      await stop(producer);
    }
  });
});

test('many async receivers in one process each get a distinct message', async () => {
  await withQueue({ maxMessages: 10, maxMessageSize: 128, codec: 'json' }, async (q, name) => {
    const second = MessageQueue.open(name, { codec: 'json' });
    const producer = startChild('mq-peer.mjs', [name, 1]);
    try {
      await watchdog(producer.next('ready'), WATCHDOG, 'ready');
      const receivers = [...Array.from({ length: 6 }, () => q.receive()), ...Array.from({ length: 4 }, () => second.receive())];
      producer.send({ cmd: 'send', from: 0, count: 10, mode: 'async' });
      const got = await watchdog(Promise.all(receivers), WATCHDOG, 'receivers');
      assert.deepEqual(got.map((m) => m.seq).sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i));
      // Within one object, waiters are served in the order they called receive.
      const firstObject = got.slice(0, 6).map((m) => m.seq);
      assert.deepEqual(firstObject, [...firstObject].sort((a, b) => a - b));
      assert.equal(q.tryReceive(), undefined);
    } finally {
      second.close();
      await stop(producer);
    }
  });
});

test('several receiver processes; one is SIGKILLed while blocked in receiveSync; no message is lost or doubled', async (t) => {
  await withQueue({ maxMessages: 10, maxMessageSize: 128, codec: 'json' }, async (q, name) => {
    const N = 300;
    const consumers = [
      startChild('mq-peer.mjs', [name, 11]),
      startChild('mq-peer.mjs', [name, 12]),
      startChild('mq-peer.mjs', [name, 13]),
    ];
    const producer = startChild('mq-peer.mjs', [name, 1]);
    try {
      await watchdog(Promise.all([...consumers, producer].map((c) => c.next('ready'))), WATCHDOG, 'ready');
      consumers[0].send({ cmd: 'consume', mode: 'async' });
      consumers[1].send({ cmd: 'consume', mode: 'async' });
      consumers[2].send({ cmd: 'consume', mode: 'sync' });
      await watchdog(Promise.all(consumers.map((c) => c.next('consuming'))), WATCHDOG, 'consuming');

      const seen = recorder(consumers);
      producer.send({ cmd: 'send', from: 0, count: N, mode: 'async' });
      await seen.until(N);
      // The queue is empty now: the victim is parked in the kernel (mq_receive) holding nothing.
      const victimCount = seen.got[2].length;
      consumers[2].kill('SIGKILL');
      const { signal } = await watchdog(consumers[2].exited, WATCHDOG, 'victim exit');
      assert.equal(signal, 'SIGKILL');

      producer.send({ cmd: 'send', from: N, count: N, mode: 'async' });
      await seen.until(2 * N);
      for (let i = 0; i < 2; i++) q.sendSync('stop');
      await watchdog(Promise.all(consumers.slice(0, 2).map((c) => c.next('stopped'))), WATCHDOG, 'stopped');
      // Every report precedes 'stopped' on its channel, so the record is complete now.
      assert.equal(seen.got[2].length, victimCount);
      const seqs = seen.got.flat().map((m) => m.message.seq).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: 2 * N }, (_, i) => i), 'every message exactly once');
      t.diagnostic(`messages per receiver: ${seen.got.map((g) => g.length).join(', ')} (the third was killed after ${victimCount})`);
      for (const list of seen.got) {
        const mine = list.map((m) => m.message.seq);
        assert.deepEqual(mine, [...mine].sort((a, b) => a - b), 'each receiver sees one producer in order');
      }
      assert.equal(q.messageCount, 0);
    } finally {
      await stop(producer, consumers[0], consumers[1]);
    }
  });
});

test(`consumers SIGKILLed at random moments (${STRESS ? 'stress' : 'quick'}): nothing doubled, at most the one message each victim held is lost`, async (t) => {
  const kills = STRESS ? 40 : 4;
  const N = STRESS ? 100_000 : 4_000;
  await withQueue({ maxMessages: 10, maxMessageSize: 128, codec: 'json' }, async (q, name) => {
    const seen = [];
    let onGot = () => {};
    let nextId = 100;
    const startConsumer = async () => {
      const c = startChild('mq-peer.mjs', [name, nextId++]);
      c.child.on('message', (msg) => {
        if (msg.state !== 'got') return;
        seen.push(msg.message.seq);
        onGot();
      });
      await watchdog(c.next('ready'), WATCHDOG, 'consumer ready');
      c.send({ cmd: 'consume', mode: nextId % 2 ? 'sync' : 'async' });
      await watchdog(c.next('consuming'), WATCHDOG, 'consuming');
      return c;
    };
    const reached = (n) =>
      watchdog(new Promise((resolve) => {
        onGot = () => seen.length >= n && resolve();
        onGot();
      }), WATCHDOG, `${n} messages received`);
    const producer = startChild('mq-peer.mjs', [name, 1]);
    const live = [];
    try {
      await watchdog(producer.next('ready'), WATCHDOG, 'producer ready');
      for (let i = 0; i < 3; i++) live.push(await startConsumer());
      const sent = producer.next('sent');
      producer.send({ cmd: 'send', from: 0, count: N, mode: 'async' });
      for (let k = 0; k < kills; k++) {
        await reached(Math.floor(((k + 1) * N) / (kills + 2)));
        // Killed wherever it is: between mq_receive and its report, blocked in the kernel, or
        // inside the event loop's wait.
        const victim = live.splice(Math.floor(Math.random() * live.length), 1)[0];
        victim.kill('SIGKILL');
        await watchdog(victim.exited, WATCHDOG, 'victim exit');
        live.push(await startConsumer());
      }
      await watchdog(sent, STRESS ? 600_000 : WATCHDOG, 'producer done');
      for (let i = 0; i < live.length; i++) q.sendSync('stop');
      await watchdog(Promise.all(live.map((c) => c.next('stopped'))), WATCHDOG, 'survivors stopped');
      const unique = new Set(seen);
      assert.equal(unique.size, seen.length, 'a message was received twice');
      assert.ok(seen.every((seq) => Number.isInteger(seq) && seq >= 0 && seq < N));
      const lost = N - unique.size;
      t.diagnostic(`${N} messages, ${kills} consumers killed, ${lost} lost with them (bound: ${kills})`);
      assert.ok(lost <= kills, `${lost} messages missing after ${kills} kills`);
      assert.equal(q.messageCount, 0);
    } finally {
      await stop(producer, ...live);
    }
  });
});

test('a full queue: send waits and completes when a consumer process drains it', async () => {
  await withQueue({ maxMessages: 4, maxMessageSize: 128, codec: 'json' }, async (q, name) => {
    let seq = 0;
    while (q.trySend({ p: 0, seq })) seq++;
    assert.equal(seq, 4);
    let resolved = false;
    const waiting = q.send({ p: 0, seq: 4 }).then(() => (resolved = true));
    const waiting2 = q.send({ p: 0, seq: 5 });
    assert.equal(q.trySend({ p: 0, seq: 99 }), false);
    const consumer = startChild('mq-peer.mjs', [name, 2]);
    try {
      await watchdog(consumer.next('ready'), WATCHDOG, 'ready');
      assert.equal(resolved, false);
      consumer.send({ cmd: 'receive', count: 1, mode: 'async' });
      assert.equal((await watchdog(consumer.next('received'), WATCHDOG, 'one')).messages[0].message.seq, 0);
      await watchdog(waiting, WATCHDOG, 'send after a drain');
      consumer.send({ cmd: 'receive', count: 5, mode: 'sync' });
      const { messages } = await watchdog(consumer.next('received'), WATCHDOG, 'rest');
      await watchdog(waiting2, WATCHDOG, 'second send');
      assert.deepEqual(messages.map((m) => m.message.seq), [1, 2, 3, 4, 5]);
      assert.equal(q.messageCount, 0);
    } finally {
      await stop(consumer);
    }
  });
});

test('an idle queue keeps no event loop alive: a process that used it exits by itself', async () => {
  await withQueue({ maxMessages: 2, maxMessageSize: 8 }, async (q, name) => {
    const out = execFileSync(process.execPath, [tool, 'idle', name], { timeout: WATCHDOG, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { received: [7] });
  });
});

test('RLIMIT_MSGQUEUE exhausted: IPC_ERR_LIMIT saying which limit (child under prlimit)', (t) => {
  let out;
  const name = uniqueName('mq');
  try {
    out = execFileSync('prlimit', ['--msgqueue=4096', process.execPath, tool, 'create', name, 10, 1024], {
      timeout: WATCHDOG,
      encoding: 'utf8',
    });
  } catch (err) {
    if (err.code === 'ENOENT') return t.skip('prlimit (util-linux) is not installed');
    throw err;
  }
  const result = JSON.parse(out);
  assert.equal(result.code, 'IPC_ERR_LIMIT', result.message);
  assert.match(result.message, /RLIMIT_MSGQUEUE \(ulimit -q\) = 4096 bytes/);
  assert.match(result.message, /needs about \d+ bytes/);
  assert.equal(MessageQueue.exists(name), false);
});

test('the queue count limit (queues_max) is IPC_ERR_LIMIT naming it (child in its own IPC namespace)', (t) => {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  if (((BigInt('0x' + /CapEff:\s*([0-9a-f]+)/.exec(status)[1]) >> 24n) & 1n) === 1n) {
    return t.skip('this process has CAP_SYS_RESOURCE, which lifts queues_max');
  }
  let out;
  try {
    // A fresh IPC namespace has its own queue count (and its own queues_max, default 256), so
    // filling it up cannot disturb anyone else's queues.
    out = execFileSync('unshare', ['-i', process.execPath, tool, 'exhaust', uniqueName('mq')], { timeout: WATCHDOG, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    return t.skip(`cannot make an IPC namespace: ${String(err.stderr ?? err.message).trim().split('\n')[0]}`);
  }
  const { created, failure } = JSON.parse(out);
  assert.equal(failure?.code, 'IPC_ERR_LIMIT', JSON.stringify(failure));
  assert.equal(failure.errno, 'ENOSPC');
  assert.match(failure.message, new RegExp(`queues_max = ${created}`));
});

test('out of file descriptors is IPC_ERR_LIMIT saying so (child under prlimit --nofile)', (t) => {
  let out;
  try {
    out = execFileSync('prlimit', ['--nofile=100', process.execPath, tool, 'exhaust', uniqueName('mq')], { timeout: WATCHDOG, encoding: 'utf8' });
  } catch (err) {
    if (err.code === 'ENOENT') return t.skip('prlimit (util-linux) is not installed');
    throw err;
  }
  const { created, failure } = JSON.parse(out);
  assert.ok(created > 0 && created < 100, `created ${created}`);
  assert.equal(failure?.code, 'IPC_ERR_LIMIT', JSON.stringify(failure));
  assert.match(failure.message, /no file descriptors left \(ulimit -n = 100\)/);
});

test('the mode is enforced: another user cannot open a 0o600 queue but can open one created 0o606 (opting in to its owner)', (t) => {
  if (process.getuid() !== 0) return t.skip('needs root to run a child as another user');
  // Staged where that user can read it: the checkout may be in a private (0700) folder.
  const staged = stageForOtherUser(t);
  const asNobody = (name, allow = '') => JSON.parse(staged.run('mq-tool.mjs', ['access', name, allow], { timeout: WATCHDOG }));
  const closed = uniqueName('mq');
  const shared = uniqueName('mq');
  const a = MessageQueue.create(closed, { maxMessages: 1, maxMessageSize: 8 });
  const b = MessageQueue.create(shared, { maxMessages: 1, maxMessageSize: 8, mode: 0o606 });
  try {
    assert.deepEqual(asNobody(closed, 'allow'), { exists: true, code: 'IPC_ERR_PERMISSION', errno: 'EACCES' });
    assert.deepEqual(asNobody(shared), { exists: true, code: 'IPC_ERR_PERMISSION' }); // another user's queue, no opt-in
    assert.deepEqual(asNobody(shared, 'allow'), { exists: true, opened: true, sent: true });
    assert.deepEqual(b.tryReceive(), new Uint8Array([9]));
  } finally {
    a.close();
    b.close();
    MessageQueue.remove(closed);
    MessageQueue.remove(shared);
  }
});

// The kernel lists queues only through an mqueue file system. This machine may not have one
// mounted at /dev/mqueue, and mounting one for the whole system is not a test's business: the
// child mounts a private one inside its own mount namespace (unshare -m), which vanishes with it.
function inPrivateMount(t, args) {
  try {
    return JSON.parse(
      execFileSync('unshare', ['-m', '--propagation', 'private', process.execPath, tool, ...args], {
        timeout: WATCHDOG,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
  } catch (err) {
    const why = err.code === 'ENOENT' ? 'unshare is not installed' : `cannot mount a private mqueue fs: ${String(err.stderr ?? err.message).trim().split('\n')[0]}`;
    t.skip(why);
    return undefined;
  }
}

test('mode is 0o600 by default even under umask 0, and an asked mode beats a narrow umask; list sees them', (t) => {
  const a = uniqueName('mq');
  const b = uniqueName('mq');
  const result = inPrivateMount(t, ['mounted', a, b]);
  if (result === undefined) return;
  assert.deepEqual(result.modes, [0o600, 0o640]);
  assert.ok(result.listed.includes(a) && result.listed.includes(b), `list: ${result.listed}`);
  assert.ok(!result.after.includes(a) && !result.after.includes(b));
  assert.equal(MessageQueue.exists(a), false);
});

test('list without a mounted mqueue file system says so (or lists when one is mounted)', () => {
  const name = uniqueName('mq');
  const q = MessageQueue.create(name, { maxMessages: 1, maxMessageSize: 8 });
  try {
    let listed;
    try {
      listed = MessageQueue.list();
    } catch (err) {
      assert.equal(err.code, 'IPC_ERR_SYSTEM');
      assert.match(err.message, /no mqueue file system is mounted/);
      return;
    }
    assert.ok(listed.includes(name));
  } finally {
    q.close();
    MessageQueue.remove(name);
  }
});

test('no test queue is left in the mqueue namespace', (t) => {
  const result = inPrivateMount(t, ['list']);
  if (result === undefined) return;
  // Test names are t-<pid>-...: a queue whose creator still runs belongs to a test run in
  // progress elsewhere on the machine, not a leftover.
  const alive = (pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return err.code === 'EPERM';
    }
  };
  const leftovers = result.listed.filter((n) => /^t-\d+-/.test(n) && !alive(Number(n.split('-')[1])));
  assert.deepEqual(leftovers, []);
});
