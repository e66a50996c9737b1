// Attacks on the framing: raw sockets announcing huge or bad frames, stalling mid-frame,
// sending garbage. Each must close only that connection with IPC_ERR_PROTOCOL, before any
// allocation of the announced size; the server keeps serving everyone else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { PassThrough } from 'node:stream';
import { listen, connect, channelFromStreams } from 'interprocess';
import { expectCode, watchdog } from './helpers.mjs';
import { tmpPath } from './channel-common.mjs';
import { frame, header } from './fixtures/by-hand.mjs';

const WATCHDOG = 20_000;

/** Connects a raw socket; resolves { socket, closed } where closed settles on 'close'. */
function raw(path) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    socket.on('error', () => {}); // a reset from the server is expected
    socket.resume(); // read (and drop) what the server sends, so its end is seen
    const closed = new Promise((r) => socket.once('close', r));
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('error', reject);
  });
}

async function withServer(opts, fn) {
  const path = tmpPath('attack');
  const server = await listen(`unix://${path}`, { ...opts, codec: 'json' });
  // A well-behaved client connected before and kept through every attack.
  const good = await connect(server.address, { codec: 'json' });
  const goodServer = await server.accept();
  goodServer.handle((m) => ({ ok: m }));
  try {
    await fn(server, path, good);
    assert.deepEqual(await watchdog(good.request(1), WATCHDOG, 'good client after attacks'), { ok: 1 });
  } finally {
    await good.close();
    await goodServer.close();
    await server.close();
  }
}

const attacks = [
  ['announces 2^31 bytes', () => header(2 ** 31, 1, 0)],
  ['announces 2^32 - 1 bytes', () => header(2 ** 32 - 1, 1, 0)],
  ['announces maxMessageSize + 1', () => header(1025, 1, 0)],
  ['type byte 0', () => frame(0, 0, Buffer.from('x'))],
  ['type byte 5', () => frame(5, 0, Buffer.from('x'))],
  ['type byte 255', () => frame(255, 7, Buffer.from('x'))],
  ['message with a correlation id', () => frame(1, 9, Buffer.from('x'))],
  ['request without a correlation id', () => frame(2, 0, Buffer.from('"x"'))],
  ['bytes the codec cannot decode', () => frame(1, 0, Buffer.from('{not json'))],
  ['a failure reply that is not JSON', () => frame(4, 3, Buffer.from('\xff\xfe'))],
];

test('malformed frames close only that connection with IPC_ERR_PROTOCOL', async () => {
  await withServer({ maxMessageSize: 1024, codec: 'json' }, async (server, path) => {
    for (const [name, bytes] of attacks) {
      const { socket, closed } = await raw(path);
      const ch = await server.accept();
      // A good message first: it is delivered, then the bad frame ends the channel.
      socket.write(Buffer.concat([frame(1, 0, Buffer.from('"before"')), bytes()]));
      assert.equal(await watchdog(ch.receive(), WATCHDOG, name), 'before', name);
      const err = await watchdog(expectCode(() => ch.receive(), 'IPC_ERR_PROTOCOL'), WATCHDOG, name);
      assert.ok(err.message.length > 0);
      await watchdog(closed, WATCHDOG, `${name}: connection closed`);
      await expectCode(() => ch.send('after'), 'IPC_ERR_CLOSED');
      await expectCode(() => ch.receive(), 'IPC_ERR_PROTOCOL');
      await ch.close();
    }
  });
});

test('a pending receive rejects with IPC_ERR_PROTOCOL', async () => {
  await withServer({ maxMessageSize: 1024 }, async (server, path) => {
    const { socket, closed } = await raw(path);
    const ch = await server.accept();
    const pending = expectCode(() => ch.receive(), 'IPC_ERR_PROTOCOL');
    const request = expectCode(() => ch.request('q'), 'IPC_ERR_PROTOCOL');
    socket.write(header(2 ** 31, 1, 0));
    await watchdog(pending, WATCHDOG, 'pending receive');
    await watchdog(request, WATCHDOG, 'pending request');
    await watchdog(closed, WATCHDOG, 'closed');
    await ch.close();
  });
});

test('half a frame (or half a header) then a stall: IPC_ERR_PROTOCOL after frameTimeout', async () => {
  await withServer({ maxMessageSize: 1024, frameTimeout: 100 }, async (server, path) => {
    for (const bytes of [Buffer.concat([header(1000, 1, 0), Buffer.alloc(500)]), header(10, 1, 0).subarray(0, 4)]) {
      const { socket, closed } = await raw(path);
      const ch = await server.accept();
      socket.write(bytes);
      const err = await watchdog(expectCode(() => ch.receive(), 'IPC_ERR_PROTOCOL'), WATCHDOG, 'stall');
      assert.match(err.message, /stalled/);
      await watchdog(closed, WATCHDOG, 'closed');
      await ch.close();
    }
  });
});

test('memory stays flat under attack: 40 peers announce 16 MiB frames and stall, 40 announce 4 GiB', async () => {
  await withServer({ frameTimeout: 60_000 }, async (server, path) => {
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    const stalled = [];
    for (let i = 0; i < 40; i++) {
      const { socket } = await raw(path);
      const ch = await server.accept();
      socket.write(Buffer.concat([header(16 * 1024 * 1024, 1, 0), Buffer.alloc(100)]));
      stalled.push({ socket, ch });
    }
    for (let i = 0; i < 40; i++) {
      const { socket, closed } = await raw(path);
      const ch = await server.accept();
      socket.write(header(2 ** 32 - 1, 1, 0));
      await watchdog(expectCode(() => ch.receive(), 'IPC_ERR_PROTOCOL'), WATCHDOG, 'huge');
      await watchdog(closed, WATCHDOG, 'closed');
      await ch.close();
    }
    // Every stalled peer is mid-frame: their bytes have arrived (nothing was allocated up front).
    for (const { ch } of stalled) assert.equal(ch.tryReceive(), undefined);
    const grown = process.memoryUsage().arrayBuffers - before;
    console.log(`# attack: arrayBuffers grew by ${(grown / 1024).toFixed(0)} KiB for 40 stalled 16 MiB announcements and 40 of 4 GiB`);
    assert.ok(grown < 16 * 1024 * 1024, `memory grew by ${grown} bytes`);
    for (const { socket, ch } of stalled) {
      socket.destroy();
      await ch.close();
    }
  });
});

test('decoder fuzz: random and mutated byte streams give only coded errors', async () => {
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const valid = Buffer.concat([
    frame(1, 0, Buffer.from('"a"')),
    frame(2, 5, Buffer.from('{"q":1}')),
    frame(3, 9, Buffer.from('[1,2]')),
    frame(4, 2, Buffer.from('{"message":"m"}')),
  ]);
  const runs = Number(process.env.INTERPROCESS_STRESS ? 20000 : 1500);
  const outcomes = { messages: 0, protocol: 0, closed: 0 };
  for (let run = 0; run < runs; run++) {
    let bytes;
    if (run % 2 === 0) {
      bytes = Buffer.alloc(rand(64));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rand(256);
    } else {
      bytes = Buffer.from(valid);
      for (let k = 0, flips = 1 + rand(4); k < flips; k++) bytes[rand(bytes.length)] = rand(256);
      bytes = bytes.subarray(0, rand(bytes.length + 1));
    }
    const input = new PassThrough();
    const output = new PassThrough();
    output.resume(); // replies go nowhere
    const ch = channelFromStreams(input, output, { codec: 'json', maxMessageSize: 256 });
    ch.handle((m) => m);
    for (let at = 0; at < bytes.length; ) {
      const step = 1 + rand(8);
      input.write(bytes.subarray(at, at + step));
      at += step;
    }
    input.end();
    try {
      for await (const _ of ch) outcomes.messages++;
      outcomes.closed++;
    } catch (err) {
      assert.ok(err.code === 'IPC_ERR_PROTOCOL' || err.code === 'IPC_ERR_CLOSED', `unexpected ${err.code ?? err}`);
      outcomes[err.code === 'IPC_ERR_PROTOCOL' ? 'protocol' : 'closed']++;
    }
    await ch.close();
  }
  console.log(`# fuzz: ${runs} runs, ${JSON.stringify(outcomes)}`);
  assert.ok(outcomes.protocol > 0 && outcomes.messages > 0);
});
