// Every channel operation that takes options rejects an unknown key with a TypeError naming it
// and the keys it accepts (a misspelt `timout` must never silently wait forever), and options
// that are not an object.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { listen, connect, childChannel, channelFromStreams } from 'interprocess';
import { addressFor, channelPair } from './channel-common.mjs';

const CHANNEL_KEYS = 'codec, maxMessageSize, readBufferBytes, frameTimeout, closeTimeout';

/** Asserts a TypeError that names `key` and lists exactly `allowed`. */
async function rejectsKey(fn, key, allowed) {
  await assert.rejects(fn, (err) => {
    assert.ok(err instanceof TypeError, `expected a TypeError, got ${err}`);
    assert.match(err.message, new RegExp(`unknown option '${key}' \\(allowed: ${allowed.replace(/[()]/g, '\\$&')}\\)`));
    return true;
  });
}

test('listen: unknown keys name the channel keys and the transport\'s own', async () => {
  await rejectsKey(() => listen(addressFor('unix'), { mdoe: 0o600 }), 'mdoe', `${CHANNEL_KEYS}, mode`);
  await rejectsKey(() => listen(addressFor('fifo'), { timeout: 5 }), 'timeout', `${CHANNEL_KEYS}, mode`);
  await rejectsKey(() => listen(addressFor('tcp'), { mode: 0o600 }), 'mode', CHANNEL_KEYS);
  await rejectsKey(() => listen(addressFor('shm'), { queueCapacty: 8 }), 'queueCapacty', `${CHANNEL_KEYS}, mode, queueCapacity, queueChunkBytes, allowOtherOwner`);
  await assert.rejects(() => listen(addressFor('unix'), 'json'), /options must be an object/);
});

test('connect: unknown keys name the channel keys, timeout and signal', async () => {
  for (const transport of ['unix', 'tcp', 'fifo']) {
    await rejectsKey(() => connect(addressFor(transport), { timout: 5 }), 'timout', `${CHANNEL_KEYS}, timeout, signal`);
  }
  await rejectsKey(() => connect(addressFor('shm'), { timout: 5 }), 'timout', `${CHANNEL_KEYS}, timeout, signal, allowOtherOwner`);
  await rejectsKey(() => connect('pipe://fd/3', { fd: 3 }), 'fd', `${CHANNEL_KEYS}, timeout, signal`);
  await assert.rejects(() => connect(addressFor('unix'), 5), /options must be an object/);
});

test('accept, send, receive, request: unknown keys name timeout and signal; nothing is sent or taken', async () => {
  const { a, b, server, cleanup } = await channelPair('unix', { codec: 'json' });
  try {
    await rejectsKey(() => server.accept({ timout: 5 }), 'timout', 'timeout, signal');
    await rejectsKey(() => a.send({ n: 1 }, { timout: 5 }), 'timout', 'timeout, signal');
    await rejectsKey(() => b.receive({ timout: 5 }), 'timout', 'timeout, signal');
    await rejectsKey(() => a.request({ n: 2 }, { singal: AbortSignal.timeout(5) }), 'singal', 'timeout, signal');
    await assert.rejects(() => b.receive(null), /options must be an object/);
    await assert.rejects(() => a.send({ n: 3 }, 'fast'), /options must be an object/);
    // The refused calls changed nothing: the next message is the first one sent.
    await a.send({ n: 4 });
    assert.deepEqual(await b.receive(), { n: 4 });
    assert.equal(b.tryReceive(), undefined);
  } finally {
    await cleanup();
  }
});

test('childChannel and channelFromStreams: unknown keys name the accepted ones', () => {
  const child = spawn(process.execPath, ['-e', ''], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
  try {
    assert.throws(() => childChannel(child, { fd: 3, tiemout: 1 }), {
      name: 'TypeError',
      message: `childChannel: unknown option 'tiemout' (allowed: ${CHANNEL_KEYS}, fd)`,
    });
  } finally {
    child.kill();
  }
  assert.throws(() => channelFromStreams(new PassThrough(), new PassThrough(), { fd: 3 }), {
    name: 'TypeError',
    message: `channelFromStreams: unknown option 'fd' (allowed: ${CHANNEL_KEYS})`,
  });
});
