// Soak workload: three Topics, one with overflow 'block', one with 'overwrite' and one with
// 'block' and an exclusive publisher (each killed one is followed by the next, which takes its
// place once it is dead), with publishers and subscribers that are killed and paused at any
// instant.
//
// Every message carries its publisher, a sequence number and a checksum of every byte.
// Invariants, checked by each subscriber as it goes and by the orchestrator every epoch:
//   - no message is torn; each publisher's messages arrive in order, each at most once;
//   - 'block': a subscriber sees every message of a publisher from the first it sees on, with
//     no gap; the survivor subscriber of each 'block' topic (paused, never killed) has seen, at
//     the end of an epoch, every send each of its publishers completed (recorded in a ledger
//     after publish returned);
//   - 'overwrite': the gaps a subscriber sees never exceed what it was told it missed.
import { SharedMemory, Topic } from 'interprocess';

export const name = 'topic';

const MAX_PUBLISHERS = 4096;
const check = (p, seq) => (Math.imul(p + 3, 0x2c1b3c6d) ^ Math.imul(seq + 5, 0x297a2d39)) | 0;
const yieldNow = () => new Promise((r) => setImmediate(r));

function message(p, seq) {
  const msg = new Uint8Array(12 + ((seq * 17) % 180));
  const dv = new DataView(msg.buffer);
  dv.setUint32(0, p, true);
  dv.setUint32(4, seq, true);
  dv.setInt32(8, check(p, seq), true);
  for (let i = 12; i < msg.length; i++) msg[i] = (p + seq * 3 + i) & 255;
  return msg;
}

function parse(bytes) {
  if (bytes.length < 12) return `message of ${bytes.length} bytes`;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const p = dv.getUint32(0, true);
  const seq = dv.getUint32(4, true);
  if (p >= MAX_PUBLISHERS || dv.getInt32(8, true) !== check(p, seq)) return `bad header (publisher ${p}, seq ${seq})`;
  for (let i = 12; i < bytes.length; i++) if (bytes[i] !== ((p + seq * 3 + i) & 255)) return `torn byte ${i} (publisher ${p}, seq ${seq})`;
  return [p, seq];
}

export const roles = {
  async publisher({ topic, ledger, slot }, control) {
    const t = Topic.open(topic);
    const l = new Int32Array(SharedMemory.open(ledger).buffer);
    control.report('ready');
    let seq = 0;
    while (!control.stopping) {
      // A blocked publish gives up now and then to look at its control channel.
      try {
        await t.publish(message(slot, seq), { timeout: 200 });
      } catch (err) {
        if (err.code === 'IPC_ERR_TIMEOUT') continue;
        // An exclusive topic whose previous publisher is not dead yet: its place frees soon.
        if (err.code === 'IPC_ERR_LIMIT') {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        throw err;
      }
      Atomics.store(l, slot, ++seq); // a completed publish
      if ((seq & 127) === 0) await yieldNow();
    }
    t.close();
    return { published: seq };
  },

  async subscriber({ topic, ledger, overwrite }, control) {
    const t = Topic.open(topic);
    const l = new Int32Array(SharedMemory.open(ledger).buffer);
    const sub = t.subscribe({ from: 'next' });
    const last = new Map();
    let gaps = 0;
    let received = 0;
    control.report('ready');
    for (;;) {
      const cmd = control.commands.shift();
      if (cmd?.cmd === 'check') {
        // Everything each publisher completed has arrived here (block mode, a survivor).
        for (const p of cmd.publishers) {
          const completed = Atomics.load(l, p);
          if (completed > 0 && (last.get(p) ?? -1) < completed - 1) control.violation(`publisher ${p}: ${completed} publishes completed, seen up to ${last.get(p) ?? -1}`);
        }
        control.report('checked');
      }
      let bytes;
      try {
        bytes = await sub.receive({ timeout: 100 });
      } catch (err) {
        if (err.code !== 'IPC_ERR_TIMEOUT') throw err;
        if (control.stopping) break;
        continue;
      }
      const parsed = parse(bytes);
      if (typeof parsed === 'string') {
        control.violation(parsed);
        continue;
      }
      const [p, seq] = parsed;
      const before = last.get(p);
      if (before !== undefined) {
        if (seq <= before) control.violation(`publisher ${p}: seq ${seq} after ${before}`);
        else if (seq !== before + 1) {
          if (!overwrite) control.violation(`publisher ${p}: gap from ${before} to ${seq}`);
          gaps += seq - before - 1;
        }
      }
      last.set(p, seq);
      received++;
      if (overwrite && gaps > sub.missed) control.violation(`gaps ${gaps} exceed missed ${sub.missed}`);
      if ((received & 255) === 0) await yieldNow();
    }
    sub.close();
    t.close();
    return { received, missed: sub.missed };
  },
};

let shared;
let state;
/** The topics: which -> create options. 'block' topics have a survivor that checks completeness. */
const TOPICS = {
  block: { overflow: 'block' },
  overwrite: { overflow: 'overwrite' },
  exclusive: { overflow: 'block', exclusivePublisher: true },
};
const BLOCKING = ['block', 'exclusive'];

function spawnPublisher(ctx, which) {
  if (shared.nextSlot >= MAX_PUBLISHERS) return;
  const slot = shared.nextSlot++;
  state.publishers.push(slot);
  state.slots[which]?.add(slot);
  const proc = ctx.spawn(name, 'publisher', { topic: shared[which], ledger: shared.ledger, slot }, { chaos: 'kill' });
  proc.which = which;
  state.procs.push(proc);
}

function spawnSubscriber(ctx, which) {
  const proc = ctx.spawn(name, 'subscriber', { topic: shared[which], ledger: shared.ledger, overwrite: which === 'overwrite' }, { chaos: 'kill' });
  proc.which = which;
  state.procs.push(proc);
}

export async function start(ctx) {
  state = { publishers: [], slots: { block: new Set(), exclusive: new Set() }, procs: [], kills: 0 };
  if (shared === undefined) {
    shared = { ledger: `${ctx.run}-tl`, nextSlot: 0, handles: {}, survivors: {} };
    for (const [which, options] of Object.entries(TOPICS)) {
      shared[which] = `${ctx.run}-t${which[0]}`;
      shared.handles[which] = Topic.create(shared[which], { capacity: 256, maxMessageSize: 256, ...options });
    }
    shared.l = SharedMemory.create(shared.ledger, { byteLength: MAX_PUBLISHERS * 4 });
    for (const which of BLOCKING) {
      shared.survivors[which] = ctx.spawn(name, 'subscriber', { topic: shared[which], ledger: shared.ledger, overwrite: false }, { chaos: 'pause' });
      await shared.survivors[which].next('ready');
    }
  }
  for (const which of Object.keys(TOPICS)) {
    spawnPublisher(ctx, which);
    spawnSubscriber(ctx, which);
  }
  await Promise.all(state.procs.map((p) => p.next('ready')));
}

export function respawn(ctx, victim) {
  state.kills++;
  if (victim.role === 'publisher') spawnPublisher(ctx, victim.which);
  else spawnSubscriber(ctx, victim.which);
}

export async function finish(ctx) {
  const live = state.procs.filter((p) => !p.dead && !p.killedByChaos);
  await Promise.all(live.filter((p) => p.role === 'publisher').map((p) => p.stop(60_000)));
  await Promise.all(live.filter((p) => p.role === 'subscriber').map((p) => p.stop(60_000)));
  // Each survivor must have every completed publish of this epoch's publishers of its topic.
  for (const which of BLOCKING) {
    shared.survivors[which].send({ cmd: 'check', publishers: [...state.slots[which]] });
    await shared.survivors[which].next('checked');
  }
  let published = 0;
  const l = new Int32Array(shared.l.buffer);
  for (const s of state.publishers) published += Atomics.load(l, s);
  ctx.add(name, { operations: published, kills: state.kills });
  const stats = Object.values(shared.handles).map((h) => h.stats());
  ctx.set(name, {
    skippedRecords: stats.reduce((n, s) => n + s.skippedRecords, 0),
    freedSubscribers: stats.reduce((n, s) => n + s.freedSubscribers, 0),
  });
}

export async function close() {
  if (shared === undefined) return;
  for (const survivor of Object.values(shared.survivors)) await survivor.stop(30_000).catch(() => {});
  for (const which of Object.keys(TOPICS)) {
    shared.handles[which].close();
    Topic.remove(shared[which]);
  }
  shared.l.close();
  SharedMemory.remove(shared.ledger);
}
