// Channel conformance: the same tests against every transport (unix, tcp, fifo, pipe).
// Exact counts and sequence numbers; no durations asserted; every wait under a watchdog.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RemoteError } from 'interprocess';
import { expectCode, watchdog } from './helpers.mjs';
import { channelPair, checkPayload, payload, transports } from './channel-common.mjs';

const WATCHDOG = 20_000;

for (const transport of transports) {
  describe(`channel over ${transport}`, () => {
    test('order and no loss, both directions at once, mixed sizes', async () => {
      const { a, b, cleanup } = await channelPair(transport);
      try {
        const count = 2000;
        const sizeOf = (i) => [0, 1, 5, 64, 700, 4096, 20000][i % 7];
        const pump = async (from, to) => {
          const sends = [];
          for (let i = 0; i < count; i++) sends.push(from.send(payload(sizeOf(i), i)));
          const got = [];
          for (let i = 0; i < count; i++) got.push(await to.receive());
          await Promise.all(sends);
          got.forEach((m, i) => (sizeOf(i) >= 4 ? checkPayload(m, sizeOf(i), i) : assert.equal(m.byteLength, sizeOf(i))));
          assert.equal(to.tryReceive(), undefined);
        };
        await watchdog(Promise.all([pump(a, b), pump(b, a)]), WATCHDOG, 'ordered exchange');
      } finally {
        await cleanup();
      }
    });

    test('large messages up to maxMessageSize; one over is IPC_ERR_MESSAGE_TOO_LARGE and changes nothing', async () => {
      const max = 4 * 1024 * 1024;
      const { a, b, cleanup } = await channelPair(transport, { maxMessageSize: max });
      try {
        assert.equal(a.maxMessageSize, max);
        const big = payload(max, 7);
        const got = b.receive();
        await watchdog(a.send(big), WATCHDOG, 'send max');
        checkPayload(await watchdog(got, WATCHDOG, 'receive max'), max, 7);
        await expectCode(() => a.send(payload(max + 1, 8)), 'IPC_ERR_MESSAGE_TOO_LARGE');
        assert.throws(() => a.trySend(payload(max + 1, 8)), { code: 'IPC_ERR_MESSAGE_TOO_LARGE' });
        await expectCode(() => a.request(payload(max + 1, 8)), 'IPC_ERR_MESSAGE_TOO_LARGE');
        await a.send(payload(16, 9));
        checkPayload(await watchdog(b.receive(), WATCHDOG, 'receive after'), 16, 9);
        assert.equal(b.tryReceive(), undefined);
      } finally {
        await cleanup();
      }
    });

    test('close: everything sent before close arrives, then IPC_ERR_CLOSED everywhere', async () => {
      const { a, b, cleanup } = await channelPair(transport);
      try {
        const sends = [];
        for (let i = 0; i < 100; i++) sends.push(a.send(payload(1000, i)));
        const closing = a.close();
        assert.equal(a.closed, true);
        await Promise.all(sends);
        await closing;
        await a.close(); // idempotent
        await expectCode(() => a.send(payload(4, 0)), 'IPC_ERR_CLOSED');
        await expectCode(() => a.receive(), 'IPC_ERR_CLOSED');
        await expectCode(() => a.request(payload(4, 0)), 'IPC_ERR_CLOSED');
        assert.throws(() => a.trySend(payload(4, 0)), { code: 'IPC_ERR_CLOSED' });
        assert.throws(() => a.tryReceive(), { code: 'IPC_ERR_CLOSED' });
        let n = 0;
        await watchdog(
          (async () => {
            for await (const m of b) checkPayload(m, 1000, n++);
          })(),
          WATCHDOG,
          'drain after peer close',
        );
        assert.equal(n, 100);
        assert.equal(b.closed, true);
        await expectCode(() => b.receive(), 'IPC_ERR_CLOSED');
        await expectCode(() => b.send(payload(4, 0)), 'IPC_ERR_CLOSED');
      } finally {
        await cleanup();
      }
    });

    test('pending receive and request reject with IPC_ERR_CLOSED when the peer closes', async () => {
      const { a, b, cleanup } = await channelPair(transport);
      try {
        // Handlers attached at once: the rejections must arrive, not be unhandled.
        const pending = expectCode(() => b.receive(), 'IPC_ERR_CLOSED');
        const request = expectCode(() => b.request(payload(4, 1)), 'IPC_ERR_CLOSED');
        const pendingLocal = expectCode(() => a.receive(), 'IPC_ERR_CLOSED');
        await a.close();
        await pendingLocal;
        await watchdog(pending, WATCHDOG, 'pending receive');
        await watchdog(request, WATCHDOG, 'pending request');
      } finally {
        await cleanup();
      }
    });

    test('request/reply: 500 concurrent requests, interleaved with plain messages, correct answers', async () => {
      const { a, b, cleanup } = await channelPair(transport, { codec: 'json' });
      try {
        b.handle(async (m) => {
          if (m.fail) throw Object.assign(new Error('no such thing'), { code: 'E_NOPE' });
          if (m.i % 3 === 0) await new Promise((r) => setImmediate(r)); // answers out of order
          return { double: m.i * 2 };
        });
        const plain = [];
        const requests = [];
        for (let i = 0; i < 500; i++) {
          requests.push(a.request({ i }));
          if (i % 50 === 0) plain.push(a.send({ plain: i }));
        }
        const answers = await watchdog(Promise.all(requests), WATCHDOG, 'requests');
        answers.forEach((r, i) => assert.deepEqual(r, { double: i * 2 }));
        await Promise.all(plain);
        for (let i = 0; i < 500; i += 50) assert.deepEqual(await b.receive(), { plain: i });
        assert.equal(b.tryReceive(), undefined);
        assert.equal(a.tryReceive(), undefined); // replies never show up as messages
        const err = await a.request({ fail: true }).then(() => null, (e) => e);
        assert.ok(err instanceof RemoteError);
        assert.equal(err.code, 'E_NOPE');
        assert.match(err.message, /no such thing/);
        // Both directions serve at once.
        a.handle((m) => ({ back: m.i }));
        assert.deepEqual(await watchdog(b.request({ i: 5 }), WATCHDOG, 'reverse request'), { back: 5 });
      } finally {
        await cleanup();
      }
    });

    test('requests wait for a handler; a timed-out request gets IPC_ERR_TIMEOUT and its late reply is dropped', async () => {
      const { a, b, cleanup } = await channelPair(transport, { codec: 'json' });
      try {
        await expectCode(() => a.request({ i: 1 }, { timeout: 30 }), 'IPC_ERR_TIMEOUT');
        b.handle((m) => m.i * 10); // answers the queued request too; its reply is dropped
        assert.equal(await watchdog(a.request({ i: 2 }), WATCHDOG, 'request'), 20);
        assert.equal(a.tryReceive(), undefined);
        const ac = new AbortController();
        b.handle(() => new Promise(() => {})); // never answers
        const pending = a.request({ i: 3 }, { signal: ac.signal });
        ac.abort();
        await expectCode(() => pending, 'IPC_ERR_ABORTED');
        await expectCode(() => a.request({ i: 4 }, { signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
      } finally {
        await cleanup();
      }
    });

    test('receive timeout and abort; tryReceive returns only buffered messages', async () => {
      const { a, b, cleanup } = await channelPair(transport);
      try {
        await expectCode(() => b.receive({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
        const ac = new AbortController();
        const pending = b.receive({ signal: ac.signal });
        ac.abort();
        await expectCode(() => pending, 'IPC_ERR_ABORTED');
        await expectCode(() => b.receive({ signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
        await expectCode(() => a.send(payload(4, 0), { signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
        assert.equal(b.tryReceive(), undefined);
        assert.equal(a.trySend(payload(8, 1)), true);
        // The timed-out and aborted receives took nothing: the message goes to the next one.
        checkPayload(await watchdog(b.receive({ timeout: 10_000 }), WATCHDOG, 'receive'), 8, 1);
        await a.send(payload(8, 2));
        await a.send(payload(8, 3));
        checkPayload(await b.receive(), 8, 2);
        checkPayload(await watchdog(waitBuffered(b), WATCHDOG, 'buffered'), 8, 3);
        await assert.rejects(() => b.receive({ timeout: -1 }), RangeError);
        await assert.rejects(() => b.receive({ bogus: 1 }), TypeError);
      } finally {
        await cleanup();
      }
    });

    test("codec 'bytes': the sender may reuse its buffer as soon as send returns", async () => {
      const { a, b, cleanup } = await channelPair(transport, { readBufferBytes: 64 * 1024 });
      try {
        const buf = Buffer.alloc(200 * 1024);
        const sends = [];
        for (let i = 0; i < 40; i++) {
          buf.fill(i); // overwrite the previous message while it may still be in flight or queued
          sends.push(a.send(buf));
        }
        for (let i = 0; i < 40; i++) {
          const m = await watchdog(b.receive(), WATCHDOG, 'receive');
          assert.ok(m[0] === i && m[m.length - 1] === i, `message ${i} was changed after send`);
        }
        await Promise.all(sends);
      } finally {
        await cleanup();
      }
    });

    test('receiveMany / tryReceiveMany: batches in send order, at most max; bad max, timeout and close are coded', async () => {
      const { a, b, cleanup } = await channelPair(transport);
      try {
        const count = 1500;
        const sizeOf = (i) => [64, 9, 300, 4096][i % 4];
        const sending = (async () => {
          for (let i = 0; i < count; i++) if (!a.trySend(payload(sizeOf(i), i))) await a.send(payload(sizeOf(i), i));
        })();
        let seq = 0;
        let batches = 0;
        const takeAll = (messages, max) => {
          assert.ok(messages.length <= max, `${messages.length} messages for max ${max}`);
          for (const m of messages) checkPayload(m, sizeOf(seq), seq++);
        };
        await watchdog(
          (async () => {
            while (seq < count) {
              const max = [1, 7, 64, 1000][batches++ % 4];
              if (batches % 3 === 0) takeAll(b.tryReceiveMany(max), max);
              else if (batches % 5 === 0) checkPayload(await b.receive(), sizeOf(seq), seq++);
              else {
                const got = await b.receiveMany(max);
                assert.ok(got.length >= 1, 'receiveMany resolves with at least one message');
                takeAll(got, max);
              }
            }
          })(),
          WATCHDOG,
          'batches',
        );
        await sending;
        assert.deepEqual(b.tryReceiveMany(5), []);
        for (const bad of [0, 2 ** 31 + 1]) {
          assert.throws(() => b.tryReceiveMany(bad), RangeError);
          await assert.rejects(b.receiveMany(bad), RangeError);
        }
        for (const bad of [1.5, '4', undefined]) {
          assert.throws(() => b.tryReceiveMany(bad), TypeError);
          await assert.rejects(b.receiveMany(bad), TypeError);
        }
        await expectCode(() => b.receiveMany(4, { timeout: 20 }), 'IPC_ERR_TIMEOUT');
        // What the peer sent before it closed is still received, then IPC_ERR_CLOSED.
        for (let i = 0; i < 3; i++) await a.send(payload(64, count + i));
        await a.close();
        const rest = [];
        await watchdog(
          (async () => {
            for (;;) {
              try {
                rest.push(...(await b.receiveMany(2)));
              } catch (err) {
                assert.equal(err.code, 'IPC_ERR_CLOSED');
                return;
              }
            }
          })(),
          WATCHDOG,
          'drain after close',
        );
        rest.forEach((m, i) => checkPayload(m, 64, count + i));
        assert.equal(rest.length, 3);
        assert.throws(() => b.tryReceiveMany(1), { code: 'IPC_ERR_CLOSED' });
      } finally {
        await cleanup();
      }
    });

    test('a received message in a transfer list never changes another received message', async () => {
      // Small messages sent in one turn arrive together (one read, one pack) and may be views of
      // the same memory. Transferring one must leave every other intact: it is moved (its own
      // buffer), copied (Node 20, a buffer marked untransferable) or refused with DataCloneError
      // (Node 21 and later, the same buffer), never detached under its neighbours.
      const { a, b, cleanup } = await channelPair(transport);
      try {
        const count = 60;
        const sizeOf = (i) => [100, 64, 700, 9, 4096][i % 5];
        for (let i = 0; i < count; i++) if (!a.trySend(payload(sizeOf(i), i))) await a.send(payload(sizeOf(i), i));
        const got = [];
        for (let i = 0; i < count; i++) got.push(await watchdog(b.receive(), WATCHDOG, 'receive'));
        let refused = 0;
        for (let i = 0; i < count; i++) {
          try {
            const moved = structuredClone(got[i], { transfer: [got[i].buffer] }); // a Uint8Array
            checkPayload(Buffer.from(moved.buffer, moved.byteOffset, moved.byteLength), sizeOf(i), i);
          } catch (err) {
            assert.equal(err.name, 'DataCloneError', `message ${i}: ${err.message}`);
            refused++;
            checkPayload(got[i], sizeOf(i), i);
          }
          for (let k = i + 1; k < count; k++) checkPayload(got[k], sizeOf(k), k);
        }
        if (Number(process.versions.node.split('.')[0]) < 21) assert.equal(refused, 0);
        // The channel goes on as before.
        await a.send(payload(100, count));
        checkPayload(await watchdog(b.receive(), WATCHDOG, 'receive after'), 100, count);
      } finally {
        await cleanup();
      }
    });

    test('codecs: json, structured, msgpack and a custom codec', async () => {
      for (const codec of ['json', 'structured', 'msgpack']) {
        const { a, b, cleanup } = await channelPair(transport, { codec });
        try {
          const value = codec === 'structured' ? new Map([[1, { big: 2n ** 70n, when: new Date(0) }]]) : { a: [1, 'x', null], b: { c: true } };
          await a.send(value);
          assert.deepEqual(await watchdog(b.receive(), WATCHDOG, codec), value);
        } finally {
          await cleanup();
        }
      }
      const upper = { encode: (s) => Buffer.from(s.toUpperCase()), decode: (b) => Buffer.from(b).toString() };
      const { a, b, cleanup } = await channelPair(transport, { codec: upper });
      try {
        await a.send('hello');
        assert.equal(await watchdog(b.receive(), WATCHDOG, 'custom'), 'HELLO');
      } finally {
        await cleanup();
      }
    });

    test('slow reader: sends wait for room, buffering stays bounded, nothing is lost', async () => {
      const readBufferBytes = 256 * 1024;
      const { a, b, cleanup } = await channelPair(transport, { readBufferBytes });
      try {
        const size = 16 * 1024;
        let committed = 0;
        // trySend commits only while there is room; b does not read.
        for (;;) {
          if (!a.trySend(payload(size, committed))) {
            // Room may come back as the peer's kernel buffer and read buffer fill: wait for
            // a send to resolve (it waits for room) and try again until nothing moves.
            const moved = await a.send(payload(size, committed), { timeout: 200 }).then(
              () => true,
              (e) => (e.code === 'IPC_ERR_TIMEOUT' ? e : Promise.reject(e)),
            );
            if (moved !== true) {
              // Timed out while waiting for room (before commit) or while being written.
              if (/may still be delivered/.test(moved.message)) committed++;
              break;
            }
          }
          committed++;
          assert.ok(committed * size < 128 * 1024 * 1024, 'buffering is not bounded');
        }
        // A send must now wait until b reads. On a loaded machine the buffers between the two
        // may still have been draining when the loop above saw nothing move for 200 ms: a send
        // that resolves all the same is counted, and the next one tried, within the same bound.
        let last;
        for (;;) {
          last = a.send(payload(size, committed));
          let settled = false;
          last.then(() => (settled = true), () => (settled = true));
          await new Promise((r) => setTimeout(r, 100));
          if (!settled) break;
          await last;
          committed++;
          assert.ok(committed * size < 128 * 1024 * 1024, 'send keeps resolving although the reader is stalled');
        }
        let n = 0;
        await watchdog(
          (async () => {
            while (n <= committed) checkPayload(await b.receive(), size, n++);
          })(),
          WATCHDOG,
          'drain',
        );
        await last;
        assert.equal(n, committed + 1);
        assert.equal(b.tryReceive(), undefined);
        console.log(`# ${transport}: max buffered before send waited: ${((committed * size) / 1024).toFixed(0)} KiB`);
      } finally {
        await cleanup();
      }
    });

    if (['unix', 'tcp', 'fifo', 'pipe'].includes(transport)) {
      test('trySend in one turn: the frames a stream link corks go out once a high-water mark of them is gathered, not when the turn ends', async () => {
        const { a, b, cleanup } = await channelPair(transport);
        try {
          // One synchronous loop: the stream's high-water mark is 16 KiB. A link that held every
          // frame of the turn corked would say "full" after about 5 of 4 KiB; one that sends
          // what it gathered takes more while the OS takes them (its buffer, at least 64 KiB).
          const size = 4096;
          let accepted = 0;
          while (accepted < 64 && a.trySend(payload(size, accepted))) accepted++;
          assert.ok(accepted >= 8, `only ${accepted} frames of 4 KiB committed in one turn`);
          for (let i = 0; i < accepted; i++) checkPayload(await watchdog(b.receive(), WATCHDOG, `frame ${i}`), size, i);
          assert.equal(b.tryReceive(), undefined);
        } finally {
          await cleanup();
        }
      });
    }
  });
}

for (const transport of ['unix', 'tcp', 'fifo']) {
  test(`${transport}: one server serves 20 clients connecting at once, each on its own channel`, async () => {
    const { listen } = await import('interprocess');
    const { addressFor, serveClients } = await import('./channel-common.mjs');
    const server = await listen(addressFor(transport), { codec: 'json' });
    assert.equal(await serveClients(server, 20, WATCHDOG), 20);
  });
}

test('close with a stalled reader: gives up after closeTimeout; unsent messages reject IPC_ERR_CLOSED, none is lost silently', async () => {
  const { a, b, cleanup } = await channelPair('unix', { closeTimeout: 100 });
  try {
    const size = 64 * 1024;
    const outcomes = [];
    for (let i = 0; i < 200; i++) outcomes.push(a.send(payload(size, i)).then(() => 'sent', (e) => e.code));
    await a.close();
    const results = await watchdog(Promise.all(outcomes), WATCHDOG, 'sends settle');
    const sent = results.filter((r) => r === 'sent').length;
    assert.ok(results.every((r) => r === 'sent' || r === 'IPC_ERR_CLOSED'), results.join());
    assert.ok(results.slice(0, sent).every((r) => r === 'sent'), 'resolved sends form a prefix');
    assert.ok(sent < 200, 'the stalled reader could not have taken everything');
    let n = 0;
    try {
      for await (const m of b) checkPayload(m, size, n++);
    } catch (err) {
      assert.equal(err.code, 'IPC_ERR_CLOSED'); // the last frame was cut off
    }
    assert.ok(n >= sent, `received ${n}, but ${sent} sends resolved`);
  } finally {
    await cleanup();
  }
});

async function waitBuffered(ch) {
  for (;;) {
    const m = ch.tryReceive();
    if (m !== undefined) return m;
    await new Promise((r) => setImmediate(r));
  }
}
