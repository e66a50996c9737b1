// Channels between real processes: send-then-exit delivery, a killed peer, pipes to a child,
// socket file modes, stale vs live socket files and FIFOs, connect errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { execFile, fork, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { listen, connect, childChannel, RemoteError } from 'interprocess';
import { expectCode, startChild, watchdog } from './helpers.mjs';
import { addressFor, checkStamped, forkWithPipes, killHolder, killSenderRound, sendExitRound, tmpPath } from './channel-common.mjs';

const require = createRequire(import.meta.url);
const WATCHDOG = 30_000;


const SIZES = [1024, 4096, 65536, 262144, 1048576, 1048576];
const RUNS = process.env.INTERPROCESS_STRESS ? 20 : 2;

for (const transport of ['unix', 'tcp', 'fifo']) {
  test(`${transport}: what send resolved is delivered although the sender exits at once (1 KiB..1 MiB)`, async () => {
    const server = await listen(addressFor(transport));
    try {
      for (let run = 0; run < RUNS; run++) await sendExitRound(server, SIZES, WATCHDOG);
    } finally {
      await server.close();
    }
  });
}

test('pipe: send-then-exit through pipe://fd/N to the parent', async () => {
  for (let run = 0; run < RUNS; run++) {
    const peer = forkWithPipes('channel-peer.mjs', ['send-exit', 'pipe://fd/4', SIZES.join(',')]);
    const ch = childChannel(peer.child, { fd: 4 });
    const got = [];
    await watchdog(
      (async () => {
        for await (const m of ch) got.push(m);
      })(),
      WATCHDOG,
      'receive all',
    );
    assert.deepEqual(await peer.exited, { code: 0, signal: null });
    assert.equal(got.length, SIZES.length);
    got.forEach((m, i) => checkStamped(m, SIZES[i], i));
    await ch.close();
  }
});

test('pipe: request/reply and echo with a child over pipe://fd/N and pipe://stdio', async () => {
  for (const mode of ['fd', 'stdio']) {
    const peer =
      mode === 'fd'
        ? forkWithPipes('channel-peer.mjs', ['echo', 'pipe://fd/4', 'json'])
        : forkWithPipes('channel-peer.mjs', ['echo', 'pipe://stdio', 'json'], 0, ['pipe', 'pipe', 'inherit']);
    const ch = childChannel(peer.child, { fd: mode === 'fd' ? 4 : 'stdio', codec: 'json' });
    await watchdog(peer.next('connected'), WATCHDOG, 'child connected');
    const answers = await watchdog(Promise.all(Array.from({ length: 200 }, (_, i) => ch.request(i))), WATCHDOG, 'requests');
    answers.forEach((a, i) => assert.deepEqual(a, { echo: i }));
    const err = await ch.request({ fail: 'x' }).then(() => null, (e) => e);
    assert.ok(err instanceof RemoteError);
    assert.equal(err.code, 'E_ON_PURPOSE');
    await ch.send({ hello: mode });
    assert.deepEqual(await watchdog(ch.receive(), WATCHDOG, 'echo'), { hello: mode });
    await ch.close();
    await watchdog(peer.next('peer-closed'), WATCHDOG, 'child saw the close');
    assert.deepEqual(await peer.exited, { code: 0, signal: null });
  }
});

test("pipe: childChannel(child) takes the first 'pipe' after stdio (fd 4 under fork, fd 3 under spawn); none is a TypeError that says what to pass", async () => {
  const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'channel-peer.mjs');
  const forked = forkWithPipes('channel-peer.mjs', ['echo', 'pipe://fd/4', 'json']); // fd 3: fork's IPC channel
  const spawned = spawn(process.execPath, [fixture, 'echo', 'pipe://fd/3', 'json'], { stdio: ['ignore', 'inherit', 'inherit', 'pipe'] });
  const spawnedExit = new Promise((resolve) => spawned.once('exit', (code, signal) => resolve({ code, signal })));
  for (const [child, exited] of [[forked.child, forked.exited], [spawned, spawnedExit]]) {
    const ch = childChannel(child, { codec: 'json' });
    assert.deepEqual(await watchdog(ch.request('which pipe?'), WATCHDOG, 'request'), { echo: 'which pipe?' });
    await ch.close();
    assert.deepEqual(await watchdog(exited, WATCHDOG, 'child exits once the channel closes'), { code: 0, signal: null });
  }
  // fork() with its default stdio has no pipe: the error shows the stdio to use on both sides.
  const plain = fork(path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'report.mjs'));
  try {
    assert.throws(() => childChannel(plain), {
      name: 'TypeError',
      message: /no 'pipe' descriptor .*fork\(file, \{ stdio: \['inherit', 'inherit', 'inherit', 'ipc', 'pipe'\] \}\) with connect\('pipe:\/\/fd\/4'\)/,
    });
    assert.throws(() => childChannel(plain, { fd: 3 }), { name: 'TypeError', message: /stdio\[3\] must be 'pipe' \(fork's 'ipc' entry/ });
  } finally {
    plain.kill();
  }
});

for (const transport of ['unix', 'tcp', 'fifo', 'pipe']) {
  test(`${transport}: a peer killed with SIGKILL rejects pending and later calls with IPC_ERR_CLOSED`, async () => {
    let server;
    let ch;
    let child;
    if (transport === 'pipe') {
      child = forkWithPipes('channel-peer.mjs', ['hold', 'pipe://fd/4']);
      ch = childChannel(child.child, { fd: 4 });
    } else {
      server = await listen(addressFor(transport));
      child = startChild('channel-peer.mjs', ['hold', server.address]);
      ch = await watchdog(server.accept(), WATCHDOG, 'accept');
    }
    try {
      await killHolder(ch, child, WATCHDOG);
    } finally {
      await ch.close();
      await server?.close();
    }
  });
}

test('unix: socket file is 0o600 by default, `mode` is honoured, removed on close', async () => {
  const path = tmpPath('mode');
  const server = await listen(`unix://${path}`);
  assert.equal(fs.statSync(path).mode & 0o777, 0o600);
  await server.close();
  assert.equal(fs.existsSync(path), false);
  const wide = await listen(`unix://${path}`, { mode: 0o660 });
  assert.equal(fs.statSync(path).mode & 0o777, 0o660);
  await wide.close();
});

for (const transport of ['unix', 'fifo']) {
  test(`${transport}: a live server's address is never stolen; a dead server's leftover is replaced`, async () => {
    const address = addressFor(transport);
    const path = new URL(address).pathname;
    const child = startChild('channel-peer.mjs', ['listen', address]);
    await watchdog(child.next('listening'), WATCHDOG, 'child listening');
    await expectCode(() => listen(address), 'IPC_ERR_EXISTS');
    assert.ok(fs.existsSync(path), 'the live address is untouched');
    child.kill('SIGKILL');
    await child.exited;
    assert.ok(fs.existsSync(path), 'the dead server left its file behind');
    const server = await listen(address);
    try {
      assert.equal(fs.statSync(path).mode & 0o777, 0o600);
      const ch = await connect(server.address);
      const other = await server.accept();
      await ch.send(Buffer.from('alive'));
      assert.equal((await watchdog(other.receive(), WATCHDOG, 'receive')).toString(), 'alive');
      await ch.close();
      await other.close();
    } finally {
      await server.close();
    }
    assert.equal(fs.existsSync(path), false);
  });

  test(`${transport}: a file that is not a ${transport === 'unix' ? 'socket' : 'FIFO'} is left alone (IPC_ERR_EXISTS)`, async () => {
    const address = addressFor(transport);
    const path = new URL(address).pathname;
    fs.writeFileSync(path, 'precious');
    try {
      await expectCode(() => listen(address), 'IPC_ERR_EXISTS');
      assert.equal(fs.readFileSync(path, 'utf8'), 'precious');
    } finally {
      fs.unlinkSync(path);
    }
  });
}

test('connect: nothing listening is IPC_ERR_NOT_FOUND; a server that never answers times out or aborts', async () => {
  await expectCode(() => connect(addressFor('unix')), 'IPC_ERR_NOT_FOUND');
  await expectCode(() => connect(addressFor('fifo')), 'IPC_ERR_NOT_FOUND');
  const probe = await listen('tcp://127.0.0.1:0');
  const port = new URL(probe.address).port;
  await probe.close();
  await expectCode(() => connect(`tcp://127.0.0.1:${port}`), 'IPC_ERR_NOT_FOUND');
  // A well-known FIFO whose reader never answers the handshake.
  const path = tmpPath('mute');
  require('../dist/cjs/os/native.js').native().mkfifo(path, 0o600);
  const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  try {
    await expectCode(() => connect(`fifo://${path}`, { timeout: 50 }), 'IPC_ERR_TIMEOUT');
    const ac = new AbortController();
    const pending = expectCode(() => connect(`fifo://${path}`, { signal: ac.signal }), 'IPC_ERR_ABORTED');
    setImmediate(() => ac.abort());
    await watchdog(pending, WATCHDOG, 'abort');
    await expectCode(() => connect(`unix://${path}x`, { signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync(path);
  }
  const leftovers = fs.readdirSync(require('node:os').tmpdir()).filter((f) => f.startsWith(require('node:path').basename(path)));
  assert.deepEqual(leftovers, [], 'a failed fifo connect removes its FIFO pair');
});

test('bad addresses and options are TypeError / RangeError / IPC_ERR_INVALID_NAME', async () => {
  await assert.rejects(() => connect('carrier-pigeon://x'), TypeError);
  await assert.rejects(() => connect('not an address'), TypeError);
  await assert.rejects(() => connect(42), TypeError);
  await assert.rejects(() => listen('unix://relative/path'), TypeError);
  await assert.rejects(() => listen('tcp://127.0.0.1'), TypeError);
  await assert.rejects(() => listen('pipe://fd/3'), TypeError);
  await assert.rejects(() => connect('pipe://nonsense'), TypeError);
  await assert.rejects(() => listen('tcp://127.0.0.1:0', { bogus: 1 }), /unknown option 'bogus'/);
  await assert.rejects(() => listen('tcp://127.0.0.1:0', { mode: 0o600 }), /unknown option 'mode'/);
  await assert.rejects(() => listen('tcp://127.0.0.1:0', { maxMessageSize: 0 }), RangeError);
  await assert.rejects(() => listen('tcp://127.0.0.1:0', { maxMessageSize: 2 ** 31 }), RangeError);
  await assert.rejects(() => listen('tcp://127.0.0.1:0', { codec: 'yaml' }), TypeError);
  await expectCode(() => listen(`unix:///tmp/interprocess-t-${'x'.repeat(120)}`), 'IPC_ERR_INVALID_NAME');
  for (const scheme of ['unix', 'fifo']) {
    const err = await expectCode(() => listen(`${scheme}://${tmpPath('nodir')}/sub/x`), 'IPC_ERR_NOT_FOUND');
    assert.match(err.message, /directory does not exist/);
  }
});

test('server: accept timeout/abort, close rejects waiting accepts and ends iteration', async () => {
  const server = await listen(addressFor('unix'));
  await expectCode(() => server.accept({ timeout: 10 }), 'IPC_ERR_TIMEOUT');
  await expectCode(() => server.accept({ signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
  const waiting = expectCode(() => server.accept(), 'IPC_ERR_CLOSED');
  let iterated = 0;
  const loop = (async () => {
    for await (const ch of server) iterated++, await ch.close();
  })();
  await server.close();
  await waiting;
  await watchdog(loop, WATCHDOG, 'iteration ends');
  assert.equal(iterated, 0);
  await expectCode(() => server.accept(), 'IPC_ERR_CLOSED');
  await expectCode(() => connect(server.address), 'IPC_ERR_NOT_FOUND');
});

test('soak: senders killed mid-stream, again and again; what arrives is an exact prefix; descriptors stay flat', async () => {
  const rounds = process.env.INTERPROCESS_STRESS ? 200 : 8;
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  for (const transport of ['unix', 'tcp', 'fifo']) {
    const server = await listen(addressFor(transport));
    const before = fds();
    let total = 0;
    try {
      for (let round = 0; round < rounds; round++) {
        total += await killSenderRound(server, round, WATCHDOG);
      }
      const after = fds();
      console.log(`# soak ${transport}: ${rounds} kills, ${total} messages, fds ${before} -> ${after}`);
      assert.ok(after <= before, `descriptors grew from ${before} to ${after}`);
    } finally {
      await server.close();
    }
  }
});

test('an address in use is IPC_ERR_EXISTS; running out of descriptors is IPC_ERR_LIMIT', async () => {
  const first = await listen('tcp://127.0.0.1:0');
  try {
    await expectCode(() => listen(first.address), 'IPC_ERR_EXISTS');
    const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'channel-peer.mjs');
    const server = await listen(addressFor('unix'));
    const accepted = [];
    const loop = (async () => {
      for await (const ch of server) accepted.push(ch);
    })();
    try {
      const out = await watchdog(
        new Promise((resolve, reject) =>
          execFile('sh', ['-c', `ulimit -n 64 && exec "${process.execPath}" "${fixture}" exhaust "${server.address}"`], (err, stdout) =>
            err ? reject(err) : resolve(stdout),
          ),
        ),
        WATCHDOG,
        'exhaust',
      );
      const result = JSON.parse(out.trim().split('\n').pop());
      assert.equal(result.code, 'IPC_ERR_LIMIT');
      assert.ok(result.opened > 0);
    } finally {
      await server.close();
      await loop;
      await Promise.all(accepted.map((ch) => ch.close()));
    }
  } finally {
    await first.close();
  }
});

test('unix: a server in a worker thread (no umask there) still creates its socket 0o600', async () => {
  const { Worker } = await import('node:worker_threads');
  const address = addressFor('unix');
  const socketFile = new URL(address).pathname;
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const { listen } = require(workerData.lib);
     listen(workerData.address).then(async (server) => {
       parentPort.postMessage('listening');
       parentPort.once('message', async () => { await server.close(); parentPort.postMessage('closed'); });
     }, (err) => parentPort.postMessage('failed: ' + err.message));`,
    { eval: true, workerData: { address, lib: require.resolve('../dist/cjs/index.js') } },
  );
  const next = () => new Promise((resolve) => worker.once('message', resolve));
  try {
    assert.equal(await watchdog(next(), WATCHDOG, 'worker listen'), 'listening');
    assert.equal(fs.statSync(socketFile).mode & 0o777, 0o600);
    const ch = await connect(address);
    await ch.close();
    worker.postMessage('close');
    assert.equal(await watchdog(next(), WATCHDOG, 'worker close'), 'closed');
    assert.equal(fs.existsSync(socketFile), false);
  } finally {
    await worker.terminate();
  }
});
