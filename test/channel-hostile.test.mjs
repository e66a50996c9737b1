// Hostile peers against a server that also serves good clients: bogus shm:// connection
// requests (uninitialized objects, objects of the wrong kind, garbage ids, a flood filling every
// request slot, clients that die) must never stall the server's event loop, never cost a good
// client on any transport its service, and leave nothing behind (slots, objects, descriptors).
// The server runs in its own process (test/fixtures/hostile-server.mjs) and reports its worst
// event-loop stall; outcomes are asserted, durations only reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { childChannel, connect, SharedMemory } from 'interprocess';
import { startChild, uniqueName, watchdog } from './helpers.mjs';
import { addressFor, forkWithPipes, startSharedNatsServer, tmpPath, transports } from './channel-common.mjs';
import { endReason } from './fixtures/end-reason.mjs';

const WATCHDOG = 60_000;
const MiB = 2 ** 20;

/** One good client per address: connect, three requests, close. */
async function goodRound(addresses, round) {
  await Promise.all(
    addresses.map(async (address) => {
      const ch = await connect(address, { codec: 'json' });
      try {
        for (let n = 0; n < 3; n++) assert.deepEqual(await ch.request({ round, n }), { echo: { round, n } });
      } finally {
        await ch.close();
      }
    }),
  );
}

/** The server's figures once it has accepted `accepted` ({ scheme: n }) and every channel has ended. */
async function stats(server, accepted = {}) {
  server.send({ cmd: 'stats', accepted });
  return watchdog(server.next('stats'), WATCHDOG, 'server stats');
}

const schemeOf = (address) => new URL(address).protocol.slice(0, -1);
/** How a channel may end under attack (end-reason.mjs): never anything but these. */
const ENDS = ['end', 'mid-frame', 'gone', 'IPC_ERR_PROTOCOL'];

test('shm: bogus connection requests never stall the server; good clients on unix, tcp and shm keep being served', async () => {
  const shmName = uniqueName('hostile');
  const server = startChild('hostile-server.mjs', [`unix://${tmpPath('hostile')}`, 'tcp://127.0.0.1:0', `shm://${shmName}`], { execArgv: ['--expose-gc'] });
  let attacker;
  try {
    const { addresses } = await watchdog(server.next('listening'), WATCHDOG, 'listening');
    const shmAddress = addresses[2];
    const rounds = process.env.INTERPROCESS_STRESS ? 400 : 20;
    const goodRounds = (from) =>
      watchdog(
        (async () => {
          for (let round = from; round < from + rounds; round++) await goodRound(addresses, round);
        })(),
        WATCHDOG,
        'good clients',
      );
    // The same work without an attacker first: the loop's delays to compare with.
    await goodRounds(-rounds);
    const before = await stats(server);

    attacker = startChild('shm-attacker.mjs', ['attack', shmAddress]);
    await watchdog(attacker.next('posted'), WATCHDOG, 'bogus requests posted');
    // Good clients on every transport, while the attacker floods the request slots.
    await goodRounds(0);
    const under = await stats(server);
    // Every bogus request with a usable state object is refused (state 3), and the objects of
    // clients that died before the server looked are removed by the server.
    const settled = await watchdog(attacker.next('settled'), WATCHDOG, 'bogus requests refused');
    assert.deepEqual(Object.values(settled.states), Object.values(settled.states).map(() => 3), JSON.stringify(settled.states));
    assert.deepEqual(settled.gone, { 'dead-client': true, 'dead-pending': true });
    attacker.send({ cmd: 'stop' });
    const done = await watchdog(attacker.next('done'), WATCHDOG, 'attacker done');
    assert.deepEqual(await attacker.exited, { code: 0, signal: null });

    // Every slot free again; nothing of the attack or of a good client left under the name.
    const point = SharedMemory.open(shmName);
    const slots = new Int32Array(point.buffer, 256, 64);
    assert.deepEqual([...slots].filter((id) => id !== 0), []);
    point.close();
    assert.deepEqual(SharedMemory.list().filter((n) => n.startsWith(`${shmName}.`)), []);
    // The server is still fine, and handed out only the good clients' channels.
    await watchdog(goodRound(addresses, rounds), WATCHDOG, 'after the attack');
    const after = await stats(server);
    const each = 2 * rounds + 1;
    assert.deepEqual(after.accepted, { unix: each, tcp: each, shm: each });
    assert.deepEqual(after.ended, { unix: { end: each }, tcp: { end: each }, shm: { end: each } });
    const loop = ({ loop: l }) =>
      `max ${l.max} ms (worst gap ${l.worstGap} ms with ${l.worstGapCpu} ms on the CPU; longest on the CPU ${l.worstOnCpu} ms), p99 ${l.p99} ms, mean ${l.mean} ms, utilization ${l.utilization}`;
    console.log(
      `# under attack: ${done.posted} bogus requests (${done.floodRounds} floods of every slot) while ${rounds} good rounds ran on unix, tcp and shm; ` +
        `server event-loop delay under attack: ${loop(under)}; the same rounds without attack: ${loop(before)}; ` +
        `fds ${before.fds} -> ${after.fds}, heap ${(before.heapUsed / MiB).toFixed(1)} -> ${(after.heapUsed / MiB).toFixed(1)} MiB, ` +
        `rss ${(before.rss / MiB).toFixed(0)} -> ${(after.rss / MiB).toFixed(0)} MiB (after GC)`,
    );
    assert.equal(after.fds, before.fds, 'descriptors after the attack (after a GC)');
    assert.ok(after.heapUsed - before.heapUsed < 16 * MiB, `heap grew from ${before.heapUsed} to ${after.heapUsed}`);
    assert.ok(after.rss - before.rss < 32 * MiB, `RSS grew from ${before.rss} to ${after.rss}`);
  } finally {
    attacker?.kill();
    server.send({ cmd: 'stop' });
    await watchdog(server.exited, WATCHDOG, 'server exit').catch((err) => {
      server.kill();
      throw err;
    });
    for (const n of SharedMemory.list().filter((n) => n === shmName || n.startsWith(`${shmName}.`))) SharedMemory.remove(n);
  }
});

test('hostile peers on every transport, in a loop (floods, half frames, resets, garbage in the queues): the server keeps serving; its descriptors and memory stay flat', async () => {
  const rounds = process.env.INTERPROCESS_STRESS ? 100 : 3;
  // Every transport with a server (nats:// where nats-server is installed); pipe:// below.
  const schemes = transports.filter((t) => t !== 'pipe');
  if (schemes.includes('nats')) await startSharedNatsServer();
  const server = startChild('hostile-server.mjs', schemes.map(addressFor), { execArgv: ['--expose-gc'] });
  try {
    const { addresses } = await watchdog(server.next('listening'), WATCHDOG, 'listening');
    const expected = Object.fromEntries(schemes.map((scheme) => [scheme, 2]));
    await watchdog(goodRound(addresses, -2), WATCHDOG, 'warm-up');
    await watchdog(goodRound(addresses, -1), WATCHDOG, 'warm-up');
    const before = await stats(server, expected);
    const attacks = {};
    for (const [k, address] of addresses.entries()) {
      const scheme = schemeOf(address);
      const attacker = startChild('transport-attacker.mjs', [scheme, address, rounds]);
      const { connections } = await watchdog(attacker.next('done'), WATCHDOG, `${scheme} attacker`);
      assert.deepEqual(await attacker.exited, { code: 0, signal: null });
      attacks[scheme] = connections;
      expected[scheme] += connections;
      // Everyone is still served after each attack.
      await watchdog(goodRound(addresses, k), WATCHDOG, `good clients after the ${scheme} attack`);
      for (const s of schemes) expected[s]++;
    }
    const after = await stats(server, expected);
    assert.deepEqual(after.accepted, expected, 'every attacking connection was accepted and ended, and every good one');
    for (const scheme of schemes) {
      const ended = after.ended[scheme];
      assert.deepEqual(Object.keys(ended).filter((r) => !ENDS.includes(r)), [], `${scheme}: channels end cleanly, cut or with IPC_ERR_PROTOCOL`);
      // Every round's garbage reached the server and was refused as such.
      assert.ok(ended.IPC_ERR_PROTOCOL >= rounds, `${scheme}: ${JSON.stringify(ended)}`);
    }
    console.log(
      `# hostile peers, ${rounds} rounds: connections per transport ${JSON.stringify(attacks)}, ended ${JSON.stringify(after.ended)}; ` +
        `server fds ${before.fds} -> ${after.fds}, heap ${(before.heapUsed / MiB).toFixed(1)} -> ${(after.heapUsed / MiB).toFixed(1)} MiB, ` +
        `rss ${(before.rss / MiB).toFixed(0)} -> ${(after.rss / MiB).toFixed(0)} MiB (after GC); worst event-loop stall ${after.loop.worstGap} ms`,
    );
    assert.equal(after.fds, before.fds, 'descriptors after the attacks (after a GC)');
    assert.ok(after.heapUsed - before.heapUsed < 16 * MiB, `heap grew from ${before.heapUsed} to ${after.heapUsed}`);
    assert.ok(after.rss - before.rss < 32 * MiB, `RSS grew from ${before.rss} to ${after.rss}`);
  } finally {
    server.send({ cmd: 'stop' });
    await watchdog(server.exited, WATCHDOG, 'server exit').catch((err) => {
      server.kill();
      throw err;
    });
  }
});

test('pipe: children that write garbage, half a frame or nothing and exit, in a loop: coded ends only; descriptors and memory stay flat', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const rounds = process.env.INTERPROCESS_STRESS ? 600 : 12;
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  const attack = async (round) => {
    const peer = forkWithPipes('transport-attacker.mjs', ['pipe', 4, round], 1);
    const ch = childChannel(peer.child, { fd: 4, frameTimeout: 300 });
    ch.handle((m) => m);
    let reason;
    for (;;) {
      try {
        await ch.receive();
      } catch (err) {
        reason = endReason(err);
        break;
      }
    }
    await ch.close();
    assert.deepEqual(await peer.exited, { code: 0, signal: null });
    // Nothing, half a header, half a frame, a 4 GiB announcement, garbage, a request then half a frame.
    const expected = [['end'], ['mid-frame'], ['mid-frame'], ['IPC_ERR_PROTOCOL'], ['IPC_ERR_PROTOCOL'], ['mid-frame', 'gone']][round % 6];
    assert.ok(expected.includes(reason), `attack ${round % 6}: ${reason}`);
    return reason;
  };
  await attack(0);
  await settle();
  const before = { fds: fds(), heap: process.memoryUsage().heapUsed };
  const ends = {};
  await watchdog(
    (async () => {
      for (let round = 0; round < rounds; round++) {
        const reason = await attack(round);
        ends[reason] = (ends[reason] ?? 0) + 1;
      }
    })(),
    WATCHDOG,
    'pipe attacks',
  );
  await settle();
  const after = { fds: fds(), heap: process.memoryUsage().heapUsed };
  console.log(`# pipe: ${rounds} hostile children, ends ${JSON.stringify(ends)}; fds ${before.fds} -> ${after.fds}, heap ${(before.heap / MiB).toFixed(1)} -> ${(after.heap / MiB).toFixed(1)} MiB`);
  assert.equal(after.fds, before.fds, 'descriptors');
  assert.ok(after.heap - before.heap < 16 * MiB, `heap grew from ${before.heap} to ${after.heap}`);
});
