// Hostile peers against a server that also serves good clients: bogus shm:// connection
// requests (uninitialized objects, objects of the wrong kind, garbage ids, a flood filling every
// request slot, clients that die) must never stall the server's event loop, never cost a good
// client on any transport its service, and leave nothing behind (slots, objects, descriptors).
// The server runs in its own process (test/fixtures/hostile-server.mjs) and reports its worst
// event-loop stall; outcomes are asserted, durations only reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, SharedMemory } from 'interprocess';
import { startChild, uniqueName, watchdog } from './helpers.mjs';
import { tmpPath } from './channel-common.mjs';

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

async function stats(server) {
  server.send({ cmd: 'stats' });
  return watchdog(server.next('stats'), WATCHDOG, 'server stats');
}

test('shm: bogus connection requests never stall the server; good clients on unix, tcp and shm keep being served', async () => {
  const shmName = uniqueName('hostile');
  const server = startChild('hostile-server.mjs', [`unix://${tmpPath('hostile')}`, 'tcp://127.0.0.1:0', `shm://${shmName}`], { execArgv: ['--expose-gc'] });
  let attacker;
  try {
    const { addresses } = await watchdog(server.next('listening'), WATCHDOG, 'listening');
    const shmAddress = addresses[2];
    const rounds = 20;
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
