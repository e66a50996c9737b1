// SharedMap between real processes: readers and writers at full speed (no torn value, no
// value going back in time), writers SIGKILLed at every announced point of set / insert /
// delete / increment / update / eviction / expiry reclaim / recovery itself, random kills,
// and N processes counting into their own and a shared counter while being killed and
// restarted (every acknowledged increment counted exactly once). Long versions run with
// INTERPROCESS_STRESS=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { SharedMap, SharedMemory, futex } from 'interprocess';
import { startChild, uniqueName, watchdog } from './helpers.mjs';
import { checkValue, makeValue, random } from './fixtures/map-values.mjs';

const require = createRequire(import.meta.url);
const { describeMap, readGeometry } = require('../dist/cjs/map/layout.js');
const { Table } = require('../dist/cjs/map/table.js');

const STRESS = process.env.INTERPROCESS_STRESS === '1';

function named(t, tag) {
  const name = uniqueName(tag);
  t.after(() => SharedMap.remove(name));
  return name;
}

/** The map's words as `interprocess inspect` reads them, plus how many entries are taken. */
function audit(name) {
  const raw = SharedMemory.open(name);
  try {
    const g = readGeometry(raw.buffer);
    const i32 = new Int32Array(raw.buffer);
    let owned = 0;
    for (let e = 0; e < g.capacity; e++) if (i32[(g.entriesOffset + e * g.entryBytes) / 4 + 1] !== 0) owned++;
    return { ...describeMap(raw.buffer), owned };
  } finally {
    raw.close();
  }
}

/** The stripe `key` belongs to (what the map's writers lock for it). */
function stripeOf(name, key) {
  const raw = SharedMemory.open(name);
  try {
    const g = readGeometry(raw.buffer);
    const table = new Table(raw.buffer, g, 'probe');
    table.prepare(key);
    table.close();
    return table.h & (g.stripeCount - 1);
  } finally {
    raw.close();
  }
}

/**
 * Nothing is leaked: clear() takes every stripe's lock (rebuilding any a dead writer held),
 * after which no entry may be taken, and exactly `capacity` new keys fit again.
 */
function assertWhole(name) {
  const m = SharedMap.open(name);
  try {
    whole(name, m);
  } finally {
    m.close();
  }
}

function whole(name, m) {
  m.clear();
  const after = audit(name);
  assert.deepEqual({ entries: after.entries, owned: after.owned, locksHeld: after.locksHeld }, { entries: 0, owned: 0, locksHeld: 0 });
  const evictions = after.evictions;
  for (let i = 0; i < m.capacity; i++) m.set(`refill-${i}`, makeValue(`refill-${i}`, 0, i, 16));
  assert.equal(m.size, m.capacity);
  assert.equal(audit(name).evictions, evictions, 'a full refill needs no eviction');
  m.clear();
}

async function runAll(children) {
  for (const c of children) await c.next('ready');
  for (const c of children) c.send({ cmd: 'go' });
  const results = [];
  for (const c of children) {
    const msg = await c.next();
    if (msg.state === 'error') throw new Error(`child failed: ${msg.message}`);
    assert.equal(msg.state, 'done');
    results.push(msg);
    await c.exited;
  }
  return results;
}

for (const eviction of ['none', 'lru']) {
  test(`readers and writers in ${STRESS ? 6 : 4} processes: no torn value, no value goes back in time (eviction '${eviction}')`, async (t) => {
    const name = named(t, `rw-${eviction}`);
    // 'none': more room than keys; 'lru': more keys than room, so writers evict all along.
    const keys = eviction === 'none' ? 48 : 96;
    const m = SharedMap.create(name, { capacity: 64, maxKeyBytes: 16, maxValueBytes: 200, eviction });
    t.after(() => m.close());
    const ops = STRESS ? 200_000 : 15_000;
    const writers = STRESS ? 3 : 2;
    const children = [];
    for (let w = 1; w <= writers; w++) children.push(startChild('map-child.mjs', ['writer', name, w, ops, keys, w * 7919]));
    for (let r = 0; r < (STRESS ? 3 : 2); r++) children.push(startChild('map-child.mjs', ['reader', name, ops * 2, keys, r * 104729 + 1]));
    t.after(() => children.forEach((c) => c.kill()));
    const results = await watchdog(runAll(children), STRESS ? 600_000 : 60_000, 'readers and writers');
    const readers = results.slice(writers);
    for (const r of readers) assert.equal(r.regressions, 0);
    const hits = readers.reduce((n, r) => n + r.hits, 0);
    assert.ok(hits > 0, 'readers found values');
    // Every value left is whole and under its own key; the counts agree.
    let left = 0;
    for (const [key, value] of m) {
      checkValue(key, value);
      left++;
    }
    const a = audit(name);
    assert.equal(a.locksHeld, 0);
    assert.ok(a.entries >= left && a.owned === a.entries, `counts agree: ${JSON.stringify(a)} / ${left} unexpired`);
    if (eviction === 'lru') assert.ok(a.evictions > 0);
    t.diagnostic(`${writers} writers x ${ops} ops, ${readers.length} readers: ${hits} hits checked, ${a.evictions} evictions, ${a.expiredReclaimed} expired reclaimed`);
    assertWhole(name);
  });
}

test('a writer holding a stripe (inside update) blocks no reader and no writer of another stripe; its death is recovered once', async (t) => {
  const name = named(t, 'hold');
  const m = SharedMap.create(name, { capacity: 256, codec: 'json', maxValueBytes: 64 });
  t.after(() => m.close());
  m.set('held', { v: 1 });
  const stripe = stripeOf(name, 'held');
  const others = [];
  for (let i = 0; others.length < 50; i++) if (stripeOf(name, `o${i}`) !== stripe) others.push(`o${i}`);
  const sameStripe = [];
  for (let i = 0; sameStripe.length < 3; i++) if (stripeOf(name, `s${i}`) === stripe) sameStripe.push(`s${i}`);
  for (const k of sameStripe) m.set(k, k);
  const holder = startChild('map-child.mjs', ['hold', name, 'held']);
  t.after(() => holder.kill());
  await watchdog(holder.next('holding'), 10_000, 'holder');
  const held = audit(name);
  assert.deepEqual(held.locks, [{ stripe, state: 'held', ownerAlive: true, waiters: false }]);
  // Reads of the held key and of its stripe neighbours, and writes elsewhere, go on.
  for (let round = 0; round < 100; round++) {
    assert.deepEqual(m.get('held'), { v: 1 });
    for (const k of sameStripe) assert.equal(m.get(k), k);
    m.set(others[round % others.length], round);
  }
  assert.equal([...m.keys()].length, 1 + sameStripe.length + others.length);
  holder.kill();
  await holder.exited;
  assert.equal(audit(name).locks[0].ownerAlive, false);
  // The next writer of that stripe takes the lock over and rebuilds the stripe, once.
  m.update('held', (old) => ({ v: old.v + 1 }));
  assert.deepEqual(m.get('held'), { v: 2 });
  const after = audit(name);
  assert.equal(after.recoveries, 1);
  assert.equal(after.locksHeld, 0);
  assertWhole(name);
});

/**
 * One kill at an announced point: `setup` prepares the map, the child performs `op` on `key`
 * and parks at `point`; reads go on while it is parked; after the SIGKILL, `expect` checks the
 * key's state before and after the next writer recovers the stripe, and nothing is leaked.
 */
const POINTS = [
  { point: 'set:written', op: 'set', key: 'a', before: 'old', after: 'old' },
  { point: 'insert:allocated', op: 'insert', key: 'b', before: 'absent', after: 'absent' },
  { point: 'insert:linked', op: 'insert', key: 'b', before: 'absent', after: 'absent' },
  { point: 'delete:hidden', op: 'delete', key: 'a', before: 'absent', after: 'absent' },
  { point: 'delete:unlinked', op: 'delete', key: 'a', before: 'absent', after: 'absent' },
  { point: 'set:written', op: 'increment', key: 'n', before: 5, after: 5, codec: 'json' },
  { point: 'insert:linked', op: 'increment', key: 'fresh', before: 'absent', after: 'absent', codec: 'json' },
  { point: 'set:written', op: 'update', key: 'u', before: { n: 1 }, after: { n: 1 }, codec: 'json' },
  { point: 'delete:hidden', op: 'update-delete', key: 'u', before: 'absent', after: 'absent', codec: 'json' },
  { point: 'evict:locked', op: 'insert', key: 'b', before: 'absent', after: 'absent', eviction: 'lru' },
  { point: 'reclaim:locked', op: 'insert', key: 'b', before: 'absent', after: 'absent', expired: true },
];

for (const c of POINTS) {
  test(`SIGKILL inside ${c.op} at ${c.point}: the key keeps its old value, readers never wait, nothing leaks`, async (t) => {
    const name = named(t, 'kill');
    const capacity = 16;
    const m = SharedMap.create(name, { capacity, maxKeyBytes: 16, maxValueBytes: 64, eviction: c.eviction ?? 'none' });
    t.after(() => m.close());
    const json = SharedMap.open(name, { codec: 'json' });
    t.after(() => json.close());
    const oldA = makeValue('a', 1, 1, 40);
    m.set('a', oldA);
    json.set('n', 5);
    json.set('u', { n: 1 });
    if (c.eviction === 'lru' || c.expired) {
      // Full, so that the insert must evict (or reclaim an expired entry), in another stripe or its own.
      for (let i = 0; m.size < capacity; i++) m.set(`fill-${i}`, makeValue(`fill-${i}`, 1, i, 20), c.expired ? { ttl: 1 } : undefined);
      if (c.expired) {
        const until = Date.now() + 3;
        while (Date.now() <= until);
      }
    }
    const jsonKeys = ['n', 'u', 'fresh'];
    const state = (key) => {
      const v = jsonKeys.includes(key) ? json.get(key) : m.get(key);
      if (v === undefined) return 'absent';
      if (jsonKeys.includes(key)) return v;
      checkValue(key, v);
      return Buffer.from(v).equals(Buffer.from(oldA)) ? 'old' : 'new';
    };
    const child = startChild('map-child.mjs', ['op', name, c.op, c.key], { env: { INTERPROCESS_MAP_PARK: c.point } });
    t.after(() => child.kill());
    await watchdog(child.next('ready'), 10_000, 'child ready');
    child.send({ cmd: 'go' });
    const parked = await watchdog(child.next(), 10_000, `child reaching ${c.point}`);
    assert.deepEqual({ state: parked.state, point: parked.point }, { state: 'parked', point: c.point });
    // Parked with the lock held: readers see the old state, or the new one once the operation
    // passed its linearization point, and never wait.
    assert.deepEqual(state(c.key), c.before);
    assert.equal(audit(name).locks.some((l) => l.ownerAlive === true), true);
    child.kill();
    await child.exited;
    assert.deepEqual(state(c.key), c.before);
    const dead = audit(name);
    assert.ok(dead.locks.some((l) => l.ownerAlive === false), 'a dead owner holds the stripe');
    // The next write to the key's stripe recovers it; the key is as expected; a write works.
    const beforeRecoveries = dead.recoveries;
    if (c.codec === 'json') json.update(c.key, (old) => old);
    else m.update(c.key, (old) => old);
    assert.deepEqual(state(c.key), c.after);
    assert.ok(audit(name).recoveries > beforeRecoveries);
    // Other keys are untouched (an eviction may take any unread one).
    if (c.key !== 'a' && !c.eviction) assert.equal(state('a') === 'absent' ? 'absent' : 'present', 'present');
    for (const [key, value] of m) if (!jsonKeys.includes(key)) checkValue(key, value);
    assertWhole(name);
  });
}

test('SIGKILL of a recoverer in the middle of rebuilding a stripe: the next writer rebuilds it again', async (t) => {
  const name = named(t, 'rerecover');
  const m = SharedMap.create(name, { capacity: 32, maxKeyBytes: 16, maxValueBytes: 64 });
  t.after(() => m.close());
  const oldA = makeValue('a', 1, 1, 40);
  m.set('a', oldA);
  for (const point of ['set:written', 'recover:start']) {
    const child = startChild('map-child.mjs', ['op', name, 'set', 'a'], { env: { INTERPROCESS_MAP_PARK: point } });
    t.after(() => child.kill());
    await watchdog(child.next('ready'), 10_000, 'child ready');
    child.send({ cmd: 'go' });
    assert.equal((await watchdog(child.next('parked'), 10_000, point)).point, point);
    child.kill();
    await child.exited;
    assert.deepEqual([...m.get('a')], [...oldA]);
  }
  m.set('a', makeValue('a', 2, 2, 30));
  assert.equal(checkValue('a', m.get('a')).writer, 2);
  assert.equal(audit(name).recoveries, 1); // the one that finished
  assertWhole(name);
});

test(`random SIGKILLs of ${STRESS ? 6 : 3} writers (set, delete, update, increment, eviction, ttl): every value whole, nothing leaked`, async (t) => {
  const name = named(t, 'chaos');
  const m = SharedMap.create(name, { capacity: 48, maxKeyBytes: 16, maxValueBytes: 120, eviction: 'lru' });
  t.after(() => m.close());
  const rnd = random(12345);
  const workers = STRESS ? 6 : 3;
  const kills = STRESS ? 300 : 8;
  const running = new Map();
  let seed = 1;
  const start = (id) => {
    const c = startChild('map-child.mjs', ['chaos', name, id, 72, seed++]);
    running.set(id, c);
    return c;
  };
  t.after(() => running.forEach((c) => c.kill()));
  for (let id = 0; id < workers; id++) await watchdog(start(id).next('ready'), 10_000, 'ready');
  await watchdog((async () => {
    for (let k = 0; k < kills; k++) {
      const id = Math.floor(rnd() * workers);
      const c = running.get(id);
      // Let it run for a random number of progress reports: the kill lands wherever it is.
      for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
        const msg = await c.next();
        if (msg.state === 'error') throw new Error(`chaos writer failed: ${msg.message}`);
      }
      c.kill();
      await c.exited;
      await start(id).next('ready');
      // Readers meanwhile: every value is whole.
      for (const [key, value] of m) if (!key.startsWith('count-')) checkValue(key, value);
    }
  })(), STRESS ? 900_000 : 90_000, 'chaos');
  for (const c of running.values()) {
    c.kill();
    await c.exited;
  }
  running.clear();
  for (const [key, value] of m) if (!key.startsWith('count-')) checkValue(key, value);
  const a = audit(name);
  t.diagnostic(`${kills} kills: ${a.recoveries} stripes rebuilt, ${a.evictions} evictions, ${a.expiredReclaimed} expired reclaimed`);
  assertWhole(name);
});

test(`exact counts: ${STRESS ? 4 : 3} processes increment their own and a shared counter while killed and restarted`, async (t) => {
  const name = named(t, 'count');
  const m = SharedMap.create(name, { capacity: 16, codec: 'json', maxValueBytes: 32 });
  t.after(() => m.close());
  const rnd = random(777);
  const workers = STRESS ? 4 : 3;
  const kills = STRESS ? 200 : 15;
  const own = Array.from({ length: workers }, () => ({ acked: [], starts: [], kills: 0 }));
  const sharedAcked = [];
  const running = new Map();
  const ctlName = uniqueName('count-ctl');
  const ctl = SharedMemory.create(ctlName, { byteLength: 64 });
  t.after(() => {
    ctl.close();
    SharedMemory.remove(ctlName);
  });
  const taken = new Int32Array(ctl.buffer);
  const start = async (id) => {
    Atomics.store(taken, id, 0);
    const c = startChild('map-child.mjs', ['counter', name, id, ctlName]);
    running.set(id, c);
    const ready = await c.next('ready');
    // Every acknowledged increment of the earlier incarnations is in the map.
    assert.ok(ready.own >= (own[id].acked.at(-1) ?? 0), `own-${id} restarts at ${ready.own}, below an acknowledged ${own[id].acked.at(-1)}`);
    own[id].starts.push(ready.own);
    return c;
  };
  t.after(() => running.forEach((c) => c.kill()));
  /** Takes the child's acknowledgements until `n` shared ones arrived (it counts on meanwhile). */
  const collect = async (id, n) => {
    const c = running.get(id);
    while (n > 0) {
      const msg = await c.next();
      Atomics.add(taken, id, 1);
      futex.notify(taken, id);
      if (msg.state === 'own') own[id].acked.push(msg.value);
      else if (msg.state === 'shared') {
        sharedAcked.push(msg.value);
        n--;
      } else throw new Error(`counter ${id}: ${JSON.stringify(msg)}`);
    }
  };
  const drain = async (id) => {
    const c = running.get(id);
    // Let it run 200 rounds ahead (what the channel holds without queueing in the child), and
    // kill it once it runs again: the SIGKILL lands wherever it is in that burst.
    Atomics.add(taken, id, 400);
    futex.notify(taken, id);
    const msg = await c.next();
    if (msg.state === 'own') own[id].acked.push(msg.value);
    if (msg.state === 'shared') sharedAcked.push(msg.value);
    c.kill();
    await c.exited;
    for (;;) {
      const msg = await c.next().catch(() => undefined);
      if (msg === undefined) break;
      if (msg.state === 'own') own[id].acked.push(msg.value);
      if (msg.state === 'shared') sharedAcked.push(msg.value);
      if (msg.state === 'error') throw new Error(`counter ${id}: ${msg.message}`);
    }
    own[id].kills++;
    running.delete(id);
  };
  for (let id = 0; id < workers; id++) await start(id);
  await watchdog((async () => {
    for (let k = 0; k < kills; k++) {
      const id = Math.floor(rnd() * workers);
      await collect(id, 5 + Math.floor(rnd() * 60));
      await drain(id);
      await start(id);
    }
    for (const id of [...running.keys()]) await drain(id);
  })(), STRESS ? 900_000 : 120_000, 'counters');
  const sharedFinal = m.get('shared');
  let ownTotal = 0;
  for (let id = 0; id < workers; id++) {
    const final = m.get(`own-${id}`);
    ownTotal += final;
    const { acked } = own[id];
    // Acknowledged values are distinct, increasing, and each incarnation starts where the map was.
    assert.deepEqual(acked, [...acked].sort((a, b) => a - b));
    assert.equal(new Set(acked).size, acked.length);
    assert.ok(acked.length > 0 && acked.at(-1) <= final);
    // Only increments in flight when a kill landed may be applied without an acknowledgement.
    assert.ok(final - acked.length <= own[id].kills, `own-${id}: ${final} applied, ${acked.length} acknowledged, ${own[id].kills} kills`);
  }
  // Every acknowledged shared increment is counted exactly once: all distinct, all within the
  // final count, and the final count is what the processes applied (each own increment is
  // followed by one shared increment, except where a kill fell between the two).
  assert.equal(new Set(sharedAcked).size, sharedAcked.length, 'no two increments returned the same count');
  assert.ok(sharedAcked.every((v) => v >= 1 && v <= sharedFinal));
  const totalKills = own.reduce((n, o) => n + o.kills, 0);
  assert.ok(sharedFinal <= ownTotal && sharedFinal >= ownTotal - totalKills, `shared ${sharedFinal}, own total ${ownTotal}, kills ${totalKills}`);
  assert.ok(sharedFinal - sharedAcked.length <= totalKills, `shared ${sharedFinal} applied, ${sharedAcked.length} acknowledged`);
  t.diagnostic(`${totalKills} kills, ${sharedAcked.length} acknowledged shared increments, final ${sharedFinal}, ${audit(name).recoveries} stripes rebuilt`);
  assertWhole(name);
});
