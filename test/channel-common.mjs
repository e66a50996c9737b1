// Shared by the channel tests: a pair of connected channels for every transport, so the
// conformance suite is written once and run against each.
import { fork } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listen, connect, childChannel } from 'interprocess';
import assert from 'node:assert/strict';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';
import { NATS_MISSING, startNatsServer } from '../bench/nats-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/** A path under os.tmpdir() named interprocess-t-* (the leftover test checks that prefix). */
export function tmpPath(tag) {
  return path.join(os.tmpdir(), `interprocess-${uniqueName(tag)}`);
}

/** The nats-server of this test process (started on first use, killed when the process exits). */
let natsServer;
export async function startSharedNatsServer() {
  natsServer ??= startNatsServer().then((server) => (natsServer.ready = server));
  return natsServer;
}

export function addressFor(transport) {
  if (transport === 'unix') return `unix://${tmpPath('sock')}`;
  if (transport === 'tcp') return 'tcp://127.0.0.1:0';
  if (transport === 'fifo') return `fifo://${tmpPath('fifo')}`;
  if (transport === 'shm') return `shm://${uniqueName('shm')}`;
  if (transport === 'nats') {
    const ready = natsServer?.ready;
    if (ready === undefined) throw new Error('nats: await startSharedNatsServer() before addressFor');
    return ready.address(uniqueName('nats'));
  }
  throw new Error(`no listen address for ${transport}`);
}

/**
 * Forks test/fixtures/<fixture> with the control channel on fd 3 and `extra` more 'pipe'
 * descriptors from fd 4 on. Returns { child, next(state), exited, kill }.
 */
export function forkWithPipes(fixture, args, extra = 1, stdio = ['ignore', 'inherit', 'inherit']) {
  const child = fork(path.join(here, 'fixtures', fixture), args.map(String), {
    stdio: [...stdio, 'ipc', ...Array.from({ length: extra }, () => 'pipe')],
  });
  const inbox = [];
  const waiting = [];
  child.on('message', (msg) => {
    const i = waiting.findIndex((w) => w.state === msg.state);
    if (i >= 0) waiting.splice(i, 1)[0].resolve(msg);
    else inbox.push(msg);
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  exited.then(({ code, signal }) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`${fixture} exited (${code}, ${signal}) before ${w.state}`));
  });
  return {
    child,
    exited,
    next(state) {
      const i = inbox.findIndex((m) => m.state === state);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      return new Promise((resolve, reject) => waiting.push({ state, resolve, reject }));
    },
    kill(signal = 'SIGKILL') {
      child.kill(signal);
    },
  };
}

/** Two connected channels [a, b] over `transport`, and cleanup(). */
export async function channelPair(transport, opts = {}) {
  if (transport === 'pipe') {
    const peer = forkWithPipes('channel-forwarder.mjs', [4, 5], 2);
    const a = childChannel(peer.child, { ...opts, fd: 4 });
    const b = childChannel(peer.child, { ...opts, fd: 5 });
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
        peer.kill();
        await peer.exited;
      },
    };
  }
  if (transport === 'nats') await startSharedNatsServer();
  const server = await listen(addressFor(transport), opts);
  const [a, b] = await Promise.all([connect(server.address, opts), server.accept()]);
  return {
    a,
    b,
    server,
    async cleanup() {
      await Promise.all([a.close(), b.close()]);
      await server.close();
    },
  };
}

// nats:// runs when nats-server is installed (test/channel-nats.test.mjs says so when it is not).
export const transports = ['unix', 'tcp', 'fifo', 'pipe', 'shm', ...(NATS_MISSING === undefined ? ['nats'] : [])];

export function payload(size, seq) {
  const buf = Buffer.alloc(size);
  for (let i = 4; i < size; i++) buf[i] = (seq + i) & 0xff;
  if (size >= 4) buf.writeUInt32LE(seq, 0);
  return buf;
}

export function checkPayload(buf, size, seq) {
  if (buf.byteLength !== size) throw new Error(`message ${seq}: ${buf.byteLength} bytes, expected ${size}`);
  if (size >= 4 && buf.readUInt32LE(0) !== seq) throw new Error(`expected message ${seq}, got ${buf.readUInt32LE(0)}`);
  for (let i = 4; i < size; i++) if (buf[i] !== ((seq + i) & 0xff)) throw new Error(`message ${seq}: byte ${i} corrupt`);
}

/** Asserts a message stamped by fixtures/channel-peer.mjs: its size, sequence number and fill. */
export function checkStamped(buf, size, seq) {
  assert.equal(buf.byteLength, size, `message ${seq} size`);
  assert.equal(buf.readUInt32LE(0), seq, 'sequence');
  for (let i = 4; i < size; i += 4093) assert.equal(buf[i], seq & 0xff, `message ${seq} byte ${i}`);
}

/**
 * One send-then-exit round: a child connects to `server`, sends one stamped message per size in
 * `sizes` and exits as soon as the last send resolved (no close). Every message must arrive.
 */
export async function sendExitRound(server, sizes, ms) {
  const child = startChild('channel-peer.mjs', ['send-exit', server.address, sizes.join(',')]);
  const ch = await watchdog(server.accept(), ms, 'accept');
  const got = [];
  await watchdog(
    (async () => {
      for await (const m of ch) got.push(m);
    })(),
    ms,
    'receive all',
  );
  assert.deepEqual(await child.exited, { code: 0, signal: null });
  assert.equal(got.length, sizes.length);
  got.forEach((m, i) => checkStamped(m, sizes[i], i));
  await ch.close();
}

/**
 * `child` (role 'hold') is connected on `ch`: SIGKILL it while a receive and a request are
 * pending; both reject with IPC_ERR_CLOSED, and so do sends after the death (none is silently
 * dropped, nothing is left unhandled).
 */
export async function killHolder(ch, child, ms) {
  await watchdog(child.next('connected'), ms, 'connected');
  const pending = expectCode(() => ch.receive(), 'IPC_ERR_CLOSED');
  const request = expectCode(() => ch.request(Buffer.from('r')), 'IPC_ERR_CLOSED');
  child.kill('SIGKILL');
  await child.exited;
  await watchdog(pending, ms, 'pending receive');
  await watchdog(request, ms, 'pending request');
  const sends = [];
  for (let i = 0; i < 50; i++) sends.push(ch.send(Buffer.alloc(65536)).then(() => 'ok', (e) => e.code));
  const outcomes = await watchdog(Promise.all(sends), ms, 'sends');
  assert.deepEqual([...new Set(outcomes)], ['IPC_ERR_CLOSED']);
}

/**
 * One round of a kill soak: a 'stream' child connects to `server` and sends stamped messages of
 * 64..6064 bytes; once `50 + (round * 37) % 200` have arrived it is SIGKILLed. Whatever arrives
 * after is the exact continuation of the sequence (a message cut by the kill is never
 * delivered), then IPC_ERR_CLOSED. Returns how many messages arrived.
 */
export async function killSenderRound(server, round, ms) {
  const child = startChild('channel-peer.mjs', ['stream', server.address]);
  const ch = await watchdog(server.accept(), ms, 'accept');
  await watchdog(child.next('connected'), ms, 'connected');
  let n = 0;
  const want = 50 + ((round * 37) % 200);
  await watchdog(
    (async () => {
      while (n < want) checkStamped(await ch.receive(), 64 + (n % 7) * 1000, n++);
    })(),
    ms,
    'first messages',
  );
  child.kill('SIGKILL');
  await child.exited;
  await watchdog(
    (async () => {
      for await (const m of ch) checkStamped(m, 64 + (n % 7) * 1000, n++);
    })(),
    ms,
    'drain after kill',
  );
  await expectCode(() => ch.receive(), 'IPC_ERR_CLOSED');
  await ch.close();
  return n;
}

/**
 * `count` clients connect to `server` at once and make 10 requests each; every answer must come
 * from the client's own channel. Closes the server; returns how many channels it served.
 */
export async function serveClients(server, count, ms) {
  const served = [];
  const loop = (async () => {
    for await (const ch of server) {
      ch.handle((m) => ({ client: m.client, n: m.n + 1 }));
      served.push(ch);
    }
  })();
  try {
    const clients = await watchdog(Promise.all(Array.from({ length: count }, () => connect(server.address, { codec: 'json' }))), ms, 'connect');
    const answers = await watchdog(
      Promise.all(clients.flatMap((ch, client) => Array.from({ length: 10 }, (_, n) => ch.request({ client, n })))),
      ms,
      'requests',
    );
    answers.forEach((a, i) => assert.deepEqual(a, { client: Math.floor(i / 10), n: (i % 10) + 1 }));
    await Promise.all(clients.map((ch) => ch.close()));
  } finally {
    await server.close();
    await loop;
    await Promise.all(served.map((ch) => ch.close()));
  }
  return served.length;
}
