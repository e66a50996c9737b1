// MessageQueue in one process: lifecycle, errors, priorities, timeouts, aborts, closing.
// Multi-process behaviour is in mq-processes.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { MessageQueue, IpcError } from 'interprocess';
import { LONG_TIMEOUTS, expectCode, receiveSyncAfterLongWait, settlesAfterLongWait, uniqueName, watchdog } from './helpers.mjs';

const bytes = (...values) => new Uint8Array(values);

/** Creates a queue, runs fn, and always closes and removes it. */
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

test('create is exclusive, open needs the name, openOrCreate checks the sizes, remove reports', () => {
  const name = uniqueName('mq');
  const a = MessageQueue.create(name, { maxMessages: 4, maxMessageSize: 100 });
  try {
    assert.equal(a.created, true);
    assert.equal(a.maxMessages, 4);
    assert.equal(a.maxMessageSize, 100);
    assert.equal(a.name, name);
    assert.equal(MessageQueue.exists(name), true);
    assert.throws(() => MessageQueue.create(name, { maxMessages: 4, maxMessageSize: 100 }), { code: 'IPC_ERR_EXISTS', errno: 'EEXIST' });
    const b = MessageQueue.open(name);
    assert.equal(b.created, false);
    assert.equal(b.maxMessageSize, 100, 'an opener learns the sizes from the kernel');
    const c = MessageQueue.openOrCreate(name, { maxMessages: 4, maxMessageSize: 100 });
    assert.equal(c.created, false);
    assert.throws(() => MessageQueue.openOrCreate(name, { maxMessages: 5, maxMessageSize: 100 }), { code: 'IPC_ERR_INCOMPATIBLE' });
    assert.equal(a.trySend(bytes(1, 2, 3)), true);
    assert.deepEqual(b.tryReceive(), bytes(1, 2, 3));
    b.close();
    c.close();
  } finally {
    a.close();
    assert.equal(MessageQueue.remove(name), true);
  }
  assert.equal(MessageQueue.remove(name), false);
  assert.equal(MessageQueue.exists(name), false);
  assert.throws(() => MessageQueue.open(name), (err) => err instanceof IpcError && err.code === 'IPC_ERR_NOT_FOUND' && err.errno === 'ENOENT');
  const d = MessageQueue.openOrCreate(name, { maxMessages: 2, maxMessageSize: 8 });
  assert.equal(d.created, true);
  d.close();
  assert.equal(MessageQueue.remove(name), true);
});

test('names and options are checked', () => {
  for (const bad of ['', '-x', 'a/b', 'a'.repeat(201), 'sp ace']) {
    assert.throws(() => MessageQueue.create(bad, { maxMessages: 1, maxMessageSize: 1 }), { code: 'IPC_ERR_INVALID_NAME' });
    assert.throws(() => MessageQueue.open(bad), { code: 'IPC_ERR_INVALID_NAME' });
    assert.throws(() => MessageQueue.exists(bad), { code: 'IPC_ERR_INVALID_NAME' });
    assert.throws(() => MessageQueue.remove(bad), { code: 'IPC_ERR_INVALID_NAME' });
  }
  assert.throws(() => MessageQueue.open(42), TypeError);
  const name = uniqueName('mq');
  assert.throws(() => MessageQueue.create(name, { maxMessageSize: 1 }), /maxMessages' is required/);
  assert.throws(() => MessageQueue.create(name, { maxMessages: 0, maxMessageSize: 1 }), RangeError);
  assert.throws(() => MessageQueue.create(name, { maxMessages: 1.5, maxMessageSize: 1 }), TypeError);
  assert.throws(() => MessageQueue.create(name, { maxMessages: 1, maxMessageSize: 1, size: 3 }), /unknown option 'size'/);
  assert.throws(() => MessageQueue.create(name, { maxMessages: 1, maxMessageSize: 1, mode: 0o1777 }), RangeError);
  assert.throws(() => MessageQueue.create(name, { maxMessages: 1, maxMessageSize: 1, codec: 'xml' }), /unknown codec/);
  assert.throws(() => MessageQueue.openOrCreate(name, { maxMessages: 1, maxMessageSize: 1, allowOtherOwner: 'yes' }), /allowOtherOwner must be a boolean/);
  assert.throws(() => MessageQueue.create(name, { maxMessages: 1, maxMessageSize: 1, allowOtherOwner: true }), /unknown option 'allowOtherOwner'/);
  assert.equal(MessageQueue.exists(name), false, 'nothing was created by a refused call');
});

test('priorities: higher first, FIFO within a priority; the priority comes back', async () => {
  await withQueue({ maxMessages: 10, maxMessageSize: 8 }, async (q) => {
    const sent = [
      [0, 1], [1, 5], [2, 0], [3, 5], [4, MessageQueue.maxPriority], [5, 1], [6, 0], [7, 5], [8, 1], [9, 0],
    ];
    for (const [seq, priority] of sent) assert.equal(q.trySend(bytes(seq), { priority }), true);
    assert.equal(q.messageCount, 10);
    const expected = [...sent].sort((x, y) => y[1] - x[1] || x[0] - y[0]);
    const got = [];
    got.push(q.tryReceiveWithPriority());
    got.push(q.receiveWithPrioritySync());
    got.push(await q.receiveWithPriority());
    for (let r; (r = q.tryReceiveWithPriority()) !== undefined; ) got.push(r);
    assert.deepEqual(got.map((r) => [r.message[0], r.priority]), expected);
    assert.equal(q.tryReceive(), undefined);
    assert.throws(() => q.trySend(bytes(1), { priority: MessageQueue.maxPriority + 1 }), RangeError);
    assert.throws(() => q.trySend(bytes(1), { priority: -1 }), RangeError);
    await assert.rejects(q.send(bytes(1), { priority: 1.5 }), TypeError);
    assert.throws(() => q.trySend(bytes(1), { timeout: 5 }), /unknown option 'timeout'/);
  });
});

test('a full queue: trySend is false, sendSync and send time out having sent nothing', async () => {
  await withQueue({ maxMessages: 3, maxMessageSize: 8 }, async (q) => {
    let accepted = 0;
    while (q.trySend(bytes(accepted))) accepted++;
    assert.equal(accepted, 3);
    await expectCode(() => q.sendSync(bytes(9), { timeout: 20 }), 'IPC_ERR_TIMEOUT');
    await expectCode(() => q.sendSync(bytes(9), { timeout: 0 }), 'IPC_ERR_TIMEOUT');
    await expectCode(() => watchdog(q.send(bytes(9), { timeout: 20 }), 5000, 'send timeout'), 'IPC_ERR_TIMEOUT');
    await expectCode(() => q.send(bytes(9), { timeout: 0 }), 'IPC_ERR_TIMEOUT');
    assert.equal(q.messageCount, 3);
    assert.deepEqual([q.tryReceive(), q.tryReceive(), q.tryReceive(), q.tryReceive()], [bytes(0), bytes(1), bytes(2), undefined]);
  });
});

test('an empty queue: tryReceive is undefined, receiveSync and receive time out', async () => {
  await withQueue({ maxMessages: 2, maxMessageSize: 8 }, async (q) => {
    assert.equal(q.tryReceive(), undefined);
    await expectCode(() => q.receiveSync({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
    await expectCode(() => q.receiveSync({ timeout: 0 }), 'IPC_ERR_TIMEOUT');
    await expectCode(() => watchdog(q.receive({ timeout: 20 }), 5000, 'receive timeout'), 'IPC_ERR_TIMEOUT');
    await expectCode(() => q.receiveWithPriority({ timeout: 0 }), 'IPC_ERR_TIMEOUT');
    // the timed-out waiters are gone: the next message goes to the next receiver
    const next = q.receive({ timeout: 5000 });
    q.trySend(bytes(4));
    assert.deepEqual(await watchdog(next, 5000, 'receive'), bytes(4));
  });
});

test('a receive with a timeout of 2^31 or 2^32 ms waits, then settles with its message', async () => {
  await withQueue({ maxMessages: 2, maxMessageSize: 8 }, async (q) => {
    for (const [i, timeout] of LONG_TIMEOUTS.entries()) {
      assert.deepEqual(await settlesAfterLongWait(() => q.receive({ timeout }), () => q.trySend(bytes(i)), `receive({ timeout: ${timeout} })`), bytes(i));
      const got = await settlesAfterLongWait(() => q.receiveWithPriority({ timeout }), () => q.trySend(bytes(i), { priority: 3 }), `receiveWithPriority({ timeout: ${timeout} })`);
      assert.deepEqual(got, { message: bytes(i), priority: 3 });
    }
  });
});

test('receiveSync with a timeout of 2^32 ms blocks until a message comes', async () => {
  await withQueue({ maxMessages: 2, maxMessageSize: 8 }, async (q, name) => {
    assert.deepEqual(await receiveSyncAfterLongWait('MessageQueue', name, () => q.trySend(bytes(7))), { got: [7] });
  });
});

test('every operation that takes options refuses an unknown key, naming it and the accepted ones', async () => {
  await withQueue({ maxMessages: 2, maxMessageSize: 8 }, async (q, name) => {
    // A message is there: with keys ignored, a receive would take it instead of refusing.
    q.trySend(bytes(9));
    const refuse = (what, allowed) => ({ name: 'TypeError', message: new RegExp(`^MessageQueue\\.${what}: unknown option 'timout' \\(allowed: ${allowed}\\)$`) });
    assert.throws(() => q.trySend(bytes(1), { timout: 5 }), refuse('trySend', 'priority'));
    await assert.rejects(q.send(bytes(1), { timout: 5 }), refuse('send', 'priority, timeout, signal'));
    assert.throws(() => q.sendSync(bytes(1), { timout: 5 }), refuse('sendSync', 'priority, timeout'));
    await assert.rejects(q.receive({ timout: 5 }), refuse('receive', 'timeout, signal'));
    await assert.rejects(q.receiveWithPriority({ timout: 5 }), refuse('receiveWithPriority', 'timeout, signal'));
    assert.throws(() => q.receiveSync({ timout: 5 }), refuse('receiveSync', 'timeout'));
    assert.throws(() => q.receiveWithPrioritySync({ timout: 5 }), refuse('receiveWithPrioritySync', 'timeout'));
    assert.throws(() => q.receiveSync({ signal: AbortSignal.timeout(5) }), /unknown option 'signal'/);
    assert.throws(() => MessageQueue.open(name, { timout: 5 }), refuse('open', 'codec, allowOtherOwner'));
    assert.throws(() => MessageQueue.openOrCreate(name, { maxMessages: 2, maxMessageSize: 8, timout: 5 }), refuse('openOrCreate', 'maxMessages, maxMessageSize, mode, codec, allowOtherOwner'));
    assert.equal(q.messageCount, 1, 'no refused call sent or took anything');
  });
});

test('abort: an aborted receive takes nothing, an aborted send sends nothing, the queue stays usable', async () => {
  await withQueue({ maxMessages: 2, maxMessageSize: 8 }, async (q) => {
    const early = new AbortController();
    early.abort(new Error('before'));
    await expectCode(() => q.receive({ signal: early.signal }), 'IPC_ERR_ABORTED');

    const ac = new AbortController();
    const first = q.receive();
    const aborted = q.receive({ signal: ac.signal });
    const third = q.receive();
    ac.abort();
    await expectCode(() => aborted, 'IPC_ERR_ABORTED');
    q.trySend(bytes(1));
    q.trySend(bytes(2));
    assert.deepEqual(await watchdog(Promise.all([first, third]), 5000, 'receivers'), [bytes(1), bytes(2)]);
    assert.equal(q.messageCount, 0);

    q.trySend(bytes(10));
    q.trySend(bytes(11));
    const sendAbort = new AbortController();
    const blocked = q.send(bytes(12), { signal: sendAbort.signal });
    const reused = bytes(13);
    const after = q.send(reused);
    reused[0] = 99; // what send was given is what is sent, even if the caller reuses the buffer
    sendAbort.abort();
    await expectCode(() => blocked, 'IPC_ERR_ABORTED');
    assert.deepEqual(q.tryReceive(), bytes(10));
    await watchdog(after, 5000, 'send after an aborted one');
    assert.deepEqual([q.tryReceive(), q.tryReceive(), q.tryReceive()], [bytes(11), bytes(13), undefined]);
  });
});

test('a message larger than maxMessageSize is IPC_ERR_MESSAGE_TOO_LARGE and nothing is sent', async () => {
  await withQueue({ maxMessages: 2, maxMessageSize: 16 }, async (q) => {
    const big = new Uint8Array(17);
    await expectCode(() => q.trySend(big), 'IPC_ERR_MESSAGE_TOO_LARGE');
    await expectCode(() => q.sendSync(big), 'IPC_ERR_MESSAGE_TOO_LARGE');
    await expectCode(() => q.send(big), 'IPC_ERR_MESSAGE_TOO_LARGE');
    assert.equal(q.messageCount, 0);
    assert.equal(q.trySend(new Uint8Array(16).fill(5)), true);
    assert.equal(q.trySend(new Uint8Array(0)), true, 'empty messages are messages');
    assert.deepEqual(q.tryReceive(), new Uint8Array(16).fill(5));
    assert.deepEqual(q.tryReceive(), new Uint8Array(0));
  });
});

test('kernel limits: sizes beyond msg_max / msgsize_max are IPC_ERR_LIMIT naming the limit', () => {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const capEff = BigInt('0x' + /CapEff:\s*([0-9a-f]+)/.exec(status)[1]);
  const privileged = ((capEff >> 24n) & 1n) === 1n; // CAP_SYS_RESOURCE lifts the sysctl limits
  const msgMax = Number(fs.readFileSync('/proc/sys/fs/mqueue/msg_max', 'utf8'));
  const sizeMax = Number(fs.readFileSync('/proc/sys/fs/mqueue/msgsize_max', 'utf8'));
  const name = uniqueName('mq');
  const tooMany = privileged ? 65537 : msgMax + 1;
  const tooBig = privileged ? 16 * 1024 * 1024 + 1 : sizeMax + 1;
  assert.throws(
    () => MessageQueue.create(name, { maxMessages: tooMany, maxMessageSize: 8 }),
    (err) => err.code === 'IPC_ERR_LIMIT' && err.errno === 'EINVAL' && err.message.includes(String(tooMany)) &&
      (privileged ? /hard limit 65536/ : /\/proc\/sys\/fs\/mqueue\/msg_max = \d+/).test(err.message),
  );
  assert.throws(
    () => MessageQueue.create(name, { maxMessages: 1, maxMessageSize: tooBig }),
    (err) => err.code === 'IPC_ERR_LIMIT' && (privileged ? /hard limit/ : /\/proc\/sys\/fs\/mqueue\/msgsize_max = \d+/).test(err.message),
  );
  assert.equal(MessageQueue.exists(name), false);
});

test('codecs: json values with priorities; bytes are private copies', async () => {
  const name = uniqueName('mq');
  const q = MessageQueue.create(name, { maxMessages: 4, maxMessageSize: 256, codec: 'json' });
  const raw = MessageQueue.open(name);
  try {
    await q.send({ id: 1, tags: ['a'] }, { priority: 2 });
    assert.deepEqual(await q.receiveWithPriority(), { message: { id: 1, tags: ['a'] }, priority: 2 });
    raw.trySend(bytes(0xff, 0xfe));
    await expectCode(() => q.receive(), 'IPC_ERR_PROTOCOL');
    assert.equal(q.messageCount, 0, 'the undecodable message was consumed, not left to block the queue');
    raw.trySend(bytes(1, 2));
    raw.trySend(bytes(3, 4));
    const a = raw.tryReceive();
    const b = raw.tryReceive();
    assert.deepEqual([a, b], [bytes(1, 2), bytes(3, 4)], 'a later receive does not overwrite an earlier message');
    assert.throws(() => q.trySend(undefined), TypeError);
  } finally {
    q.close();
    raw.close();
    MessageQueue.remove(name);
  }
});

test('close: idempotent; waiting operations and later calls get IPC_ERR_CLOSED; iteration ends', async () => {
  const name = uniqueName('mq');
  const q = MessageQueue.create(name, { maxMessages: 1, maxMessageSize: 8 });
  try {
    const pendingReceive = q.receive();
    const other = MessageQueue.open(name);
    other.trySend(bytes(1));
    assert.deepEqual(await watchdog(pendingReceive, 5000, 'receive'), bytes(1));
    other.trySend(bytes(2));
    const pendingSend = other.send(bytes(3));
    const iterated = [];
    const loop = (async () => {
      for await (const m of q) {
        iterated.push(m[0]);
        if (iterated.length === 2) q.close();
      }
    })();
    await watchdog(loop, 5000, 'iteration');
    assert.deepEqual(iterated, [2, 3]);
    await watchdog(pendingSend, 5000, 'send');
    const waiting = other.receive();
    other.close();
    other.close();
    await expectCode(() => waiting, 'IPC_ERR_CLOSED');
    assert.equal(q.closed, true);
    await expectCode(() => q.trySend(bytes(1)), 'IPC_ERR_CLOSED');
    await expectCode(() => q.tryReceive(), 'IPC_ERR_CLOSED');
    await expectCode(() => q.receive(), 'IPC_ERR_CLOSED');
    await expectCode(() => q.send(bytes(1)), 'IPC_ERR_CLOSED');
    await expectCode(() => q.receiveSync(), 'IPC_ERR_CLOSED');
    await expectCode(() => q.messageCount, 'IPC_ERR_CLOSED');
    assert.equal(MessageQueue.exists(name), true, 'close does not remove the queue');
  } finally {
    q[Symbol.dispose]();
    MessageQueue.remove(name);
  }
});

test('sendSync first sends what async sends of the same object still wait with, in order', async () => {
  await withQueue({ maxMessages: 2, maxMessageSize: 8 }, async (q, name) => {
    q.trySend(bytes(0));
    q.trySend(bytes(1));
    const pending = [q.send(bytes(2)), q.send(bytes(3))];
    assert.equal(q.trySend(bytes(9)), false, 'trySend never overtakes waiting sends');
    const reader = MessageQueue.open(name);
    try {
      assert.deepEqual([reader.tryReceive(), reader.tryReceive()], [bytes(0), bytes(1)]);
      await expectCode(() => q.sendSync(bytes(4), { timeout: 10 }), 'IPC_ERR_TIMEOUT');
      await watchdog(Promise.all(pending), 5000, 'flushed sends');
      assert.deepEqual([reader.tryReceive(), reader.tryReceive(), reader.tryReceive()], [bytes(2), bytes(3), undefined]);
    } finally {
      reader.close();
    }
  });
});

test('a worker thread opens the same queues by name and waits on its own event loop', async () => {
  const entry = createRequire(import.meta.url).resolve('interprocess');
  await withQueue({ maxMessages: 4, maxMessageSize: 32 }, async (toWorker, toName) => {
    await withQueue({ maxMessages: 4, maxMessageSize: 32 }, async (fromWorker, fromName) => {
      const reply = fromWorker.receive();
      const worker = new Worker(
        `const { MessageQueue } = require(${JSON.stringify(entry)});
         const { workerData } = require('node:worker_threads');
         const input = MessageQueue.open(workerData.toName);
         const output = MessageQueue.open(workerData.fromName);
         input.receive().then((m) => {
           output.sendSync(Uint8Array.from(m, (b) => b * 2));
           input.close();
           output.close();
         });`,
        { eval: true, workerData: { toName, fromName } },
      );
      try {
        toWorker.trySend(bytes(1, 2, 3));
        assert.deepEqual(await watchdog(reply, 10_000, 'reply from the worker'), bytes(2, 4, 6));
        assert.equal(await watchdog(new Promise((resolve) => worker.once('exit', resolve)), 10_000, 'worker exit'), 0);
      } finally {
        await worker.terminate();
      }
    });
  });
});

test('an unreachable idle MessageQueue closes its descriptor; one with a waiting receive stays open', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  const collect = async () => {
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  await withQueue({ maxMessages: 1, maxMessageSize: 8 }, async (q, name) => {
    await collect();
    const before = fds();
    for (let i = 0; i < 200; i++) {
      const leaked = MessageQueue.open(name);
      leaked.trySend(bytes(i));
      leaked.tryReceive();
    }
    assert.ok(fds() >= before + 200, 'each open holds a descriptor');
    await collect();
    assert.ok(fds() < before + 10, `descriptors after gc: ${fds() - before} more than before`);
    const pending = MessageQueue.open(name).receive();
    await collect();
    q.trySend(bytes(42));
    assert.deepEqual(await watchdog(pending, 5000, 'receive on an otherwise unreachable queue'), bytes(42));
  });
});

test('workers that exit or are terminated with open queues and waiting receives leave the queue intact', async () => {
  const entry = createRequire(import.meta.url).resolve('interprocess');
  await withQueue({ maxMessages: 2, maxMessageSize: 8 }, async (q, name) => {
    const source = `const { MessageQueue } = require(${JSON.stringify(entry)});
      const { parentPort } = require('node:worker_threads');
      const idle = MessageQueue.open(${JSON.stringify(name)});
      idle.trySend(new Uint8Array([1]));
      idle.tryReceive();
      MessageQueue.open(${JSON.stringify(name)}).receive();
      parentPort.postMessage('waiting');`;
    for (let i = 0; i < 5; i++) {
      const worker = new Worker(source, { eval: true });
      await watchdog(new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject)), 10_000, 'worker');
      await worker.terminate();
    }
    // the terminated workers' waiting receives took nothing
    q.trySend(bytes(5));
    assert.deepEqual(q.tryReceive(), bytes(5));
  });
});
