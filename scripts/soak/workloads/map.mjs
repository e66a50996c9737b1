// Soak workload: a SharedMap written by processes that are killed and paused at any instant.
//
// Counters (a map with eviction 'none'): each worker increments its own key and, in one atomic
// update(), a shared record { total, base, [worker]: n }. Exact at the end of every epoch:
//   - the shared record's total equals its base (earlier epochs) plus its per-worker entries (no
//     update applied twice, lost halfway or torn);
//   - for every worker, its own key and its entry in the shared record each equal the number of
//     increments it acknowledged (recorded in a ledger after the call returned), or one more
//     (the call under way when it was killed);
//   - after clear(), the map takes exactly `capacity` new keys again: a killed writer's space
//     was reclaimed, nothing leaked.
// Cache (a smaller map with eviction 'lru' and TTLs): writers set checksummed values over a
// key space larger than the map; readers (one of them a survivor) check every value they get
// belongs to its key and is whole.
import { SharedMap, SharedMemory } from 'interprocess';

export const name = 'map';

const MAX_WORKERS = 4096;
const CAPACITY = 512;
const CACHE_KEYS = 400;
const CACHE_CAPACITY = 128;

const yieldNow = () => new Promise((r) => setImmediate(r));
const sum = (key, seq) => [...`${key}:${seq}`].reduce((h, c) => (Math.imul(h, 31) + c.charCodeAt(0)) | 0, 7);

export const roles = {
  async counter({ map, ledger, slot }, control) {
    const m = SharedMap.open(map, { codec: 'json' });
    const l = new Int32Array(SharedMemory.open(ledger).buffer);
    control.report('ready');
    let n = 0;
    while (!control.stopping) {
      m.increment(`own-${slot}`);
      m.update('shared', (old) => ({ ...old, total: (old?.total ?? 0) + 1, [slot]: (old?.[slot] ?? 0) + 1 }));
      Atomics.store(l, slot, ++n); // acknowledged: both calls returned
      if ((n & 63) === 0) await yieldNow();
    }
    m.close();
    return { n };
  },

  async cacheWriter({ cache }, control) {
    const m = SharedMap.open(cache, { codec: 'json' });
    control.report('ready');
    let n = 0;
    while (!control.stopping) {
      const key = `k${(n * 7919) % CACHE_KEYS}`;
      const pad = 'x'.repeat(n % 200);
      if (n % 10 === 9) m.delete(key);
      else m.set(key, { key, seq: n, pad, sum: sum(key, n) + pad.length }, n % 5 === 0 ? { ttl: 50 } : undefined);
      if ((++n & 63) === 0) await yieldNow();
    }
    m.close();
    return { n };
  },

  async cacheReader({ cache }, control) {
    const m = SharedMap.open(cache, { codec: 'json' });
    control.report('ready');
    let reads = 0;
    let hits = 0;
    while (!control.stopping) {
      const key = `k${(reads * 104729) % CACHE_KEYS}`;
      const v = m.get(key);
      if (v !== undefined) {
        hits++;
        if (v.key !== key || v.sum !== sum(key, v.seq) + v.pad.length) control.violation(`torn or foreign value under ${key}: ${JSON.stringify(v).slice(0, 120)}`);
      }
      if ((++reads & 255) === 0) await yieldNow();
    }
    m.close();
    return { reads, hits };
  },
};

let shared;
let state;

function spawnCounter(ctx) {
  if (shared.nextSlot >= MAX_WORKERS) return;
  const slot = shared.nextSlot++;
  state.slots.push(slot);
  state.procs.push(ctx.spawn(name, 'counter', { map: shared.map, ledger: shared.ledger, slot }, { chaos: 'kill' }));
}

export async function start(ctx) {
  state = { slots: [], procs: [], kills: 0 };
  if (shared === undefined) {
    shared = { map: `${ctx.run}-map`, cache: `${ctx.run}-cache`, ledger: `${ctx.run}-mapl`, nextSlot: 0 };
    shared.m = SharedMap.create(shared.map, { capacity: CAPACITY, maxValueBytes: 16384, codec: 'json' });
    shared.c = SharedMap.create(shared.cache, { capacity: CACHE_CAPACITY, maxValueBytes: 512, eviction: 'lru', codec: 'json' });
    shared.l = SharedMemory.create(shared.ledger, { byteLength: MAX_WORKERS * 4 });
    shared.survivor = ctx.spawn(name, 'cacheReader', { cache: shared.cache }, { chaos: 'pause' });
    await shared.survivor.next('ready');
  }
  spawnCounter(ctx);
  spawnCounter(ctx);
  state.procs.push(ctx.spawn(name, 'cacheWriter', { cache: shared.cache }, { chaos: 'kill' }));
  state.procs.push(ctx.spawn(name, 'cacheReader', { cache: shared.cache }, { chaos: 'kill' }));
  await Promise.all(state.procs.map((p) => p.next('ready')));
}

export function respawn(ctx, victim) {
  state.kills++;
  if (victim.role === 'counter') spawnCounter(ctx);
  else state.procs.push(ctx.spawn(name, victim.role, { cache: shared.cache }, { chaos: 'kill' }));
}

export async function finish(ctx) {
  await Promise.all(state.procs.filter((p) => !p.dead && !p.killedByChaos).map((p) => p.stop(60_000)));
  const m = shared.m;
  const l = new Int32Array(shared.l.buffer);
  const record = m.get('shared') ?? { total: 0, base: 0 };
  let entries = record.base ?? 0;
  let acknowledged = 0;
  for (const slot of state.slots) {
    const acked = Atomics.load(l, slot);
    acknowledged += acked;
    const own = m.get(`own-${slot}`) ?? 0;
    const inShared = record[slot] ?? 0;
    entries += inShared;
    if (own !== acked && own !== acked + 1) ctx.violation(name, `worker ${slot}: own key ${own}, ${acked} increments acknowledged`);
    if (inShared !== acked && inShared !== acked + 1) ctx.violation(name, `worker ${slot}: shared entry ${inShared}, ${acked} increments acknowledged`);
  }
  const strays = Object.keys(record).filter((k) => k !== 'total' && k !== 'base' && !state.slots.includes(Number(k)));
  if (strays.length > 0) ctx.violation(name, `shared record has entries of workers that never ran: ${strays.join(', ')}`);
  if (record.total !== entries) ctx.violation(name, `shared total ${record.total}, its base and per-worker entries add up to ${entries}`);
  // Nothing leaked: after clear() the map holds exactly `capacity` keys again.
  m.clear();
  let filled = 0;
  try {
    for (; filled <= CAPACITY; filled++) m.set(`fill-${filled}`, filled);
  } catch (err) {
    if (err.code !== 'IPC_ERR_FULL') throw err;
  }
  if (filled !== CAPACITY) ctx.violation(name, `after clear() the map took ${filled} keys, capacity is ${CAPACITY}`);
  m.clear();
  // The next epoch goes on from this total; its workers have new slots.
  m.set('shared', { total: record.total, base: record.total });
  ctx.add(name, { operations: 2 * acknowledged, kills: state.kills });
}

export async function close() {
  if (shared === undefined) return;
  await shared.survivor.stop(30_000).catch(() => {});
  for (const [h, n] of [[shared.m, shared.map], [shared.c, shared.cache]]) {
    h.close();
    SharedMap.remove(n);
  }
  shared.l.close();
  SharedMemory.remove(shared.ledger);
}
