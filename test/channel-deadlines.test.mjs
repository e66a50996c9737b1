// Timeouts past what one setTimeout holds: Node fires a delay over 2^31 - 1 ms after 1 ms, so
// every channel wait goes through src/deadline.ts. Each operation here is given 2^31 or 2^32 ms,
// must still be pending after a real wait (the broken timer, armed before the check's, would
// have fired first), and must then settle the normal way when its event comes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { listen, connect, SharedMemory, futex } from 'interprocess';
import { startChild, uniqueName, watchdog } from './helpers.mjs';
import { addressFor, channelPair, checkPayload, payload, tmpPath, transports } from './channel-common.mjs';

const WATCHDOG = 20_000;
const LONG = [2 ** 31, 2 ** 32];

/** 'pending' if none of `promises` has settled after `ms` of real time, else what settled first. */
async function stillPending(promises, ms = 20) {
  let outcome = 'pending';
  for (const p of promises) p.then((v) => (outcome = outcome === 'pending' ? 'resolved' : outcome), (e) => (outcome = outcome === 'pending' ? `rejected ${e.code ?? e}` : outcome));
  await new Promise((resolve) => setTimeout(resolve, ms));
  return outcome;
}

for (const transport of transports) {
  test(`${transport}: receive and request with timeouts of 2^31 and 2^32 ms wait, then settle normally`, async () => {
    const { a, b, cleanup } = await channelPair(transport, { codec: 'json' });
    try {
      for (const timeout of LONG) {
        const received = a.receive({ timeout });
        const answered = a.request({ q: timeout }, { timeout });
        assert.equal(await stillPending([received, answered]), 'pending');
        b.handle((m) => ({ answer: m.q }));
        await b.send({ m: timeout });
        assert.deepEqual(await watchdog(received, WATCHDOG, 'receive'), { m: timeout });
        assert.deepEqual(await watchdog(answered, WATCHDOG, 'request'), { answer: timeout });
        b.handle(null);
      }
    } finally {
      await cleanup();
    }
  });
}

for (const transport of ['unix', 'tcp', 'fifo', 'shm']) {
  test(`${transport}: accept with timeouts of 2^31 and 2^32 ms waits for the next connection`, async () => {
    const server = await listen(addressFor(transport));
    try {
      for (const timeout of LONG) {
        const accepted = server.accept({ timeout });
        assert.equal(await stillPending([accepted]), 'pending');
        const client = await watchdog(connect(server.address, { timeout }), WATCHDOG, 'connect');
        const ch = await watchdog(accepted, WATCHDOG, 'accept');
        await client.send(Buffer.from('hi'));
        assert.equal((await watchdog(ch.receive(), WATCHDOG, 'receive')).toString(), 'hi');
        await Promise.all([client.close(), ch.close()]);
      }
    } finally {
      await server.close();
    }
  });
}

// unix and tcp connections complete in the kernel's backlog; shm and fifo need the server's
// event loop for the handshake, so a server whose thread is blocked is a slow one.
for (const transport of ['shm', 'fifo']) {
  test(`${transport}: connect with timeouts of 2^31 and 2^32 ms waits for a slow server`, async () => {
    for (const timeout of LONG) {
      const gateName = uniqueName('gate');
      const gate = SharedMemory.create(gateName, { byteLength: 64 });
      const word = new Int32Array(gate.buffer, 0, 1);
      const address = addressFor(transport);
      const child = startChild('channel-peer.mjs', ['listen-gated', address, gateName]);
      try {
        await watchdog(child.next('listening'), WATCHDOG, 'listening');
        const connecting = connect(address, { timeout });
        assert.equal(await stillPending([connecting]), 'pending');
        Atomics.store(word, 0, 1);
        futex.notify(word, 0);
        const ch = await watchdog(connecting, WATCHDOG, 'connect');
        await watchdog(child.next('accepted'), WATCHDOG, 'accepted');
        await ch.close();
        child.send({ cmd: 'stop' }); // the server closes (removing its address) and exits
        assert.deepEqual(await watchdog(child.exited, WATCHDOG, 'server exits'), { code: 0, signal: null });
      } finally {
        child.kill();
        await child.exited;
        gate.close();
        SharedMemory.remove(gateName);
      }
    }
  });
}

for (const transport of ['unix', 'shm']) {
  test(`${transport}: send under backpressure and close with 2^31 and 2^32 ms wait for a stalled reader`, async () => {
    const { a, b, cleanup } = await channelPair(transport, { readBufferBytes: 16 * 1024, closeTimeout: 2 ** 32 });
    try {
      const size = 16 * 1024;
      // Fill until a send has waited for room for 100 ms: the reader has stopped taking data.
      let sent = 0;
      for (;;) {
        const moved = await a.send(payload(size, sent), { timeout: 100 }).then(
          () => true,
          (e) => (e.code === 'IPC_ERR_TIMEOUT' ? e : Promise.reject(e)),
        );
        if (moved !== true) {
          if (/may still be delivered/.test(moved.message)) sent++; // committed before the timeout
          break;
        }
        sent++;
      }
      const waiting = LONG.map((timeout, k) => a.send(payload(size, sent + k), { timeout }));
      assert.equal(await stillPending(waiting), 'pending');
      const closing = a.close(); // flushes, within closeTimeout 2^32 ms
      assert.equal(await stillPending([closing]), 'pending');
      let n = 0;
      await watchdog(
        (async () => {
          for await (const m of b) checkPayload(m, size, n++);
        })(),
        WATCHDOG,
        'drain',
      );
      await watchdog(Promise.all([...waiting, closing]), WATCHDOG, 'sends and close settle');
      assert.equal(n, sent + LONG.length, 'every send that waited was delivered');
    } finally {
      await cleanup();
    }
  });
}

test('unix: a frameTimeout of 2^31 ms lets a slow frame finish instead of failing at once', async () => {
  const path = tmpPath('slowframe');
  const server = await listen(`unix://${path}`, { frameTimeout: 2 ** 31 });
  const socket = net.connect(path);
  socket.on('error', () => {});
  try {
    await new Promise((resolve) => socket.once('connect', resolve));
    const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
    const received = ch.receive();
    const frame = Buffer.alloc(9 + 100, 7);
    frame.writeUInt32LE(100, 0);
    frame[4] = 1; // message
    frame.writeUInt32LE(0, 5);
    socket.write(frame.subarray(0, 30)); // the header and part of the payload, then a pause
    assert.equal(await stillPending([received], 50), 'pending');
    socket.write(frame.subarray(30));
    const m = await watchdog(received, WATCHDOG, 'the rest of the frame');
    assert.equal(m.byteLength, 100);
    await ch.close();
  } finally {
    socket.destroy();
    await server.close();
  }
});
